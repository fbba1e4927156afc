# Stage 2: the clean surrogate, a multi-task model trained with the victims' recipe on the clean
# training split, with a snapshot after epochs 1, 1+every, 1+2*every, ... (SEP's checkpoints, the
# release's schedule: see mtlue/methods/surrogate.py) and the final model
# (TAP's). Only trained when a configured method needs it.

rule surrogate:
    input:
        manifest=rules.prepare.output.manifest,
    output:
        card=f"{RESULTS}/{{dataset}}/surrogate/surrogate.json",
    params:
        out=lambda wildcards, output: os.path.dirname(output.card),
        checkpoints=f"{RESULTS}/{{dataset}}/surrogate-checkpoints",
        milestones=" ".join(str(fraction) for fraction in VICTIMS["train"]["milestones"]),
        settings=SURROGATE,
        decoder_width=VICTIMS["decoder_width"],
        train=VICTIMS["train"],
        tracking=lambda wildcards: tracking_flags(dataset=wildcards.dataset, backbone=SURROGATE["backbone"], seed=SURROGATE["seed"]),
    log:
        f"{LOGS}/surrogate/{{dataset}}.log",
    conda:
        CONDA_ENV
    threads: RESOURCES["threads"]
    resources:
        gpu=training_gpus(),
        mem_mb=RESOURCES["mem_mb"],
        runtime=RESOURCES["runtime"],
    shell:
        "mtlue surrogate --data $(dirname {input.manifest}) --out {params.out}"
        " --backbone {params.settings[backbone]} --every {params.settings[every]} --epochs {params.settings[epochs]}"
        " --batch-size {params.settings[batch_size]} --decoder-width {params.decoder_width}"
        " --lr {params.train[lr]} --weight-decay {params.train[weight_decay]}"
        " --milestones {params.milestones} --gamma {params.train[gamma]} --clip-norm {params.train[clip_norm]}"
        " --eval-every {params.train[eval_every]} --seed {params.settings[seed]}"
        " --num-threads {threads} --checkpoint-dir {params.checkpoints} --no-progress {params.tracking} > {log} 2>&1"
