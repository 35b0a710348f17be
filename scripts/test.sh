#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI calls it too): the Python suite, the
# type check, then the Go packages under chaincode/ against the same shared test vectors.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pytest "$@"
python -m mypy
if [ -f chaincode/go.mod ]; then
    (cd chaincode && go vet ./... && go test ./...)
fi
