"""The example of docs/testing.md ("A new end-to-end test"), run so that it stays true."""

from flick.testing.bot import Bot
from flick.testing.telegram import raw


async def test_the_free_credit_buys_one_video_then_credits_are_offered(bot: Bot) -> None:
    alice = bot.tg.user(1001, "Alice")  # a Telegram user; what comes in is raw MTProto
    await bot.make_video(alice)  # /create, consent, a style, an album of two photos
    (video,) = bot.tg.sent_videos(alice.id)  # the video as Telegram received it
    assert video[4:8] == b"ftyp"  # an MP4, from the Replicate fake through the real SDK
    assert await bot.h.balance(alice.id) == 0  # read from the real PostgreSQL

    await bot.push(bot.tg.command(alice, "create"))  # no credit left: packages are offered
    offer = bot.tg.sent(raw.functions.messages.SendMessage, alice.id)[-1]
    assert "buy:0" in {data for row in bot.tg.buttons(offer) for _, data in row}
