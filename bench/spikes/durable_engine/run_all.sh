#!/bin/sh
# Every figure of docs/adr/0001-durable-generation-engine.md, appended to results.jsonl.
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres) and a venv with the engines:
#   python3 -m venv .venv && .venv/bin/pip install 'dbos==3.4.0' 'procrastinate==3.10.0' \
#     'pgqueuer==1.6.0' 'psycopg[binary]' psycopg-pool asyncpg
set -u
cd "$(dirname "$0")"
mkdir -p logs
py=${PY:-.venv/bin/python}
run() { timeout 400 "$py" spike_drive.py "$@" 2>>logs/drive-errors.log | tail -1 >> results.jsonl; }
for engine in dbos procrastinate pgqueuer; do
  for scenario in bound order tput latency latency1 position; do run "$engine" "$scenario"; done
  SPIKE_OPEN=1 run "$engine" tput
done
run dbos kill --restart
SPIKE_WATCHDOG=1 run dbos kill
run procrastinate kill
run pgqueuer kill
SPIKE_CHAIN=1 run pgqueuer order
SPIKE_CHAIN=1 run pgqueuer kill
