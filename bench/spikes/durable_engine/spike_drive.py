"""Run one scenario against one engine and print its figures as one JSON line.

    python spike_drive.py ENGINE SCENARIO [--restart]

ENGINE: dbos, procrastinate, pgqueuer. SCENARIO: bound (200 jobs, AI bound 4, 3 workers),
order (20 users x 10 jobs), kill (SIGKILL a worker mid-animate), tput (500 no-op jobs), latency
(20 no-op jobs one at a time; latency1: with one worker), position (5,000 queued, no worker:
the cost of "your place in the queue"). Every figure comes from database timestamps.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from spike_steps import Spec, dsn, reset_database

HERE = Path(__file__).parent
LOGS = HERE / "logs"
PY = sys.executable
Workers = list[subprocess.Popen[bytes]]


def q(engine: str, query: str, args: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn(engine), autocommit=True) as conn:
        return conn.execute(query, args).fetchall()


def one(engine: str, query: str, args: Any = None) -> Any:
    return q(engine, query, args)[0][0]


def start_workers(engine: str, n: int, first: int = 1) -> Workers:
    procs = []
    for i in range(first, first + n):
        log = (LOGS / f"{engine}-w{i}.log").open("ab")
        env = {**os.environ, "SPIKE_WORKER": f"w{i}"}
        args = [PY, f"engine_{engine}.py", "worker"]
        procs.append(subprocess.Popen(args, cwd=HERE, env=env, stdout=log, stderr=log))
    return procs


def stop(procs: Workers) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def enqueue(engine: str, specs: list[Spec], one_by_one: bool = False) -> None:
    path = LOGS / f"{engine}-specs.json"
    path.write_text(json.dumps([s.dump() for s in specs]))
    args = [PY, f"engine_{engine}.py", "enqueue", str(path)]
    subprocess.run([*args, "--one-by-one"] if one_by_one else args, cwd=HERE, check=True)


def wait_done(engine: str, total: int, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if one(engine, "SELECT count(*) FROM spike_jobs WHERE finished IS NOT NULL") >= total:
            return True
        time.sleep(0.2)
    return False


def specs_for(users: int, per_user: int, compose: float, animate: float) -> list[Spec]:
    # user outer, seq inner: each user's jobs come in a burst, next to each other in the queue
    return [
        Spec(f"u{u}-{k}", u, k, compose, animate) for u in range(users) for k in range(per_user)
    ]


def span(engine: str) -> dict[str, Any]:
    n, secs = q(
        engine, "SELECT count(*), extract(epoch FROM max(finished) - min(enqueued)) FROM spike_jobs"
    )[0]
    return {"jobs": n, "seconds": round(float(secs), 2), "jobs_per_s": round(n / float(secs), 1)}


def bound(engine: str) -> dict[str, Any]:
    specs = specs_for(200, 1, 0.15, 0.15)
    enqueue(engine, specs)
    done = wait_done(engine, len(specs), 300)
    peak = one(engine, "SELECT peak FROM spike_meter")
    # How far the start order strays from the queue order: for each job, how many jobs
    # handed over after it started before it (0 everywhere: first in, first out).
    overtaken = q(
        engine,
        "SELECT max(n), round(avg(n), 1) FROM (SELECT a.job, count(b.job) AS n "
        "FROM spike_jobs a LEFT JOIN spike_jobs b ON b.enqueued > a.enqueued "
        "AND b.started < a.started GROUP BY a.job) s",
    )[0]
    return {
        "all_done": done,
        "peak_ai_in_flight": peak,
        "overtaken_max": overtaken[0],
        "overtaken_mean": float(overtaken[1]),
        **span(engine),
    }


def order(engine: str) -> dict[str, Any]:
    specs = specs_for(20, 10, 0.05, 0.05)
    enqueue(engine, specs)
    done = wait_done(engine, len(specs), 300)
    pairs = "FROM spike_jobs a JOIN spike_jobs b ON a.user_id = b.user_id AND b.seq = a.seq - 1"
    return {
        "all_done": done,
        "started_before_previous_finished": one(
            engine, f"SELECT count(*) {pairs} WHERE a.started < b.finished"
        ),
        "started_before_previous_started": one(
            engine, f"SELECT count(*) {pairs} WHERE a.started < b.started"
        ),
        "peak_ai_in_flight": one(engine, "SELECT peak FROM spike_meter"),
        **span(engine),
    }


def kill(engine: str, workers: Workers) -> dict[str, Any]:
    specs = specs_for(24, 1, 1.0, 4.0)
    enqueue(engine, specs)
    victim = None
    for _ in range(600):
        rows = q(engine, "SELECT pid FROM spike_calls WHERE step = 'animate' AND ended IS NULL")
        if rows:
            victim = int(rows[0][0])
            break
        time.sleep(0.05)
    assert victim is not None, "no animate call started"
    os.kill(victim, signal.SIGKILL)
    killed_at = one(engine, "SELECT clock_timestamp()")
    cut = "SELECT DISTINCT job FROM spike_calls WHERE pid = %s AND ended IS NULL"
    inflight = [r[0] for r in q(engine, cut, (victim,))]
    result: dict[str, Any] = {"victim_jobs_in_flight": len(inflight)}
    result["finished_within_60s"] = wait_done(engine, len(specs), 60)
    unfinished = "SELECT count(*) FROM spike_jobs WHERE finished IS NULL"
    result["unfinished_at_60s"] = one(engine, unfinished)
    if not result["finished_within_60s"] and "--restart" in sys.argv:
        # DBOS without Conductor: the dead executor's own id, started again, recovers them
        index = [p.pid for p in workers].index(victim) + 1
        workers += start_workers(engine, 1, first=index)
        result["restarted_executor"] = f"w{index}"
        result["finished_after_restart"] = wait_done(engine, len(specs), 60)
    result["unfinished"] = one(engine, unfinished)
    back = one(
        engine,
        "SELECT extract(epoch FROM max(finished) - %s) FROM spike_jobs WHERE job = ANY(%s)",
        (killed_at, inflight),
    )
    result["seconds_kill_to_victims_done"] = back and round(float(back), 2)
    # Paid twice: a call started after the same step had completed (a finished step run
    # again), or a second call after one the kill cut off.
    again = q(
        engine,
        "SELECT a.step, count(DISTINCT a.job) FILTER (WHERE b.started > a.ended), "
        "count(DISTINCT a.job) FILTER (WHERE a.ended IS NULL) "
        "FROM spike_calls a JOIN spike_calls b ON a.job = b.job AND a.step = b.step "
        "AND a.id <> b.id GROUP BY a.step",
    )
    result["paid_twice"] = {
        step: {"completed_step_rerun": x, "interrupted_step_rerun": y} for step, x, y in again
    }
    result["calls_by_step"] = dict(q(engine, "SELECT step, count(*) FROM spike_calls GROUP BY 1"))
    return result


def throughput(engine: str) -> dict[str, Any]:
    specs = specs_for(500, 1, 0, 0)
    enqueue(engine, specs)
    return {"all_done": wait_done(engine, len(specs), 300), **span(engine)}


def latency(engine: str) -> dict[str, Any]:
    enqueue(engine, specs_for(20, 1, 0, 0), one_by_one=True)
    lat = [
        float(r[0])
        for r in q(engine, "SELECT extract(epoch FROM finished - enqueued) FROM spike_jobs")
    ]
    return {
        "median_ms": round(statistics.median(lat) * 1000, 1),
        "max_ms": round(max(lat) * 1000, 1),
    }


def position(engine: str) -> dict[str, Any]:
    specs = specs_for(5000, 1, 0, 0)
    enqueue(engine, specs)
    mod = importlib.import_module(f"engine_{engine}")
    with psycopg.connect(dsn(engine), autocommit=True) as conn:
        row = conn.execute(mod.ID_SQL, {"job": specs[-1].job}).fetchone()
        assert row is not None
        timings = []
        for _ in range(30):
            started = time.perf_counter()
            place = conn.execute(mod.POSITION_SQL, {"id": row[0]}).fetchone()
            timings.append(time.perf_counter() - started)
        plan = conn.execute("EXPLAIN ANALYZE " + mod.POSITION_SQL, {"id": row[0]}).fetchall()
    return {
        "place_of_last": place and place[0],
        "median_ms": round(statistics.median(timings) * 1000, 2),
        "plan": [r[0] for r in plan],
    }


def main(engine: str, scenario: str) -> None:
    LOGS.mkdir(exist_ok=True)
    reset_database(engine)
    subprocess.run([PY, f"engine_{engine}.py", "install"], cwd=HERE, check=True)
    result: dict[str, Any] = {"engine": engine, "scenario": scenario}
    if os.environ.get("SPIKE_OPEN"):
        result["open"] = True
    for flag in ("SPIKE_WATCHDOG", "SPIKE_CHAIN"):
        if os.environ.get(flag):
            result[flag.removeprefix("SPIKE_").lower()] = True
    if scenario == "position":
        print(json.dumps(result | position(engine)))
        return
    workers = start_workers(engine, 1 if scenario == "latency1" else 3)
    time.sleep(4)  # let them connect: not measured, every figure is from database stamps
    try:
        if scenario == "kill":
            result |= kill(engine, workers)
        else:
            run = {"bound": bound, "order": order, "tput": throughput}.get(scenario, latency)
            result |= run(engine)
    finally:
        stop(workers)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
