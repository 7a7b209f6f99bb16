#!/usr/bin/env bash
# The Spark Connect target against the embedded one on the synthetic project (N models, default
# 1,000, with realistic test density): prints `rsdbt build` wall time on Sail in its
# local-cluster mode (scripts/sail.sh) and on the embedded target, and the per-node cost of the
# protocol (the difference over the nodes run). Release build (target-bench). Not part of CI.
#   scripts/bench_spark.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
export CARGO_TARGET_DIR="${RSDBT_BENCH_TARGET:-$HOME/.cache/rsdbt/target-bench}"
# RSDBT_BIN: an rsdbt already built (to try the script; figures come from release builds).
if [ -z "${RSDBT_BIN:-}" ]; then
  cargo build --release --locked -q
fi
BIN="${RSDBT_BIN:-$CARGO_TARGET_DIR/release/rsdbt}"
WORK="$(mktemp -d)" SAIL="$(mktemp -d)"
ROOT="$PWD"
trap '"$ROOT/scripts/sail.sh" stop "$SAIL"; rm -rf "$WORK"' EXIT
eval "$(scripts/sail.sh start "$SAIL")"
python3 scripts/gen_synthetic_project.py "$N" "$WORK" dense > /dev/null
cat >> "$WORK/profiles.yml" <<YML
    spark:
      type: spark
      host: "$RSDBT_TEST_SPARK"
      location_root: "$WORK/spark-wh"
      schema: main
      threads: 4
YML
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null || true; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
cd "$WORK"
# Nodes run, and those that did not succeed (a figure over failed nodes means nothing).
nodes() { python3 -c "import json; r = json.load(open('target/run_results.json'))['results']; bad = [x['unique_id'] for x in r if x['status'] not in ('success', 'pass')]; print(len(r)); bad and print('not successful:', len(bad), bad[:3], file=__import__('sys').stderr)"; }
spark=$(secs "$BIN" build -t spark); spark_nodes=$(nodes)
embedded=$(secs "$BIN" build); embedded_nodes=$(nodes)
printf 'build, %d models (%d nodes) on Sail local-cluster   %7.2f s\n' "$N" "$spark_nodes" "$spark"
printf 'build, same project on the embedded target          %7.2f s\n' "$embedded"
printf 'per node, Spark Connect over embedded               %7.1f ms\n' "$(echo "($spark - $embedded) * 1000 / $spark_nodes" | bc -l)"
echo "($([ -n "${RSDBT_BIN:-}" ] && echo "$BIN" || echo "release build"); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); Sail $("$HOME/.cache/rsdbt/sail/bin/sail" --version | cut -d' ' -f2))"
