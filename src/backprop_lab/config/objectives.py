"""What a job returns to a search: one number to minimize, from the run's metrics, chosen by `objective`.

Hydra's Optuna sweeper (`hydra/sweeper=search`) minimizes what each job returns. A failed job, a check that found
the gradients wrong, or a value that is not finite returns nothing: the sweeper records that trial as failed, never
as the best one, and goes on (the run itself logs NaN as `search/objective`). Every objective is minimized.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from backprop_lab.core.names import (
    ACT_LAST_HIDDEN_STD,
    GRAD_WORST_ERROR_RATIO,
    SEARCH_OBJECTIVE,
    TIME_BACKWARD_VS_AUTOGRAD,
)

METRIC = SEARCH_OBJECTIVE  # each trial's value, logged on its run


def _unit_std(std: float) -> float:
    """|log10 std|: 0 at unit std, and as far from it at 10 times too big as at 10 times too small."""
    return abs(math.log10(std)) if std > 0 else math.inf


OBJECTIVES: dict[str, tuple[str, Callable[[float], float]]] = {  # name -> (the metric it reads, what of it)
    "last_hidden_unit_std": (ACT_LAST_HIDDEN_STD, _unit_std),
    "backward_vs_autograd": (TIME_BACKWARD_VS_AUTOGRAD, float),
    "worst_error_ratio": (GRAD_WORST_ERROR_RATIO, float),
}


def chosen(objective) -> str:
    """The objective's name, from a config (an enum) or a plain one (its name)."""
    return getattr(objective, "name", objective)


def for_search(value: float | None):
    """What a job hands the sweeper: the value when finite, else nothing (a failed trial)."""
    return value if value is not None and math.isfinite(value) else None


def value(objective: str, metrics: dict[str, float]) -> float:
    """The objective from a run's metrics; NaN when it cannot be had or is not finite."""
    key, of = OBJECTIVES[objective]
    result = of(metrics.get(key, math.nan))  # a NaN or Inf read gives NaN or Inf
    return result if math.isfinite(result) else math.nan
