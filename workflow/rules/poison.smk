# Stage 3: one perturbation store per (dataset, method), the published training set of a data
# owner who protects it with that method. `clean` (no perturbation) goes through the same path.
# Surrogate-dependent methods read the surrogate stage's folder; the rest need only the data.

POISONS = config["poisons"]
METHODS = POISONS["methods"]


def needs_clean_surrogate(method):
    from mtlue.methods import Requirement, method_class

    return method_class(method).requires in (Requirement.SURROGATE, Requirement.SURROGATE_CHECKPOINTS)


def poison_inputs(wildcards):
    inputs = {"manifest": rules.prepare.output.manifest.format(dataset=wildcards.dataset)}
    if needs_clean_surrogate(wildcards.method):
        inputs["surrogate"] = rules.surrogate.output.card.format(dataset=wildcards.dataset)
    return inputs


def poison_flags(wildcards, input):
    flags = [f"--surrogate-dir {os.path.dirname(input.surrogate)}"] if "surrogate" in input.keys() else []
    flags.append(option_flags("--set", POISONS["hyperparameters"].get(wildcards.method, {})))
    return " ".join(flags)


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
        tracking=lambda wildcards: tracking_flags(dataset=wildcards.dataset, method=wildcards.method, seed=POISONS["seed"]),
    log:
        f"{LOGS}/poison/{{dataset}}/{{method}}.log",
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    shell:
        "mtlue poison --data $(dirname {input.manifest}) --method {wildcards.method} --out {params.out}"
        " --seed {POISONS[seed]} --epsilon {POISONS[epsilon]} --ratio {POISONS[ratio]} {params.flags}"
        " --num-threads {threads} --preview {output.preview} {params.tracking} > {log} 2>&1"
