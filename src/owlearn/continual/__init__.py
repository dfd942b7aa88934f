"""Continual learning: scenarios, strategies that plug into the one training loop, and their metrics.

>>> from owlearn.continual import make_strategy, run_continual, split_fashion_mnist  # doctest: +SKIP
>>> result = run_continual(split_fashion_mnist(), make_strategy("replay"))           # doctest: +SKIP
>>> result.final_accuracy, result.matrix.summary()["forgetting"]                      # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from owlearn._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "base": ("Context", "Strategy"),
    "distillation": ("Distillation", "LwF", "TeacherLogits"),
    "memory": ("ClassBalancedMemory", "herding"),
    "regularization": ("EWC", "EWCPenalty", "OnlineEWC", "diagonal_fisher"),
    "rehearsal": ("BalancedCrossEntropy", "ICaRL", "Replay"),
    "runner": ("ContinualResult", "b4_config", "build_network", "run_continual"),
    "scenarios": ("SCENARIOS", "Experience", "Scenario", "class_incremental", "domain_incremental",
                  "fashion_to_mnist", "split_fashion_mnist"),
    "simple": ("GaussianStrategy", "Joint", "Naive"),
    "strategies": ("STRATEGIES", "make_strategy"),
})

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name is imported on first use
    from owlearn.continual.base import Context, Strategy
    from owlearn.continual.distillation import Distillation, LwF, TeacherLogits
    from owlearn.continual.memory import ClassBalancedMemory, herding
    from owlearn.continual.regularization import EWC, EWCPenalty, OnlineEWC, diagonal_fisher
    from owlearn.continual.rehearsal import BalancedCrossEntropy, ICaRL, Replay
    from owlearn.continual.runner import ContinualResult, b4_config, build_network, run_continual
    from owlearn.continual.scenarios import (
        SCENARIOS,
        Experience,
        Scenario,
        class_incremental,
        domain_incremental,
        fashion_to_mnist,
        split_fashion_mnist,
    )
    from owlearn.continual.simple import GaussianStrategy, Joint, Naive
    from owlearn.continual.strategies import STRATEGIES, make_strategy
