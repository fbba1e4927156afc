# The benchmark workflow: prepare -> surrogate -> poison (or install_submission) -> victim -> report.
# Every rule is a thin call of the `mtlue` command line, so each step can also run by hand.
# The embedded default (config/config.yaml) runs on a laptop CPU in minutes:
#     snakemake --cores all
# Another dataset:   snakemake --cores all --configfile config/celeba.yaml
# A SLURM cluster:   snakemake --workflow-profile workflow/profiles/slurm

import os
import sys

from mtlue.config import ConfigError, validate_config

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("8.0")


# The embedded default is the config only when none is given: `--configfile X` runs X alone (its
# missing keys take the schema's defaults, which are the paper's protocol), instead of being
# merged onto the laptop demo. `--config KEY=VALUE` still overrides either.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


envvars:
    "PATH",


# Jobs call `mtlue`; putting this interpreter's bin folder first on PATH runs the mtlue that is
# installed beside this Snakemake, whether or not its virtual environment is activated.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
# Every mtlue job prints, when it exits, where its time went (start-up, work, shutdown) into its
# log; bench/bench_workflow.py reads those lines (mtlue.timing). MTLUE_JOB_TIMING=0 turns it off.
os.environ.setdefault("MTLUE_JOB_TIMING", "1")

try:
    # Validate before any job runs and fill in the schema's defaults (workflow/schemas/). The
    # checks that need torch and timm (backbones, defenses, methods build) run in the workflow's
    # own parse only: each cluster job parses this file again (twice, in its allocation), on the
    # config already checked, and would pay seconds of imports each time.
    _resolved = validate_config(config, check_models=workflow.is_main_process)
except ConfigError as error:
    raise WorkflowError(f"config error: {error}") from None
config.clear()
config.update(_resolved)


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/surrogate.smk"
include: "workflow/rules/poison.smk"
include: "workflow/rules/submission.smk"
include: "workflow/rules/victim.smk"
include: "workflow/rules/report.smk"


# Seconds of work each: on a cluster they run beside Snakemake instead of waiting for a slot.
localrules:
    show_dataset,
    install_submission,
    resolved_config,
    report_tables,
    leaderboard,


onstart:
    check_cluster_account(workflow)


rule all:
    input:
        all_targets(),
    default_target: True
