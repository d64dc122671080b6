#!/usr/bin/env bash
# The README's main job, offline, about ten minutes on 2 CPU cores from a fresh clone (set-up and build included):
#   1. make the built-in CLEVR-like dataset (32², one object: x, y, colour, shape as ground-truth factors);
#   2. train a small vanilla ProGAN for 12 kimg (configs/cpu-demo-base.json);
#   3. fine-tune it with the Hessian Penalty ramped in (configs/cpu-demo-hp.json: the paper's `_ft` recipe at CPU
#      scale, chosen by scripts/study.sh, see docs/results.md);
#   4. score both with the encoder-free disentanglement suite (`score --method free`), side by side;
#   5. visualise what each z component does in both (traversal stills, enlarged, and sample grids).
# Extra flags go to both `train` calls (e.g. --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
bin=target/release/hessian-gan
data=datasets/synth_clevr_simple
if [ ! -f "$data/dataset.json" ] || ! grep -q '"count": *10000' "$data/dataset.json"; then
    rm -rf "$data"
    "$bin" dataset synth --kind clevr-simple --count 10000 --resolution 32 "$data"
fi
newest_run() { ls -d results/[0-9]*-* | sort | tail -n 1; }

"$bin" train --config configs/cpu-demo-base.json "$@"
base=$(newest_run)
"$bin" train --config configs/cpu-demo-hp.json --resume "$(ls "$base"/network-snapshot-*.safetensors | sort | tail -n 1)" "$@"
hp=$(newest_run)

# The factor predictor is trained once per dataset (cached under cache/predictors); 1000 steps keep the demo short.
"$bin" score --models "$base" "$hp" --method free --samples 3000 --groups 40 --predictor-steps 1000 \
    --chart results/demo-scores.png
for run in "$base" "$hp"; do
    # nz is 4: sweep the raw z and let G normalise it (the README's advice for small nz).
    "$bin" visualize -q --models "$run" --stills-only --interpolate-pre-norm --samples 6 --n-frames-to-save 8 --zoom 4
    "$bin" visualize -q --models "$run" --grid --grid-count 32 --grid-cols 8 --zoom 3
done
echo
echo "vanilla run:   $base"
echo "HP fine-tuned: $hp"
echo "traversals:    visuals/$(basename "$base")/ and visuals/$(basename "$hp")/ (flattened_frames/z00N.png: one"
echo "               component swept from -2 to 2 left to right, one sample per row; grid/: samples)"
echo "scores:        the table above, results/demo-scores.png, <run>/network-snapshot-*-scores.json"
