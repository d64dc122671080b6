#!/usr/bin/env bash
# docs/spec/progan_hp.md §5: clevr_u, InfoGAN baseline on the first 3 components
# Extra flags are passed through (e.g. --num-gpus 1, --device cuda:1).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${HESSIAN_GAN:-$here/../target/release/hessian-gan}" train --config "$here/../configs/clevr_u_infogan.json" "$@"
