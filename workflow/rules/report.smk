# Stage 5: per dataset, the tables and plots of every victim (mtlue report), then one leaderboard
# over every dataset (mtlue leaderboard). Both read only the victims' metrics.json files and the
# poison cards, plus the resolved config (which victims count, and its hash as provenance).

# The resolved config as the report commands read it, with each dataset's submissions. Rewritten
# only when its content changes, so that its timestamp alone never reruns the reports.
RESOLVED_CONFIG = f"{RESULTS}/config.json"


def write_resolved_config():
    import json

    text = json.dumps({**config, "submitted": SUBMITTED}, indent=2, sort_keys=True) + "\n"
    path = RESOLVED_CONFIG
    if os.path.exists(path) and open(path, encoding="utf-8").read() == text:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


write_resolved_config()


def poison_cards(dataset):
    return [f"{RESULTS}/{dataset}/poisons/{method}/card.json" for method in [*METHODS, *SUBMITTED[dataset]]]


def report_tables(wildcards):
    return {"victims": victim_metrics(wildcards.dataset), "cards": poison_cards(wildcards.dataset)}


rule report_tables:
    input:
        unpack(report_tables),
        config=RESOLVED_CONFIG,
    output:
        tables=f"{RESULTS}/{{dataset}}/tables/scores.md",
        matrix=f"{RESULTS}/{{dataset}}/tables/attack_defense.md",
        csv=f"{RESULTS}/{{dataset}}/tables/victims.csv",
        summary=f"{RESULTS}/{{dataset}}/tables/summary.md",
        scores=report(f"{RESULTS}/{{dataset}}/tables/scores.png", category="Results", subcategory="{dataset}", caption="../report/scores.rst"),
        heatmap=report(
            f"{RESULTS}/{{dataset}}/tables/attack_defense.png", category="Results", subcategory="{dataset}", caption="../report/attack_defense.rst"
        ),
        curves=report(
            f"{RESULTS}/{{dataset}}/tables/training_curves.png", category="Results", subcategory="{dataset}", caption="../report/curves.rst"
        ),
    params:
        out=lambda wildcards, output: os.path.dirname(output.tables),
    log:
        f"{LOGS}/report/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    shell:
        "mtlue report --results {RESULTS} --dataset {wildcards.dataset} --out {params.out}"
        " --config-json {input.config} > {log} 2>&1"


rule leaderboard:
    input:
        victims=[path for dataset in DATASETS for path in victim_metrics(dataset)],
        cards=[path for dataset in DATASETS for path in poison_cards(dataset)],
        config=RESOLVED_CONFIG,
    output:
        page=report(f"{RESULTS}/leaderboard/index.html", category="Leaderboard", caption="../report/leaderboard.rst"),
        markdown=f"{RESULTS}/leaderboard/leaderboard.md",
    params:
        out=lambda wildcards, output: os.path.dirname(output.page),
    log:
        f"{LOGS}/leaderboard.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    shell:
        "mtlue leaderboard --results {RESULTS} --out {params.out} --config-json {input.config} --protocol default > {log} 2>&1"
