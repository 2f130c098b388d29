#!/usr/bin/env bash
# Runs every performance target of issue 9 that this machine can run and appends each
# run's JSON result line to load-tests/results/<commit>.jsonl. Needs a release build and,
# for the PostgreSQL runs, RENKEI_LOAD_POSTGRES (an admin URL; default the local server).
set -euo pipefail
cd "$(dirname "$0")/.."
load=target/release/renkei-load
pg="${RENKEI_LOAD_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
out="load-tests/results/$(git rev-parse --short HEAD).jsonl"
mkdir -p load-tests/results
run() { echo "== renkei-load $*" >&2; "$load" "$@" --json | grep '^{' >> "$out"; }

run connections --connections 10000                                   # target 1
run fanout --groups 1000 --members 10 --rate 2000 --duration 60 --bare  # target 2, SQLite
run fanout --groups 1000 --members 10 --rate 2000 --duration 60 --postgres "$pg"  # target 2, PostgreSQL
for rate in 3000 4000 5000; do                                       # target 3: the sweep
  run fanout --groups 1000 --members 10 --rate "$rate" --duration 20 --bare || true
done
run fanout --groups 1000 --members 10 --rate 2000 --duration 60 --nodes 2 \
  --redis "${RENKEI_LOAD_REDIS:-redis://127.0.0.1:6379}" --postgres "$pg"   # target 5
run login-storm --groups 1000 --members 10 --rate 2000 --duration 60 --login-rate 100 --login-seconds 10  # target 4
"$load" plot --input "$out" --output load-tests/results/plot.svg
echo "$out" >&2
