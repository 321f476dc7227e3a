#!/usr/bin/env bash
# Installs the Python test peers' dependencies (the WHIP receiver in
# appliance/tests/peers/whip_server.py: aiortc + aiohttp) into a venv.
#
# Venv: ${FIELDCAST_PEERS_VENV:-/opt/fieldcast-test-peers/venv}, made with
# Debian's python3 (${FIELDCAST_PEERS_PYTHON:-/usr/bin/python3}), not a
# pyenv one, so it does not depend on a developer's shell setup.
# Every package is a pinned binary wheel (cp311 manylinux x86_64; PyAV bundles
# its own FFmpeg, pylibsrtp its own libsrtp): no compiler or -dev package.
#
# Idempotent and silent when everything is already there; exits non-zero
# with a message on failure.
set -euo pipefail

VENV="${FIELDCAST_PEERS_VENV:-/opt/fieldcast-test-peers/venv}"
PYTHON="${FIELDCAST_PEERS_PYTHON:-/usr/bin/python3}"

# The whole dependency closure, pinned (pip freeze of a working install).
PINS=(
  aiortc==1.16.0
  aiohttp==3.14.5
  av==18.1.0
  aioice==0.13.0
  pylibsrtp==1.0.0
  pyOpenSSL==26.4.0
  cryptography==50.0.2
  google-crc32c==1.9.0
  pyee==13.0.1
  ifaddr==0.2.0
  dnspython==2.9.2
  cffi==2.1.1
  pycparser==3.12
  typing_extensions==4.16.0
  aiohappyeyeballs==2.7.1
  aiosignal==1.4.0
  attrs==26.1.0
  frozenlist==1.8.0
  multidict==7.2.1
  propcache==0.5.4
  yarl==1.25.1
  idna==3.20
)

die() {
  echo "install-test-peers: $*" >&2
  exit 1
}

# Fast path: the venv exists and has exactly the pinned versions.
installed_ok() {
  [ -x "$VENV/bin/python" ] || return 1
  "$VENV/bin/python" - "${PINS[@]}" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
EOF
}

if installed_ok; then
  exit 0
fi

echo "install-test-peers: installing aiortc and aiohttp into $VENV" >&2

[ -x "$PYTHON" ] || die "$PYTHON not found (apt-get install python3)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 10))' ||
  die "$PYTHON is older than 3.10"

# Debian's python3 needs python3-venv for `-m venv` (ensurepip).
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if [ "$PYTHON" = /usr/bin/python3 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends python3-venv >/dev/null ||
      die "apt-get install python3-venv failed"
  else
    die "$PYTHON has no venv/ensurepip module; install python3-venv"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")" || die "cannot create $(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV" || die "python3 -m venv $VENV failed"
fi

"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  --only-binary=:all: "${PINS[@]}" ||
  die "pip install into $VENV failed (needs PyPI; binary wheels only)"

installed_ok || die "installed versions in $VENV do not match the pins"
"$VENV/bin/python" -c 'import aiortc, aiohttp, av' ||
  die "aiortc/aiohttp/av do not import in $VENV"
