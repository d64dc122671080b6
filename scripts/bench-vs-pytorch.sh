#!/usr/bin/env bash
# hessian-gan's training step against the eager PyTorch yardstick (benches/pytorch_baseline.py), side by side.
#
#   scripts/bench-vs-pytorch.sh [--rounds N] [--steps S] [--warmup W] [--variants hp,nohp] [--out DIR] [bench flags]
#
# Both implementations run the same configuration: the bench flags (default: --config configs/bench-cpu.json, the
# CPU yardstick of issue 16) are resolved once by `hessian-gan bench --dry-run` and handed to the baseline. They run
# alternately, N rounds (default 5), in alternating order, never at the same time; each figure's median over the
# rounds and the ratio (hessian-gan / PyTorch for img/s, PyTorch / hessian-gan for ms) are printed as a markdown
# table. Every round's JSON and summary.json are kept in --out (default: a fresh directory under /tmp).
# --device cuda in the bench flags is passed to both. The machine should be otherwise idle: these figures are noisy.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

rounds=5 steps=10 warmup=2 variants="hp,nohp" out="" flags=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --variants) variants="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) flags+=("$1"); shift ;;
    esac
done
[ ${#flags[@]} -gt 0 ] || flags=(--config configs/bench-cpu.json)
device=cpu
for ((i = 0; i < ${#flags[@]}; i++)); do
    [ "${flags[$i]}" = "--device" ] && device="${flags[$((i + 1))]:-cpu}"
done
case "$rounds" in '' | *[!0-9]* | 0) echo "bench-vs-pytorch: --rounds must be a positive integer, got '$rounds'" >&2; exit 2 ;; esac

bash scripts/setup.sh >/dev/null 2>&1 || bash scripts/setup.sh
py="$root/.venv/bin/python"
bin="$root/target/release/hessian-gan"
cargo build --release --quiet
out="${out:-$(mktemp -d /tmp/bench-vs-pytorch.XXXXXX)}"
mkdir -p "$out"

"$bin" bench "${flags[@]}" --dry-run >"$out/resolved.json"
ours() { "$bin" bench "${flags[@]}" --steps "$steps" --warmup "$warmup" --variants "$variants" 2>/dev/null >"$1"; }
theirs() {
    "$py" benches/pytorch_baseline.py bench --train-config "$out/resolved.json" --device "$device" \
        --steps "$steps" --warmup "$warmup" --variants "$variants" 2>/dev/null >"$1"
}
for ((r = 1; r <= rounds; r++)); do
    echo "bench-vs-pytorch: round $r/$rounds" >&2
    if ((r % 2)); then
        ours "$out/ours-$r.json"; theirs "$out/pytorch-$r.json"
    else
        theirs "$out/pytorch-$r.json"; ours "$out/ours-$r.json"
    fi
done

"$py" - "$out" "$rounds" <<'EOF'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
load = lambda name: [json.load(open(os.path.join(out, f"{name}-{r}.json"))) for r in range(1, rounds + 1)]
ours, theirs = load("ours"), load("pytorch")
fields = [("images_per_s", "img/s", True), ("ms_per_d_step", "ms per D step", False),
          ("ms_per_g_step", "ms per G step", False)]
rows, summary = [], {"rounds": rounds, "ours": ours[0]["device"], "resolution": ours[0]["resolution"],
                     "minibatch": ours[0]["minibatch"], "chunks": ours[0]["chunks"], "variants": {}}
for v in [x["variant"] for x in ours[0]["variants"]]:
    pick = lambda runs, f: statistics.median(next(x for x in run["variants"] if x["variant"] == v)[f] for run in runs)
    summary["variants"][v] = {}
    for f, label, higher in fields:
        a, b = pick(ours, f), pick(theirs, f)
        ratio = a / b if higher else b / a
        summary["variants"][v][f] = {"hessian_gan": a, "pytorch": b, "speedup": ratio}
        rows.append(f"| {v} | {label} | {a:.1f} | {b:.1f} | **{ratio:.2f}×** |")
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
print(f"{ours[0]['device']}, {ours[0]['resolution']}², batch {ours[0]['minibatch']} in {ours[0]['chunks']} chunk(s), "
      f"median of {rounds} alternating rounds (torch {theirs[0]['torch']}, {theirs[0]['threads']} threads)\n")
print("| variant | figure | hessian-gan | eager PyTorch | speed-up |\n|---|---|---|---|---|")
print("\n".join(rows))
print(f"\nrounds and summary.json in {out}")
EOF
