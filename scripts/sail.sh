#!/usr/bin/env bash
# A throwaway Spark Connect server on loopback for the Spark target's tests and benchmarks:
# Sail (PyPI's pysail, a Spark-compatible engine in Rust), installed once into a cached venv,
# started in its local-cluster mode (a driver and two workers, over loopback).
#   scripts/sail.sh start DIR   -> prints `export RSDBT_TEST_SPARK=sc://127.0.0.1:PORT`
#   scripts/sail.sh stop DIR
set -euo pipefail
cmd="$1" dir="$2"
venv="${RSDBT_SAIL_VENV:-$HOME/.cache/rsdbt/sail}"
version="0.7.2"
case "$cmd" in
start)
  if [ ! -x "$venv/bin/sail" ] || [ "$("$venv/bin/sail" --version 2>/dev/null)" != "sail $version" ]; then
    rm -rf "$venv"
    { python3 -m venv "$venv" && "$venv/bin/pip" install -q "pysail==$version"; } >&2 \
      || { rm -rf "$venv"; echo "pysail could not be installed" >&2; exit 1; }
  fi
  mkdir -p "$dir"
  for _attempt in 1 2 3 4 5; do
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    SAIL_MODE=local-cluster SAIL_CLUSTER__WORKER_INITIAL_COUNT=2 \
      "$venv/bin/sail" spark server --ip 127.0.0.1 --port "$port" -C "$dir" > "$dir/sail.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$pid" > "$dir/sail.pid"
      echo "export RSDBT_TEST_SPARK=sc://127.0.0.1:$port"
      exit 0
    fi
  done
  echo "the Spark Connect server (Sail) could not start (see $dir/sail.log)" >&2
  exit 1
  ;;
stop)
  [ -f "$dir/sail.pid" ] && kill "$(cat "$dir/sail.pid")" 2>/dev/null || true
  rm -rf "$dir"
  ;;
esac
