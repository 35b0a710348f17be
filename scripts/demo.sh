#!/usr/bin/env bash
# The demo, from nothing: set everything up, bring the consortium up (or find it up), train a task
# with 3 companies, a coordinator and a key dealer, each a party with its own home, then audit it
# without any key. Idempotent: run it again and it trains a new task on the same network.
#
#   scripts/demo.sh [fedledger train options...]     e.g. scripts/demo.sh --rounds 5
#
# Afterwards: `fedledger network status`, `fedledger round show TASK 1`, `fedledger network down`
# (inside the virtualenv: . ~/.cache/fedledger/venv-py311/bin/activate).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. scripts/setup.sh

fedledger network up
result="$(mktemp)"
trap 'rm -f "$result"' EXIT
fedledger train --rounds 5 --reference --plot accuracy.png --json "$@" > "$result"
python - "$result" <<'PY'
import json
import sys

run = json.load(open(sys.argv[1]))
print(f"task {run['task_id']}: {len(run['rounds']) - 1} rounds in {run['seconds']} s")
reference = run.get("reference_accuracy")
for r in run["rounds"]:
    plain = f"  (no privacy: {reference[r['round']]:.4f})" if reference else ""
    print(f"  round {r['round']}: accuracy {r['accuracy']:.4f}{plain}  record-level epsilon {r['epsilon']:.3f}  "
          f"model {r['model_sha256'][:16]}")
print(f"final model: {run['model_path']} (its SHA-256 is on the ledger); accuracy plot: accuracy.png")
PY
task="$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["task_id"])' "$result")"
fedledger audit verify "$task"
