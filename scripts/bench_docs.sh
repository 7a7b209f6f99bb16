#!/usr/bin/env bash
# The docs page at 10,000 models: generates the synthetic project's docs (`docs generate
# --empty-catalog`: nothing is built, column lineage comes from the plans), opens the page from
# disk in headless Chromium RUNS times (default 5) and prints the median of each figure: first
# render, selections, searches. The page's speed does not depend on how rsdbt was built, so
# the debug build the tests use generates it. Needs what scripts/test.sh installs (Chromium,
# playwright-core). Not part of CI (the browser test prints one run's figures there).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rsdbt/target}"
export RSDBT_TEST_PLAYWRIGHT="${RSDBT_TEST_PLAYWRIGHT:-$HOME/.cache/rsdbt/e2e/node_modules}"
cargo build --locked -q
BIN="$CARGO_TARGET_DIR/debug/rsdbt"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python3 scripts/gen_synthetic_project.py 10000 "$WORK/p" > /dev/null
start=$(date +%s.%N)
(cd "$WORK/p" && "$BIN" docs generate --empty-catalog > /dev/null)
echo "docs generate (debug build, 10,000 models + 10,000 tests): $(echo "$(date +%s.%N) - $start" | bc) s, page $(du -h "$WORK/p/target/index.html" | cut -f1)"
for i in $(seq 1 "${RUNS:-5}"); do
  node tests/e2e/docs.mjs scale "file://$WORK/p/target/index.html" "$WORK/shot.png" \
    'silver+' '+gold_00042' 'tag:gold' '*'
done > "$WORK/runs.jsonl"
python3 - "$WORK/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
med = lambda xs: statistics.median(xs)
print(f"runs: {len(runs)} (medians)")
print(f"first render: graph drawn {med([r['open']['firstRenderMs'] for r in runs]):.0f} ms, "
      f"first frame painted {med([r['open']['paintedMs'] for r in runs]):.0f} ms after navigation start")
for i, s in enumerate(runs[0]['selects']):
    print(f"select {s['expr']:<14} {med([r['selects'][i]['ms'] for r in runs]):6.1f} ms  ({s['nodes']} nodes)")
for i, s in enumerate(runs[0]['searches']):
    print(f"search {s['q']!r:<24} {med([r['searches'][i]['ms'] for r in runs]):6.1f} ms  ({s['hits']} hits)")
PY
