#!/usr/bin/env bash
# The property/fuzz tests (every hypothesis test) with fresh random seeds, FUZZ_SEEDS runs of the
# whole set (default 20), each test limited to FUZZ_TIMEOUT seconds (default 60). `make test` runs
# the same tests derandomized. A failing run prints its seed: rerun it with
#   KCRASH_HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest -m hypothesis --hypothesis-seed=SEED
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${FUZZ_SEEDS:-20}"
limit="${FUZZ_TIMEOUT:-60}"
failed=""
for i in $(seq 1 "$seeds"); do
    seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
    echo "== fuzz run $i/$seeds, seed $seed" >&2
    if ! KCRASH_HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest -q -m hypothesis -p no:cacheprovider \
            --hypothesis-seed="$seed" --timeout "$limit" --durations=5 ${FUZZ_ARGS:-}; then
        failed="$failed $seed"
    fi
done
if [ -n "$failed" ]; then
    echo "kcrash: fuzz failed with seeds:$failed" >&2
    exit 1
fi
echo "kcrash: $seeds fuzz runs passed" >&2
