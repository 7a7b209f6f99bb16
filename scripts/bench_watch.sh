#!/usr/bin/env bash
# The watch loop's latency: `rsdbt run --watch` on the example project (embedded engine), then
# 5 saves of a silver model (which rebuilds it and its gold children) and 5 of a gold model;
# prints the time from each save to the end of its rebuild, as rsdbt reports it ("Rebuilt N s
# after the save": the 100 ms debounce, parse, static analysis and the builds). Release build.
# Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rsdbt/target}"
cargo build --release --locked -q
BIN="$CARGO_TARGET_DIR/release/rsdbt"
WORK="$(mktemp -d)" LOG="$(mktemp)"
cp -r models macros seeds snapshots data-tests project.yml profiles.yml "$WORK"
cd "$WORK"
"$BIN" build > /dev/null
"$BIN" run --watch > "$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK" "$LOG"' EXIT
wait_line() { # count of lines matching $1 reaches $2
  for _ in $(seq 1 300); do
    [ "$(grep -c "$1" "$LOG" || true)" -ge "$2" ] && return 0
    sleep 0.05
  done
  echo "timed out waiting for '$1'" >&2; cat "$LOG" >&2; exit 1
}
wait_line "Watching for changes" 1
n=0
for model in models/silver/slv_geo.sql models/gold/gld_top_posters.sql; do
  for i in 1 2 3 4 5; do
    n=$((n + 1))
    printf '\n-- save %d\n' "$i" >> "$model"
    wait_line "Rebuilt" "$n"
    wait_line "Watching for changes" $((n + 1))
  done
done
kill $PID; wait $PID 2>/dev/null || true
grep -o "Rebuilt [0-9.]* s" "$LOG" | awk '{print $2}' > times
printf 'save of a silver model (+ its gold children): %s s (median of 5)\n' "$(head -5 times | sort -n | sed -n 3p)"
printf 'save of a gold model:                         %s s (median of 5)\n' "$(tail -5 times | sort -n | sed -n 3p)"
echo "(release build; $(nproc) cores; embedded engine; example project)"
