#!/usr/bin/env bash
# Runs real dbt packages' integration projects on rsdbt, and on dbt-core when a dbt is at hand,
# and prints a conformance table: nodes passing on each, row counts of the built relations,
# and compiled SQL that differs.
#
#   scripts/compat.sh PATH...        PATH: a checkout of a package (dbt-utils, dbt-date,
#                                    dbt-project-evaluator, dbt-audit-helper...) or of a project
#
# The packages' code never enters this repository: each PATH is copied to a temp folder and
# built there. Environment:
#   RSDBT        the rsdbt binary (default: cargo build, then $CARGO_TARGET_DIR/debug/rsdbt)
#   DBT          dbt-core's `dbt` with dbt-duckdb (default: ~/.cache/rsdbt/dbt/bin/dbt if
#                present; `python3 -m venv ~/.cache/rsdbt/dbt && ~/.cache/rsdbt/dbt/bin/pip
#                install "dbt-core~=1.10.0" "dbt-duckdb~=1.9.0"` makes one; newer dbt-core
#                releases fetch a parser from GitHub while installing). Without it only
#                rsdbt's side runs.
#   COMPAT_HUB   a package index for hub packages (DBT_PACKAGE_HUB_URL's layout, or a folder
#                of package checkouts: see README "Packages"); default: the PATHs given, so a
#                project needing dbt_utils finds the dbt-utils checkout passed beside it.
#   COMPAT_KEEP  keep the work folders (printed) instead of deleting them.
#   COMPAT_DBT_FROM  a kept work folder of an earlier run: compare with its dbt results
#                instead of running dbt again (dbt's side does not change between rsdbt builds).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rsdbt/target}"
if [ -z "${RSDBT:-}" ]; then
  (cd "$here" && cargo build --quiet --bin rsdbt)
  RSDBT="$CARGO_TARGET_DIR/debug/rsdbt"
fi
DBT="${DBT:-$HOME/.cache/rsdbt/dbt/bin/dbt}"
[ -x "$DBT" ] || DBT=""
[ $# -gt 0 ] || { echo "usage: scripts/compat.sh PATH..." >&2; exit 2; }

work="$(mktemp -d /tmp/rsdbt-compat.XXXXXX)"
[ -n "${COMPAT_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
echo "work folder: $work"

# Hub packages resolve through a folder of checkouts: <hub>/<name>/ for each PATH given.
hub="${COMPAT_HUB:-$work/hub}"
if [ -z "${COMPAT_HUB:-}" ]; then
  mkdir -p "$hub"
  for p in "$@"; do
    name="$(sed -n 's/^name: *["'"'"']\{0,1\}\([A-Za-z0-9_]*\).*/\1/p' "$p/dbt_project.yml" | head -1)"
    [ -n "$name" ] && ln -sfn "$(cd "$p" && pwd)" "$hub/$name"
  done
fi

# The same macro on both tools: each built relation's row count, printed as `COUNT id n`.
counts_macro='{% macro compat_row_counts() %}
{%- for node in graph.nodes.values() -%}
{%- if node.resource_type in ["model", "seed", "snapshot"] and node.config.materialized != "ephemeral" -%}
{%- set rel = adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias) -%}
{%- if rel -%}
{%- set res = run_query("select count(*) from " ~ rel) -%}
{{ print("COUNT " ~ node.unique_id ~ " " ~ res.columns[0].values()[0]) }}
{%- endif -%}
{%- endif -%}
{%- endfor -%}
{% endmacro %}'

# profile <project dir> <tool>: a profiles.yml for the project's profile name.
profile() {
  local dir="$1" tool="$2" name
  name="$(sed -n 's/^profile: *["'"'"']\{0,1\}\([A-Za-z0-9_]*\).*/\1/p' "$dir/dbt_project.yml" | head -1)"
  if [ "$tool" = rsdbt ]; then
    printf '%s:\n  target: compat\n  outputs:\n    compat:\n      type: datafusion\n      path: ./warehouse\n      database: compat\n      schema: main\n      threads: 2\n' "$name"
  else
    printf '%s:\n  target: compat\n  outputs:\n    compat:\n      type: duckdb\n      path: ./compat.duckdb\n      database: compat\n      schema: main\n      threads: 2\n' "$name"
  fi > "$dir/profiles.yml"
}

# run_tool <tool> <binary> <project dir>: deps, build, compile, row counts; logs beside.
run_tool() {
  local tool="$1" bin="$2" dir="$3" log="$3/compat-$1.log"
  profile "$dir" "$tool"
  local macros
  macros="$(sed -n 's/^macro-paths: *\[ *["'"'"']\([^"'"'"']*\).*/\1/p' "$dir/dbt_project.yml" | head -1)"
  mkdir -p "$dir/${macros:-macros}"
  printf '%s\n' "$counts_macro" > "$dir/${macros:-macros}/compat_row_counts.sql"
  if [ "$tool" = dbt ]; then
    # dbt-core reaches the hub over the network only: point its hub packages at the same
    # checkouts as `local:` packages.
    python3 - "$dir" "$hub" <<'PY'
import os, re, sys
d, hub = sys.argv[1], sys.argv[2]
# The project's and its local packages' (the copy's root, for a package's integration project).
for base in {d, os.path.dirname(d)}:
  for root, dirs, files in os.walk(base):
    dirs[:] = [x for x in dirs if x not in ("dbt_packages", "target", ".git")]
    for f in ("packages.yml", "dependencies.yml"):
        if f not in files:
            continue
        p = os.path.join(root, f)
        text = open(p).read()
        text = re.sub(r"-\s*package:\s*['\"]?[\w-]+/(\w+)['\"]?\s*\n\s*version:[^\n]*",
                      lambda m: f"- local: {hub}/{m.group(1)}", text)
        open(p, "w").write(text)
lock = os.path.join(d, "package-lock.yml")
if os.path.exists(lock):
    os.remove(lock)
PY
  fi
  (
    cd "$dir"
    export DBT_PROFILES_DIR="$dir" DBT_PACKAGE_HUB_URL="$hub" DBT_SEND_ANONYMOUS_USAGE_STATS=false
    "$bin" deps > "$log" 2>&1 || true
    "$bin" build --full-refresh >> "$log" 2>&1 || true
    cp target/run_results.json "compat-$tool-run_results.json" 2>/dev/null \
      || cp target/rsdbt/run_results.json "compat-$tool-run_results.json" 2>/dev/null || true
    "$bin" run-operation compat_row_counts 2>&1 | grep -a 'COUNT ' | sed 's/.*COUNT /COUNT /' > "compat-$tool-counts.txt" || true
    "$bin" compile >> "$log" 2>&1 || true
  )
}

rows=()
for path in "$@"; do
  path="$(cd "$path" && pwd)"
  pkg="$(basename "$path")"
  projects=()
  for sub in integration_tests integration_tests_2; do
    [ -f "$path/$sub/dbt_project.yml" ] && projects+=("$sub")
  done
  [ ${#projects[@]} -gt 0 ] || projects=(.)
  for sub in "${projects[@]}"; do
    label="$pkg${sub:+/$sub}"; label="${label%/.}"
    tools=(rsdbt); [ -n "$DBT" ] && [ -z "${COMPAT_DBT_FROM:-}" ] && tools+=(dbt)
    for tool in "${tools[@]}"; do
      dest="$work/$tool/$pkg"
      if [ ! -d "$dest" ]; then
        mkdir -p "$dest"
        tar -C "$path" --exclude=.git --exclude=dbt_packages --exclude=target --exclude=logs \
          -cf - . | tar -C "$dest" -xf -
      fi
      if [ "$tool" = rsdbt ]; then run_tool rsdbt "$RSDBT" "$dest/$sub"; else run_tool dbt "$DBT" "$dest/$sub"; fi
    done
    dbt_dir="${DBT:+$work/dbt/$pkg/$sub}"
    [ -n "${COMPAT_DBT_FROM:-}" ] && dbt_dir="$COMPAT_DBT_FROM/dbt/$pkg/$sub"
    rows+=("$label|$work/rsdbt/$pkg/$sub|$dbt_dir")
  done
done

python3 "$here/scripts/compat_report.py" "${rows[@]}"
