#!/usr/bin/env bash
# Throwaway local PostgreSQL for `make run` / `make test`.
#
#   pg.sh start DIR PORT   create (if needed) and start a cluster, print its URL
#   pg.sh stop  DIR        stop the cluster (no-op when nothing runs)
#   pg.sh url   DIR PORT   print the URL only
#   pg.sh pid   DIR        print the running server's (postmaster's) pid
#
# The cluster lives in DIR/data. As root the server runs as the `postgres`
# user; if that user cannot reach DIR (e.g. under /root), the data dir goes
# to /tmp/alipay-gw-pg-<hash of DIR> and its path is recorded in DIR/datadir.
# Only the URL goes to stdout; all messages go to stderr.
set -euo pipefail
umask 022

DB=gateway
SRV_USER=postgres # server user when invoked as root

# Keep stdout for the URL only; everything else goes to stderr.
exec 3>&1 1>&2

die() { echo "pg.sh: $*" >&2; exit 1; }
log() { echo "pg.sh: $*" >&2; }

usage() {
  die "usage: pg.sh start DIR PORT | pg.sh stop DIR | pg.sh url DIR PORT | pg.sh pid DIR"
}

# Locate the server binaries (PG_BINDIR overrides).
find_bindir() {
  if [[ -n ${PG_BINDIR:-} ]]; then
    echo "$PG_BINDIR"
  elif [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then
    echo /usr/lib/postgresql/15/bin
  elif command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
    pg_config --bindir
  elif command -v initdb >/dev/null; then
    dirname "$(command -v initdb)"
  else
    die "cannot find PostgreSQL server binaries (set PG_BINDIR)"
  fi
}

check_port() {
  if ! [[ $1 =~ ^[0-9]+$ ]] || ((10#$1 < 1 || 10#$1 > 65535)); then
    die "invalid port: $1"
  fi
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# Superuser role created by initdb: the OS user that ran it.
role() { if is_root; then echo "$SRV_USER"; else id -un; fi; }

url() { echo "postgres://$(role)@127.0.0.1:$1/$DB?sslmode=disable" >&3; }

# Run a command as the server user. Closes fds 3 and 9 so a started
# postmaster never holds our stdout (command substitution) or the lock.
srv() {
  if is_root; then
    runuser -u "$SRV_USER" -- "$@" 3>&- 9>&-
  else
    "$@" 3>&- 9>&-
  fi
}

# Data directory for DIR (without creating anything).
datadir_of() {
  if [[ -f $1/datadir ]]; then cat "$1/datadir"; else echo "$1/data"; fi
}

# Port of the server running on data dir $1, or empty.
running_port() {
  if srv "$BIN/pg_ctl" status -D "$1" >/dev/null 2>&1; then
    sed -n 4p "$1/postmaster.pid"
  fi
}

# Is something (anything) accepting TCP connections on 127.0.0.1:$1?
port_busy() {
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash
  timeout 3 bash -c 'exec 4<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# As root: pick and prepare a data dir the server user can own and reach.
prepare_root_datadir() {
  local dir=$1 data
  if [[ -f $dir/datadir ]]; then
    data=$(cat "$dir/datadir")
  elif runuser -u "$SRV_USER" -- test -x "$dir"; then
    data=$dir/data
  else
    data=/tmp/alipay-gw-pg-$(printf '%s' "$dir" | sha256sum | cut -c1-12)
    log "$SRV_USER cannot traverse $dir; using $data"
    echo "$data" >"$dir/datadir"
  fi
  if [[ ! -e $data ]]; then
    mkdir -m 700 "$data"
    chown "$SRV_USER:" "$data"
  fi
  # Refuse symlinks / foreign owners (matters for the shared /tmp path).
  [[ -d $data && ! -L $data ]] || die "$data is not a directory"
  [[ $(stat -c %U "$data") == "$SRV_USER" ]] || die "$data is not owned by $SRV_USER"
  echo "$data"
}

cmd_start() {
  local dir=$1 port=$2 data sock cur
  mkdir -p "$dir"
  exec 9>>"$dir/.lock"
  flock -w 120 9 || die "timed out waiting for lock on $dir"

  if is_root; then
    data=$(prepare_root_datadir "$dir")
  else
    data=$(datadir_of "$dir")
  fi

  if [[ ! -f $data/PG_VERSION ]]; then
    port_busy "$port" && die "port $port on 127.0.0.1 is already in use by another process"
    log "initdb $data"
    srv "$BIN/initdb" -D "$data" -E UTF8 --locale=C \
      --auth-local=trust --auth-host=trust --no-instructions >&2
    # Per-start settings live in pg_sh.conf (rewritten on every start).
    printf "\ninclude_if_exists = 'pg_sh.conf'\n" >>"$data/postgresql.conf"
  fi

  cur=$(running_port "$data")
  if [[ -n $cur ]]; then
    [[ $cur == "$port" ]] || die "server for $dir already runs on port $cur (not $port); run: pg.sh stop $dir"
    log "already running on port $port ($data)"
  else
    port_busy "$port" && die "port $port on 127.0.0.1 is already in use by another process"
    # Unix socket in the data dir, unless the path is too long for sun_path.
    sock=$data
    ((${#sock} + 25 <= 107)) || sock=/tmp
    {
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $port"
      echo "unix_socket_directories = '${sock//\'/\'\'}'"
    } >"$data/pg_sh.conf"
    is_root && chown "$SRV_USER:" "$data/pg_sh.conf"
    log "starting on 127.0.0.1:$port (log: $data/server.log)"
    if ! srv "$BIN/pg_ctl" start -w -t 60 -D "$data" -l "$data/server.log" >&2; then
      tail -n 20 "$data/server.log" >&2 || true
      grep -q 'Address already in use' "$data/server.log" 2>/dev/null &&
        die "port $port on 127.0.0.1 is already in use by another process"
      die "server failed to start (see $data/server.log)"
    fi
  fi

  # Create the application database if missing (over TCP, trust auth).
  local conn
  conn="host=127.0.0.1 port=$port user=$(role) dbname=postgres sslmode=disable"
  if [[ -z $("$BIN/psql" -X -At -d "$conn" -c "select 1 from pg_database where datname = '$DB'") ]]; then
    log "creating database $DB"
    "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$conn" -c "create database $DB" >&2
  fi
  url "$port"
}

cmd_stop() {
  local dir=$1 data
  [[ -d $dir ]] || return 0
  data=$(datadir_of "$dir")
  [[ -f $data/PG_VERSION ]] || return 0
  exec 9>>"$dir/.lock"
  flock -w 120 9 || die "timed out waiting for lock on $dir"
  if [[ -n $(running_port "$data") ]]; then
    log "stopping server ($data)"
    srv "$BIN/pg_ctl" stop -m fast -w -D "$data" >&2
  fi
}

main() {
  (($# >= 2)) || usage
  local sub=$1 dir
  # Absolute DIR, then leave the caller's cwd (the server user may not read it).
  dir=$(realpath -m -- "$2")
  cd /
  # Ignore the caller's libpq/server environment; we pass everything explicitly.
  local v
  for v in $(compgen -e); do
    [[ $v == PG* && $v != PG_BINDIR ]] && unset "$v"
  done
  case $sub in
    start)
      (($# == 3)) || usage
      check_port "$3"
      BIN=$(find_bindir)
      cmd_start "$dir" "$((10#$3))"
      ;;
    stop)
      (($# == 2)) || usage
      BIN=$(find_bindir)
      cmd_stop "$dir"
      ;;
    url)
      (($# == 3)) || usage
      check_port "$3"
      url "$((10#$3))"
      ;;
    pid)
      (($# == 2)) || usage
      BIN=$(find_bindir)
      local data
      data=$(datadir_of "$dir")
      [[ -n $(running_port "$data") ]] || die "no server running on $data"
      head -n 1 "$data/postmaster.pid" >&3
      ;;
    *) usage ;;
  esac
}

main "$@"
