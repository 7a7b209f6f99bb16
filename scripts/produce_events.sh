#!/usr/bin/env bash
# Sends COUNT engagement events on the example's pins to the `pin_events` topic (or TOPIC;
# created with 2 partitions if missing), event ids FIRST.. (default 0), through `cargo run
# --example produce` (or the program in $PRODUCE). For the example's `stream` target:
#   eval "$(scripts/kafka.sh start /tmp/rsdbt-kafka)"      # or any broker
#   scripts/produce_events.sh "$RSDBT_TEST_KAFKA" 500
#   RSDBT_KAFKA_BROKERS="$RSDBT_TEST_KAFKA" cargo run -- build -t stream
set -euo pipefail
cd "$(dirname "$0")/.."
broker="$1" count="$2" first="${3:-0}" topic="${4:-pin_events}"
produce() { if [ -n "${PRODUCE:-}" ]; then "$PRODUCE" "$@"; else cargo run -q --example produce -- "$@"; fi; }
python3 - "$first" "$count" <<'PY' | produce "$broker" "$topic" 2
import csv, json, sys
first, count = int(sys.argv[1]), int(sys.argv[2])
pins = [r for r in csv.DictReader(open("seeds/pins.csv")) if r["pin_id"].strip().isdigit()]
actions = ["save", "click", "view", "VIEW"]
for i in range(first, first + count):
    pin = pins[(i * 7919) % len(pins)]
    print(json.dumps({
        "event_id": i,
        "pin_id": int(pin["pin_id"]),
        "user_id": (i * 31) % 2000 + 1,
        "action": actions[i % len(actions)],
        "occurred_at": f"2026-11-{i % 28 + 1:02d} {i % 24:02d}:{i % 60:02d}:00",
    }))
PY
