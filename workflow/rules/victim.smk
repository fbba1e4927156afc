# Stage 4: victims, the models an attacker trains on the published training split of each
# method's poison store: the grid methods x backbones x weightings x defenses x seeds of
# `victims`, plus the robustness protocol's blocks (mtlue.config.victim_runs). A defense is a
# registered name or a `+` composition; its options come from `victims.defense_options`.
#
# One job trains several seeds of one victim (method, backbone, weighting, defense), one after
# another in one `mtlue victim` process (mtlue.config.victim_jobs; `victims.seeds_per_job`, all
# of them by default), with one output per seed: a process's start-up (imports, data, MLflow
# store; about 6 s of CPU, half a tiny victim's training) is paid once per job. A job's
# outputs are its seeds' metrics.json files, so the rule's outputs depend on which seeds it
# trains: there is one rule per distinct seed tuple, `victim` when every job trains the same
# seeds (the usual case), else `victim_seeds_0_1_2` and so on. Each rule's {victim} wildcard,
# `method/backbone/weighting/defense`, is then constrained to the victims of its seed tuple, so
# every metrics.json has exactly one rule. The same grouping holds on a cluster.

for seeds, victims in sorted(VICTIM_SEED_TUPLES.items()):

    rule:
        name:
            "victim" if len(VICTIM_SEED_TUPLES) == 1 else "victim_seeds_" + "_".join(map(str, seeds))
        input:
            manifest=rules.prepare.output.manifest,
            poison=victim_poison,
        output:
            [f"{VICTIM_DIR}/seed{seed}/metrics.json" for seed in seeds],
        wildcard_constraints:
            victim=ANY_VICTIM if len(VICTIM_SEED_TUPLES) == 1 else "|".join(map(re.escape, sorted(victims))),
        group:
            # One group: `--group-components victim=N` (the SLURM profile) runs N victim jobs in
            # one allocation, paying the scheduler's and Snakemake's start-up once for N.
            "victim"
        params:
            settings=VICTIMS,
            seeds=" ".join(map(str, seeds)),
            # mtlue victim puts each seed in place of {seed}.
            out=victim_seed_path("metrics.json"),
            # Beside each seed's metrics.json, outside it, so a failed job keeps them and its rerun resumes.
            checkpoints=victim_seed_path("checkpoints"),
            train=victim_recipe,
            flags=victim_flags,
            tracking=victim_tracking,
        log:
            f"{LOGS}/victim/{{dataset}}/{{victim}}/seed{'-'.join(map(str, seeds))}.log",
        conda:
            CONDA_ENV
        threads: RESOURCES["threads"]
        resources:
            gpu=training_gpus(),
            mem_mb=RESOURCES["mem_mb"],
            runtime=RESOURCES["runtime"] * len(seeds),
            # The profile gives each allocation one slot (a resource of local scope): the victims
            # of a group run one after another on one victim's CPUs, memory and GPUs, their
            # runtimes added, instead of asking for the sum of their GPUs.
            victim_slot=1,
        shell:
            "mtlue victim --data $(dirname {input.manifest}) --poison $(dirname {input.poison})"
            " {params.flags} --seed {params.seeds} --mode {params.settings[mode]}"
            " --decoder {params.settings[decoder]} --decoder-width {params.settings[decoder_width]}"
            " --epochs {params.train[epochs]} --batch-size {params.train[batch_size]} --lr {params.train[lr]}"
            " --weight-decay {params.train[weight_decay]} --clip-norm {params.train[clip_norm]}"
            " --milestones {params.train[milestones]} --gamma {params.train[gamma]} --eval-every {params.train[eval_every]}"
            " --num-threads {threads} --checkpoint-dir {params.checkpoints:q} --no-progress {params.tracking}"
            " --out {params.out:q} > {log} 2>&1"
