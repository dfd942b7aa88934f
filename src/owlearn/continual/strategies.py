"""The strategies by name, as the CLI and the benchmarks choose them."""

from __future__ import annotations

from collections.abc import Callable

from owlearn.continual.base import Strategy
from owlearn.continual.distillation import LwF
from owlearn.continual.regularization import EWC, OnlineEWC
from owlearn.continual.rehearsal import ICaRL, Replay
from owlearn.continual.simple import GaussianStrategy, Joint, Naive

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "naive": Naive, "joint": Joint, "ewc": EWC, "online-ewc": OnlineEWC, "lwf": LwF, "icarl": ICaRL,
    "replay": Replay, "gaussian": GaussianStrategy,
}
"""Name → strategy class; keyword arguments go to the constructor."""


def make_strategy(name: str, **params) -> Strategy:
    """A strategy by name, e.g. ``make_strategy("replay", memory_size=2000)``.

    Examples
    --------
    >>> make_strategy("icarl", memory_size=500).memory_size
    500
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    try:
        return STRATEGIES[name](**params)
    except TypeError as exc:
        raise ValueError(f"strategy {name!r} does not take {sorted(params)}: {exc}") from None
