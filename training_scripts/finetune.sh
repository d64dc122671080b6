#!/usr/bin/env bash
# docs/spec/progan_hp.md §5 fine-tune recipe: resume a vanilla run (run number $1) with the HP ramped in over 10000 kimg.
# Usage: training_scripts/finetune.sh RUN_NUMBER [extra flags]; the resumed run's own settings are kept.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
run="${1:?usage: finetune.sh RUN_NUMBER [flags]}"; shift
exec "${HESSIAN_GAN:-$here/../target/release/hessian-gan}" train --config "$here/../configs/finetune.json" --resume-exp "$run" "$@"
