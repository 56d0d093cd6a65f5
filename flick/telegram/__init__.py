"""Telegram over MTProto (kurigram): the adapter (updates → events), the outbox (the engine's
sending port, paced within Telegram's limits), the bot profile and the gateway that wires them.

This package and `flick.testing` are the only places that import `pyrogram`.
"""
