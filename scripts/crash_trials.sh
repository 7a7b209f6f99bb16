#!/usr/bin/env bash
# Crash trials in bulk: builds of an incremental project killed with SIGKILL at random moments,
# each checked by an independent reader (delta-rs' Python package). The test suite runs 10;
# this runs TRIALS (default 100) and prints the figures.
#   scripts/crash_trials.sh [TRIALS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rsdbt/target}"
venv="${RSDBT_DELTALAKE_VENV:-$HOME/.cache/rsdbt/deltalake}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import deltalake' 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q "deltalake==1.2.*" pyarrow
fi
export RSDBT_TEST_DELTALAKE="$venv/bin/python" RSDBT_CRASH_TRIALS="${1:-100}"
cargo test --locked --test it crash::killed_builds -- --nocapture 2>&1 \
  | grep -E "crash trials:|panicked|trial [0-9]+|test result"
