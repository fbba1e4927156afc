# Stage 2: the clean surrogate, a multi-task model trained with the victims' recipe on the clean
# training split, with a snapshot after epochs 1, 1+every, 1+2*every, ... (SEP's checkpoints, the
# release's schedule: see mtlue/methods/surrogate.py) and the final model
# (TAP's). Only trained when a configured method needs it.

SURROGATE = config["surrogate"]


rule surrogate:
    input:
        manifest=rules.prepare.output.manifest,
    output:
        card=f"{RESULTS}/{{dataset}}/surrogate/surrogate.json",
    params:
        out=lambda wildcards, output: os.path.dirname(output.card),
        checkpoints=f"{RESULTS}/{{dataset}}/surrogate-checkpoints",
        milestones=" ".join(str(fraction) for fraction in config["victims"]["train"]["milestones"]),
        train=config["victims"]["train"],
        tracking=lambda wildcards: tracking_flags(dataset=wildcards.dataset, backbone=SURROGATE["backbone"], seed=SURROGATE["seed"]),
    log:
        f"{LOGS}/surrogate/{{dataset}}.log",
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "mtlue surrogate --data $(dirname {input.manifest}) --out {params.out}"
        " --backbone {SURROGATE[backbone]} --every {SURROGATE[every]} --epochs {SURROGATE[epochs]}"
        " --batch-size {SURROGATE[batch_size]} --decoder-width {config[victims][decoder_width]}"
        " --lr {params.train[lr]} --weight-decay {params.train[weight_decay]}"
        " --milestones {params.milestones} --gamma {params.train[gamma]} --clip-norm {params.train[clip_norm]}"
        " --eval-every {params.train[eval_every]} --seed {SURROGATE[seed]}"
        " --num-threads {threads} --checkpoint-dir {params.checkpoints} --no-progress {params.tracking} > {log} 2>&1"
