"""The styles' samples, shown as one album right above the style picker.

Why an album: one message (one notification) whose grid of 2×2 mirrors the picker's two
buttons a row right under it, each item captioned with the style's label; the picker stays the
one message whose buttons count, so nothing about choosing changes. Separate messages per
style would push the buttons out of sight and ring once per style.
A style without a sample is simply not in the album; no samples, no album. A sample Telegram
will not take costs the user nothing: the picker follows all the same.
"""

from __future__ import annotations

from flick.actors.scope import Scope
from flick.errors import TelegramRefused, TransientError
from flick.media import MediaError
from flick.ports import AlbumItem, RecipientGone, RecipientUnreachable


async def show_samples(actor: Scope) -> None:
    items = [
        AlbumItem(style.sample, style.sample_kind, style.label(actor.lang))
        for style in actor.ctx.styles.values()
        if style.sample is not None and style.sample_kind is not None
    ]
    if not items:
        return
    try:
        await actor.ctx.outbox.send_album(actor.user.chat_id, items)
    except (RecipientGone, RecipientUnreachable):
        return  # the picker that follows meets the same and handles it
    except (TelegramRefused, TransientError, MediaError, OSError) as exc:
        actor.log.warning("style samples not shown: {}", exc)
