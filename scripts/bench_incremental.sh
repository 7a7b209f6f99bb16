#!/usr/bin/env bash
# Incremental vs full refresh on the embedded engine: a 5,000,000-row source table gains 1%
# new rows; prints the time of the incremental run (the whole `rsdbt run` process) next to a
# full refresh, for a merge model and an append model that copy the rows as they are, and for
# a silver model that does typical work (dedupe by key with a window, casts, string cleanup).
# Release build (first build takes a while). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rsdbt/target}"
ROWS="${ROWS:-5000000}"
cargo build --release --locked -q
BIN="$CARGO_TARGET_DIR/release/rsdbt"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/models"
cat > "$WORK/project.yml" <<'YML'
name: bench
profile: bench
YML
cat > "$WORK/profiles.yml" <<'YML'
bench:
  target: dev
  outputs:
    dev: {type: datafusion, path: warehouse, schema: main, threads: 2}
YML
cat > "$WORK/models/source_events.sql" <<'SQL'
{{ config(materialized='table') }}
select value as id, value % 1000 as customer_id, (value * 7) % 10000 / 100.0 as amount,
       ' event ' || cast(value as varchar) as label,
       to_timestamp(1704067200 + value) as updated_at
from generate_series(1, {{ var('rows') }})
SQL
cat > "$WORK/models/events_silver.sql" <<'SQL'
{{ config(materialized='incremental', unique_key='id') }}
with src as (
  select * from {{ ref('source_events') }}
  {% if is_incremental() %} where id > (select max(id) from {{ this }}) {% endif %}
), ranked as (
  select *, row_number() over (partition by id order by updated_at desc) as rn from src
)
select id, customer_id, round(amount * 1.2, 2) as amount_gross, upper(trim(label)) as label,
       date_trunc('day', updated_at) as day, length(trim(label)) as label_len
from ranked where rn = 1
SQL
for kind in merge append; do
  key=""; [ "$kind" = merge ] && key=", unique_key='id'"
  cat > "$WORK/models/events_$kind.sql" <<SQL
{{ config(materialized='incremental'$key) }}
select * from {{ ref('source_events') }}
{% if is_incremental() %} where id > (select max(id) from {{ this }}) {% endif %}
SQL
done
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
cd "$WORK"
more=$((ROWS + ROWS / 100))
"$BIN" run -s source_events --vars "{rows: $ROWS}" > /dev/null
printf '%-8s %14s %14s %8s\n' model full_refresh incremental ratio
for kind in merge append silver; do
  "$BIN" run -s source_events --vars "{rows: $ROWS}" > /dev/null
  full=$(secs "$BIN" run -s "events_$kind" --full-refresh --vars "{rows: $ROWS}")
  "$BIN" run -s source_events --vars "{rows: $more}" > /dev/null
  inc=$(secs "$BIN" run -s "events_$kind" --vars "{rows: $more}")
  printf '%-8s %12.2f s %12.2f s %7.1f%%\n' "$kind" "$full" "$inc" "$(echo "100 * $inc / $full" | bc -l)"
done
echo "($ROWS rows, +1% new rows; release build; $(nproc) cores)"
