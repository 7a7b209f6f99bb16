#!/usr/bin/env bash
# Reading a PostgreSQL table through a model on the embedded engine (an `external:
# {connection: ...}` source): a 1,000,000-row table (ints, text, numeric, timestamptz, date,
# bool) in a throwaway local server. Prints the best of 3 wall times of
#   - psql's `\copy (select * from t) to /dev/null` (the floor: the server's own text output),
#   - a model that reads every column and aggregates (`rsdbt run`, whole process),
#   - a model that copies the table into a Delta table (read + write),
# with rows per second. Release build (first build takes a while). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rsdbt/target}"
ROWS="${ROWS:-1000000}"
cargo build --release --locked -q
BIN="$CARGO_TARGET_DIR/release/rsdbt"
WORK="$(mktemp -d)" PGDIR="$(mktemp -d)"
ROOT="$(pwd)"
trap '"$ROOT/scripts/pg.sh" stop "$PGDIR"; rm -rf "$WORK"' EXIT
PORT="${PORT:-55498}"
eval "$(scripts/pg.sh start "$PGDIR" "$PORT")"
PSQL="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/psql"
q() { "$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAt "$@"; }
q -c "create table big as select g as id, 'customer ' || g as name, (g % 10000) / 100.0 as amount,
  timestamptz '2024-01-01' + g * interval '1 second' as created_at, date '2024-01-01' + g % 365 as day,
  g % 2 = 0 as active from generate_series(1, $ROWS) g;"
q -c "vacuum analyze big"
mkdir -p "$WORK/models"
cat > "$WORK/project.yml" <<'YML'
name: bench
profile: bench
YML
cat > "$WORK/profiles.yml" <<YML
bench:
  target: dev
  outputs:
    dev:
      type: datafusion
      path: warehouse
      schema: main
      connections:
        app: {type: postgres, host: 127.0.0.1, port: $PORT, user: postgres, dbname: postgres, sslmode: disable}
YML
cat > "$WORK/models/sources.yml" <<'YML'
version: 2
sources:
  - name: app
    schema: public
    external: {connection: app}
    tables: [{name: big}]
YML
cat > "$WORK/models/big_summary.sql" <<'SQL'
{{ config(materialized='table') }}
select count(*) as n, sum(length(name)) as chars, sum(amount) as amount, max(created_at) as last,
       count(distinct day) as days, sum(case when active then 1 else 0 end) as active
from {{ source('app', 'big') }}
SQL
cat > "$WORK/models/big_copy.sql" <<'SQL'
{{ config(materialized='table') }}
select * from {{ source('app', 'big') }}
SQL
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
best() { local b=999999 t; for _ in 1 2 3; do t=$(secs "$@"); b=$(echo "if ($t < $b) $t else $b" | bc); done; echo "$b"; }
line() { printf '%-44s %6.2f s  %6.2f M rows/s\n' "$1" "$2" "$(echo "$ROWS / $2 / 1000000" | bc -l)"; }
line 'psql \copy (select * from big) to /dev/null' "$(best q -c '\copy (select * from big) to /dev/null')"
cd "$WORK"
line 'rsdbt run -s big_summary (all columns read)' "$(best "$BIN" run -s big_summary)"
line 'rsdbt run -s big_copy (into a Delta table)' "$(best "$BIN" run -s big_copy)"
echo "($ROWS rows; release build; $(nproc) cores; local PostgreSQL $(ls /usr/lib/postgresql | sort -V | tail -n 1), fsync off)"
