#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs PostgreSQL from
# Debian when missing, starts a throwaway cluster on a unix socket, runs
# go vet and every test against SQLite and PostgreSQL, then stops it.
# Usage: scripts/test.sh [extra go test args], e.g. scripts/test.sh -run TestClients ./internal/store/
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
  log "installing PostgreSQL from Debian"
  if [ "$(id -u)" -ne 0 ]; then echo "PostgreSQL is missing and this is not root: apt-get install postgresql" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
PGBIN="$(pg_bin)"

# initdb refuses to run as root: the cluster belongs to an unprivileged user.
RUN_AS=()
PGUSER_OS="$(id -un)"
if [ "$(id -u)" -eq 0 ]; then
  PGUSER_OS=postgres
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  RUN_AS=(runuser -u postgres --)
fi

PGTMP="$(mktemp -d /tmp/wagate-pg.XXXXXX)"
chown "$PGUSER_OS" "$PGTMP"
chmod 0755 "$PGTMP"
PGPORT=55432
stop_pg() {
  "${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$PGTMP/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGTMP"
}
trap stop_pg EXIT

log "starting a throwaway PostgreSQL ($("$PGBIN/postgres" --version)) on a unix socket in $PGTMP"
"${RUN_AS[@]}" "$PGBIN/initdb" -D "$PGTMP/data" -A trust -U postgres --no-sync -E UTF8 >/dev/null
# No TCP listener; durability settings off because the cluster is thrown away.
"${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$PGTMP/data" -w -l "$PGTMP/server.log" \
  -o "-k $PGTMP -p $PGPORT -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
  start >/dev/null
export WAGATE_TEST_POSTGRES_URL="postgres://postgres@/postgres?host=$PGTMP&port=$PGPORT&sslmode=disable"
export WAGATE_TEST_PG_DATA="$PGTMP/data" WAGATE_TEST_PG_BIN="$PGBIN"

ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(./...)
# vet the packages named (./...-style arguments), or everything.
PKGS=()
for a in "${ARGS[@]}"; do case "$a" in ./*) PKGS+=("$a") ;; esac; done
[ ${#PKGS[@]} -eq 0 ] && PKGS=(./...)
log "go vet ${PKGS[*]}"
go vet "${PKGS[@]}"

OUT="$PGTMP/go-test.log"
log "go test ${ARGS[*]} (SQLite and PostgreSQL)"
set +e
go test -count=1 -timeout 25m -v "${ARGS[@]}" >"$OUT" 2>&1
rc=$?
set -e
# The verbose log stays out of the console; print failures in full and the summary.
if [ $rc -eq 0 ]; then
  grep -E '^(ok|FAIL)\s' "$OUT" || true
else
  grep -E '^(ok|FAIL|panic:)|--- FAIL|_test\.go:[0-9]+:' "$OUT" || true
fi
passed=$(grep -cE -- '--- PASS' "$OUT" || true)
failed=$(grep -cE -- '--- FAIL' "$OUT" || true)
skipped=$(grep -cE -- '--- SKIP' "$OUT" || true)
pg=$(grep -cE -- '--- PASS: .*/postgres' "$OUT" || true)
echo
echo "PostgreSQL subtests passed: $pg"
if [ "$skipped" -gt 0 ]; then
  echo "skipped tests:"; grep -E -A1 -- '--- SKIP' "$OUT" || true
fi
if [ $rc -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "go test failed without a failing test (build error or panic); last lines:"; tail -n 40 "$OUT"
fi
echo "go test: $passed passed, $failed failed, $skipped skipped"
exit $rc
