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

import re

VICTIMS = config["victims"]


wildcard_constraints:
    # Configured methods and submissions (rule install_submission).
    method="|".join(map(re.escape, [*METHODS, *SUBMITTED_NAMES])),


def victim_metrics(dataset):
    from mtlue.config import victim_runs

    return [
        f"{RESULTS}/{dataset}/victims/{run.method}/{run.backbone}/{run.weighting}/{run.defense}/seed{run.seed}/metrics.json"
        for run in victim_runs(config, SUBMITTED[dataset])
    ]


def victim_seed_tuples():
    """{seed tuple: the `method/backbone/weighting/defense` victims with a job of those seeds}."""
    from mtlue.config import victim_jobs

    tuples = {}
    for dataset in DATASETS:
        for job in victim_jobs(config, SUBMITTED[dataset]):
            tuples.setdefault(job.seeds, set()).add(job.victim)
    return tuples


def victim_axes(wildcards):
    """method, backbone, weighting, defense of a job's {victim} wildcard."""
    return wildcards.victim.split("/")


def victim_poison(wildcards):
    method = victim_axes(wildcards)[0]
    return f"{RESULTS}/{wildcards.dataset}/poisons/{method}/card.json"


def victim_flags(wildcards):
    """The job's `--backbone`, `--weighting` and `--defense` with the defense's options."""
    from mtlue.config import defense_options

    _, backbone, weighting, defense = victim_axes(wildcards)
    settings = option_flags("--defense-set", defense_options(config, defense))
    return " ".join(part for part in (f"--backbone {backbone} --weighting {weighting} --defense {defense}", settings) if part)


def victim_recipe(wildcards):
    """The job's training recipe: `victims.train` with its defense's `victims.train_per_defense`."""
    from mtlue.config import victim_train

    recipe = victim_train(config, victim_axes(wildcards)[3])
    return {**recipe, "milestones": " ".join(str(fraction) for fraction in recipe["milestones"])}


def victim_seed_path(leaf):
    """A function of the job's wildcards giving the `mtlue victim` pattern of each seed's ``leaf``
    (a function, so that Snakemake leaves the `{seed}` field to mtlue)."""

    def pattern(wildcards):
        return f"{RESULTS}/{wildcards.dataset}/victims/{wildcards.victim}/seed{{seed}}/{leaf}"

    return pattern


def victim_tracking(wildcards):
    # No seed tag: each seed's MLflow run is tagged with its own seed by `mtlue victim`.
    method, backbone, weighting, defense = victim_axes(wildcards)
    return tracking_flags(dataset=wildcards.dataset, method=method, backbone=backbone, weighting=weighting, defense=defense)


VICTIM_DIR = f"{RESULTS}/{{dataset}}/victims/{{victim}}"
VICTIM_SEED_TUPLES = victim_seed_tuples()
# Any configured method and three more path components; a defense spec is a safe path part.
ANY_VICTIM = f"(?:{'|'.join(map(re.escape, [*METHODS, *SUBMITTED_NAMES]))})/[^/]+/[^/]+/[a-z0-9+-]+"


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
        params:
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
        threads: config["resources"]["threads"]
        resources:
            gpu=config["resources"]["gpu"],
            mem_mb=config["resources"]["mem_mb"],
            runtime=config["resources"]["runtime"] * len(seeds),
        shell:
            "mtlue victim --data $(dirname {input.manifest}) --poison $(dirname {input.poison})"
            " {params.flags} --seed {params.seeds} --mode {VICTIMS[mode]}"
            " --decoder {VICTIMS[decoder]} --decoder-width {VICTIMS[decoder_width]}"
            " --epochs {params.train[epochs]} --batch-size {params.train[batch_size]} --lr {params.train[lr]}"
            " --weight-decay {params.train[weight_decay]} --clip-norm {params.train[clip_norm]}"
            " --milestones {params.train[milestones]} --gamma {params.train[gamma]} --eval-every {params.train[eval_every]}"
            " --num-threads {threads} --checkpoint-dir {params.checkpoints:q} --no-progress {params.tracking}"
            " --out {params.out:q} > {log} 2>&1"
