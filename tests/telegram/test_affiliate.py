"""`flick affiliate`: Telegram's affiliate program for the bot, changed as its owner. Telegram
refuses the bot itself; the owner can start, raise and end a program within Telegram's rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from flick.cli import main
from flick.runtime import affiliate
from flick.telegram.affiliate import AffiliateError, current_program, set_program
from flick.testing.telegram import OfflineTelegram, raw

BOT = "flick_test_bot"


async def test_the_bot_itself_may_not_change_its_program(
    tg: OfflineTelegram, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await affiliate(tg.client, "set", BOT, 100) == 1
    assert "only the bot's owner" in capsys.readouterr().err
    (request,) = tg.sent(raw.functions.bots.UpdateStarRefProgram, ok=False)
    assert request.request.bot.user_id == tg.bot.id


async def test_the_owner_starts_raises_and_ends_a_program(
    tg: OfflineTelegram, capsys: pytest.CaptureFixture[str]
) -> None:
    tg.server.session_is_bot = False  # signed in as the bot's owner
    assert await current_program(tg.client, BOT) is None
    assert await affiliate(tg.client, "show", BOT) == 0
    assert capsys.readouterr().out == f"@{BOT} has no affiliate program\n"

    program = await set_program(tg.client, BOT, 100, months=12)
    assert (program.permille, program.months, program.ends) == (100, 12, None)
    assert await current_program(tg.client, BOT) == program
    assert await affiliate(tg.client, "show", BOT) == 0
    assert "affiliates earn 10% of what referred users spend, for 12 month(s)" in (
        capsys.readouterr().out
    )
    with pytest.raises(AffiliateError, match="can only be raised"):
        await set_program(tg.client, BOT, 50, months=12)
    with pytest.raises(AffiliateError, match="outside Telegram's limits"):
        await set_program(tg.client, BOT, 950, months=12)
    assert (await set_program(tg.client, BOT, 150, months=12)).permille == 150

    assert await affiliate(tg.client, "end", BOT) == 0
    assert "it ends" in capsys.readouterr().out
    ended = await current_program(tg.client, BOT)
    assert ended is not None and ended.ends is not None
    assert await affiliate(tg.client, "set", BOT, 80) == 1  # a new one only 24 hours later
    assert "less than 24 hours ago" in capsys.readouterr().err


async def test_bad_numbers_never_reach_telegram(tg: OfflineTelegram) -> None:
    tg.server.session_is_bot = False
    for permille, months in ((-1, None), (1001, None), (100, 0)):
        with pytest.raises(AffiliateError):
            await set_program(tg.client, BOT, permille, months)
    assert tg.sent(raw.functions.bots.UpdateStarRefProgram, ok=None) == []


def test_the_command_needs_to_know_the_bot(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("BOT_USERNAME", raising=False)
    assert main(["affiliate", "show"]) == 2
    assert "--bot @username" in capsys.readouterr().err
    monkeypatch.delenv("API_ID", raising=False)
    monkeypatch.delenv("API_HASH", raising=False)
    assert main(["affiliate", "--bot", "@flick_bot", "set", "100"]) == 2
    assert "API_ID" in capsys.readouterr().err  # signing in needs the app's credentials
