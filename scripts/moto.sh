#!/usr/bin/env bash
# A throwaway S3 emulator (moto's server, from PyPI, installed once into a cached venv) on
# loopback, for the s3:// tests and the crash trials; boto3 comes with it.
#   scripts/moto.sh start DIR   -> prints `export RSDBT_TEST_S3_ENDPOINT=... RSDBT_TEST_S3_PYTHON=...`
#   scripts/moto.sh stop DIR
set -euo pipefail
cmd="$1" dir="$2"
moto="${RSDBT_MOTO_VENV:-$HOME/.cache/rsdbt/moto}"
case "$cmd" in
start)
  if [ ! -x "$moto/bin/moto_server" ]; then
    { python3 -m venv "$moto" && "$moto/bin/pip" install -q "moto[server]==5.2.*"; } >&2 \
      || { rm -rf "$moto"; echo "moto could not be installed" >&2; exit 1; }
  fi
  mkdir -p "$dir"
  # A port the system says is free (a random one may be some connection's ephemeral port),
  # and another try if the server still could not bind it.
  for _attempt in 1 2 3 4 5; do
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$moto/bin/moto_server" -H 127.0.0.1 -p "$port" > "$dir/moto.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
      curl -s -o /dev/null "http://127.0.0.1:$port/" && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$pid" > "$dir/moto.pid"
      echo "export RSDBT_TEST_S3_ENDPOINT=http://127.0.0.1:$port RSDBT_TEST_S3_PYTHON=$moto/bin/python"
      exit 0
    fi
  done
  echo "moto could not start (see $dir/moto.log)" >&2
  exit 1
  ;;
stop)
  [ -f "$dir/moto.pid" ] && kill "$(cat "$dir/moto.pid")" 2>/dev/null || true
  rm -rf "$dir"
  ;;
esac
