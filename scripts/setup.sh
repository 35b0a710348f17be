#!/usr/bin/env bash
# Set up everything FedLedger needs, idempotently: a virtualenv with the Python side (cached under
# $FEDLEDGER_CACHE, default ~/.cache/fedledger, outside the clone) and the Fabric binaries built
# from the Go module proxy. A second run takes seconds: pip runs only when pyproject.toml changed.
#
#   . scripts/setup.sh        (sourced) set up, then leave the virtualenv active in this shell
#   scripts/setup.sh          set up only
set -euo pipefail

_fl_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_fl_cache="${FEDLEDGER_CACHE:-$HOME/.cache/fedledger}"
_fl_venv="$_fl_cache/venv-$(python3 -c 'import sys; print("py%d%d" % sys.version_info[:2])')"
mkdir -p "$_fl_cache"
[ -x "$_fl_venv/bin/python" ] || python3 -m venv "$_fl_venv"
# shellcheck disable=SC1091
. "$_fl_venv/bin/activate"

# The stamp names what was installed: the pyproject's hash and where the clone is (an editable
# install points at one checkout).
_fl_stamp="$_fl_venv/.fedledger-installed"
_fl_want="$(sha256sum "$_fl_repo/pyproject.toml" | cut -c1-16) $_fl_repo"
if [ "$(cat "$_fl_stamp" 2>/dev/null)" != "$_fl_want" ]; then
    echo "setup: installing the Python side into $_fl_venv" >&2
    python -m pip install --quiet --upgrade pip
    # torch is pinned where a local CPU wheel exists (pip's find-links); else the index's build.
    python -m pip install --quiet torch==2.13.0 || python -m pip install --quiet torch
    python -m pip install --quiet -e "$_fl_repo[test,bench,fl]"
    echo "$_fl_want" > "$_fl_stamp"
fi
"$_fl_repo/scripts/install-fabric.sh"
