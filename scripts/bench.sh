#!/usr/bin/env bash
# Speed and memory, in one run (release build; not part of CI). Prints wall time and peak RSS of:
#   - a 1,000-model synthetic project with 4–5 generic tests per model (4,067 tests): `build`,
#     then `run` and `test` alone;
#   - a 10,000-model one (40,670 tests): `parse` (full, and again with the partial-parse cache
#     of the unchanged project) and `compile`;
#   - a 1 GB CSV seed (`seed`, with its throughput);
#   - a 20,000,000-row model numbered in sorted order under `memory_limit: 256MB` (the sort
#     spills, and finishes);
#   - a chain of 300 views over a table, each view reading the one before (`run`: each view is
#     planned on creation, over every view beneath it);
# and, when a dbt-core + dbt-duckdb venv exists at $DBT_VENV (default ~/.cache/rsdbt/dbt;
#   python3 -m venv ~/.cache/rsdbt/dbt && ~/.cache/rsdbt/dbt/bin/pip install "dbt-core~=1.10.0"
#   "dbt-duckdb~=1.9.0"; newer dbt-core releases fetch a parser from GitHub while installing),
# dbt's figures for the same projects (seed + run + test for the build; parse).
# Also the machine's load before and after, since the figures depend on it.
#   RUNS=n (default 3): repetitions of the fast commands (best wall, highest RSS).
#   ONLY="build parse seed sort chain" picks parts.
#   BIN=path measures that rsdbt binary instead of building one (to compare release profiles).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rsdbt/target}"
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q
  BIN="$CARGO_TARGET_DIR/release/rsdbt"
fi
DBT_VENV="${DBT_VENV:-$HOME/.cache/rsdbt/dbt}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
RUNS="${RUNS:-3}"
ONLY="${ONLY:-build parse seed sort chain}"
want() { [[ " $ONLY " == *" $1 "* ]]; }

measure() { # runs dir program args... → best wall seconds and max RSS (MB) over $RUNS runs
  local runs=$1 dir=$2; shift 2
  python3 - "$dir" "$runs" "$@" <<'PY'
import os, subprocess, sys, time
d, runs, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
best, rss = None, 0
for _ in range(runs):
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.chdir(d)
        fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1); os.dup2(fd, 2)
        os.execv(args[0], args)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        sys.exit(f"{' '.join(args)} failed in {d}")
    best = wall if best is None else min(best, wall)
    rss = max(rss, usage.ru_maxrss / 1024)
print(f"{best:8.2f} s {rss:8.1f} MB")
PY
}
row() { printf '%-34s %-8s %s\n' "$1" "$2" "$3"; }

# A dbt-duckdb copy of a synthetic project: the same models and tests on DuckDB.
dbt_copy() { # src dst
  cp -r "$1" "$2"
  rm -rf "$2/warehouse" "$2/target"
  mv "$2/project.yml" "$2/dbt_project.yml"
  printf 'synthetic:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: %s/dev.duckdb\n      threads: 4\n' "$2" > "$2/profiles.yml"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
row "work" "tool" "    wall     peak RSS"
if want build; then
  python3 scripts/gen_synthetic_project.py 1000 "$WORK/b1000" dense > /dev/null
  row "1,000 models + 4,067 tests: build" rsdbt "$(measure 1 "$WORK/b1000" "$BIN" build)"
  row "  run (tables exist)" rsdbt "$(measure "$RUNS" "$WORK/b1000" "$BIN" run)"
  row "  test" rsdbt "$(measure "$RUNS" "$WORK/b1000" "$BIN" test)"
  if [ -x "$DBT_VENV/bin/dbt" ]; then
    dbt_copy "$WORK/b1000" "$WORK/d1000"
    row "1,000 models + 4,067 tests: build" dbt "$(measure 1 "$WORK/d1000" "$DBT_VENV/bin/dbt" build --profiles-dir "$WORK/d1000")"
  fi
fi
if want parse; then
  python3 scripts/gen_synthetic_project.py 10000 "$WORK/p10000" dense > /dev/null
  row "10,000 models + 40,670 tests: parse" rsdbt "$(measure "$RUNS" "$WORK/p10000" "$BIN" parse --no-partial-parse)"
  # A parse with --no-partial-parse leaves no cache (as dbt's): one parse makes it (run as the
  # measured ones are: python's environment differs from this shell's, with pyenv's shims).
  measure 1 "$WORK/p10000" "$BIN" parse > /dev/null
  row "  parse (unchanged, cached)" rsdbt "$(measure "$RUNS" "$WORK/p10000" "$BIN" parse)"
  row "  compile" rsdbt "$(measure "$RUNS" "$WORK/p10000" "$BIN" compile --no-partial-parse)"
  if [ -x "$DBT_VENV/bin/dbt" ]; then
    dbt_copy "$WORK/p10000" "$WORK/q10000"
    row "10,000 models + 40,670 tests: parse" dbt "$(measure 1 "$WORK/q10000" "$DBT_VENV/bin/dbt" parse --no-partial-parse --profiles-dir "$WORK/q10000")"
  fi
fi
if want seed; then
  mkdir -p "$WORK/seed/seeds"
  printf 'name: seedbench\nprofile: synthetic\n' > "$WORK/seed/project.yml"
  printf 'synthetic:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: warehouse\n      schema: main\n' > "$WORK/seed/profiles.yml"
  python3 - "$WORK/seed/seeds/events.csv" <<'PY'
import sys
kinds = ["click", "view", "save", "share"]
with open(sys.argv[1], "w") as f:
    f.write("id,user_id,kind,amount,created_at,note\n")
    i, size = 0, 0
    while size < 1_000_000_000:
        line = f"{i},{(i * 7919) % 20011},{kinds[i % 4]},{(i * 37) % 10000 / 100:.2f},2024-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00,note number {i} with some text\n"
        f.write(line); size += len(line); i += 1
PY
  fig="$(measure 1 "$WORK/seed" "$BIN" seed)"
  secs="$(echo "$fig" | awk '{print $1}')"
  row "1 GB CSV seed" rsdbt "$fig  ($(python3 -c "print(f'{1000/$secs:.0f}')") MB/s)"
  rm -f "$WORK/seed/seeds/events.csv"
fi
if want sort; then
  mkdir -p "$WORK/sort/models"
  printf 'name: sortbench\nprofile: synthetic\n' > "$WORK/sort/project.yml"
  printf 'synthetic:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: warehouse\n      schema: main\n      memory_limit: 256MB\n' > "$WORK/sort/profiles.yml"
  # A window over all rows needs them sorted: far more than 256 MB, so the sort spills.
  printf "{{ config(materialized='table') }}\nselect value as id, (value * 7919) %% 1000003 as k, 'row ' || value as label,\n  row_number() over (order by (value * 7919) %% 1000003, value) as rn\nfrom range(20000000)\n" > "$WORK/sort/models/sorted.sql"
  row "20 M sorted rows, memory_limit 256MB" rsdbt "$(measure 1 "$WORK/sort" "$BIN" run)"
fi
if want chain; then
  mkdir -p "$WORK/chain/models"
  printf 'name: chainbench\nprofile: synthetic\n' > "$WORK/chain/project.yml"
  printf 'synthetic:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: warehouse\n      schema: main\n      threads: 4\n' > "$WORK/chain/profiles.yml"
  printf "{{ config(materialized='table') }}\nselect value as id from range(1000)\n" > "$WORK/chain/models/chain_0.sql"
  for i in $(seq 1 300); do
    printf "{{ config(materialized='view') }}\nselect id from {{ ref('chain_%d') }}\n" $((i - 1)) > "$WORK/chain/models/chain_$i.sql"
  done
  row "300 chained views: run" rsdbt "$(measure 1 "$WORK/chain" "$BIN" run)"
  if [ -x "$DBT_VENV/bin/dbt" ]; then
    dbt_copy "$WORK/chain" "$WORK/dchain"
    sed -i 's/select value as id from range(1000)/select range as id from range(1000)/' "$WORK/dchain/models/chain_0.sql"
    row "300 chained views: run" dbt "$(measure 1 "$WORK/dchain" "$DBT_VENV/bin/dbt" run --profiles-dir "$WORK/dchain")"
  fi
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
