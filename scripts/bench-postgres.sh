#!/usr/bin/env bash
# Benchmarks on a throwaway PostgreSQL: starts a private cluster (default
# settings, so commits are durable: fsync and synchronous_commit on) on
# 127.0.0.1 and a free port, runs the load tool or the Go benchmarks
# against it, then stops and deletes it.
#
# Usage:
#   scripts/bench-postgres.sh [wagate-load flags]
#       e.g. scripts/bench-postgres.sh --events 300000 --warmup 0 --repeat 3
#       (--db postgres and --database-url are added; each run gets a fresh database)
#   scripts/bench-postgres.sh --go-bench [go test args]
#       e.g. scripts/bench-postgres.sh --go-bench -bench . ./internal/store/ ./cmd/wagate-load/
#       (WAGATE_TEST_POSTGRES_URL is set; -run '^$' is added)
#
# BENCH_PG_CONF adds server settings, e.g. BENCH_PG_CONF="-c synchronous_commit=off".
# BENCH_PG_KEEP_LOG=file copies the server log there at the end.
# BENCH_PG_STATS=1 loads pg_stat_statements and prints the costliest
# statements (time, rows, WAL per row) after the run.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

PGBIN="${BENCH_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  echo "PostgreSQL server binaries not found (apt-get install postgresql, or set BENCH_PG_BIN)" >&2
  exit 1
fi

# initdb refuses to run as root: the cluster belongs to the postgres user.
RUN_AS=()
PGUSER_OS="$(id -un)"
if [ "$(id -u)" -eq 0 ]; then
  PGUSER_OS=postgres
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  RUN_AS=(runuser -u postgres --)
fi

# A free TCP port on loopback.
PGPORT=""
for p in $(seq 55500 55600); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then PGPORT=$p; break; fi
done
[ -n "$PGPORT" ] || { echo "no free port in 55500-55600" >&2; exit 1; }

PGTMP="$(mktemp -d /tmp/wagate-bench-pg.XXXXXX)"
chown "$PGUSER_OS" "$PGTMP"
chmod 0755 "$PGTMP"
stop_pg() {
  "${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$PGTMP/data" -m fast -w stop >/dev/null 2>&1 || true
  [ -n "${BENCH_PG_KEEP_LOG:-}" ] && cp "$PGTMP/server.log" "$BENCH_PG_KEEP_LOG"
  rm -rf "$PGTMP"
}
trap stop_pg EXIT

log "starting a throwaway PostgreSQL ($("$PGBIN/postgres" --version)) on 127.0.0.1:$PGPORT in $PGTMP"
"${RUN_AS[@]}" "$PGBIN/initdb" -D "$PGTMP/data" -A trust -U postgres -E UTF8 >/dev/null
CONF="${BENCH_PG_CONF:-}"
[ -n "${BENCH_PG_STATS:-}" ] && CONF="$CONF -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
"${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$PGTMP/data" -w -l "$PGTMP/server.log" \
  -o "-k $PGTMP -p $PGPORT -c listen_addresses=127.0.0.1 -c max_connections=200 $CONF" \
  start >/dev/null
URL="postgres://postgres@127.0.0.1:$PGPORT/postgres?sslmode=disable"
psql_() { "${RUN_AS[@]}" "$PGBIN/psql" -h "$PGTMP" -p "$PGPORT" -U postgres "$@"; }
if [ -n "${BENCH_PG_STATS:-}" ]; then
  psql_ -qc "CREATE EXTENSION pg_stat_statements" >/dev/null
  print_stats() {
    log "pg_stat_statements: the costliest statements of the run (nested FK checks listed separately)"
    psql_ -P pager=off -c "SELECT round(total_exec_time) AS exec_ms, calls, rows,
        round((total_exec_time / greatest(rows, 1) * 1000)::numeric, 1) AS us_per_row,
        round(wal_records::numeric / greatest(rows, 1), 1) AS wal_recs_per_row,
        round(wal_bytes / greatest(rows, 1)) AS wal_bytes_per_row,
        left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS query
      FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT 15"
  }
  trap 'print_stats || true; stop_pg' EXIT
fi
log "settings: $(psql_ -Atc \
  "SELECT string_agg(name || '=' || setting, ' ') FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','shared_buffers','max_connections')")"

if [ "${1:-}" = "--go-bench" ]; then
  shift
  export WAGATE_TEST_POSTGRES_URL="$URL"
  log "go test -run '^\$' $*"
  go test -run '^$' "$@"
  exit
fi

BIN="$PGTMP/wagate-load"
go build -o "$BIN" ./cmd/wagate-load
log "wagate-load --db postgres --database-url $URL $*"
"$BIN" --db postgres --database-url "$URL" "$@"
