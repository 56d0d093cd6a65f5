"""The configuration version a generation job is handed over with.

A worker runs what the styles file says for the style on the row (prompts, routes, tiers, models)
and the models the settings name. Two processes whose versions differ would make the same paid
generation differently; a worker refuses a job of another version (`flick.work.engine`) and says
so, rather than mixing them silently.
"""

from __future__ import annotations

import hashlib

from flick.settings import Settings
from flick.styles import Style


def config_version(styles: dict[str, Style], settings: Settings) -> str:
    described = repr(
        (
            sorted((key, repr(style)) for key, style in styles.items()),
            settings.image_provider,
            settings.image_model,
            settings.video_provider,
            settings.video_model,
        )
    )
    return hashlib.sha256(described.encode()).hexdigest()[:12]
