#!/usr/bin/env bash
# The C twin under AddressSanitizer and UndefinedBehaviorSanitizer.
#
# Usage: bash scripts/sanitize.sh [--full] [--fuzz SECONDS]
#
# Builds ws13._speedups with -fsanitize=address,undefined into a copy of src/
# in a scratch directory (the installed build is left alone), then runs the
# core tests (frames, protocol, the differential tests against the pure-Python
# twin, extensions) with that copy first on PYTHONPATH and the sanitizers'
# runtimes preloaded (CPython itself isn't built with them). Any invalid memory
# access or undefined behaviour aborts the run with the sanitizer's report, so
# a pass means none was reached. --full adds the asyncio tests; --fuzz N runs
# each atheris target for N seconds on the instrumented twin (default 1).
# Needs gcc with libasan and libubsan (Debian's gcc has both) and the test
# extras in $WS13_VENV (default .venv). Leaks aren't checked: CPython's own
# allocations at exit would drown them.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${WS13_VENV:-.venv}
REPO=$PWD
PY="$(cd "$VENV" && pwd)/bin/python"
FULL=no
FUZZ_SECONDS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --full) FULL=yes ;;
    --fuzz) FUZZ_SECONDS=${2:?--fuzz needs a number of seconds}; shift ;;
    *) echo "usage: bash scripts/sanitize.sh [--full] [--fuzz SECONDS]" >&2; exit 2 ;;
  esac
  shift
done

CC=${CC:-gcc}
ASAN=$("$CC" -print-file-name=libasan.so)
UBSAN=$("$CC" -print-file-name=libubsan.so)
for lib in "$ASAN" "$UBSAN"; do
  [ -e "$lib" ] || { echo "sanitize.sh: $CC has no ${lib##*/} (install gcc)" >&2; exit 1; }
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r src "$WORK/src"
rm -f "$WORK"/src/ws13/_speedups*.so
INCLUDE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
SUFFIX=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
# -fno-sanitize-recover: undefined behaviour aborts instead of printing and going on.
"$CC" -shared -fPIC -g -O1 -fno-omit-frame-pointer \
  -fsanitize=address,undefined -fno-sanitize-recover=undefined \
  -I"$INCLUDE" -Isrc/ws13 \
  src/ws13/_speedups.c src/ws13/_corebase.c src/ws13/_maskkeys.c src/ws13/_payload.c src/ws13/_utf8.c \
  -o "$WORK/src/ws13/_speedups$SUFFIX"

export PYTHONPATH="$WORK/src" LD_PRELOAD="$ASAN $UBSAN"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
unset WS13_NO_EXTENSIONS
"$PY" - "$WORK/src" <<'EOF'
import sys
import ws13
import ws13._accel
if not ws13._accel.USING_SPEEDUPS or not ws13.__file__.startswith(sys.argv[1]):
    sys.exit("sanitize.sh: the instrumented twin was not the one imported")
EOF

TESTS=(tests/test_corebase.py tests/test_frames.py tests/test_protocol.py tests/test_assembler.py
       tests/test_largeframes.py tests/test_accel.py tests/test_utils.py tests/test_http11.py
       tests/test_server.py tests/test_client.py tests/extensions)
[ "$FULL" = yes ] && TESTS+=(tests/asyncio)
"$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"

for target in frames deflate http11 hub_wire; do
  scratch="$WORK/corpus-$target"
  mkdir -p "$scratch"
  echo "fuzz $target for ${FUZZ_SECONDS}s on the instrumented twin" >&2
  (cd "$WORK" && "$PY" "$REPO/fuzz/run.py" "$target" -max_total_time="$FUZZ_SECONDS" \
     "$scratch" "$REPO/fuzz/corpus/$target" > "$WORK/fuzz-$target.log" 2>&1) \
    || { tail -n 40 "$WORK/fuzz-$target.log" >&2; echo "sanitize.sh: fuzz target $target failed" >&2; exit 1; }
  grep -E '^Done [0-9]+ runs' "$WORK/fuzz-$target.log" >&2 || true
done
echo "sanitize.sh: no sanitizer report" >&2
