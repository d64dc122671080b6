#!/usr/bin/env bash
# The README's test command: set up (idempotent), then run every test in release mode (the same build as the binary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --release "$@"
