#!/usr/bin/env bash
# The README's main job, offline: set up, build, make the built-in synthetic dataset (CLEVR-like, 32²), train the
# cpu-demo preset (a small ProGAN with the Hessian Penalty; minutes on 2 CPU cores), then visualise what each latent
# component learned (traversal video and stills, a sample grid). Extra flags go to `train` (e.g. --device cuda,
# --total-kimg 60).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
bin=target/release/hessian-gan
data=datasets/synth_clevr_simple
if [ ! -f "$data/dataset.json" ]; then
    "$bin" dataset synth --kind clevr-simple --count 4000 --resolution 32 "$data"
fi
"$bin" train --config configs/cpu-demo.json "$@"
run=$(ls -d results/[0-9]*-* | sort | tail -n 1)
# nz is 4: sweep the raw z and let G normalise it (the README's advice for small nz).
"$bin" visualize --models "$run" --interpolate-pre-norm --n-frames-to-save 8
"$bin" visualize --models "$run" --interpolate-pre-norm --grid
echo "run directory: $run"
echo "latest fakes:  $(ls "$run"/fakes*.png | sort | tail -n 1)"
echo "visuals:       visuals/$(basename "$run")/ (traversal video z000_to_z004, stills in flattened_frames/, grid/)"
