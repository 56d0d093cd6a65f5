"""A smoke test of the benchmarks' own code (not a benchmark, and not in the test suite's paths):

    .venv/bin/pytest bench/test_smoke.py -q

It checks that every bench imports and parses its defaults, and the pieces that need no server.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import pytest

from bench.common import percentile, summarize

BENCHES = ("engine", "scale", "pipeline", "faults", "workers", "intake")


@pytest.mark.parametrize("name", BENCHES)
def test_bench_parses_its_defaults(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    args = module.parse([])
    assert args.limit > 0


def test_percentiles() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentile(values, 50) == 0.05
    assert percentile(values, 99) == 0.099
    summary = summarize(values)
    assert round(summary.max_ms) == 100 and summary.count == 100


async def test_inject_reaches_a_handler() -> None:
    from pyrogram.handlers import MessageHandler

    from bench.offline import ReplyTap, inject
    from flick.testing.telegram import OfflineTelegram

    async with OfflineTelegram() as tg:
        seen = []

        async def on_message(client, message) -> None:  # type: ignore[no-untyped-def]
            seen.append(message.text)
            await client.send_message(message.chat.id, "pong")

        tg.client.add_handler(MessageHandler(on_message))
        await asyncio.sleep(0.05)  # kurigram registers handlers in a task of its own
        replies = []
        tap = ReplyTap(tg)
        tap.on_reply = lambda chat, mid, at: replies.append((chat, mid))
        alice = tg.user(1001, "Alice")
        await inject(tg, tg.text(alice, "ping"))
        await tg.push()  # an empty push waits for the handler of the injected update too
        assert seen == ["ping"] and replies and replies[0][0] == 1001


def test_fault_mix_splits_the_total() -> None:
    from bench.faults import parse

    args = parse(["--faults", "20"])
    assert (args.kills, args.terms, args.outages) == (8, 4, 8)
    args = parse(["--faults", "100", "--outages", "50"])
    assert args.kills + args.terms == 50 and args.outages == 50
    args = parse(["--kills", "3", "--terms", "0"])
    assert (args.kills, args.terms, args.outages, args.faults) == (3, 0, 0, 3)
    with pytest.raises(SystemExit):
        parse(["--faults", "2", "--kills", "5"])


async def test_fault_telegram_redelivers_since_the_previous_start() -> None:
    import time

    from bench.fault_telegram import FaultTelegram

    tg = FaultTelegram()
    old = tg.command(1, "start")
    old.sent_to, old.first_sent = [(0, time.monotonic() - 60)], time.monotonic() - 60
    start = tg.command(1, "start")
    start.sent_to.append((0, time.monotonic()))
    pending = tg.photo(1)  # never reached Flick: delivered when it is back
    due = tg.redeliveries(time.monotonic() - 1, window=5)
    assert due == [start, pending]
    assert start.op["id"] != pending.op["id"] and tg.starts_sent[1] == 2
    tg.hear({"ev": "text", "chat": 1, "text": "Hi User1! I'm Flick 🎬\n\nSend me two photos"})
    tg.hear({"ev": "text", "chat": 1, "text": "Sorry, something went wrong on my side. You…"})
    tg.hear({"ev": "video", "chat": 1, "prediction": "abc"})
    assert tg.heard.welcomes[1] == 1 and len(tg.heard.apologies) == 1
    assert tg.heard.video_predictions["abc"] == 1


def test_fault_photos_are_all_different() -> None:
    from bench.fault_child import photo

    assert len({photo(k) for k in range(1, 400)}) == 399


def test_workers_run_with_the_gateways_configuration_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker of another version takes no job: bench.workers would measure nothing."""
    from bench.worker_hosts import Shared, worker_env
    from bench.workers import gateway_settings
    from flick.settings import Settings
    from flick.styles import load_styles
    from flick.work.version import config_version

    shared = Shared(
        "postgresql://bench@127.0.0.1:5/bench", "127.0.0.1:6", "key", "secret", "bucket",
        "http://127.0.0.1:7", ["http://127.0.0.1:8", "http://127.0.0.1:9"], tmp_path,
    )  # fmt: skip
    for name, value in worker_env(shared, 1, 3).items():
        monkeypatch.setenv(name, value)
    worker = Settings(_env_file=None)  # type: ignore[call-arg]
    gateway = gateway_settings(tmp_path, 3, generates=False)
    styles = load_styles(None)
    assert config_version(styles, worker) == config_version(styles, gateway)
    assert worker.replicate_base_url == "http://127.0.0.1:9" and worker.ai_concurrency == 3
    assert not gateway.gateway_generates


async def test_capped_link_is_shared_by_concurrent_downloads() -> None:
    """Two downloads through one host's link take their slots one after the other: the cap is
    the host's, not each connection's."""
    import time

    from bench.capped_fakes import CappedReplicate

    link = CappedReplicate()
    link.cap = 100e6  # bytes/s: slots of 10 µs, so the test waits for nothing
    started = time.monotonic()
    await asyncio.gather(link._through_link(500), link._through_link(500))
    assert link._free_at >= started + 1000 / link.cap
