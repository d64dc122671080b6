#!/usr/bin/env bash
# docs/spec/geometry_infogancr.md §B.1: InfoGAN-CR on the full dSprites grid (Table 1's recipe), seed from --seed.
# Makes datasets/dsprites first when it is missing. Extra flags are passed through (e.g. --seed 3, --device cuda:1,
# --set iterations=1000).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${HESSIAN_GAN:-$here/../target/release/hessian-gan}"
if [ ! -f datasets/dsprites/dataset.json ]; then
    "$bin" dataset synth --kind dsprites --full datasets/dsprites
fi
exec "$bin" train --config "$here/../configs/infogan_cr_dsprites.json" "$@"
