"""Perturbation stores: int8 deltas in steps of 1/255 with a JSON card, and the budget arithmetic.

See ``store`` for the on-disk form and ``budget`` for why the deltas are integers.
"""

from .budget import (
    DEFAULT_EPSILON,
    NORM,
    check_deltas,
    check_epsilon,
    publish,
    quantize,
)
from .card import CARD_NAME, DELTAS_NAME, FORMAT, PoisonCard, SurrogateRecord
from .errors import PoisonError
from .partial import poison_mask, poisoned_count
from .store import (
    POISONED_SPLIT,
    PoisonStore,
    load_store,
    read_card,
    read_deltas_file,
    write_store,
)

__all__ = [
    "CARD_NAME",
    "DEFAULT_EPSILON",
    "DELTAS_NAME",
    "FORMAT",
    "NORM",
    "POISONED_SPLIT",
    "PoisonCard",
    "PoisonError",
    "PoisonStore",
    "SurrogateRecord",
    "check_deltas",
    "check_epsilon",
    "load_store",
    "poison_mask",
    "poisoned_count",
    "publish",
    "quantize",
    "read_card",
    "read_deltas_file",
    "write_store",
]
