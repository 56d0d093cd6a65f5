"""Piccolo CLI entry point (`piccolo migrations forwards all`); the configuration is in flick."""

from flick.models.piccolo_conf import APP_REGISTRY, DB

__all__ = ["APP_REGISTRY", "DB"]
