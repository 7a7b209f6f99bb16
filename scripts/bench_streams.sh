#!/usr/bin/env bash
# Stream ingestion speed (release build; not part of CI): N JSON records of about 200 bytes
# (default 1,000,000) are produced to a topic of the Kafka-protocol broker scripts/kafka.sh
# starts, then an incremental bronze model reads them into a Delta table. Prints records/s,
# MB/s and peak RSS of that run, a second run after 10% more records (only those are read),
# an idle run, the latency of `run --watch-sources` from producing 1,000 records to the gold
# table rebuilt over them (median of 5), and the machine's load.
#   N=records PARTITIONS=p (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rsdbt/target}"
cargo build --release --locked -q --bin rsdbt --example produce
BIN="$CARGO_TARGET_DIR/release/rsdbt"
PRODUCE="$CARGO_TARGET_DIR/release/examples/produce"
N="${N:-1000000}"
PARTITIONS="${PARTITIONS:-2}"
WORK="$(mktemp -d)"
KAFKA_DIR="$(mktemp -d /tmp/rsdbt-kafka.XXXXXX)"
trap 'scripts/kafka.sh stop "$KAFKA_DIR"; rm -rf "$WORK"' EXIT
eval "$(scripts/kafka.sh start "$KAFKA_DIR")"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

events() { # first count → JSON lines of ~200 bytes
  python3 - "$1" "$2" <<'PY'
import json, sys
first, count = int(sys.argv[1]), int(sys.argv[2])
countries = ["France", "Japan", "Brazil", "Kenya", "Canada", "India"]
out = sys.stdout
for i in range(first, first + count):
    out.write(json.dumps({
        "event_id": i, "user_id": i % 50_000, "pin_id": i * 7 % 1_000_003,
        "country": countries[i % 6], "category": f"category {i % 40}",
        "created_at": f"2026-11-{i % 28 + 1:02d} {i % 24:02d}:{i % 60:02d}:00",
        "title": f"a pin about things number {i} " + "x" * (40 + i % 20),
    }) + "\n")
PY
}

events 0 "$N" > "$WORK/events.jsonl"
bytes=$(stat -c %s "$WORK/events.jsonl")
"$PRODUCE" "$RSDBT_TEST_KAFKA" clicks "$PARTITIONS" < "$WORK/events.jsonl" 2>/dev/null
mkdir -p "$WORK/p/models"
cat > "$WORK/p/project.yml" <<'YML'
name: bench_streams
profile: bench
YML
printf 'bench:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: warehouse\n      schema: main\n' > "$WORK/p/profiles.yml"
cat > "$WORK/p/models/sources.yml" <<YML
version: 2
sources:
  - name: events
    tables:
      - name: clicks
        external:
          kafka: {brokers: "$RSDBT_TEST_KAFKA", topic: clicks, format: json}
        columns:
          - {name: event_id, data_type: bigint}
          - {name: user_id, data_type: bigint}
          - {name: pin_id, data_type: bigint}
          - {name: country, data_type: varchar}
          - {name: category, data_type: varchar}
          - {name: created_at, data_type: timestamp}
          - {name: title, data_type: varchar}
YML
cat > "$WORK/p/models/brz_clicks.sql" <<'SQL'
{{ config(materialized='incremental') }}
select * from {{ source('events', 'clicks') }}
SQL
cat > "$WORK/p/models/slv_clicks.sql" <<'SQL'
{{ config(materialized='view') }}
select event_id, user_id, country, category, created_at from {{ ref('brz_clicks') }} where _error is null
SQL
cat > "$WORK/p/models/gld_clicks_by_country.sql" <<'SQL'
{{ config(materialized='table') }}
select country, count(*) as clicks, max(event_id) as last_event from {{ ref('slv_clicks') }} group by country
SQL

timed() { # label records bytes → runs rsdbt run, prints its figures
  python3 - "$WORK/p" "$BIN" "$1" "$2" "$3" <<'PY'
import os, sys, time
d, bin_, label, records, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.chdir(d)
    fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1)
    os.execv(bin_, [bin_, "run"])
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t
if status != 0:
    sys.exit(f"rsdbt run failed in {d}")
rate = f"{records / wall:10.0f} records/s {size / wall / 1e6:7.1f} MB/s" if records else " " * 39
print(f"{label:<34} {records:>9} records {wall:7.2f} s {rate} {usage.ru_maxrss / 1024:7.1f} MB peak")
PY
}
timed "first run (all records)" "$N" "$bytes"
more=$((N / 10))
events "$N" "$more" > "$WORK/more.jsonl"
"$PRODUCE" "$RSDBT_TEST_KAFKA" clicks "$PARTITIONS" < "$WORK/more.jsonl" 2>/dev/null
timed "second run (10% more)" "$more" "$(stat -c %s "$WORK/more.jsonl")"
timed "idle run (nothing new)" 0 0
# --watch-sources: from producing records to the gold table rebuilt over them.
python3 - "$WORK/p" "$BIN" "$PRODUCE" "$RSDBT_TEST_KAFKA" "$PARTITIONS" "$((N + more))" <<'PY'
import json, statistics, subprocess, sys, threading, time, queue
d, bin_, produce, broker, partitions, first = sys.argv[1:7]
first = int(first)
w = subprocess.Popen([bin_, "run", "--watch-sources", "--watch-interval", "0.1"], cwd=d,
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
lines = queue.Queue()
threading.Thread(target=lambda: [lines.put(l) for l in w.stdout], daemon=True).start()
def wait_for(text):
    while True:
        line = lines.get(timeout=120)
        if text in line:
            return line
wait_for("Watching for changes and new records")
latencies = []
for round_ in range(5):
    batch = "".join(json.dumps({"event_id": first + round_ * 1000 + i, "user_id": i, "pin_id": i,
                                "country": "Peru", "category": "c", "created_at": "2026-12-01 10:00:00",
                                "title": "t"}) + "\n" for i in range(1000))
    t = time.perf_counter()
    subprocess.run([produce, broker, "clicks", partitions], input=batch, text=True, check=True,
                   stderr=subprocess.DEVNULL)
    wait_for("after new records in events.clicks")
    latencies.append(time.perf_counter() - t)
    wait_for("Watching for changes and new records")
w.kill()
print(f"{'--watch-sources, produce → gold':<34} median {statistics.median(latencies):.2f} s "
      f"(min {min(latencies):.2f}, max {max(latencies):.2f}) over 5 batches of 1,000 records")
PY
rows=$(cd "$WORK/p" && "$BIN" show --inline "select count(*) as n, count(distinct event_id) as d from {{ ref('brz_clicks') }}" --output json | python3 -c 'import json,sys; r=json.load(sys.stdin)["show"][0]; print(r["n"], r["d"])')
echo "rows in bronze (total, distinct event ids): $rows (expected $((N + more + 5000)))"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
