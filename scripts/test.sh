#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI calls it too): set everything up
# (scripts/setup.sh, idempotent), then the Python suite (unit, integration and end-to-end tests on
# real networks it brings up itself), the type check, and the Go packages under chaincode/.
#
#   scripts/test.sh [pytest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. scripts/setup.sh

python -m pytest "$@"
python -m mypy
(cd chaincode && go vet ./... && go test ./...)
