"""Piccolo's configuration; `piccolo migrations forwards all` reads DATABASE_URL from the env."""

from piccolo.conf.apps import AppRegistry

from flick.models.db import DB

APP_REGISTRY = AppRegistry(apps=["flick.models.piccolo_app"])

__all__ = ["APP_REGISTRY", "DB"]
