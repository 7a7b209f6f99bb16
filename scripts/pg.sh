#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on 127.0.0.1 for the tests, and prints the connection
# settings as shell exports. Usage: eval "$(scripts/pg.sh start DIR PORT)"; scripts/pg.sh stop DIR
# The server refuses to run as root: as root, the cluster belongs to the `postgres` user.
set -euo pipefail
cmd=$1 dir=$2 port=${3:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] || { echo "echo 'PostgreSQL server binaries not found (apt-get install postgresql)' >&2; false"; exit 0; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
case $cmd in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_pg "'$bin/initdb' -D '$dir/data' -A trust -U postgres --no-sync" > "$dir/initdb.log" 2>&1
    # pg_stat_statements (preloaded below) lets the tests see the SQL the server received.
    # A throwaway CA and a server certificate for 127.0.0.1 signed by it, so the TLS tests can
    # connect with sslmode require and verify-full.
    as_pg "cd '$dir' && printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > server.ext \
      && openssl req -new -x509 -days 2 -nodes -subj /CN=rsdbt-test-ca -keyout ca.key -out ca.crt \
      && openssl req -new -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr \
      && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt \
      && chmod 600 server.key" > "$dir/openssl.log" 2>&1
    as_pg "'$bin/pg_ctl' -D '$dir/data' -o \"-p $port -c listen_addresses=127.0.0.1 -k '$dir' -c fsync=off -c max_connections=200 -c shared_preload_libraries=pg_stat_statements -c ssl=on -c ssl_cert_file='$dir/server.crt' -c ssl_key_file='$dir/server.key'\" -l '$dir/server.log' -w start" > /dev/null
    echo "export RSDBT_TEST_PG_HOST=127.0.0.1 RSDBT_TEST_PG_PORT=$port RSDBT_TEST_PG_USER=postgres RSDBT_TEST_PG_SSLROOTCERT=$dir/ca.crt"
    ;;
  stop)
    as_pg "'$bin/pg_ctl' -D '$dir/data' -m immediate stop" > /dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
esac
