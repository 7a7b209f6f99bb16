#!/usr/bin/env bash
# A throwaway Kafka-protocol broker on loopback for the stream tests and benchmarks: Tansu
# (crates.io, Apache-2.0, a Kafka-compatible broker in Rust), built once with `cargo install`
# into a cache outside the clone, its topics in memory (the `dynostore` feature: object_store
# storage, memory:// among it).
#   scripts/kafka.sh start DIR   -> prints `export RSDBT_TEST_KAFKA=127.0.0.1:PORT`
#   scripts/kafka.sh stop DIR
set -euo pipefail
cmd="$1" dir="$2"
root="${RSDBT_TANSU_ROOT:-$HOME/.cache/rsdbt/tools/tansu}"
version="0.6.0"
features="dynostore"
case "$cmd" in
start)
  if [ ! -x "$root/bin/tansu" ] || [ "$(cat "$root/version" 2>/dev/null)" != "$version $features" ]; then
    echo "building the Tansu broker $version once (cargo install, into $root)" >&2
    cargo install tansu --version "$version" --features "$features" --locked --root "$root" \
      --target-dir "${RSDBT_TANSU_BUILD:-$HOME/.cache/rsdbt/tools/tansu-build}" >&2 \
      || { echo "Tansu could not be built" >&2; exit 1; }
    echo "$version $features" > "$root/version"
  fi
  mkdir -p "$dir"
  for _attempt in 1 2 3 4 5; do
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$root/bin/tansu" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "memory://tansu/" > "$dir/tansu.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$pid" > "$dir/tansu.pid"
      echo "export RSDBT_TEST_KAFKA=127.0.0.1:$port"
      exit 0
    fi
  done
  echo "the Kafka broker (Tansu) could not start (see $dir/tansu.log)" >&2
  exit 1
  ;;
stop)
  [ -f "$dir/tansu.pid" ] && kill "$(cat "$dir/tansu.pid")" 2>/dev/null || true
  rm -rf "$dir"
  ;;
esac
