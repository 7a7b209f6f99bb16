#!/usr/bin/env bash
# Prints wall time and peak RSS of `rsdbt parse` (full, and again on the unchanged project with
# the partial-parse cache) and `rsdbt compile` on synthetic projects of 1,000 and 10,000 models. Uses a release build of the compiler side only (no engine is
# needed to parse or compile), so it builds in a minute or two. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rsdbt/target}"
cargo build --release --no-default-features --locked -q
BIN="$CARGO_TARGET_DIR/release/rsdbt"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
RUNS="${RUNS:-5}"

measure() { # dir, command... → best wall seconds and max RSS (MB) over $RUNS runs
  local dir=$1; shift
  python3 - "$dir" "$BIN" "$RUNS" "$@" <<'PY'
import os, resource, subprocess, sys, time
d, binary, runs, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
best, rss = None, 0
for _ in range(runs):
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.chdir(d)
        fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1)
        os.execv(binary, [binary] + args)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        sys.exit(f"rsdbt {' '.join(args)} failed in {d}")
    best = wall if best is None else min(best, wall)
    rss = max(rss, usage.ru_maxrss / 1024)
print(f"{best:8.3f} s {rss:8.1f} MB")
PY
}

printf '%-8s %-15s %12s %11s\n' models command wall peak_rss
for n in 1000 10000; do
  python3 scripts/gen_synthetic_project.py "$n" "$WORK/p$n" > /dev/null
  # A full parse, then with the partial-parse cache of an unchanged project.
  printf '%-8s %-15s %s\n' "$n" "parse" "$(measure "$WORK/p$n" parse --no-partial-parse)"
  printf '%-8s %-15s %s\n' "$n" "parse (cached)" "$(measure "$WORK/p$n" parse)"
  printf '%-8s %-15s %s\n' "$n" "compile" "$(measure "$WORK/p$n" compile --no-partial-parse)"
done
