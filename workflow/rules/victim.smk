# Stage 4: victims, the models an attacker trains on the published training split of each
# method's poison store, fanned out over methods x backbones x weightings x defenses x seeds as
# the config lists them. `none` (the standard random crop + flip) is the only defense until the
# robustness stage lands.

VICTIMS = config["victims"]
TRAIN = VICTIMS["train"]


wildcard_constraints:
    method="|".join(METHODS),
    backbone="[^/]+",
    weighting="[^/]+",
    defense="|".join(VICTIMS["defenses"]),
    seed=r"\d+",


def victim_metrics(dataset):
    return expand(
        f"{RESULTS}/{dataset}/victims/{{method}}/{{backbone}}/{{weighting}}/{{defense}}/seed{{seed}}/metrics.json",
        method=METHODS,
        backbone=VICTIMS["backbones"],
        weighting=VICTIMS["weightings"],
        defense=VICTIMS["defenses"],
        seed=VICTIMS["seeds"],
    )


rule victim:
    input:
        manifest=rules.prepare.output.manifest,
        poison=rules.poison.output.card,
    output:
        metrics=f"{RESULTS}/{{dataset}}/victims/{{method}}/{{backbone}}/{{weighting}}/{{defense}}/seed{{seed}}/metrics.json",
    params:
        # Outside the output folder's metrics.json, so a failed job keeps them and its rerun resumes.
        checkpoints=lambda wildcards, output: os.path.join(os.path.dirname(output.metrics), "checkpoints"),
        milestones=" ".join(str(fraction) for fraction in TRAIN["milestones"]),
    log:
        f"{LOGS}/victim/{{dataset}}/{{method}}/{{backbone}}/{{weighting}}/{{defense}}/seed{{seed}}.log",
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "mtlue victim --data $(dirname {input.manifest}) --poison $(dirname {input.poison})"
        " --backbone {wildcards.backbone}"
        " --weighting {wildcards.weighting} --seed {wildcards.seed} --mode {VICTIMS[mode]}"
        " --decoder {VICTIMS[decoder]} --decoder-width {VICTIMS[decoder_width]}"
        " --epochs {TRAIN[epochs]} --batch-size {TRAIN[batch_size]} --lr {TRAIN[lr]}"
        " --weight-decay {TRAIN[weight_decay]} --clip-norm {TRAIN[clip_norm]}"
        " --milestones {params.milestones} --gamma {TRAIN[gamma]} --eval-every {TRAIN[eval_every]}"
        " --num-threads {threads} --checkpoint-dir {params.checkpoints} --no-progress"
        " --out {output.metrics} > {log} 2>&1"
