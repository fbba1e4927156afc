"""Perturbation stores: int8 deltas in steps of 1/255 with a JSON card, and the budget arithmetic.

See ``store`` for the on-disk form, ``budget`` for why the deltas are integers, ``convergence``
for the card's record of how the generation ended, and ``submissions`` for perturbation files
handed in to the leaderboard.
"""

from .budget import (
    DEFAULT_EPSILON,
    NORM,
    check_budget,
    check_deltas,
    check_epsilon,
    max_abs_per_sample,
    publish,
    quantize,
    round_to_steps,
)
from .card import (
    CARD_NAME,
    DELTAS_FORMAT,
    DELTAS_NAME,
    FORMAT,
    READABLE_FORMATS,
    SUBMISSION_LAYOUTS,
    PoisonCard,
    SubmissionRecord,
    SurrogateRecord,
)
from .convergence import STOPPED_BY, Convergence
from .errors import PoisonError
from .partial import poison_mask, poisoned_count
from .store import (
    POISONED_SPLIT,
    PoisonStore,
    check_safetensors_header,
    load_store,
    read_card,
    read_deltas_file,
    write_store,
)
from .submissions import (
    SUBMISSIONS_ROOT,
    install_submission,
    list_submissions,
    read_submission,
    submission_dir,
    submit_file,
)

__all__ = [
    "CARD_NAME",
    "DEFAULT_EPSILON",
    "DELTAS_FORMAT",
    "DELTAS_NAME",
    "FORMAT",
    "NORM",
    "POISONED_SPLIT",
    "READABLE_FORMATS",
    "STOPPED_BY",
    "SUBMISSIONS_ROOT",
    "SUBMISSION_LAYOUTS",
    "Convergence",
    "PoisonCard",
    "PoisonError",
    "PoisonStore",
    "SubmissionRecord",
    "SurrogateRecord",
    "check_budget",
    "check_deltas",
    "check_epsilon",
    "check_safetensors_header",
    "install_submission",
    "list_submissions",
    "load_store",
    "max_abs_per_sample",
    "poison_mask",
    "poisoned_count",
    "publish",
    "quantize",
    "read_card",
    "read_deltas_file",
    "read_submission",
    "round_to_steps",
    "submission_dir",
    "submit_file",
    "write_store",
]
