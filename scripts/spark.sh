#!/usr/bin/env bash
# A throwaway Apache Spark 4 Spark Connect server on loopback for the Spark target's smoke
# tests: PyPI's pyspark ships Spark's jars, the Connect server's among them; Java 17 runs it.
# Local mode (`local[2]`), a Hive catalog in Derby under DIR, Parquet tables. Delta on Spark
# needs the delta-spark jars from Maven Central, which this machine cannot reach.
#   scripts/spark.sh start DIR   -> prints `export RSDBT_TEST_APACHE_SPARK=sc://127.0.0.1:PORT`
#   scripts/spark.sh stop DIR
set -euo pipefail
cmd="$1" dir="$2"
venv="${RSDBT_PYSPARK_VENV:-$HOME/.cache/rsdbt/pyspark}"
version="4.0.1"
home() { "$venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'; }
case "$cmd" in
start)
  command -v java >/dev/null 2>&1 || { echo "Apache Spark needs Java 17 (java is not on PATH)" >&2; exit 1; }
  if [ ! -x "$venv/bin/python" ] || [ "$("$venv/bin/python" -c 'import pyspark; print(pyspark.__version__)' 2>/dev/null)" != "$version" ]; then
    rm -rf "$venv"
    { python3 -m venv "$venv" && "$venv/bin/pip" install -q "pyspark==$version"; } >&2 \
      || { rm -rf "$venv"; echo "pyspark could not be installed" >&2; exit 1; }
  fi
  spark_home="$(home)"
  mkdir -p "$dir"
  for _attempt in 1 2 3; do
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    # The JVM starts in DIR: Derby's metastore_db and Spark's scratch files stay there.
    (cd "$dir" && SPARK_HOME="$spark_home" SPARK_LOCAL_IP=127.0.0.1 exec "$spark_home/bin/spark-submit" \
      --class org.apache.spark.sql.connect.service.SparkConnectServer \
      --master 'local[2]' \
      --conf spark.connect.grpc.binding.address=127.0.0.1 \
      --conf "spark.connect.grpc.binding.port=$port" \
      --conf spark.sql.catalogImplementation=hive \
      --conf "spark.sql.warehouse.dir=$dir/warehouse" \
      --conf "spark.driver.extraJavaOptions=-Dderby.system.home=$dir" \
      --conf spark.ui.enabled=false \
      --driver-memory 1g \
      spark-internal) > "$dir/spark.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
      grep -q "Spark Connect server started" "$dir/spark.log" 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null && grep -q "Spark Connect server started" "$dir/spark.log"; then
      echo "$pid" > "$dir/spark.pid"
      echo "export RSDBT_TEST_APACHE_SPARK=sc://127.0.0.1:$port"
      exit 0
    fi
    kill "$pid" 2>/dev/null || true
  done
  echo "the Apache Spark Connect server could not start (see $dir/spark.log)" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/spark.pid" ]; then
    pid="$(cat "$dir/spark.pid")"
    # spark-submit execs the JVM, whose children (none in local mode) go with it.
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
  ;;
esac
