# Stage 4: victims, the models an attacker trains on the published training split of each
# method's poison store: the grid methods x backbones x weightings x defenses x seeds of
# `victims`, plus the robustness protocol's blocks (mtlue.config.victim_runs). A defense is a
# registered name or a `+` composition; its options come from `victims.defense_options`.

import re

VICTIMS = config["victims"]
TRAIN = VICTIMS["train"]


wildcard_constraints:
    # Configured methods and submissions (rule install_submission).
    method="|".join(map(re.escape, [*METHODS, *SUBMITTED_NAMES])),
    backbone="[^/]+",
    weighting="[^/]+",
    defense="[a-z0-9+-]+",
    seed=r"\d+",


def victim_metrics(dataset):
    from mtlue.config import victim_runs

    return [
        f"{RESULTS}/{dataset}/victims/{run.method}/{run.backbone}/{run.weighting}/{run.defense}/seed{run.seed}/metrics.json"
        for run in victim_runs(config, SUBMITTED[dataset])
    ]


def defense_settings(wildcards):
    from mtlue.config import defense_options

    return option_flags("--defense-set", defense_options(config, wildcards.defense))


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
        defense_settings=defense_settings,
        tracking=lambda wildcards: tracking_flags(
            dataset=wildcards.dataset, method=wildcards.method, backbone=wildcards.backbone,
            weighting=wildcards.weighting, defense=wildcards.defense, seed=wildcards.seed,
        ),
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
        " --defense {wildcards.defense} {params.defense_settings}"
        " --decoder {VICTIMS[decoder]} --decoder-width {VICTIMS[decoder_width]}"
        " --epochs {TRAIN[epochs]} --batch-size {TRAIN[batch_size]} --lr {TRAIN[lr]}"
        " --weight-decay {TRAIN[weight_decay]} --clip-norm {TRAIN[clip_norm]}"
        " --milestones {params.milestones} --gamma {TRAIN[gamma]} --eval-every {TRAIN[eval_every]}"
        " --num-threads {threads} --checkpoint-dir {params.checkpoints} --no-progress {params.tracking}"
        " --out {output.metrics} > {log} 2>&1"
