# Stage 1: download (where the source is public), verify and preprocess each dataset once into
# the standard form (memory-mappable uint8 images, targets, split, manifest with checksums).


rule prepare:
    output:
        manifest=f"{DATA}/{{dataset}}/manifest.json",
    params:
        source=lambda wildcards: dataset_source(wildcards.dataset),
        raw=lambda wildcards: f"{RAW}/{dataset_source(wildcards.dataset)}",
        options=dataset_options_json,
        tasks=dataset_task_flags,
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,
    shell:
        "mtlue prepare {wildcards.dataset} --source {params.source} --raw {params.raw}"
        " --out $(dirname {output.manifest}) --options-json {params.options:q} {params.tasks} > {log} 2>&1"


rule show_dataset:
    input:
        manifest=rules.prepare.output.manifest,
    output:
        summary=f"{RESULTS}/{{dataset}}/data/summary.txt",
        samples=report(
            f"{RESULTS}/{{dataset}}/data/samples.png",
            category="Data",
            caption="../report/samples.rst",
        ),
    log:
        f"{LOGS}/show/{{dataset}}.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    shell:
        "mtlue show $(dirname {input.manifest}) --out {output.samples} > {output.summary}.tmp 2> {log}"
        " && mv {output.summary}.tmp {output.summary}"
