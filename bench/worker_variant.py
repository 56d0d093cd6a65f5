"""`flick worker` with a bound on the jobs it holds at once: a what-if for `bench.workers
--worker-jobs M`, not Flick's behaviour.

Flick's work engine (flick/work/engine.py) runs pgqueuer's QueueManager with its defaults: a
dequeue takes up to 10 jobs, and nothing but the global AI bound limits how many one process
holds. Workers whose hosts each have a link of their own then share the jobs by who wakes first.
Here each dequeue takes one job and a worker holds at most M (pgqueuer's
`max_concurrent_tasks`, enforced in its dequeue query), so the jobs spread by capacity.

    BENCH_WORKER_JOBS=6 python -m bench.worker_variant      # instead of python -m flick worker
"""

from __future__ import annotations

import os
from typing import Any

from pgqueuer import QueueManager

from flick.cli import main

JOBS = int(os.environ.get("BENCH_WORKER_JOBS", "0"))
_run = QueueManager.run


async def _bounded_run(self: QueueManager, *args: Any, **kwargs: Any) -> None:
    # pgqueuer wants max_concurrent_tasks ≥ 2 × batch_size.
    kwargs["batch_size"] = 1
    kwargs["max_concurrent_tasks"] = max(2, JOBS)
    await _run(self, *args, **kwargs)


if __name__ == "__main__":
    if JOBS:
        QueueManager.run = _bounded_run  # type: ignore[method-assign]
    raise SystemExit(main(["worker"]))
