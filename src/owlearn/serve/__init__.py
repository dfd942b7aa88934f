"""The owlearn web service (FastAPI) and its page.

The exports are imported on first use: importing the package costs nothing until one is used.
"""

from typing import TYPE_CHECKING

from owlearn._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "app": ("ServeSettings", "create_app", "check_token"),
})

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name is imported on first use
    # (`X as X`: a re-export, which ruff's F401 accepts without an entry in pyproject.toml)
    from owlearn.serve.app import ServeSettings as ServeSettings
    from owlearn.serve.app import check_token as check_token
    from owlearn.serve.app import create_app as create_app
