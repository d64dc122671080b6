#!/usr/bin/env bash
# The parsers' fuzz drill of docs/reliability.md at full size: N mutated inputs per parser (default 100,000; CI runs
# 1,500 through the same test, tests/fuzz.rs). A failing input is saved as target/fuzz-failure-<parser>.bin.
#
#   scripts/fuzz.sh [N=100000] [SEED=1]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
inputs="${1:-100000}"
seed="${2:-1}"
case "$inputs$seed" in *[!0-9]*) echo "fuzz: N and SEED must be non-negative integers" >&2; exit 2 ;; esac
bash scripts/setup.sh >/dev/null
FUZZ_INPUTS="$inputs" FUZZ_SEED="$seed" cargo test --release --test fuzz -- --nocapture --test-threads 1 2>&1 |
    grep -E "^fuzz |fuzz [a-z_]+:|test result|panicked|saved in"
