"""Package attributes imported on first use (PEP 562), so that importing a package costs nothing.

``owlearn --help`` and ``owlearn data list`` need none of PyTorch; a package ``__init__`` that imported its
submodules eagerly made every command, help included, pay for ``import torch`` (about 2.5 s on a 2-core
machine) before printing anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, Iterable[str]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package`` whose public names live in submodules.

    ``exports`` maps a submodule (relative to ``package``) to the names it provides.
    """
    where = {name: f"{package}.{module}" for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(importlib.import_module(package), name, value)  # later lookups find it directly
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(importlib.import_module(package)), *where})

    return __getattr__, __dir__, sorted(where)
