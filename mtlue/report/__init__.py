"""Tables and plots of the victims' results, rendered from their ``metrics.json`` files only.

- :mod:`mtlue.report.collect` - reading and checking the victims of a results folder
- :mod:`mtlue.report.scores` - the headline score and delta-m against the clean reference
- :mod:`mtlue.report.frame` - all victims of a dataset as one DataFrame
- :mod:`mtlue.report.poisons` - the poison cards behind the victims: hash, convergence, the † mark
- :mod:`mtlue.report.ties` - mean ± std over seeds and the tie rule every rank uses
- :mod:`mtlue.report.tables` - mean ± std over seeds, the attack x defense table, Markdown
- :mod:`mtlue.report.summary` - the README summary: clean-normalised scores and ranks per method
- :mod:`mtlue.report.plots` - bar charts, heat maps, training curves
- :mod:`mtlue.report.selection` - which victims count, from the resolved workflow config
- :mod:`mtlue.report.build` - one dataset's report files (``mtlue report``)
- :mod:`mtlue.report.commands` - the ``mtlue report`` and ``mtlue leaderboard`` subcommands

Importing the package needs neither torch nor pandas nor matplotlib; they load when used.
"""

from .build import REPORT_FILES, DatasetReport, build_dataset_report
from .collect import CLEAN, NO_DEFENSE, ReportError, VictimRecord, collect_victims, find_datasets, load_victim
from .frame import victim_frame
from .poisons import CUT_OFF_MARK, poison_card, poison_convergence
from .scores import attacker_best, clean_reference, headline_label, headline_name, headline_score, victim_delta_m
from .selection import Selection, config_sha256, load_config_json
from .summary import DatasetSummary, summarize_dataset
from .tables import attack_defense_markdown, attack_defense_matrix, attack_defense_ranks, score_table, summarize, task_table
from .ties import TIE_FACTOR, Estimate, TieRank, rank_labels, separated, tie_ranks

__all__ = [
    "CLEAN",
    "CUT_OFF_MARK",
    "NO_DEFENSE",
    "REPORT_FILES",
    "DatasetReport",
    "DatasetSummary",
    "Estimate",
    "ReportError",
    "Selection",
    "TIE_FACTOR",
    "TieRank",
    "VictimRecord",
    "attack_defense_markdown",
    "attack_defense_matrix",
    "attack_defense_ranks",
    "attacker_best",
    "build_dataset_report",
    "clean_reference",
    "collect_victims",
    "config_sha256",
    "find_datasets",
    "headline_label",
    "headline_name",
    "headline_score",
    "load_config_json",
    "load_victim",
    "poison_card",
    "poison_convergence",
    "rank_labels",
    "score_table",
    "separated",
    "summarize",
    "summarize_dataset",
    "task_table",
    "tie_ranks",
    "victim_delta_m",
    "victim_frame",
]
