#!/usr/bin/env bash
# Install everything the tests need and run them all: lint, types, the test
# suite (unit, asyncio, CLI, interop, Autobahn|Testsuite compliance).
#
# Usage: bash scripts/test.sh [pytest arguments]
# Works on a fresh Debian machine with Python 3.11+; as root it apt-installs
# what is missing. Set WS13_VENV to use another virtualenv (default: .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

PYTHON=${PYTHON:-python3}
VENV=${WS13_VENV:-.venv}

# System packages: python3-venv where the interpreter lacks ensurepip.
APT_PACKAGES=()
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || APT_PACKAGES+=(python3-venv)
# A C compiler and Python's headers, for the C speedups the tests also cover.
command -v cc >/dev/null || APT_PACKAGES+=(gcc)
"$PYTHON" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || APT_PACKAGES+=(python3-dev)
# Chromium and Node with npm, for the interop tests (tests/interop/test_chromium.py
# drives headless Chromium; test_node_ws.py runs Node's ws package, which it
# installs itself with npm ci).
command -v chromium >/dev/null || APT_PACKAGES+=(chromium)
command -v node >/dev/null || APT_PACKAGES+=(nodejs)
command -v npm >/dev/null || APT_PACKAGES+=(npm)
# A real Redis for the hub's Redis backplane tests (tests/hub/ start their own).
command -v redis-server >/dev/null || APT_PACKAGES+=(redis-server)
# redis-cli creates the Redis Cluster (tests/hub/cluster.py); redis-server pulls it in.
command -v redis-cli >/dev/null || APT_PACKAGES+=(redis-tools)
# Real proxies for the client's proxy tests (tests/proxies.py): tinyproxy (HTTP
# CONNECT), stunnel4 (TLS in front of it), microsocks (SOCKS5), dante-server (SOCKS4).
command -v tinyproxy >/dev/null || APT_PACKAGES+=(tinyproxy)
command -v stunnel4 >/dev/null || APT_PACKAGES+=(stunnel4)
command -v microsocks >/dev/null || APT_PACKAGES+=(microsocks)
command -v danted >/dev/null || APT_PACKAGES+=(dante-server)
# zlib's headers for bench/c/wsload.c (tests/bench/test_connections.py builds it).
[ -e /usr/include/zlib.h ] || APT_PACKAGES+=(zlib1g-dev)
# valgrind for bench/instructions.py's smoke test (callgrind).
command -v valgrind >/dev/null || APT_PACKAGES+=(valgrind)
# tshark reads the pcapng captures of --pcap; noninteractive answers its
# debconf question (wireshark-common/install-setuid) with the default, no.
command -v tshark >/dev/null || APT_PACKAGES+=(tshark)
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "apt-get install ${APT_PACKAGES[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${APT_PACKAGES[@]}" >/dev/null
  else
    echo "missing system packages: ${APT_PACKAGES[*]} (install them as root)" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
log "pip install -e .[test,speed,bench]"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
WS13_BUILD_EXTENSION=yes "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,speed,bench]'

export PATH="$PWD/$VENV/bin:$PATH"

log "ruff check"
ruff check src tests compliance
log "ruff format --check"
ruff format --check src tests compliance
log "mypy --strict src"
mypy --strict src

python -c 'import ws13._accel as a, sys; sys.exit(not a.USING_SPEEDUPS)' \
  || { echo "the C speedups did not build" >&2; exit 1; }

# The pure-Python path runs the same tests (Autobahn runs once, below).
log "pytest, pure Python (WS13_NO_EXTENSIONS=1)"
WS13_NO_EXTENSIONS=1 python -m pytest -q -m "not compliance" "$@"

# Every other CPython 3.11+ on the machine (pyenv's versions, python3.1X on the
# PATH, or WS13_OTHER_PYTHONS, a space-separated list of interpreters), each in
# its own virtualenv with the C speedups: the core, asyncio, extension and
# differential tests.
OTHER_PYTHONS=${WS13_OTHER_PYTHONS:-}
if [ -z "$OTHER_PYTHONS" ]; then
  PYENV_VERSIONS="${PYENV_ROOT:-${HOME:-/root}/.pyenv}/versions"
  for candidate in "$PYENV_VERSIONS"/3.*/bin/python3 \
      $(command -v python3.11 python3.12 python3.13 python3.14 2>/dev/null || true); do
    [ -x "$candidate" ] && OTHER_PYTHONS="$OTHER_PYTHONS $candidate"
  done
fi
MAIN_VERSION=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
declare -A SEEN=(["$MAIN_VERSION"]=1)
for other in $OTHER_PYTHONS; do
  version=$("$other" -c 'import sys; print("%d.%d" % sys.version_info[:2]) if sys.version_info >= (3, 11) and sys.implementation.name == "cpython" else None' 2>/dev/null || true)
  { [ -z "$version" ] || [ "$version" = None ] || [ -n "${SEEN[$version]:-}" ]; } && continue
  SEEN[$version]=1
  other_venv="$VENV-$version"
  if [ ! -x "$other_venv/bin/python" ]; then
    log "creating $other_venv ($other)"
    "$other" -m venv "$other_venv"
  fi
  log "pip install -e .[test,speed] for Python $version"
  "$other_venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  WS13_BUILD_EXTENSION=yes "$other_venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,speed]'
  "$other_venv/bin/python" -c 'import ws13._accel as a, sys; sys.exit(not a.USING_SPEEDUPS)' \
    || { echo "the C speedups did not build for Python $version" >&2; exit 1; }
  log "pytest, Python $version with the C speedups: core, asyncio, extensions, differential"
  "$other_venv/bin/python" -m pytest -q -m "not compliance" tests/test_*.py tests/asyncio tests/extensions
done
if [ ${#SEEN[@]} -eq 1 ]; then
  echo "no other CPython 3.11+ found: the suite ran on Python $MAIN_VERSION only" >&2
fi

# The C twin again, built with AddressSanitizer and UndefinedBehaviorSanitizer:
# the core and differential tests and a short fuzz pass (scripts/sanitize.sh).
log "C twin under AddressSanitizer and UndefinedBehaviorSanitizer"
WS13_VENV="$VENV" bash scripts/sanitize.sh

log "pytest, C speedups"
exec python -m pytest "$@"
