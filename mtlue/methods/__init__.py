"""UE methods: the registry, the method interface, and the built-in surrogate-free methods.

Importing this package registers ``clean``, ``lsp`` and ``ar``; installed packages add more
through the ``mtlue.methods`` entry-point group (see ``registry``).
"""

from . import ar, clean, em, lsp, sep, tap  # noqa: F401  (importing them registers the built-in methods)
from . import mtl_ue  # noqa: F401  (registers mtlue-em, mtlue-tap, mtlue-sep; torch loads only when one runs)
from .base import GenerationContext, MethodError, NoHyperparameters, Requirement, UEMethod
from .classwise import ClasswiseHyperparameters, ClasswiseMethod, classification_tasks
from .generate import make_poison
from .multitask import ADAPTATIONS, grid_cells, grid_size
from .registry import (
    ENTRY_POINT_GROUP,
    METHOD_NAME_RULE,
    create_method,
    is_valid_method_name,
    list_methods,
    method_class,
    method_description,
    register_method,
)

__all__ = [
    "ADAPTATIONS",
    "ENTRY_POINT_GROUP",
    "METHOD_NAME_RULE",
    "ClasswiseHyperparameters",
    "ClasswiseMethod",
    "GenerationContext",
    "MethodError",
    "NoHyperparameters",
    "Requirement",
    "UEMethod",
    "classification_tasks",
    "create_method",
    "grid_cells",
    "grid_size",
    "is_valid_method_name",
    "list_methods",
    "make_poison",
    "method_class",
    "method_description",
    "register_method",
]
