"""`flick worker` as real processes beside a test's engine, on one machine (no namespaces).

    workers = Workers(base, WORK_HEARTBEAT_SECONDS="3")   # base: flick_child.ChildConfig
    first = await workers.start("w1")                     # returns once it says it is ready
    await first.said("generation 1: taken")
    await first.kill()                                    # SIGKILL
    held = await workers.start("w2", hold="hand_back")    # held there (worker_faults)
    await held.said(HELD)
    await workers.close()                                 # kills those still running

Each is `python -m flick worker`, the command an operator runs, configured by its environment
the way an operator's would be: the test's PostgreSQL and bucket, and the real OpenAI and
Replicate SDKs pointed at the fakes in the test's process (the same `ChildConfig` the SIGKILL
tests give their Flick children). Its log (stderr) is read as its lines (`Child.said`). A worker
given a `hold` is the same command held at that point of each generation's run, where a test
SIGKILLs it (flick.testing.worker_faults: the points the fakes cannot hold).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from flick.testing.children import Child
from flick.testing.flick_child import ChildConfig
from flick.testing.providers import provider_env
from flick.testing.worker_faults import HELD, HOLD_AT, HOLD_HOW

__all__ = ["HELD", "READY", "REFUSED", "Workers", "taken_by", "worker_env"]

#: What `flick worker` logs once it takes jobs.
READY = "worker ready:"
#: What a worker logs when a job is refused for its configuration version.
REFUSED = "leaving job"


def worker_env(cfg: ChildConfig, **extra: str) -> dict[str, str]:
    """The environment of `flick worker` on `cfg`'s database, bucket and fakes."""
    env = {
        **os.environ,
        "DATABASE_URL": cfg.database_url,
        "S3_ENDPOINT": cfg.s3_endpoint,
        "S3_ACCESS_KEY": cfg.s3_access_key,
        "S3_SECRET_KEY": cfg.s3_secret_key,
        "S3_BUCKET": cfg.s3_bucket,
        "DATA_DIR": cfg.data_dir,
        **provider_env(cfg.openai_url, cfg.replicate_url),
    }
    if cfg.styles_file:
        env["STYLES_FILE"] = cfg.styles_file
    return env | extra


def taken_by(workers: Mapping[str, Child], generation_id: int) -> list[str]:
    """Of `workers` (by name), those that said they took the generation's job, in their order."""
    said = f"generation {generation_id}: taken"
    return [name for name, c in workers.items() if c.find(said) is not None]


class Workers:
    """Starts `flick worker` processes on one configuration (`env` added to each)."""

    def __init__(self, base: ChildConfig, **env: str) -> None:
        self.base = base
        self.env = env
        self.children: dict[str, Child] = {}

    async def start(
        self, name: str, hold: str | None = None, freeze: bool = False, **env: str
    ) -> Child:
        """Worker `name` with `env` on top of the base's; returns once it is ready. `hold`: a
        point of flick.testing.worker_faults where it holds each generation (`freeze`: stops
        itself there, to run on when `Child.resume()` wakes it)."""
        data_dir = Path(self.base.data_dir) / name
        data_dir.mkdir(parents=True, exist_ok=True)
        cfg = replace(self.base, data_dir=str(data_dir))
        env = self.env | env
        if hold is None:
            args = ["flick", "worker"]
        else:
            how = "freeze" if freeze else "wait"
            args, env = ["flick.testing.worker_faults"], env | {HOLD_AT: hold, HOLD_HOW: how}
        child = await Child.module(*args, env=worker_env(cfg, **env), with_stderr=True)
        self.children[name] = child
        await child.said(READY)
        return child

    def taken_by(self, generation_id: int) -> list[str]:
        """The workers that said they took the generation's job, in start order."""
        return taken_by(self.children, generation_id)

    def lines(self) -> str:
        """Every worker's output, for a failing test's report."""
        return "\n".join(
            f"--- {name} ---\n" + "\n".join(c.lines) for name, c in self.children.items()
        )

    async def close(self) -> None:
        for child in self.children.values():
            await child.kill()
