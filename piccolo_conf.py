"""Piccolo CLI entry point (`piccolo migrations forwards all`); the real configuration is in the package."""

from flick.models.piccolo_conf import APP_REGISTRY, DB

__all__ = ["APP_REGISTRY", "DB"]
