#!/usr/bin/env bash
# Starts a private PostgreSQL cluster from Debian's packages for the store tests.
#
#   eval "$(.ci/debian-postgres.sh)"        # exports CREDSYNC_TEST_PG_URL (and CREDSYNC_TEST_PG_STOP)
#   npx vitest run test/stores/postgres.test.ts
#   "$CREDSYNC_TEST_PG_STOP"                # stops the server (waited for) and removes its directory
#
# - Installs Debian's `postgresql` package when no pg_ctl is found under /usr/lib/postgresql/*/bin.
# - initdb refuses to run as root: as root, initdb and pg_ctl run as the `postgres` user (runuser).
# - The cluster lives in $CREDSYNC_PG_DIR (default ${TMPDIR:-/tmp}/credsync-debian-pg), listens on
#   127.0.0.1 on a free port (or $CREDSYNC_PG_PORT), with its unix socket inside that directory and
#   scram-sha-256 password authentication over TCP.
# - Idempotent-ish: run again while the cluster is up and it prints the same exports; if the directory
#   holds a stopped cluster, it is started again.
# Only the export lines go to stdout; progress and errors go to stderr. Any failure exits non-zero.
set -euo pipefail

say() { printf '[debian-postgres] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

BASE="${CREDSYNC_PG_DIR:-${TMPDIR:-/tmp}/credsync-debian-pg}"
DATA="$BASE/data"
SOCK="$BASE/sock"
LOG="$BASE/server.log"
STOP="$BASE/stop.sh"
ENVF="$BASE/env.sh"

find_bindir() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] || continue
    # highest major version wins
    if [ -z "$best" ] || [ "$(basename "$(dirname "$d")")" -gt "$(basename "$(dirname "$best")")" ] 2>/dev/null; then best="$d"; fi
  done
  printf '%s' "$best"
}

BINDIR="$(find_bindir)"
if [ -z "$BINDIR" ]; then
  [ "$(id -u)" -eq 0 ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin and not root to install them"
  say "installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2 || die "apt-get update failed"
  apt-get install -y --no-install-recommends postgresql >&2 || die "apt-get install postgresql failed"
  BINDIR="$(find_bindir)"
  [ -n "$BINDIR" ] || die "postgresql installed but no pg_ctl under /usr/lib/postgresql/*/bin"
fi
say "using $BINDIR ($("$BINDIR/postgres" --version))"

# Run a PostgreSQL binary as the cluster owner (postgres when we are root).
if [ "$(id -u)" -eq 0 ]; then
  OWNER=postgres
  id -u "$OWNER" >/dev/null 2>&1 || die "user '$OWNER' does not exist (the Debian package creates it)"
  command -v runuser >/dev/null || die "runuser not found (util-linux)"
  as_owner() { runuser -u "$OWNER" -- "$@"; }
else
  OWNER="$(id -un)"
  as_owner() { "$@"; }
fi

free_port() {
  local p
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  if command -v node >/dev/null; then
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
    return
  fi
  for p in $(seq 25432 25532); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

is_running() { [ -f "$DATA/postmaster.pid" ] && as_owner "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

print_env() {
  [ -f "$ENVF" ] || die "$ENVF missing"
  cat "$ENVF"
}

if [ -d "$DATA" ] && is_running; then
  say "cluster in $BASE already running"
  print_env
  exit 0
fi

if [ ! -f "$DATA/PG_VERSION" ]; then
  rm -rf "$BASE"
  mkdir -p "$BASE" "$SOCK"
  PASSWORD="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  [ -n "$PASSWORD" ] || die "could not generate a password"
  printf '%s\n' "$PASSWORD" >"$BASE/pwfile"
  chmod 700 "$BASE"
  chmod 600 "$BASE/pwfile"
  chown -R "$OWNER" "$BASE"
  say "initdb in $DATA"
  as_owner "$BINDIR/initdb" -D "$DATA" -U postgres --pwfile="$BASE/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-locale --no-sync >"$BASE/initdb.log" 2>&1 \
    || { cat "$BASE/initdb.log" >&2; die "initdb failed"; }
else
  say "reusing the stopped cluster in $DATA"
  PASSWORD="$(cat "$BASE/pwfile")"
fi

PORT="${CREDSYNC_PG_PORT:-}"
if [ -z "$PORT" ] && [ -f "$BASE/port" ]; then
  PORT="$(cat "$BASE/port")"
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then PORT=""; fi # taken by someone else now
fi
[ -n "$PORT" ] || PORT="$(free_port)"
echo "$PORT" >"$BASE/port"
chown "$OWNER" "$BASE/port"

say "starting on 127.0.0.1:$PORT"
as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
  -o "-p $PORT -k $SOCK -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >&2 \
  || { tail -n 50 "$LOG" >&2 || true; die "pg_ctl start failed"; }

URL="postgres://postgres:${PASSWORD}@127.0.0.1:${PORT}/postgres"

cat >"$STOP" <<EOF
#!/usr/bin/env bash
# Stops the credsync test cluster (waits for it) and removes $BASE.
set -euo pipefail
if [ -f "$DATA/postmaster.pid" ]; then
  $( [ "$(id -u)" -eq 0 ] && printf 'runuser -u %s -- ' "$OWNER" )"$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >&2
fi
rm -rf "$BASE"
echo "[debian-postgres] stopped and removed $BASE" >&2
EOF
chmod 755 "$STOP"

cat >"$ENVF" <<EOF
export CREDSYNC_TEST_PG_URL='$URL'
export CREDSYNC_TEST_PG_STOP='$STOP'
# stop with: $STOP
EOF

# Fail loudly now rather than in the tests.
as_owner "$BINDIR/pg_isready" -h 127.0.0.1 -p "$PORT" -t 10 >&2 || die "server not accepting connections"
if command -v psql >/dev/null; then
  PGPASSWORD="$PASSWORD" psql "postgresql://postgres@127.0.0.1:$PORT/postgres" -v ON_ERROR_STOP=1 -qAtc 'select 1' >/dev/null \
    || die "password login over TCP failed"
fi
say "ready; stop with: $STOP"
print_env
