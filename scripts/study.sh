#!/usr/bin/env bash
# Issue #15's study: does the Hessian Penalty disentangle at CPU scale? Trains every arm for every seed and dataset
# at 32² on the CPU, scores each snapshot with the encoder-free suite (`train --score-ticks`), then writes
# docs/results/study.md (tables of mean ± std over seeds, score-against-kimg plots, traversal strips) with
# `hessian-gan report`. Re-running skips finished runs, so an interrupted study continues where it stopped.
#
# Arms (each from scratch unless it says "from vanilla", i.e. resumed from that seed's vanilla run at BASE_KIMG):
#   vanilla         λ 0 to BASE_KIMG (the base of the fine-tuning arms)
#   vanilla-cont    from vanilla, λ 0 to END_KIMG (the control of every fine-tuning arm: the same extra training)
#   hp-ft-<λ>       from vanilla, HP λ ramped in over RAMP_KIMG (the paper's _ft), every layer but RGB
#   hp-ft-early     from vanilla, HP EARLY_LAMBDA on the layers before the last block (spec §1.3 leaves it free)
#   hp-ft-first     from vanilla, HP FIRST_LAMBDA on the 4×4 block only (layers 1, 2: where the layout is decided)
#   infogan         InfoGAN (λ_info 1 on all nz components) to END_KIMG
#   hp-scratch      HP SCRATCH_LAMBDA ramped in over BASE_KIMG from the start, to END_KIMG
#
# Environment (defaults in brackets): SEEDS [1 2 3], DATASETS [clevr-simple dsprites], ARMS [all, in the order
# above], BASE_KIMG [12], END_KIMG [16], RAMP_KIMG [2], FT_LAMBDAS [0.0001 0.001], EARLY_LAMBDA [0.001],
# FIRST_LAMBDA [0.01], SCRATCH_LAMBDA [0.001], COUNT [10000 images per dataset], SCORE_SAMPLES [3000], SCORE_GROUPS [40],
# STUDY_DIR [study-runs], OUT [docs/results]. Example: SEEDS="1 2" DATASETS=dsprites bash scripts/study.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-1 2 3}
DATASETS=${DATASETS:-clevr-simple dsprites}
FT_LAMBDAS=${FT_LAMBDAS:-0.0001 0.001}
ARMS=${ARMS:-vanilla vanilla-cont $(for l in $FT_LAMBDAS; do printf 'hp-ft-%s ' "$l"; done)hp-ft-early hp-ft-first infogan hp-scratch}
BASE_KIMG=${BASE_KIMG:-12}
END_KIMG=${END_KIMG:-16}
RAMP_KIMG=${RAMP_KIMG:-2}
EARLY_LAMBDA=${EARLY_LAMBDA:-0.001}
FIRST_LAMBDA=${FIRST_LAMBDA:-0.01}
SCRATCH_LAMBDA=${SCRATCH_LAMBDA:-0.001}
COUNT=${COUNT:-10000}
SCORE_SAMPLES=${SCORE_SAMPLES:-3000}
SCORE_GROUPS=${SCORE_GROUPS:-40}
W=${STUDY_DIR:-study-runs}
OUT=${OUT:-docs/results}

bash scripts/setup.sh
cargo build --release
# The study runs for hours: a copy of the binary keeps it independent of rebuilds (it stays in target/release,
# where its relative rpath finds libtorch).
bin=target/release/hessian-gan-study
cp target/release/hessian-gan "$bin"
mkdir -p "$W/datasets"

nz_of() { case "$1" in dsprites) echo 5 ;; *) echo 4 ;; esac; }
name_of() { echo "${1//-/_}"; }

# The run directory of a finished arm, or nothing.
finished_run() {
    local d
    for d in "$1"/[0-9]*-*; do
        if [ -f "$d/_finished.txt" ]; then echo "$d"; return; fi
    done
}

latest_snapshot() { ls "$1"/network-snapshot-*.safetensors | sort | tail -n 1; }

# run_arm DATASET ARM SEED PARENT_ARM ARGS…: trains one arm into $W/DATASET/ARM/sSEED unless it finished before, and
# records it in the manifest that `report` reads.
run_arm() {
    local ds=$1 arm=$2 seed=$3 parent_arm=$4
    shift 4
    local dir="$W/$ds/$arm/s$seed" parent="" resume=()
    if [ -n "$parent_arm" ]; then
        parent=$(finished_run "$W/$ds/$parent_arm/s$seed")
        if [ -z "$parent" ]; then
            echo "study: $ds/$arm seed $seed needs the finished $parent_arm run first; skipped" >&2
            return
        fi
        resume=(--resume "$(latest_snapshot "$parent")")
    fi
    local run
    run=$(finished_run "$dir")
    if [ -z "$run" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        echo "study: $ds/$arm seed $seed"
        "$bin" train --config configs/cpu-demo.json --dataset "$(name_of "$ds")" --datasets-dir "$W/datasets" \
            --results-dir "$dir" --seed "$seed" --nz "$(nz_of "$ds")" \
            --lod-training-kimg 1 --lod-transition-kimg 1 \
            --network-snapshot-ticks 1 --compute-interp-ticks 0 --score-ticks 1 \
            --score-samples "$SCORE_SAMPLES" --score-groups "$SCORE_GROUPS" "${resume[@]}" "$@" \
            >"$dir/train.out" 2>&1
        run=$(finished_run "$dir")
        [ -n "$run" ] || { echo "study: $dir did not finish (see $dir/train.out)" >&2; exit 1; }
    fi
    grep -q "\"run\":\"$run\"" "$W/runs.jsonl" 2>/dev/null ||
        printf '{"dataset":"%s","arm":"%s","seed":%s,"run":"%s","parent":"%s"}\n' \
            "$ds" "$arm" "$seed" "$run" "$parent" >>"$W/runs.jsonl"
}

for ds in $DATASETS; do
    data="$W/datasets/$(name_of "$ds")"
    [ -f "$data/dataset.json" ] ||
        "$bin" dataset synth --kind "$ds" --count "$COUNT" --resolution 32 "$data"
done

# Arm-major, so that an interrupted study has every seed of its first arms.
for arm in $ARMS; do
    for ds in $DATASETS; do
        nz=$(nz_of "$ds")
        for seed in $SEEDS; do
            case "$arm" in
            vanilla) run_arm "$ds" "$arm" "$seed" "" --hp-lambda 0 --total-kimg "$BASE_KIMG" ;;
            vanilla-cont) run_arm "$ds" "$arm" "$seed" vanilla --hp-lambda 0 --total-kimg "$END_KIMG" ;;
            hp-ft-early)
                run_arm "$ds" "$arm" "$seed" vanilla --hp-lambda "$EARLY_LAMBDA" --warmup-kimg "$RAMP_KIMG" \
                    --layers-to-reg 1 2 3 4 5 6 --total-kimg "$END_KIMG" ;;
            hp-ft-first)
                run_arm "$ds" "$arm" "$seed" vanilla --hp-lambda "$FIRST_LAMBDA" --warmup-kimg "$RAMP_KIMG" \
                    --layers-to-reg 1 2 --total-kimg "$END_KIMG" ;;
            hp-ft-*)
                run_arm "$ds" "$arm" "$seed" vanilla --hp-lambda "${arm#hp-ft-}" --warmup-kimg "$RAMP_KIMG" \
                    --total-kimg "$END_KIMG" ;;
            infogan)
                run_arm "$ds" "$arm" "$seed" "" --hp-lambda 0 --infogan-lambda 1 --infogan-nz "$nz" \
                    --total-kimg "$END_KIMG" ;;
            hp-scratch)
                run_arm "$ds" "$arm" "$seed" "" --hp-lambda "$SCRATCH_LAMBDA" --warmup-kimg "$BASE_KIMG" \
                    --total-kimg "$END_KIMG" ;;
            *) echo "study: unknown arm '$arm' (see the list at the top of scripts/study.sh)" >&2; exit 2 ;;
            esac
        done
    done
done

# Pictures and Table 2 of the last snapshots: traversal stills and activeness of the first seed of every arm, and
# Table 2's diagonal-ness of every run (100 base latents, as the paper).
first_seed=${SEEDS%% *}
diag=()
mkdir -p "$OUT"
for ds in $DATASETS; do
    runs=() arms=() first=()
    while read -r m_ds m_arm m_seed m_run; do
        [ "$m_ds" = "$ds" ] || continue
        runs+=("$m_run")
        if [ "$m_seed" = "$first_seed" ]; then
            arms+=("$m_arm") first+=("$m_run")
            still="$OUT/traversals/$ds/$m_arm"
            if [ ! -f "$still/z000.png" ] || [ "$m_run" -nt "$still/z000.png" ]; then
                rm -rf "$W/visuals/$ds/$m_arm" "$still"
                "$bin" visualize -q --models "$m_run" --stills-only --interpolate-pre-norm --samples 4 --zoom 3 \
                    --n-frames-to-save 7 --out "$W/visuals/$ds/$m_arm"
                mkdir -p "$still"
                cp "$(dirname "$(find "$W/visuals/$ds/$m_arm" -name z000.png | head -n 1)")"/z*.png "$still/"
            fi
        fi
    done < <(sed -n 's/.*"dataset":"\([^"]*\)","arm":"\([^"]*\)","seed":\([0-9]*\),"run":"\([^"]*\)".*/\1 \2 \3 \4/p' \
        "$W/runs.jsonl")
    [ ${#runs[@]} -gt 0 ] || continue
    rm -rf "$W/figures/$ds"
    "$bin" figures -q --fig diag --samples 100 --models "${runs[@]}" --out "$W/figures/$ds/diag" >/dev/null
    diag+=("$(find "$W/figures/$ds/diag" -name diag.json | head -n 1)")
    "$bin" figures -q --fig active --samples 100 --models "${first[@]}" --model-names "${arms[@]}" \
        --dataset-names "$ds" --out "$W/figures/$ds/active" >/dev/null
    cp "$(find "$W/figures/$ds/active" -name activeness.png | head -n 1)" "$OUT/active-$ds.png"
done

target/release/hessian-gan report --manifest "$W/runs.jsonl" --out "$OUT" --diag "${diag[@]}"
echo "study: $OUT/study.md"
