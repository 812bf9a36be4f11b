#!/usr/bin/env bash
# Refresh requirements.lock: the exact versions, with hashes, of everything `make demo`/`make test`
# install from PyPI (pyproject.toml's dependencies, the dev extra, and the build backend).
# Usage: scripts/lock.sh                 re-resolve, keeping every pinned version that still fits
#        scripts/lock.sh PACKAGE...      bump just these packages to their newest versions
#        scripts/lock.sh --all           bump everything
# The resolver (pip-tools, pinned below) lives in its own venv under $KCRASH_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_TOOLS_VERSION=7.7.0
tool="${KCRASH_CACHE:-$HOME/.cache/kcrash}/tools/pip-tools-$PIP_TOOLS_VERSION"
if [ ! -x "$tool/bin/pip-compile" ]; then
    python3 -m venv "$tool"
    "$tool/bin/pip" install -q "pip-tools==$PIP_TOOLS_VERSION" || { echo "kcrash: cannot install pip-tools" >&2; exit 1; }
fi
upgrade=()
for arg in "$@"; do
    if [ "$arg" = --all ]; then upgrade+=(--upgrade); else upgrade+=(--upgrade-package "$arg"); fi
done
CUSTOM_COMPILE_COMMAND="make lock [UPGRADE='pkg ...'|UPGRADE=--all]" "$tool/bin/pip-compile" --quiet \
    --generate-hashes --allow-unsafe --strip-extras --extra dev --no-emit-index-url --no-emit-find-links \
    "${upgrade[@]}" --output-file requirements.lock pyproject.toml scripts/lock-build.in
