#!/usr/bin/env bash
# A long property-test run (our fuzzing; cargo-fuzz needs nightly): each property of
# src/proptests.rs runs in batches of fresh random cases until MINUTES (default 10) have passed,
# all properties side by side. A failure is shrunk and saved to proptest-regressions/ (commit
# it: every later test run replays it first). Prints the cases run per property.
#   scripts/fuzz.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
cargo test --locked --lib --no-run -q 2>/dev/null
deadline=$(( $(date +%s) + minutes * 60 ))
props="selectors_parse_or_explain yaml_loads_or_points_at_the_problem jinja_in_project_files_renders_or_explains artifacts_from_other_tools_load_or_explain seeds_load_or_fail_the_node"
for p in $props; do
  (
    cases=0 batch=2000
    [ "$p" = seeds_load_or_fail_the_node ] && batch=200
    [ "$p" = artifacts_from_other_tools_load_or_explain ] && batch=500
    while [ "$(date +%s)" -lt "$deadline" ]; do
      if ! PROPTEST_CASES=$batch cargo test --locked --lib -q "proptests::$p" >"/tmp/rsdbt-fuzz-$p.log" 2>&1; then
        echo "$p: FAILED after $cases cases (see /tmp/rsdbt-fuzz-$p.log and proptest-regressions/)"
        exit 1
      fi
      cases=$((cases + batch))
    done
    echo "$p: $cases cases in $minutes min, no failure"
  ) &
done
wait
