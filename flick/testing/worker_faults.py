"""`flick worker` held at a named point of its generations, for a test to SIGKILL it there.

    python -m flick.testing.worker_faults      # FLICK_HOLD_AT=store_video (or hand_back)

flick.testing.workers starts it instead of `python -m flick worker` when a worker is given a
`hold`. It is the same command (`flick.cli.main(["worker"])`), with one step of the run wrapped
before it starts; nothing in the product knows of it. Points the fakes cannot hold:

- `store_video`: the video downloaded and checked, the generation `delivering` (the point of no
  return), before its copy to S3: the row has no `video_key`.
- `hand_back`: the video stored and its key on the row, before the `settle` job is queued.

At the point the child logs `HELD` with the point and the generation's id, and waits there for
ever: only a signal ends it. With FLICK_HOLD_HOW=freeze it stops itself there instead (SIGSTOP:
a zombie, alive but beating no heartbeat), and runs the step on once a SIGCONT wakes it. The
steps are wrapped by their module attribute, which the runner and the worker look up when they
call them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from flick.fsm.generation import GenerationRecord
from flick.ports import Storage

#: The environment variables naming the point, and how it holds ("wait" or "freeze").
HOLD_AT = "FLICK_HOLD_AT"
HOLD_HOW = "FLICK_HOLD_HOW"
#: What the child logs when it holds: `HELD store_video: generation 3`.
HELD = "HELD"
POINTS = ("store_video", "hand_back")


async def _hold(point: str, generation_id: int) -> None:
    print(f"{HELD} {point}: generation {generation_id}", file=sys.stderr, flush=True)
    if os.environ.get(HOLD_HOW) == "freeze":
        os.kill(os.getpid(), signal.SIGSTOP)  # returns once a SIGCONT wakes the process
        return
    await asyncio.Event().wait()


def install(point: str) -> None:
    """Wrap the step named `point` so that it holds instead of running."""
    if point == "store_video":
        from flick.pipeline import transfer

        store = transfer.store

        async def held_store(
            storage: Storage, record: GenerationRecord, key: str, path: Path, budget: float
        ) -> Exception | None:
            await _hold(point, record.id)
            return await store(storage, record, key, path, budget)

        transfer.store = held_store
    elif point == "hand_back":
        from flick import worker
        from flick.work.tasks import Ended

        hand_back = worker._hand_back

        async def held_hand_back(ended: Ended) -> None:
            await _hold(point, ended.job.generation_id)
            await hand_back(ended)

        worker._hand_back = held_hand_back
    else:
        raise ValueError(f"{HOLD_AT}={point!r}: not one of {POINTS}")


def main() -> int:
    install(os.environ[HOLD_AT])
    from flick.cli import main as flick

    return flick(["worker"])


if __name__ == "__main__":
    raise SystemExit(main())
