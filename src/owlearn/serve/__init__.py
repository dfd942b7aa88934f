"""The owlearn web service (FastAPI) and its page."""

from owlearn.serve.app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
