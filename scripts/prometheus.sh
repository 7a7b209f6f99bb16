#!/usr/bin/env bash
# A throwaway Prometheus scraping a throwaway Pushgateway, on loopback, for the metrics tests.
#   scripts/prometheus.sh start DIR   -> prints `export RSDBT_TEST_PUSHGATEWAY=... RSDBT_TEST_PROMETHEUS=...`
#   scripts/prometheus.sh stop DIR
# Debian's `prometheus` and `prometheus-pushgateway` packages are installed when missing (root).
set -euo pipefail
cmd="$1" dir="$2"
root="$(cd "$(dirname "$0")/.." && pwd)"
case "$cmd" in
start)
  if ! command -v prometheus >/dev/null || ! command -v prometheus-pushgateway >/dev/null; then
    # No init system here: keep the packages' services from starting on install.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus prometheus-pushgateway >&2
    rm -f /usr/sbin/policy-rc.d
  fi
  mkdir -p "$dir/data"
  # Ports the system says are free (a random one may be some connection's ephemeral port).
  free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  gw_port="$(free_port)" prom_port="$(free_port)"
  cp "$root/examples/prometheus/alerts.yml" "$dir/alerts.yml"
  cat > "$dir/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: pushgateway
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:$gw_port"]
YML
  prometheus-pushgateway --web.listen-address="127.0.0.1:$gw_port" > "$dir/pushgateway.log" 2>&1 &
  echo $! > "$dir/pushgateway.pid"
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$prom_port" > "$dir/prometheus.log" 2>&1 &
  echo $! > "$dir/prometheus.pid"
  for _ in $(seq 1 150); do
    curl -sf -o /dev/null "http://127.0.0.1:$prom_port/-/ready" \
      && curl -sf -o /dev/null "http://127.0.0.1:$gw_port/-/ready" && break
    sleep 0.2
  done
  curl -sf -o /dev/null "http://127.0.0.1:$prom_port/-/ready" || { cat "$dir/prometheus.log" >&2; exit 1; }
  echo "export RSDBT_TEST_PUSHGATEWAY=http://127.0.0.1:$gw_port RSDBT_TEST_PROMETHEUS=http://127.0.0.1:$prom_port"
  ;;
stop)
  pids=()
  for p in prometheus pushgateway; do
    if [ -f "$dir/$p.pid" ]; then pids+=("$(cat "$dir/$p.pid")"); fi
  done
  kill "${pids[@]}" 2>/dev/null || true
  # Removed once both have exited (Prometheus flushes its data folder on the way out), as the
  # other servers' scripts do: each test run made a new folder under /tmp.
  for _ in $(seq 50); do
    kill -0 "${pids[@]}" 2>/dev/null || break
    sleep 0.1
  done
  rm -rf "$dir"
  ;;
esac
