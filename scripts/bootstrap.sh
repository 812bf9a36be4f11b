#!/usr/bin/env bash
# Install what kcrash needs on a Debian 12 machine: apt packages (as root) and a venv.
# Usage: scripts/bootstrap.sh [demo|test]
# Prints one clear line and exits non-zero when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="${KCRASH_APT_PACKAGES:-qemu-system-x86 qemu-system-arm gcc-12-aarch64-linux-gnu busybox-static cpio gzip xz-utils zstd gcc gcc-12 make libc6-dev \
dwarves makedumpfile crash liblzo2-dev python3-venv python3-dev binutils kmod file llvm chromium postgresql-15}"
VENV="${KCRASH_VENV:-.venv}"

missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "kcrash: run as root or install these Debian packages first: apt-get install$missing" >&2
        exit 1
    fi
    echo "kcrash: installing Debian packages:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || { echo "kcrash: apt-get update failed" >&2; exit 1; }
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null \
        || { echo "kcrash: apt-get install failed for:$missing" >&2; exit 1; }
fi

PY=python3
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "kcrash: Python >= 3.11 is required (found $($PY --version 2>&1))" >&2
    exit 1
fi
stamp="$VENV/.kcrash-installed"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" || { echo "kcrash: cannot create a venv (apt-get install python3-venv)" >&2; exit 1; }
fi
# Exact versions with hashes from requirements.lock (refresh: `make lock`), then kcrash itself with
# no dependency resolution and no build isolation (its build backend is in the lock too).
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
    log="$VENV/pip-install.log"
    if ! { "$VENV/bin/pip" install -q --require-hashes -r requirements.lock \
           && "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e . ; } >"$log" 2>&1; then
        echo "kcrash: pip install failed (see $log)" >&2
        exit 1
    fi
    touch "$stamp"
fi
