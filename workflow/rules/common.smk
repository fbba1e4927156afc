# Names and functions shared by the rules, all derived from the validated config. The rule files
# hold only rules (snakemake --lint), and read nothing of each other but what is defined here.

import json
import re
import shlex
from pathlib import Path

import yaml

from mtlue.config import dataset_source as config_dataset_source
from mtlue.methods import Requirement, method_class
from mtlue.poisons.submissions import list_submissions

DATA = config["data_root"]
RAW = config["raw_root"]
RESULTS = config["results_root"]
LOGS = f"{RESULTS}/logs"
DATASETS = sorted(config["datasets"])
POISONS = config["poisons"]
METHODS = POISONS["methods"]
SURROGATE = config["surrogate"]
VICTIMS = config["victims"]
RESOURCES = config["resources"]
# Every rule's software environment (`--software-deployment-method conda`), relative to the rule files.
CONDA_ENV = "../../environment.yml"

# Submitted perturbation stores (`mtlue submit`, see SUBMITTING.md): every store under
# {submissions_root}/{dataset}/ becomes a method of that dataset.
SUBMISSIONS = config["submissions_root"]
SUBMITTED = {dataset: list_submissions(SUBMISSIONS, dataset) for dataset in DATASETS}
SUBMITTED_NAMES = sorted({name for names in SUBMITTED.values() for name in names})

# The resolved config as the report commands read it, with each dataset's submissions (rule
# resolved_config writes it; its content is the rule's parameter, so a change reruns it and an
# unchanged config leaves the reports alone).
RESOLVED_CONFIG = f"{RESULTS}/config.json"
RESOLVED_CONFIG_TEXT = json.dumps({**config, "submitted": SUBMITTED}, indent=2, sort_keys=True) + "\n"


wildcard_constraints:
    dataset="|".join(DATASETS),
    # Configured methods and submissions (rule install_submission).
    method="|".join(map(re.escape, [*METHODS, *SUBMITTED_NAMES])),


def dataset_source(dataset):
    return config_dataset_source(config, dataset)


def dataset_options_json(wildcards):
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
    if TRACKING_URI is None:
        return ""
    tags = " ".join(f"--tag {shlex.quote(f'{key}={value}')}" for key, value in axes.items())
    return f"--tracking-uri {shlex.quote(TRACKING_URI)} {tags}"


def option_flags(flag, options):
    """`flag key=value` per option, values in YAML flow style (what the mtlue flags parse), quoted."""
    return " ".join(
        f"{flag} " + shlex.quote(f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}")
        for key, value in options.items()
    )


def training_gpus(needs_gpu=True):
    """The `gpu` resource of a job: `resources.gpu` for a job that trains or runs a model, else 0.
    A job asking for no GPU never lands in a GPU partition (workflow/profiles/slurm/partitions.yaml)."""
    return RESOURCES["gpu"] if needs_gpu else 0


def all_targets():
    targets = []
    for dataset in DATASETS:
        targets.append(f"{RESULTS}/{dataset}/data/summary.txt")
        targets.append(f"{RESULTS}/{dataset}/tables/scores.md")
    targets.append(f"{RESULTS}/leaderboard/index.html")
    return targets


# Poisons ---------------------------------------------------------------------------------------


def needs_clean_surrogate(method):
    return method_class(method).requires in (Requirement.SURROGATE, Requirement.SURROGATE_CHECKPOINTS)


def poison_gpus(wildcards):
    """A GPU for the methods that train or run a model (surrogate-based, EM's min-min, the
    generators); none for the surrogate-free ones (clean, LSP, AR)."""
    return training_gpus(method_class(wildcards.method).requires is not Requirement.NOTHING)


def poison_inputs(wildcards):
    inputs = {"manifest": rules.prepare.output.manifest.format(dataset=wildcards.dataset)}
    if needs_clean_surrogate(wildcards.method):
        inputs["surrogate"] = rules.surrogate.output.card.format(dataset=wildcards.dataset)
    return inputs


def poison_flags(wildcards, input):
    flags = [f"--surrogate-dir {os.path.dirname(input.surrogate)}"] if "surrogate" in input.keys() else []
    flags.append(option_flags("--set", POISONS["hyperparameters"].get(wildcards.method, {})))
    return " ".join(flags)


# Victims ---------------------------------------------------------------------------------------


def victim_metrics(dataset):
    from mtlue.config import victim_runs

    return [
        f"{RESULTS}/{dataset}/victims/{run.method}/{run.backbone}/{run.weighting}/{run.defense}/seed{run.seed}/metrics.json"
        for run in victim_runs(config, SUBMITTED[dataset])
    ]


def victim_seed_tuples():
    """{seed tuple: the `method/backbone/weighting/defense` victims with a job of those seeds}."""
    from mtlue.config import victim_jobs

    tuples = {}
    for dataset in DATASETS:
        for job in victim_jobs(config, SUBMITTED[dataset]):
            tuples.setdefault(job.seeds, set()).add(job.victim)
    return tuples


def victim_axes(wildcards):
    """method, backbone, weighting, defense of a job's {victim} wildcard."""
    return wildcards.victim.split("/")


def victim_poison(wildcards):
    method = victim_axes(wildcards)[0]
    return f"{RESULTS}/{wildcards.dataset}/poisons/{method}/card.json"


def victim_flags(wildcards):
    """The job's `--backbone`, `--weighting` and `--defense` with the defense's options."""
    from mtlue.config import defense_options

    _, backbone, weighting, defense = victim_axes(wildcards)
    settings = option_flags("--defense-set", defense_options(config, defense))
    return " ".join(part for part in (f"--backbone {backbone} --weighting {weighting} --defense {defense}", settings) if part)


def victim_recipe(wildcards):
    """The job's training recipe: `victims.train` with its defense's `victims.train_per_defense`."""
    from mtlue.config import victim_train

    recipe = victim_train(config, victim_axes(wildcards)[3])
    return {**recipe, "milestones": " ".join(str(fraction) for fraction in recipe["milestones"])}


def victim_seed_path(leaf):
    """A function of the job's wildcards giving the `mtlue victim` pattern of each seed's ``leaf``
    (a function, so that Snakemake leaves the `{seed}` field to mtlue)."""

    def pattern(wildcards):
        return f"{RESULTS}/{wildcards.dataset}/victims/{wildcards.victim}/seed{{seed}}/{leaf}"

    return pattern


def victim_tracking(wildcards):
    # No seed tag: each seed's MLflow run is tagged with its own seed by `mtlue victim`.
    method, backbone, weighting, defense = victim_axes(wildcards)
    return tracking_flags(dataset=wildcards.dataset, method=method, backbone=backbone, weighting=weighting, defense=defense)


VICTIM_DIR = f"{RESULTS}/{{dataset}}/victims/{{victim}}"
VICTIM_SEED_TUPLES = victim_seed_tuples()
# Any configured method and three more path components; a defense spec is a safe path part.
ANY_VICTIM = f"(?:{'|'.join(map(re.escape, [*METHODS, *SUBMITTED_NAMES]))})/[^/]+/[^/]+/[a-z0-9+-]+"


# Reports ---------------------------------------------------------------------------------------


def poison_cards(dataset):
    return [f"{RESULTS}/{dataset}/poisons/{method}/card.json" for method in [*METHODS, *SUBMITTED[dataset]]]


def report_tables(wildcards):
    return {"victims": victim_metrics(wildcards.dataset), "cards": poison_cards(wildcards.dataset)}


def write_resolved_config(path, text):
    from mtlue.io import atomic_write

    with atomic_write(path) as handle:
        handle.write(text)


# Cluster ---------------------------------------------------------------------------------------

# The account the SLURM profile ships with (workflow/profiles/slurm/config.yaml): a run that
# still uses it would be refused by sbatch, or worse charged to nobody's account, after the
# DAG is built, so it stops before the first submission.
PLACEHOLDER_ACCOUNT = "your-account"


def check_cluster_account(workflow):
    if workflow.executor_plugin is None or workflow.executor_plugin.name != "slurm":
        return
    for job in workflow.dag.needrun_jobs():
        if job.resources.get("slurm_account") == PLACEHOLDER_ACCOUNT:
            raise WorkflowError(
                f"the SLURM account is still the placeholder {PLACEHOLDER_ACCOUNT!r}: set slurm_account under "
                "default-resources in workflow/profiles/slurm/config.yaml, or run with "
                "--default-resources slurm_account=ACCOUNT (slurm_account='' on a cluster without accounts)"
            )
