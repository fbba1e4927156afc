# Stage 3: one perturbation store per (dataset, method), the published training set of a data
# owner who protects it with that method. `clean` (no perturbation) goes through the same path.
# Surrogate-dependent methods read the surrogate stage's folder; the rest need only the data.
# Only the methods that train or run a model ask for a GPU (poison_gpus).


rule poison:
    input:
        unpack(poison_inputs),
    output:
        card=f"{RESULTS}/{{dataset}}/poisons/{{method}}/card.json",
        preview=report(
            f"{RESULTS}/{{dataset}}/poisons/previews/{{method}}.png",
            category="Poisons",
            subcategory="{dataset}",
            caption="../report/poison_preview.rst",
        ),
    wildcard_constraints:
        method="|".join(METHODS),
    params:
        out=lambda wildcards, output: os.path.dirname(output.card),
        flags=poison_flags,
        settings=POISONS,
        tracking=lambda wildcards: tracking_flags(dataset=wildcards.dataset, method=wildcards.method, seed=POISONS["seed"]),
    log:
        f"{LOGS}/poison/{{dataset}}/{{method}}.log",
    conda:
        CONDA_ENV
    threads: RESOURCES["threads"]
    resources:
        gpu=poison_gpus,
        mem_mb=RESOURCES["mem_mb"],
        runtime=RESOURCES["runtime"],
    shell:
        "mtlue poison --data $(dirname {input.manifest}) --method {wildcards.method} --out {params.out}"
        " --seed {params.settings[seed]} --epsilon {params.settings[epsilon]} --ratio {params.settings[ratio]} {params.flags}"
        " --num-threads {threads} --preview {output.preview} {params.tracking} > {log} 2>&1"
