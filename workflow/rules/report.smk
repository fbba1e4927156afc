# Stage 5: per dataset, the tables and plots of every victim (mtlue report), then one leaderboard
# over every dataset (mtlue leaderboard). Both read only the victims' metrics.json files and the
# poison cards, plus the resolved config (which victims count, and its hash as provenance).
# All three rules are cheap: on a cluster they run beside Snakemake (localrules in the Snakefile).


rule resolved_config:
    output:
        RESOLVED_CONFIG,
    params:
        # The content itself: Snakemake reruns the rule when it changes, and only then.
        text=RESOLVED_CONFIG_TEXT,
    log:
        f"{LOGS}/resolved_config.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
        gpu=0,
    run:
        write_resolved_config(output[0], params.text)


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
        # {results}/{dataset}/tables/scores.md
        results=lambda wildcards, output: Path(output.tables).parents[2],
        out=lambda wildcards, output: os.path.dirname(output.tables),
    log:
        f"{LOGS}/report/{{dataset}}.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    shell:
        "mtlue report --results {params.results} --dataset {wildcards.dataset} --out {params.out}"
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
        # {results}/leaderboard/index.html
        results=lambda wildcards, output: Path(output.page).parents[1],
        out=lambda wildcards, output: os.path.dirname(output.page),
    log:
        f"{LOGS}/leaderboard.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    shell:
        "mtlue leaderboard --results {params.results} --out {params.out} --config-json {input.config} --protocol default > {log} 2>&1"
