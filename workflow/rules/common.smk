# Paths and target lists shared by the rules. Everything is derived from the validated config.

DATA = config["data_root"]
RAW = config["raw_root"]
RESULTS = config["results_root"]
LOGS = f"{RESULTS}/logs"
DATASETS = sorted(config["datasets"])


wildcard_constraints:
    dataset="|".join(DATASETS),


def dataset_source(dataset):
    return config["datasets"][dataset].get("source", dataset)


def dataset_options_json(wildcards):
    import json

    return json.dumps(config["datasets"][wildcards.dataset].get("options", {}), sort_keys=True)


def dataset_task_flags(wildcards):
    return " ".join(f"--task {name}" for name in config["datasets"][wildcards.dataset].get("tasks", []))


def tracking_uri():
    uri = config["tracking_uri"]
    if uri == "auto":
        return f"sqlite:///{RESULTS}/mlflow.db"
    return None if uri == "none" else uri


TRACKING_URI = tracking_uri()


def tracking_flags(**axes):
    """`--tracking-uri` and one `--tag` per DAG axis of the job (nothing when tracking is off)."""
    import shlex

    if TRACKING_URI is None:
        return ""
    tags = " ".join(f"--tag {shlex.quote(f'{key}={value}')}" for key, value in axes.items())
    return f"--tracking-uri {shlex.quote(TRACKING_URI)} {tags}"


def option_flags(flag, options):
    """`flag key=value` per option, values in YAML flow style (what the mtlue flags parse), quoted."""
    import shlex

    import yaml

    return " ".join(
        f"{flag} " + shlex.quote(f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}")
        for key, value in options.items()
    )


def all_targets():
    targets = []
    for dataset in DATASETS:
        targets.append(f"{RESULTS}/{dataset}/data/summary.txt")
        targets.append(f"{RESULTS}/{dataset}/tables/scores.md")
    targets.append(f"{RESULTS}/leaderboard/index.html")
    return targets
