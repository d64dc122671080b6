#!/usr/bin/env bash
# The kill drill of docs/reliability.md at full size: a tiny training run and a dataset build SIGKILLed N times at
# random moments (every other training kill inside a snapshot write), resumed each time from what is on disk, and
# compared with uninterrupted ones bit for bit (tests/drill.rs; CI runs the same test with 3 kills).
#
#   scripts/drill-kill.sh [N=20] [SEED=17]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
kills="${1:-20}"
seed="${2:-17}"
case "$kills$seed" in *[!0-9]*) echo "drill-kill: N and SEED must be non-negative integers" >&2; exit 2 ;; esac
bash scripts/setup.sh >/dev/null
# One drill at a time (--test-threads 1): two trainings at once would only slow each other.
DRILL_KILLS="$kills" DRILL_SEED="$seed" cargo test --release --test drill -- --nocapture --test-threads 1 2>&1 |
    grep -E "kill drill|test result|panicked|differs|torn"
