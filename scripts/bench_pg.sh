#!/usr/bin/env bash
# The example project on the PostgreSQL target: prints the best of 3 wall times for loading its
# seed CSVs (`seed -t pg`, COPY) and for a full `build -t pg --full-refresh` (seeds, models,
# incremental, snapshot, tests), against a throwaway local server (scripts/pg.sh: fsync off).
# Release build (first build takes a while). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rsdbt/target}"
cargo build --release --locked -q
BIN="$CARGO_TARGET_DIR/release/rsdbt"
WORK="$(mktemp -d)" PGDIR="$(mktemp -d)"
trap 'scripts/pg.sh stop "$PGDIR"; rm -rf "$WORK"' EXIT
eval "$(scripts/pg.sh start "$PGDIR" "${PORT:-55497}")"
cp -r models macros seeds snapshots data-tests project.yml profiles.yml "$WORK"
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
best() { local b=999999 t; for _ in 1 2 3; do t=$(secs "$@"); b=$(echo "if ($t < $b) $t else $b" | bc); done; echo "$b"; }
rows=$(( $(cat seeds/*.csv | wc -l) - $(ls seeds/*.csv | wc -l) ))
(
  cd "$WORK"
  "$BIN" build -t pg > /dev/null
  printf 'seed -t pg (%d rows, %d files)   %6.2f s\n' "$rows" "$(ls seeds/*.csv | wc -l)" "$(best "$BIN" seed -t pg --full-refresh)"
  printf 'build -t pg --full-refresh        %6.2f s\n' "$(best "$BIN" build -t pg --full-refresh)"
  printf 'build (embedded, for comparison)  %6.2f s\n' "$(best "$BIN" build --full-refresh)"
)
echo "(release build; $(nproc) cores; local PostgreSQL $(ls /usr/lib/postgresql | sort -V | tail -n 1), fsync off)"
