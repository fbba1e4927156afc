"""Multi-task weighting strategies: how the K task losses of a batch become one update.

Configs name a strategy; ``create_weighting(name, num_tasks, **hyperparameters)`` builds it and
``list_weightings()`` names them all. The training loop uses every strategy the same way::

    weighting = create_weighting("upgrad", num_tasks).to(device)
    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()], ...)
    ...
    optimizer.zero_grad()
    weights = weighting.backward(losses, shared_parameters, features)
    torch.nn.utils.clip_grad_norm_(..., 5.0)
    optimizer.step()
    ...
    weighting.epoch_end(epoch_mean_losses)   # once per epoch

Two families: loss scaling (``ew``, ``uw``, ``dwa``, ``rlw``, ``gls``, ``gradnorm``) minimises
one weighted scalar; gradient aggregation (``pcgrad``, ``mgda``, ``cagrad``, ``imtl``,
``graddrop``, ``gradvac``, ``aligned_mtl``, ``fairgrad``, ``nash_mtl``, ``upgrad``, ``dualproj``,
``config``) combines the per-task gradients of the shared parameters, mostly through torchjd.
Each strategy's module cites its paper and the source of its defaults.
"""

from . import (  # noqa: F401 - imported to register the strategies
    aligned_mtl,
    cagrad,
    conflict_free,
    dualproj,
    dwa,
    ew,
    fairgrad,
    gls,
    graddrop,
    gradnorm,
    gradvac,
    imtl,
    mgda,
    nash_mtl,
    pcgrad,
    rlw,
    upgrad,
    uw,
)
from .aggregation import GradientAggregation, JacobianAggregation
from .base import LossScaling, Weighting, WeightingError
from .registry import (
    create_weighting,
    list_weightings,
    register_weighting,
    weighting_class,
    weighting_description,
)

__all__ = [
    "GradientAggregation",
    "JacobianAggregation",
    "LossScaling",
    "Weighting",
    "WeightingError",
    "create_weighting",
    "list_weightings",
    "register_weighting",
    "weighting_class",
    "weighting_description",
]
