#!/usr/bin/env bash
# Crash trials in bulk: builds of an incremental project (every third with --full-refresh)
# killed with SIGKILL at random moments, each checked by independent readers — delta-rs' Python
# package and pyiceberg for a local warehouse, delta-rs for one on S3 (moto), PostgreSQL's own
# reads for the postgres target. The test suite runs 10 / 5 / 5;
# this runs TRIALS (default 100) of each and prints the figures.
#   scripts/crash_trials.sh [TRIALS]     (ONLY=_on_postgres, _on_s3 or _leave runs one set)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rsdbt/target}"
venv="${RSDBT_DELTALAKE_VENV:-$HOME/.cache/rsdbt/deltalake}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import deltalake' 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q "deltalake==1.2.*" pyarrow
fi
pyiceberg="${RSDBT_PYICEBERG_VENV:-$HOME/.cache/rsdbt/pyiceberg}"
if [ ! -x "$pyiceberg/bin/python" ] || ! "$pyiceberg/bin/python" -c 'import pyiceberg' 2>/dev/null; then
  python3 -m venv "$pyiceberg" && "$pyiceberg/bin/pip" install -q "pyiceberg[sql-sqlite,pyarrow]==0.12.0"
fi
export RSDBT_TEST_DELTALAKE="$venv/bin/python" RSDBT_TEST_PYICEBERG="$pyiceberg/bin/python"
export RSDBT_CRASH_TRIALS="${1:-100}"
work="$(mktemp -d)"
# The cluster's folder of its own: as root, pg.sh gives it to the postgres user.
pg_dir="$(mktemp -d /tmp/rsdbt-pg.XXXXXX)"
trap 'scripts/moto.sh stop "$work/moto"; scripts/pg.sh stop "$pg_dir" >/dev/null 2>&1 || true; rm -rf "$work" "$pg_dir"' EXIT
eval "$(scripts/moto.sh start "$work/moto")"
pg_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
eval "$(scripts/pg.sh start "$pg_dir" "$pg_port")"
[ -n "${RSDBT_TEST_PG_PORT:-}" ] || { echo "PostgreSQL did not start (see $pg_dir)" >&2; exit 1; }
cargo test --locked --test it "crash::killed_builds${ONLY:-}" -- --nocapture --test-threads 1 2>&1 \
  | grep -E "crash trials|panicked|trial [0-9]+|test result"
