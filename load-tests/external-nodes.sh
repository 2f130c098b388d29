#!/usr/bin/env bash
# Target 5 the way an operator measures a cluster renkei-load did not start: a population
# is written into a fresh PostgreSQL database, two release nodes are started on it by
# hand (loopback ports 18181 and 18182, their metrics on 19181 and 19182, Redis for
# fan-out), and `fanout` is given their URLs. Appends the JSON line to load-tests/results/<commit>-external.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
pg="${RENKEI_LOAD_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
redis="${RENKEI_LOAD_REDIS:-redis://127.0.0.1:6379}"
db="renkei_load_external_$$"
out="load-tests/results/$(git rev-parse --short HEAD)-external.jsonl"
work=$(mktemp -d)
nodes=()
cleanup() {
  for pid in "${nodes[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$pg" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql "$pg" -qc "CREATE DATABASE $db"
url="${pg%/*}/$db"
target/release/renkei-load populate --database "$url" --groups 1000 --members 10 --out "$work/population.json"
for port in 18181 18182; do
  # Every simulated user comes from 127.0.0.1: lift the per-address limit (meant for a
  # facility's NAT), as a deployment fronted by a load generator must.
  RENKEI_ADDRESS_REQUESTS_PER_SECOND=1000000 RENKEI_ADDRESS_REQUEST_BURST=1000000 \
  RENKEI_DATABASE_URL="$url" RENKEI_REDIS_URL="$redis" RENKEI_REDIS_PREFIX="external-$$" \
    RENKEI_LISTEN="127.0.0.1:$port" RENKEI_METRICS_LISTEN="127.0.0.1:$((port + 1000))" \
    RUST_LOG=warn target/release/renkei &
  nodes+=($!)
done
for port in 18181 18182; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
done
mkdir -p load-tests/results
target/release/renkei-load fanout --rate "${RATE:-2000}" --duration "${DURATION:-60}" --json \
  --url http://127.0.0.1:18181 --url http://127.0.0.1:18182 \
  --metrics-url http://127.0.0.1:19181 --metrics-url http://127.0.0.1:19182 \
  --population "$work/population.json" |
  tee /dev/stderr | grep '^{' >> "$out"
echo "$out" >&2
