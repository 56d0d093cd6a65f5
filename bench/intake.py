"""What taking one update in costs the bot's process, split by who pays it in production (#19).

    .venv/bin/python -m bench.intake      # ~20 s

Past its capacity a bot still takes in every update offered, and bench.engine's overload phase
runs the offline Telegram in the bot's own process. Each update of bench.engine's script (a fresh
user walking start → help) is measured in three stages, each over all the users at once:

1. built: the offline Telegram makes the raw update and serialises it (`Updates.write`). In
   production Telegram's servers do this: a harness cost only.
2. read: kurigram deserialises those bytes (`TLObject.read`), as it does what arrives on its
   MTProto connection (production adds the decryption).
3. handed: kurigram's `handle_updates` (the users into the session storage, the update state,
   the dispatcher's queue). Flick holds a new user's update past this point, unparsed, while
   the engine has no room (flick/telegram/urgent.py).
4. parsed: kurigram's dispatcher making a Message/CallbackQuery of it, with no handler to run.
Stages 2-4 are what any kurigram bot pays for an update before its handler. Each on the session
file Flick runs on (`PrivateSessionStorage`) and on kurigram's in-memory SQLite (bench.engine's
bare bot).

CPU is the process's, per update; the rounds alternate (the machine is shared).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from io import BytesIO
from pathlib import Path
from typing import Any

from pyrogram import types
from pyrogram.raw.core import TLObject
from pyrogram.storage import Storage

from bench.common import quiet_logging, run
from bench.engine import SCRIPT, Person, Workload
from flick.telegram import sent
from flick.telegram.session_file import PrivateSessionStorage
from flick.testing.telegram import OfflineTelegram
from flick.testing.telegram.offline_telegram import bundle

STAGES = ("built", "read", "handed", "parsed")
CALLBACKS = ("consent", "style")
KEYBOARD = types.InlineKeyboardMarkup(
    [[types.InlineKeyboardButton("Hug", callback_data="style:hug")]]
)


def _steps(workload: Workload, users: int) -> list[list[Person]]:
    """`users` fresh people, listed once per step of the script (each list at that step)."""
    people = [workload.fresh() for _ in range(users)]
    return [[Person(p.uid, p.raw, step) for p in people] for step in range(len(SCRIPT))]


async def _round(tg: OfflineTelegram, workload: Workload, users: int) -> dict[str, list[float]]:
    """µs of CPU per update, per stage, one figure per step of the script."""
    client: Any = tg.client  # handle_updates is unannotated
    figures: dict[str, list[float]] = defaultdict(list)
    for people in _steps(workload, users):
        if SCRIPT[people[0].step] in CALLBACKS:
            # A button is under the bot's last message, which Flick keeps in kurigram's message
            # cache (flick/telegram/sent.py): the parse finds it there, as in bench.engine.
            for person in people:
                person.last_message = await sent.send_text(tg.client, person.uid, "?", KEYBOARD)
        cpu = time.process_time()
        blobs = []
        for person in people:
            blobs.append(bundle(tg.bot, workload.incoming(person)).write())
        built = time.process_time()
        objects = [TLObject.read(BytesIO(blob)) for blob in blobs]
        read = time.process_time()
        for obj in objects:
            await client.handle_updates(obj)
        handed = time.process_time()
        await tg.push()  # an empty push: waits until the dispatcher has parsed every update
        parsed = time.process_time()
        spans = (built - cpu, read - built, handed - read, parsed - handed)
        for stage, seconds in zip(STAGES, spans, strict=True):
            figures[stage].append(seconds / len(people) * 1e6)
    return figures


async def main(rounds: int, users: int) -> None:
    quiet_logging()
    results: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            stores: tuple[tuple[str, Storage | None], ...] = (
                ("session file", PrivateSessionStorage(f"intake{i}", workdir=Path(tmp))),
                ("in-memory", None),
            )
            for label, store in stores:
                async with OfflineTelegram(session=store) as tg:
                    workload = Workload(tg, 10_000_000 + i * 1_000_000)
                    await _round(tg, workload, 50)  # warm: kurigram's parsers, the caches
                    for stage, per_step in (await _round(tg, workload, users)).items():
                        results[label][stage].append(per_step)
    print(f"-- µs of CPU per update, median of {rounds} rounds of {users} users each")
    print(f"  {'storage':<13} {'stage':<8} " + " ".join(f"{k:>8}" for k in SCRIPT) + "     mean")
    for label, stages in results.items():
        for stage in STAGES:
            per_step = [statistics.median(r[s] for r in stages[stage]) for s in range(len(SCRIPT))]
            cells = " ".join(f"{v:8.1f}" for v in per_step)
            print(f"  {label:<13} {stage:<8} {cells} {statistics.mean(per_step):8.1f}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.intake", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--users", type=int, default=1000, help="fresh users per round")
    parser.add_argument("--limit", type=float, default=300.0, help="hard stop, seconds")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse()
    run(main(args.rounds, args.users), args.limit)
