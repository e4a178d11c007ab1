#!/usr/bin/env bash
# Builds bin/wagate exactly as the Dockerfile does (`make build`, i.e.
# CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X ..."), then checks that
# the binary is static, so it runs on distroless/static or scratch, and that
# it starts. Docker is not needed.
# Usage: scripts/check-static.sh   (VERSION, COMMIT and DATE may be set, as for make)
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-static: $*" >&2; exit 1; }

args=()
for v in VERSION COMMIT DATE; do
  if [ -n "${!v:-}" ]; then args+=("$v=${!v}"); fi
done
make --no-print-directory build "${args[@]}"
bin=bin/wagate
[ -x "$bin" ] || fail "$bin was not built"

# 1. The toolchain recorded the build settings the image relies on.
info="$(go version -m "$bin")"
grep -qE '^\s+build\s+CGO_ENABLED=0$' <<<"$info" || fail "$bin was not built with CGO_ENABLED=0"
grep -qE '^\s+build\s+-trimpath=true$' <<<"$info" || fail "$bin was not built with -trimpath"

# 2. The ELF file asks for no dynamic loader and no shared library.
if command -v readelf >/dev/null; then
  if readelf -lW "$bin" | grep -q 'INTERP'; then fail "$bin has a program interpreter: it is dynamically linked"; fi
  if readelf -dW "$bin" 2>/dev/null | grep -q 'NEEDED'; then fail "$bin needs shared libraries"; fi
fi
if command -v ldd >/dev/null; then
  out="$(ldd "$bin" 2>&1 || true)"
  grep -qE 'not a dynamic executable|statically linked' <<<"$out" || fail "ldd says $bin is dynamic: $out"
fi
if command -v file >/dev/null; then
  file -b "$bin" | grep -q 'statically linked' || fail "file says: $(file -b "$bin")"
fi

# 3. It runs, with an empty environment, as it would in the image.
line="$(env -i "$bin" version)" || fail "$bin version failed"
grep -q '^wagate ' <<<"$line" || fail "unexpected version line: $line"

echo "check-static: $bin is static ($(du -h "$bin" | cut -f1)) and runs: $line"
