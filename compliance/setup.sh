#!/usr/bin/env bash
# compliance/setup.sh PREFIX [--force]
#
# Installs Autobahn|Testsuite (wstest, Python-2.7-only code) into PREFIX for the
# ws13 compliance harness (compliance/run.py), without installing anything
# system-wide:
#   * Debian bullseye's python2.7 (+ libssl1.1, libffi7, ...) is fetched with
#     `apt-get download` using a private apt state dir and unpacked with `dpkg -x`
#     into PREFIX/root;
#   * pip 20.3.4 (last py2 pip) is bootstrapped from its wheel;
#   * autobahntestsuite 25.10.1 + fully pinned py2.7 dependencies are installed
#     into PREFIX/root/usr/local with --no-deps (binary wheels where available;
#     wsaccel is compiled only if a C compiler exists).
# Result: PREFIX/bin/wstest, PREFIX/bin/python2.7, PREFIX/bin/pip2.7 (wrappers)
# and PREFIX/.ws13-setup-ok (stamp; when it matches and wstest runs, a re-run
# returns at once; --force or deleting the stamp redoes the checks).
#
# Idempotent: re-running reuses downloads and skips finished steps.
# No registry host names in here: the apt source is derived from this machine's
# apt config (suite name swapped to bullseye) and pip uses its configured index.
#
# Needs: apt-get, dpkg, python3 with pip, network access to the configured apt
# and pip indexes (first run only), ~150 MB in PREFIX.
#
# Env knobs: AB_SUITE (default bullseye), AB_APT_SOURCE (full "deb URI SUITE main"
# line, overrides derivation), AB_NO_ACCEL=1 (skip compiling wsaccel),
# AB_SELFTEST=0 (skip the final loopback self-test).
set -euo pipefail

PREFIX=${1:?usage: $0 PREFIX [--force]}
FORCE=0
[ "${2:-}" = "--force" ] && FORCE=1
mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
# Bump when the pins or the layout below change: invalidates existing stamps.
STAMP_VERSION="ws13-autobahn-1 autobahntestsuite==25.10.1 autobahn==0.10.9"
STAMP=$PREFIX/.ws13-setup-ok
if [ "$FORCE" = 0 ] && [ -x "$PREFIX/bin/wstest" ] && [ -f "$STAMP" ] \
   && [ "$(cat "$STAMP")" = "$STAMP_VERSION" ] && "$PREFIX/bin/wstest" -a >/dev/null 2>&1; then
  printf '[ws13-autobahn-setup] already installed: %s\n' "$PREFIX/bin/wstest" >&2
  exit 0
fi
rm -f "$STAMP"
SUITE=${AB_SUITE:-bullseye}
ROOT=$PREFIX/root
APTDIR=$PREFIX/apt
DEBS=$PREFIX/debs
WHEELS=$PREFIX/wheels
BIN=$PREFIX/bin
export PIP_CACHE_DIR=$PREFIX/cache/pip
export PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONHOME PYTHONPATH || true

log() { printf '[ws13-autobahn-setup] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "needs apt-get and dpkg (Debian/Ubuntu host)"
command -v python3 >/dev/null || die "needs python3 (with pip) to fetch the bootstrap wheels"

case "$(dpkg --print-architecture)" in
  amd64) MA=x86_64-linux-gnu ;;
  arm64) MA=aarch64-linux-gnu ;;
  i386)  MA=i386-linux-gnu ;;
  armhf) MA=arm-linux-gnueabihf ;;
  *) die "unsupported architecture $(dpkg --print-architecture)" ;;
esac

HAVE_CC=0
if [ "${AB_NO_ACCEL:-0}" != 1 ] && command -v "${CC:-cc}" >/dev/null 2>&1; then HAVE_CC=1; fi

mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$DEBS" "$ROOT" "$WHEELS" "$BIN"

# ---------------------------------------------------------------------------
# 1. private apt source for $SUITE, derived from the system's apt config
# ---------------------------------------------------------------------------
derive_source() {
  python3 - "$SUITE" "${AB_APT_ETC:-/etc/apt}" <<'PY'
import glob, os, sys
suite, etc = sys.argv[1], sys.argv[2]
cands = []  # (uri, signed_by)

def base_suite(s):
    return s and "-" not in s and "/" not in s

def add(uris, suites, comps, signed):
    if "main" not in comps:
        return
    if not any(base_suite(s) for s in suites):
        return
    for u in uris:
        if "security" in u:
            continue
        cands.append((u.rstrip("/"), signed))

# deb822 *.sources
for f in sorted(glob.glob(etc + "/sources.list.d/*.sources")):
    try:
        text = open(f).read()
    except OSError:
        continue
    for stanza in text.split("\n\n"):
        fields, key = {}, None
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            if ":" in line:
                key, val = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = val.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        signed = fields.get("signed-by", "")
        if signed and not os.path.isfile(signed):
            signed = ""  # inline key block or missing file: fall back to trusted.gpg.d
        add(fields.get("uris", "").split(), fields.get("suites", "").split(),
            fields.get("components", "").split(), signed)

# one-line *.list
for f in [etc + "/sources.list"] + sorted(glob.glob(etc + "/sources.list.d/*.list")):
    try:
        lines = open(f).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        parts = line.split()[1:]
        signed = ""
        if parts and parts[0].startswith("["):
            opts = []
            while parts:
                p = parts.pop(0)
                opts.append(p.strip("[]"))
                if p.endswith("]"):
                    break
            for o in opts:
                if o.startswith("signed-by="):
                    signed = o.split("=", 1)[1]
            if signed and not os.path.isfile(signed):
                signed = ""
        if len(parts) >= 3:
            add([parts[0]], [parts[1]], parts[2:], signed)

if not cands:
    sys.exit("no Debian 'main' source found in /etc/apt (set AB_APT_SOURCE)")
uri, signed = cands[0]
opt = " [signed-by=%s]" % signed if signed else ""
print("deb%s %s %s main" % (opt, uri, suite))
PY
}

SRC_LINE=${AB_APT_SOURCE:-$(derive_source)} || die "could not derive an apt source line"
printf '%s\n' "$SRC_LINE" > "$APTDIR/sources.list.new"
if ! cmp -s "$APTDIR/sources.list.new" "$APTDIR/sources.list" 2>/dev/null; then
  mv "$APTDIR/sources.list.new" "$APTDIR/sources.list"
  rm -f "$APTDIR/.updated"
else
  rm -f "$APTDIR/sources.list.new"
fi

APT_OPTS=(
  -o "Dir::Etc::SourceList=$APTDIR/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::Etc::Preferences=/dev/null"
  -o "Dir::Etc::PreferencesParts=/dev/null"
  -o "Dir::State::Lists=$APTDIR/lists"
  -o "Dir::Cache=$APTDIR/cache"
  -o "Dir::Cache::archives=$APTDIR/cache/archives"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  -o "APT::Get::List-Cleanup=true"
)
[ "$(id -u)" = 0 ] && APT_OPTS+=(-o "APT::Sandbox::User=root")

apt_update() {
  if [ ! -e "$APTDIR/.updated" ]; then
    log "apt-get update ($SRC_LINE)"
    apt-get -q "${APT_OPTS[@]}" update >&2 || die "apt-get update failed"
    touch "$APTDIR/.updated"
  fi
}

# fetch_debs PKG... : download (into $DEBS) the listed packages that are not there yet
fetch_debs() {
  local missing=() p
  for p in "$@"; do
    compgen -G "$DEBS/${p}_*.deb" >/dev/null || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_update
  log "apt-get download ${missing[*]}"
  if ! (cd "$DEBS" && apt-get -q "${APT_OPTS[@]}" download "${missing[@]}" >&2); then
    log "download failed; refreshing package lists and retrying once"
    rm -f "$APTDIR/.updated"; apt_update
    (cd "$DEBS" && apt-get -q "${APT_OPTS[@]}" download "${missing[@]}" >&2) \
      || die "apt-get download failed for: ${missing[*]}"
  fi
}

extract_debs() {
  local d
  for d in "$DEBS"/*.deb; do
    [ -e "$ROOT/.x.$(basename "$d")" ] && continue
    dpkg -x "$d" "$ROOT"
    touch "$ROOT/.x.$(basename "$d")"
  done
}

# ---------------------------------------------------------------------------
# 2. python2.7 from $SUITE
# ---------------------------------------------------------------------------
PKGS=(python2.7 python2.7-minimal libpython2.7-minimal libpython2.7-stdlib libssl1.1 libffi7)
[ "$HAVE_CC" = 1 ] && PKGS+=(libpython2.7-dev)
fetch_debs "${PKGS[@]}"
extract_debs

LIBPATH="$ROOT/lib/$MA:$ROOT/usr/lib/$MA"
PY_REAL=$ROOT/usr/bin/python2.7
[ -x "$PY_REAL" ] || die "python2.7 not found after extraction"

# Pull in any further shared libraries that this host lacks (e.g. slim images).
soname_pkg() {
  case "$1" in
    libssl.so.1.1|libcrypto.so.1.1) echo libssl1.1 ;;
    libffi.so.7) echo libffi7 ;;
    libz.so.1) echo zlib1g ;;
    libexpat.so.1) echo libexpat1 ;;
    libbz2.so.1.0) echo libbz2-1.0 ;;
    liblzma.so.5) echo liblzma5 ;;
    libreadline.so.8) echo libreadline8 ;;
    libtinfo.so.6) echo libtinfo6 ;;
    libncursesw.so.6) echo libncursesw6 ;;
    libsqlite3.so.0) echo libsqlite3-0 ;;
    libdb-5.3.so) echo libdb5.3 ;;
    libgdbm.so.6) echo libgdbm6 ;;
    libgdbm_compat.so.4) echo libgdbm-compat4 ;;
    libnsl.so.2) echo libnsl2 ;;
    libtirpc.so.3) echo libtirpc3 ;;
    libcrypt.so.1) echo libcrypt1 ;;
    libgssapi_krb5.so.2) echo libgssapi-krb5-2 ;;
    libkrb5.so.3) echo libkrb5-3 ;;
    libk5crypto.so.3) echo libk5crypto3 ;;
    libkrb5support.so.0) echo libkrb5support0 ;;
    libcom_err.so.2) echo libcom-err2 ;;
    libkeyutils.so.1) echo libkeyutils1 ;;
    *) return 1 ;;
  esac
}
for round in 1 2 3; do
  missing=$(LD_LIBRARY_PATH=$LIBPATH ldd "$PY_REAL" "$ROOT"/usr/lib/python2.7/lib-dynload/*.so 2>/dev/null \
            | awk '/not found/ {print $1}' | sort -u)
  [ -z "$missing" ] && break
  extra=()
  for so in $missing; do
    if pkg=$(soname_pkg "$so"); then extra+=("$pkg"); else log "warning: no package known for $so"; fi
  done
  [ ${#extra[@]} -eq 0 ] && break
  fetch_debs "${extra[@]}"
  extract_debs
done

# wrappers
cat > "$BIN/python2.7" <<EOF
#!/bin/sh
# generated by ws13 compliance/setup.sh: run the private bullseye python2.7
unset PYTHONHOME PYTHONPATH
LD_LIBRARY_PATH="$LIBPATH\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
PYTHONNOUSERSITE=1
export LD_LIBRARY_PATH PYTHONNOUSERSITE
exec "$PY_REAL" "\$@"
EOF
cat > "$BIN/pip2.7" <<EOF
#!/bin/sh
exec "$BIN/python2.7" -m pip "\$@"
EOF
chmod +x "$BIN/python2.7" "$BIN/pip2.7"
PY=$BIN/python2.7

"$PY" -c 'import ssl, hashlib, ctypes, zlib, pyexpat, json' \
  || die "python2.7 runs but core modules (ssl/ctypes/zlib/pyexpat) fail to import"

# ---------------------------------------------------------------------------
# 3. pip for 2.7
# ---------------------------------------------------------------------------
PIP_VER=20.3.4 SETUPTOOLS_VER=44.0.0 WHEEL_VER=0.37.1
if [ "$("$PY" -c 'import pip; print(pip.__version__)' 2>/dev/null)" != "$PIP_VER" ]; then
  if ! compgen -G "$WHEELS/pip-$PIP_VER-*.whl" >/dev/null \
     || ! compgen -G "$WHEELS/setuptools-$SETUPTOOLS_VER-*.whl" >/dev/null \
     || ! compgen -G "$WHEELS/wheel-$WHEEL_VER-*.whl" >/dev/null; then
    log "downloading pip/setuptools/wheel wheels for 2.7 (with python3's pip)"
    python3 -m pip download -q --no-deps --only-binary :all: --python-version 2.7 \
      -d "$WHEELS" "pip==$PIP_VER" "setuptools==$SETUPTOOLS_VER" "wheel==$WHEEL_VER" >&2
  fi
  PIPWHL=$(ls "$WHEELS"/pip-$PIP_VER-*.whl | head -1)
  log "bootstrapping pip $PIP_VER"
  "$PY" "$PIPWHL/pip" install -q --no-warn-script-location --no-index --find-links "$WHEELS" \
    "pip==$PIP_VER" "setuptools==$SETUPTOOLS_VER" "wheel==$WHEEL_VER" >&2
fi

# ---------------------------------------------------------------------------
# 4. autobahntestsuite + pinned py2.7 dependency set (complete; installed with --no-deps)
#    Pins follow autobahntestsuite 25.10.1's own requirements (autobahn 0.10.9,
#    Twisted 19.10.0, cryptography 3.3.2, ...) plus the last py2 releases of the
#    transitive deps (Automat 20.2.0: 22.x imports inspect.getfullargspec).
# ---------------------------------------------------------------------------
REQ=$PREFIX/requirements-py27.txt
cat > "$REQ" <<'EOF'
autobahntestsuite==25.10.1
autobahn==0.10.9
txaio==2.1.0
Twisted==19.10.0
zope.interface==4.6.0
Automat==20.2.0
attrs==21.4.0
constantly==15.1.0
hyperlink==21.0.0
idna==2.10
typing==3.10.0.0
incremental==16.10.1
PyHamcrest==1.10.1
pyOpenSSL==19.1.0
cryptography==3.3.2
cffi==1.15.1
pycparser==2.21
enum34==1.1.10
ipaddress==1.0.23
six==1.16.0
service-identity==18.1.0
pyasn1==0.5.1
pyasn1-modules==0.3.0
klein==17.10.0
Werkzeug==1.0.1
Jinja2==2.11.3
MarkupSafe==1.1.1
unittest2==1.1.0
traceback2==1.4.0
linecache2==1.0.0
ujson==2.0.3
setuptools==44.0.0
EOF
BINARY_ONLY=cryptography,cffi,zope.interface,MarkupSafe,Twisted,ujson
if [ "$HAVE_CC" = 1 ]; then
  echo "wsaccel==0.6.2" >> "$REQ"
fi

if "$PY" -m pip freeze --all 2>/dev/null | sort > "$PREFIX/.freeze.now" \
   && awk '{print tolower($0)}' "$REQ" | sed 's/_/-/g' | sort > "$PREFIX/.freeze.want" \
   && awk '{print tolower($0)}' "$PREFIX/.freeze.now" | sed 's/_/-/g' | sort > "$PREFIX/.freeze.have" \
   && [ -z "$(comm -23 "$PREFIX/.freeze.want" "$PREFIX/.freeze.have")" ]; then
  log "python packages already installed"
else
  log "installing autobahntestsuite + pinned dependencies (pip $PIP_VER, python 2.7)"
  export CFLAGS="-I$ROOT/usr/include/python2.7 -I$ROOT/usr/include/$MA -I$ROOT/usr/include ${CFLAGS:-}"
  if ! (cd "$PREFIX" && "$PY" -m pip install --no-warn-script-location --no-deps \
        --only-binary "$BINARY_ONLY" -r "$REQ") > "$PREFIX/pip-install.log" 2>&1; then
    tail -30 "$PREFIX/pip-install.log" >&2
    die "pip install failed (full log: $PREFIX/pip-install.log)"
  fi
  grep -E "^Successfully|WARNING: Building wheel|ERROR" "$PREFIX/pip-install.log" >&2 || true
fi
rm -f "$PREFIX/.freeze.now" "$PREFIX/.freeze.want" "$PREFIX/.freeze.have"
"$PY" -m pip check 2>&1 | grep -v DEPRECATION >&2 || true
"$PY" -c 'import autobahntestsuite, autobahn, twisted' || die "autobahntestsuite does not import"

cat > "$BIN/wstest" <<EOF
#!/bin/sh
# generated by ws13 compliance/setup.sh
exec "$BIN/python2.7" -W "ignore:Python 2 is no longer supported" "$ROOT/usr/local/bin/wstest" "\$@"
EOF
chmod +x "$BIN/wstest"

# ---------------------------------------------------------------------------
# 5. self-test: wstest fuzzingclient vs wstest's own testee server (autobahn 0.10.9,
#    permessage-deflate on) over loopback, one framing and one compression case
# ---------------------------------------------------------------------------
if [ "${AB_SELFTEST:-1}" != 0 ]; then
  T=$(mktemp -d)
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$BIN/wstest" -m testeeserver -w "ws://127.0.0.1:$PORT" > "$T/testee.log" 2>&1 &
  EPID=$!
  for _ in $(seq 50); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break
    sleep 0.2
  done
  cat > "$T/spec.json" <<EOF
{"outdir": "$T/reports", "servers": [{"agent": "selftest", "url": "ws://127.0.0.1:$PORT"}],
 "cases": ["1.1.1", "12.1.1"], "exclude-cases": [], "exclude-agent-cases": {}}
EOF
  ok=0
  if (cd "$T" && timeout 60 "$BIN/wstest" -m fuzzingclient -s "$T/spec.json" > "$T/client.log" 2>&1) \
     && python3 - "$T/reports/index.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["selftest"]
sys.exit(0 if all(c["behavior"] == "OK" for c in r.values()) and len(r) == 2 else 1)
PY
  then ok=1; fi
  kill "$EPID" 2>/dev/null || true
  wait "$EPID" 2>/dev/null || true
  if [ "$ok" = 1 ]; then rm -rf "$T"; log "self-test passed"; else die "self-test failed, see $T"; fi
fi

printf '%s\n' "$STAMP_VERSION" > "$STAMP"
log "done: $("$BIN/wstest" -a 2>/dev/null | tr '\n' ' ')"
log "wstest: $BIN/wstest"
