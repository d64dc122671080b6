#!/usr/bin/env bash
# One-command check of a GPU (or, with --device cpu, of this script itself at small sizes): writes report.json and
# report.md plus every step's raw output to OUT.
#
#   scripts/gpu-check.sh OUT [--device cuda|cpu]
#
# Steps (each timed; the first failing step, or any "CUDA error" in a step's output, stops the script with exit 1):
#   info      `hessian-gan info`
#   bench     `bench` at 128² (CUDA: configs/clevr_simple_hp.json, batch 96 in 4 chunks of 24; CPU: configs/bench-cpu.json
#             at 32²), variants hp/nohp/infogan × precision fp32/tf32/bf16 (CPU: fp32 all, bf16 hp), with memory and
#             the HP error of tf32/bf16 against fp32
#   baseline  benches/pytorch_baseline.py at the same configuration (fp32; tf32 too on CUDA) and the ratios
#   train     a short run (CUDA: 64², 3 kimg; CPU: 16², 2 kimg) with a snapshot every kimg, its loss curve, and an exact-resume
#             check: the run resumed from its first snapshot must end with the same weights (bitwise on CPU; on CUDA
#             the largest difference is reported, since cuDNN's backward kernels are not deterministic)
#   evaluate  FID and PPL of the trained snapshot with the random-weight stand-in detectors
#             (scripts/make_bench_detectors.py): it exercises the metric pipeline, the numbers mean nothing
#   figures   Table 2 (diag) and the activeness figure of the trained snapshot
#   cr-train  a short InfoGAN-CR run on dSprites (CUDA: 64², batch 64, 2,000 iterations with CR from 1,600; CPU: 32²,
#             batch 16, 40 iterations): iterations per second and the loss lines
#   discover  HP direction discovery in a random-weight BigGAN 128 (scripts/make_random_biggan.py; CUDA: the full
#             ch-96 generator, batch 96, 120 directions, 60 iterations; CPU: the trained snapshot above, 10
#             iterations): seconds per iteration (speed only: random weights make meaningless pictures)
#
# Environment: HG_BIN (default target/release/hessian-gan, built if missing), PYTHON (default .venv/bin/python, else
# /opt/torch/.venv/bin/python). A binary outside target/release finds libtorch through LD_LIBRARY_PATH, which is set
# from PYTHON's torch (the accelerator host's layout, ../shared/ENVIRONMENT.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

usage() { echo "usage: scripts/gpu-check.sh OUT [--device cuda|cpu]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out="$1"; shift
device=cuda
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="${2:-}"; shift 2 ;;
        *) usage ;;
    esac
done
case "$device" in cuda | cuda:* | cpu) ;; *) echo "gpu-check: --device must be cuda, cuda:N or cpu, got '$device'" >&2; exit 2 ;; esac
mkdir -p "$out"
out="$(cd "$out" && pwd)"

python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python
    elif [ -x /opt/torch/.venv/bin/python ]; then python=/opt/torch/.venv/bin/python
    else python=python3; fi
fi
bin="${HG_BIN:-$root/target/release/hessian-gan}"
if [ ! -x "$bin" ]; then
    command -v cargo >/dev/null || { echo "gpu-check: $bin does not exist and there is no cargo to build it; set HG_BIN" >&2; exit 1; }
    bash scripts/setup.sh && cargo build --release
fi
case "$bin" in
    "$root"/target/*) ;;
    *) export LD_LIBRARY_PATH="$("$python" -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
esac

if [ "$device" = cpu ]; then
    bench_flags=(--config configs/bench-cpu.json); steps=2; warmup=1; precisions=(fp32 bf16)
    train_flags=(--resolution 16 --nz 4 --fmap-base 64 --fmap-max 32 --minibatch 4=16 8=16 16=16 --num-gpus 2
                 --lod-training-kimg 0.25 --lod-transition-kimg 0.25 --tick-kimg 1 --total-kimg 2)
    data_res=16; data_count=512; fid_images=64; ppl_samples=8; diag_samples=20
    cr_flags=(--set resolution=32 --set batch=16 --set cr_batch=16 --set iterations=40 --set cr_coe_increase_batch=30
              --set log_every=10 --set snapshot_every=40 --set image_every=0); cr_res=32; cr_count=512
    discover_flags=(--iters 10 --batch 8 --log-every 5)
else
    bench_flags=(--config configs/clevr_simple_hp.json --resolution 128); steps=10; warmup=3; precisions=(fp32 tf32 bf16)
    train_flags=(--resolution 64 --lod-training-kimg 0.5 --lod-transition-kimg 0.5 --tick-kimg 1 --total-kimg 3)
    data_res=64; data_count=4000; fid_images=2000; ppl_samples=500; diag_samples=100
    cr_flags=(--set resolution=64 --set iterations=2000 --set cr_coe_increase_batch=1600 --set log_every=200
              --set snapshot_every=1000 --set image_every=1000); cr_res=64; cr_count=20000
    discover_flags=(--iters 60 --batch 96 --log-every 20)
fi

steps_tsv="$out/steps.tsv"
: >"$steps_tsv"
# step NAME CMD…: runs CMD with stdout/stderr to OUT/NAME.{out,err}; stops everything on failure or a CUDA error.
step() {
    local name="$1"; shift
    echo "gpu-check: $name" >&2
    local t0; t0=$(date +%s%N)
    if ! "$@" >"$out/$name.out" 2>"$out/$name.err"; then
        echo "gpu-check: step '$name' FAILED: $*" >&2
        tail -n 20 "$out/$name.err" >&2
        printf '%s\tfailed\t%s\n' "$name" "$(( ($(date +%s%N) - t0) / 1000000 ))" >>"$steps_tsv"
        exit 1
    fi
    if grep -qiE "CUDA error|CUBLAS_STATUS|CUDNN_STATUS|illegal memory access" "$out/$name.out" "$out/$name.err"; then
        echo "gpu-check: step '$name' reported a CUDA error:" >&2
        grep -iE "CUDA error|CUBLAS_STATUS|CUDNN_STATUS|illegal memory access" "$out/$name.err" "$out/$name.out" | head -5 >&2
        exit 1
    fi
    printf '%s\tok\t%s\n' "$name" "$(( ($(date +%s%N) - t0) / 1000000 ))" >>"$steps_tsv"
}

g=(--device "$device")
step info "$bin" "${g[@]}" info --json

"$bin" bench "${bench_flags[@]}" --dry-run >"$out/bench-resolved.json"
for p in "${precisions[@]}"; do
    variants=all
    [ "$device" = cpu ] && [ "$p" != fp32 ] && variants=hp
    step "bench-$p" "$bin" "${g[@]}" bench "${bench_flags[@]}" --precision "$p" --steps "$steps" --warmup "$warmup" \
        --variants "$variants"
done
baseline_precisions=(fp32)
[ "$device" != cpu ] && baseline_precisions=(fp32 tf32)
for p in "${baseline_precisions[@]}"; do
    step "baseline-$p" "$python" benches/pytorch_baseline.py bench --train-config "$out/bench-resolved.json" \
        --device "${device%%:*}" --precision "$p" --steps "$steps" --warmup "$warmup" --variants hp,nohp
done

work="$out/work"
rm -rf "$work"
step dataset "$bin" "${g[@]}" dataset synth --kind clevr-simple --count "$data_count" --resolution "$data_res" \
    "$work/datasets/synth_clevr_simple"
common=(--config configs/clevr_simple_hp.json --dataset synth_clevr_simple --datasets-dir "$work/datasets"
        --network-snapshot-ticks 1 --compute-interp-ticks -1 "${train_flags[@]}")
step train "$bin" "${g[@]}" train "${common[@]}" --results-dir "$work/results"
run=$(ls -d "$work"/results/[0-9]*-* | sort | head -n 1)
first=$(ls "$run"/network-snapshot-*.safetensors | sort | head -n 1)
last=$(ls "$run"/network-snapshot-*.safetensors | sort | tail -n 1)
step resume "$bin" "${g[@]}" train "${common[@]}" --results-dir "$work/resumed" --resume "$first"
resumed=$(ls "$(ls -d "$work"/resumed/[0-9]*-* | sort | tail -n 1)"/network-snapshot-*.safetensors | sort | tail -n 1)

# Data parallelism (issue 21): Gloo workers on the CPU; NCCL over the GPUs when there are several, else NCCL in a
# one-rank job (the collectives and the CUDA path of a rank, without peers).
ngpu=0
[ "$device" != cpu ] && ngpu=$("$python" -c "import torch; print(torch.cuda.device_count())")
if [ "$device" = cpu ] || [ "$ngpu" -ge 2 ]; then
    nproc=2
    nproc_chunks=()
    if [ "$device" != cpu ]; then
        [ "$ngpu" -ge 4 ] && nproc=4
        nproc_chunks=(--num-gpus "$nproc")
    fi
    step dist-train "$bin" "${g[@]}" train "${common[@]}" "${nproc_chunks[@]}" --results-dir "$work/dist" --nproc "$nproc"
    step dist-bench "$bin" "${g[@]}" bench "${bench_flags[@]}" "${nproc_chunks[@]}" --steps "$steps" --warmup "$warmup" \
        --variants hp,nohp --nproc "$nproc"
else
    step dist-train env WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 \
        "$bin" "${g[@]}" train "${common[@]}" --results-dir "$work/dist"
fi

step detectors "$python" scripts/make_bench_detectors.py "$work/detectors"
step evaluate "$bin" "${g[@]}" evaluate --models "$last" --dataset synth_clevr_simple --datasets-dir "$work/datasets" \
    --metrics fid ppl --num-images "$fid_images" --num-samples "$ppl_samples" --no-cache --json \
    --fid-detector "$work/detectors/bench-inception.pt" --ppl-detector "$work/detectors/bench-vgg16.pt"
step figures "$bin" "${g[@]}" figures --models "$last" --fig diag --samples "$diag_samples" --out "$out/figures"
step cr-dataset "$bin" "${g[@]}" dataset synth --kind dsprites --count "$cr_count" --resolution "$cr_res" "$work/datasets/dsp"
step cr-train "$bin" "${g[@]}" train --config configs/infogan_cr_dsprites.json --set dataset="$work/datasets/dsp" \
    --set results_dir="$work/cr" "${cr_flags[@]}"
if [ "$device" = cpu ]; then
    discover_model="$last"
else
    step biggan "$python" scripts/make_random_biggan.py "$work/biggan/G_ema.pth"
    discover_model="$work/biggan/G_ema.pth"
fi
step discover "$bin" "${g[@]}" discover --models "$discover_model" "${discover_flags[@]}" --out "$work/discover" \
    --no-compare --json

# The report: every figure above in report.json, and report.md for people.
"$python" - "$out" "$device" "$run" "$last" "$resumed" <<'EOF'
import json, os, re, sys
sys.path.insert(0, "benches")
from pytorch_baseline import read_safetensors
out, device, run, last, resumed = sys.argv[1:]
load = lambda name: json.load(open(os.path.join(out, name)))
steps = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "steps.tsv"))]
report = {"device": device, "steps": [{"step": s, "status": st, "seconds": int(t) / 1000} for s, st, t in steps]}
report["info"] = load("info.out")
report["bench"] = {n[6:-4]: load(n) for n in sorted(os.listdir(out)) if n.startswith("bench-") and n.endswith(".out")}
report["baseline"] = {n[9:-4]: load(n) for n in sorted(os.listdir(out)) if n.startswith("baseline-") and n.endswith(".out")}

# Loss curve from the tick lines of log.txt.
curve = []
for line in open(os.path.join(run, "log.txt")):
    m = re.search(r"tick (\d+)\s+kimg ([\d.]+).*", line)
    if m:
        stats = dict((k, float(v)) for k, v in re.findall(r"(Loss/[\w/]+) (-?[\d.]+(?:e-?\d+)?)", line))
        curve.append({"tick": int(m.group(1)), "kimg": float(m.group(2)), **stats})
report["train"] = {"run": run, "snapshot": last, "loss_curve": curve}

# Exact resume: the run resumed from its first snapshot against the uninterrupted run, tensor by tensor.
a, _ = read_safetensors(last)
b, _ = read_safetensors(resumed)
worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if k in b and a[k].numel())
report["train"]["resume"] = {"resumed_snapshot": resumed, "max_abs_difference": worst,
                             "bitwise_equal": worst == 0.0, "same_tensors": sorted(a) == sorted(b)}
report["evaluate"] = load("evaluate.out")
report["figures"] = sorted(os.listdir(os.path.join(out, "figures")))
# InfoGAN-CR: the log lines `it N/M | D … | … | R it/s`.
cr_lines = [l for l in open(os.path.join(out, "cr-train.err")) if re.search(r"^it \d+/\d+ \|", l)]
report["discover"] = json.load(open(os.path.join(out, "discover.out")))
report["discover"]["seconds_per_iteration"] = report["discover"]["seconds"] / max(1, report["discover"]["iterations"])
report["infogan_cr"] = [{"iteration": int(re.match(r"it (\d+)", l).group(1)),
                         "iterations_per_s": float(re.search(r"([\d.]+) it/s", l).group(1)), "line": l.strip()}
                        for l in cr_lines]
if os.path.exists(os.path.join(out, "dist-bench.out")):
    report["scaling"] = load("dist-bench.out").get("scaling")
json.dump(report, open(os.path.join(out, "report.json"), "w"), indent=2)

md = [f"# gpu-check on {report['info'].get('device', device) if isinstance(report['info'], dict) else device}", ""]
md += ["| step | status | seconds |", "|---|---|---|"] + [f"| {s['step']} | {s['status']} | {s['seconds']:.1f} |" for s in report["steps"]]
md += ["", "## bench (hessian-gan)", "", "| precision | variant | img/s | ms D | ms G | HP share | TFLOP/s |", "|---|---|---|---|---|---|---|"]
for p, r in report["bench"].items():
    for v in r["variants"]:
        share = v.get("hp_share_of_g_step")
        md.append(f"| {p} | {v['variant']} | {v['images_per_s']:.1f} | {v['ms_per_d_step']:.1f} | {v['ms_per_g_step']:.1f} | "
                  f"{'' if share is None else f'{share:.0%}'} | {v['tflops_achieved']:.2f} |")
    if r.get("peak_memory_gb") is not None:
        md.append(f"| {p} | peak memory | {r['peak_memory_gb']:.2f} GB | | | | |")
    for e in r.get("hp_error_vs_fp32", []):
        md.append(f"| {e['precision']} | HP error vs fp32 | {e['relative_error']:.2e} | | | | |")
md += ["", "## eager PyTorch baseline, same configuration", "", "| precision | variant | img/s | ratio hessian-gan / PyTorch |", "|---|---|---|---|"]
for p, r in report["baseline"].items():
    ours = {v["variant"]: v for v in report["bench"].get(p, {}).get("variants", [])}
    for v in r["variants"]:
        o = ours.get(v["variant"])
        ratio = f"{o['images_per_s'] / v['images_per_s']:.2f}×" if o else ""
        md.append(f"| {p} | {v['variant']} | {v['images_per_s']:.1f} | {ratio} |")
res = report["train"]["resume"]
md += ["", "## training", "", f"run `{run}`; resumed from its first snapshot: max |difference| {res['max_abs_difference']:.3g} "
       f"({'bitwise equal' if res['bitwise_equal'] else 'not bitwise equal'})", "", "| kimg | Loss/G | Loss/D |", "|---|---|---|"]
md += [f"| {c['kimg']} | {c.get('Loss/G', float('nan')):.4f} | {c.get('Loss/D', float('nan')):.4f} |" for c in curve]
md += ["", "## evaluate (stand-in detectors)", "", "```", json.dumps(report["evaluate"], indent=1)[:2000], "```",
       "", "## figures", ""] + [f"- {f}" for f in report["figures"]]
md += ["", "## InfoGAN-CR (short run)", ""] + [f"    {c['line']}" for c in report["infogan_cr"]]
d = report["discover"]
md += ["", "## discover (speed only)", "", f"`{d['model']}`: {d['iterations']} iterations in {d['seconds']:.1f} s, "
       f"{d['seconds_per_iteration']:.3f} s per iteration (including loading), final HP {d['final_penalty']:.4g}"]
sc = report.get("scaling")
if sc:
    md += ["", f"## data parallelism: {sc['processes']} {sc['backend']} processes vs one", "",
           "| variant | img/s, 1 process | img/s, N processes | speedup | efficiency |", "|---|---|---|---|---|"]
    md += [f"| {r['variant']} | {r['images_per_s_one_process']:.1f} | {r['images_per_s']:.1f} | {r['speedup']:.2f}× | "
           f"{r['efficiency']:.0%} |" for r in sc["variants"]]
else:
    md += ["", "## data parallelism", "", "one GPU: NCCL ran in a one-rank job (step dist-train); no scaling figure"]
open(os.path.join(out, "report.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
if device == "cpu" and not res["bitwise_equal"]:
    sys.exit("gpu-check: the resumed run does not reproduce the uninterrupted one bit for bit on the CPU")
EOF
echo "gpu-check: report in $out/report.md and $out/report.json" >&2
