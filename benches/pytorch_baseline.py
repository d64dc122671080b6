#!/usr/bin/env python3
"""The yardstick of `hessian-gan bench`: an eager PyTorch implementation of the same networks and training step.

Written from docs/spec/progan_hp.md (section 1 networks, section 3 losses, section 2.3 step order), the way a
PyTorch user would write it: channels-last activations, `F.leaky_relu`, the equalised-lr scale applied to the weights in
every forward, the Hessian Penalty's 2k perturbed copies in one batch with the variance over them as mean, square, mean, the gradient
penalty by `torch.autograd.grad(create_graph=True)`, Adam on the parameter lists, the Gs average by
`torch._foreach_lerp_`. It shares no code with the Rust implementation; it runs on the project venv's torch, which is
the libtorch the binary links, so a ratio of the two measures the implementations and not the kernels.

Two commands:

  bench  --train-config RESOLVED.json [--steps N] [--warmup W] [--variants all|hp,nohp,infogan] [--device cpu|cuda]
         [--precision fp32|tf32|bf16] [--no-channels-last]
      Steady-state iterations at lod 0, timed like `hessian-gan bench` (D step, G step, the G step again without HP),
      printed as the same JSON fields. RESOLVED.json is the configuration `hessian-gan bench <flags> --dry-run`
      prints, so both sides measure the same flags (scripts/bench-vs-pytorch.sh does this).

  check  --snapshot S.safetensors --z Z.npy [--directions V.npy] --out DIR
      Loads a hessian-gan snapshot's G and D, and writes G's images on the given z (lod 0, pixel-normalised
      latents), D's scores of those images, and, with --directions ([k, n, nz]), the Hessian Penalty of every G
      layer (population variance, max over the batch) as .npy files, plus params.json with the parameter counts.
      tests/pytorch_baseline.rs compares them with the Rust forward passes.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

GAIN = math.sqrt(2.0)
SLOPE = 0.2
EPS_PN = 1e-8
MBSTD_GROUP = 4
WGAN_LAMBDA, WGAN_TARGET, WGAN_EPSILON = 10.0, 1.0, 0.001


# --------------------------------------------------------------------------------------------- networks (spec §1)

def nf(cfg, stage):
    return min(cfg["fmap_base"] >> stage, cfg["fmap_max"])


def log2(n):
    return int(round(math.log2(n)))


class EqConv(torch.nn.Module):
    """Equalised-lr conv: N(0,1) weights scaled by gain/sqrt(fan_in) in every forward; SAME zero padding."""

    def __init__(self, cin, cout, k, gain):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = torch.nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin * k * k)
        self.pad = k // 2

    def forward(self, x, bias=True):
        return F.conv2d(x, self.weight * self.scale, self.bias if bias else None, padding=self.pad)


class EqDense(torch.nn.Module):
    def __init__(self, fin, fout, bias_len, gain):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(fout, fin))
        self.bias = torch.nn.Parameter(torch.zeros(bias_len))
        self.scale = gain / math.sqrt(fin)

    def forward(self, x, bias=True):
        return F.linear(x.flatten(1), self.weight * self.scale, self.bias if bias else None)


def lrelu(x):
    return F.leaky_relu(x, SLOPE)


def pixel_norm(x):
    return x * (x.square().mean(dim=1, keepdim=True) + EPS_PN).rsqrt()


def minibatch_stddev(x, chunks):
    """Strided groups of min(4, chunk) within each of `chunks` contiguous chunks (spec §1.2, §15.3)."""
    n, c, h, w = x.shape
    per = n // chunks
    g = min(MBSTD_GROUP, per)
    m = per // g
    y = x.float().reshape(chunks, g, m, c, h, w)
    sd = (y.var(dim=1, unbiased=False) + EPS_PN).sqrt().mean(dim=(2, 3, 4))  # [chunks, M]
    s = sd.unsqueeze(1).expand(chunks, g, m).reshape(n, 1, 1, 1).expand(n, 1, h, w).to(x.dtype)
    return torch.cat([x, s], dim=1)


class Generator(torch.nn.Module):
    """G_paper at lod 0: dense 4x4, conv, then per resolution nearest x2 + conv and conv, ToRGB (spec §1.3)."""

    def __init__(self, cfg, channels_last):
        super().__init__()
        r = log2(cfg["resolution"])
        self.cfg, self.r, self.cl = cfg, r, channels_last
        n1 = nf(cfg, 1)
        self.dense = EqDense(cfg["nz"], n1 * 16, n1, GAIN / 4.0)
        self.conv4 = EqConv(n1, n1, 3, GAIN)
        self.up = torch.nn.ModuleList()
        self.conv = torch.nn.ModuleList()
        for s in range(3, r + 1):
            self.up.append(EqConv(nf(cfg, s - 2), nf(cfg, s - 1), 3, GAIN))
            self.conv.append(EqConv(nf(cfg, s - 1), nf(cfg, s - 1), 3, GAIN))
        # One ToRGB per resolution (progressive growing); at lod 0 only the last one is used.
        self.torgb = torch.nn.ModuleList(EqConv(nf(cfg, s - 1), cfg["num_channels"], 1, 1.0) for s in range(2, r + 1))

    def forward(self, z, layers=()):
        """Images [N, C, R, R] and the activations of the requested HP layers (1-based, spec §15.1)."""
        acts = {}
        n1 = nf(self.cfg, 1)
        x = self.dense(pixel_norm(z), bias=False).view(-1, n1, 4, 4)
        if self.cl:
            x = x.contiguous(memory_format=torch.channels_last)
        x = pixel_norm(lrelu(x + self.dense.bias.view(1, -1, 1, 1)))
        acts[1] = x
        x = pixel_norm(lrelu(self.conv4(x)))
        acts[2] = x
        for i, (up, conv) in enumerate(zip(self.up, self.conv)):
            s = i + 3
            x = pixel_norm(lrelu(up(F.interpolate(x, scale_factor=2, mode="nearest"))))
            acts[2 * s - 3] = x
            x = pixel_norm(lrelu(conv(x)))
            acts[2 * s - 2] = x
        img = self.torgb[-1](x)
        acts[2 * self.r - 1] = img
        return img, [acts[l] for l in layers]


class Discriminator(torch.nn.Module):
    """D_paper at lod 0 with the InfoGAN Q head on the 4x4 block's input (spec §1.5, §1.6)."""

    def __init__(self, cfg, channels_last):
        super().__init__()
        r = log2(cfg["resolution"])
        self.cfg, self.r, self.cl = cfg, r, channels_last
        n0, n1 = nf(cfg, 0), nf(cfg, 1)
        self.fromrgb = torch.nn.ModuleList(EqConv(cfg["num_channels"], nf(cfg, s - 1), 1, GAIN) for s in range(2, r + 1))
        self.conv0 = torch.nn.ModuleList()
        self.conv1_down = torch.nn.ModuleList()
        for s in range(r, 2, -1):
            self.conv0.append(EqConv(nf(cfg, s - 1), nf(cfg, s - 1), 3, GAIN))
            self.conv1_down.append(EqConv(nf(cfg, s - 1), nf(cfg, s - 2), 3, GAIN))
        self.conv4 = EqConv(n1 + 1, n1, 3, GAIN)
        self.dense0 = EqDense(n1 * 16, n0, n0, GAIN)
        self.dense1 = EqDense(n0, 1, 1, 1.0)
        q = cfg.get("infogan_nz", 0)
        self.q = None
        if q > 0:
            self.q = torch.nn.ModuleDict({
                "conv": EqConv(n1, n1, 3, GAIN),
                "dense0": EqDense(n1 * 16, n0, n0, GAIN),
                "dense1": EqDense(n0, q, q, 1.0),
            })

    def forward(self, x, chunks, want_q=False):
        if self.cl:
            x = x.contiguous(memory_format=torch.channels_last)
        h = lrelu(self.fromrgb[-1](x))
        for c0, c1 in zip(self.conv0, self.conv1_down):
            h = lrelu(c0(h))
            h = F.avg_pool2d(c1(h, bias=False), 2)
            h = lrelu(h + c1.bias.view(1, -1, 1, 1))
        q = None
        if want_q and self.q is not None:
            y = lrelu(self.q["conv"](h))
            y = lrelu(self.q["dense0"](y))
            q = self.q["dense1"](y)
        h = minibatch_stddev(h, chunks)
        h = lrelu(self.conv4(h))
        h = lrelu(self.dense0(h))
        return self.dense1(h), q


def to_channels_last(module):
    for p in module.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------- the Hessian Penalty (spec §3.3)

def hessian_penalty(g, z, layers, k, eps, directions=None, centre=None, chunks=1):
    """Per layer: max over the batch (within each of `chunks`) of the population variance over k of
    (A(z+eps v) - 2A(z) + A(z-eps v)) / eps^2, the 2k perturbed copies in one batch."""
    n = z.shape[0]
    if directions is None:
        directions = torch.randint(0, 2, (k,) + tuple(z.shape), device=z.device, dtype=z.dtype) * 2 - 1
    x = directions * eps
    zz = torch.stack([z + x, z - x], dim=1).reshape(-1, z.shape[1])  # [k, 2, n, nz] -> [2kn, nz]
    _, perturbed = g(zz, layers)
    if centre is None:
        _, centre = g(z, layers)
    out = []
    for a0, ap in zip(centre, perturbed):
        ap = ap.reshape((k, 2) + tuple(a0.shape))
        second = (ap[:, 0] - 2 * a0.unsqueeze(0) + ap[:, 1]) / (eps * eps)
        # Not torch.var(dim=0): over a leading dimension of k = 2 it is ~30x slower than this on the CPU (profiled),
        # and the baseline should be what a careful PyTorch user ends up with.
        var = (second - second.mean(dim=0, keepdim=True)).square().mean(dim=0)
        out.append(var.reshape(chunks, -1).amax(dim=1).mean())
    return out


# ------------------------------------------------------------------------------------------- the training step

class Step:
    """One iteration at lod 0 as `Trainer::iteration` does it: D step (WGAN-GP + drift [+ InfoGAN]), Gs average,
    G step (WGAN [+ InfoGAN] + lambda * sum of HP over the layers)."""

    def __init__(self, cfg, device, channels_last, precision):
        self.cfg, self.device, self.precision = cfg, device, precision
        self.g = Generator(cfg, channels_last).to(device)
        self.d = Discriminator(cfg, channels_last).to(device)
        self.gs = Generator(cfg, channels_last).to(device)
        self.gs.load_state_dict(self.g.state_dict())
        if channels_last:
            for m in (self.g, self.d, self.gs):
                to_channels_last(m)
        lr = cfg["learning_rate"]
        fused = {"fused": True} if device.type in ("cuda", "cpu") else {}
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8, **fused)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8, **fused)
        self.chunks = cfg["num_gpus"]
        self.batch = cfg["_minibatch"]
        self.ema_beta = 0.5 ** (self.batch / (cfg["g_smoothing_kimg"] * 1000.0)) if cfg["g_smoothing_kimg"] > 0 else 0.0
        # A pool of uint8 reals like the loader's; the disk is not measured on either side.
        r, c = cfg["resolution"], cfg["num_channels"]
        self.pool = torch.randint(0, 256, (256, c, r, r), dtype=torch.uint8, device=device)
        self.cursor = 0

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def reals(self):
        idx = torch.arange(self.cursor, self.cursor + self.batch, device=self.device) % self.pool.shape[0]
        self.cursor = (self.cursor + self.batch) % self.pool.shape[0]
        return self.pool[idx].float() * (2.0 / 255.0) - 1.0

    def d_step(self, infogan):
        cfg = self.cfg
        reals = self.reals()
        z = torch.randn(self.batch, cfg["nz"], device=self.device)
        with self.autocast():
            with torch.no_grad():
                fakes, _ = self.g(z)
            real_scores, _ = self.d(reals, self.chunks)
            fake_scores, q = self.d(fakes, self.chunks, want_q=infogan)
            u = torch.rand(self.batch, 1, 1, 1, device=self.device)
            mixed = (reals + (fakes - reals) * u).detach().requires_grad_(True)
            mixed_scores, _ = self.d(mixed, self.chunks)
            (grad,) = torch.autograd.grad(mixed_scores.sum(), mixed, create_graph=True)
            norms = grad.float().square().sum(dim=(1, 2, 3)).sqrt()
            gp = (norms - WGAN_TARGET).square() * (WGAN_LAMBDA / WGAN_TARGET ** 2)
            real, fake = real_scores.float().reshape(-1), fake_scores.float().reshape(-1)
            loss = (fake - real + gp + real.square() * WGAN_EPSILON).mean()
            if infogan:
                k = cfg["infogan_nz"]
                loss = loss + (q.float() - z[:, :k]).square().mean() * cfg["infogan_lambda"]
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.gs.parameters()), list(self.g.parameters()), 1.0 - self.ema_beta)
        return loss.detach()

    def g_step(self, hp_lambda, infogan):
        cfg = self.cfg
        z = torch.randn(self.batch, cfg["nz"], device=self.device)
        layers = cfg["layers_to_reg"] if hp_lambda > 0 else []
        separate = self.precision == "bf16" or (self.precision == "tf32" and self.device.type == "cuda")
        with self.autocast():
            images, centre = self.g(z, [] if separate else layers)
            scores, q = self.d(images, self.chunks, want_q=infogan)
            loss = -scores.float().mean()
            if infogan:
                k = cfg["infogan_nz"]
                loss = loss + (q.float() - z[:, :k]).square().mean() * cfg["infogan_lambda"]
        if layers:
            # The HP always runs in float32 (src/core/precision.rs); with a reduced precision its centre too.
            tf32 = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            pens = hessian_penalty(self.g, z, layers, cfg["num_rademacher_samples"], cfg["epsilon"],
                                   centre=None if separate else centre, chunks=self.chunks)
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            loss = loss + hp_lambda * torch.stack(pens).sum()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return loss.detach()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        return None
    return None


def resolved_config(path):
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"pytorch_baseline: cannot read --train-config {path}: {e} "
                 "(write it with `hessian-gan bench <flags> --dry-run`)")
    cfg = cfg.get("config", cfg)
    missing = [k for k in ("resolution", "nz", "fmap_base", "fmap_max", "num_gpus", "learning_rate",
                           "layers_to_reg", "num_rademacher_samples", "epsilon") if k not in cfg]
    if missing:
        sys.exit(f"pytorch_baseline: --train-config {path} lacks {', '.join(missing)}: pass the resolved "
                 "configuration that `hessian-gan bench <flags> --dry-run` prints")
    cfg.setdefault("num_channels", 3)
    cfg.setdefault("infogan_nz", 0)
    return cfg


def bench(args):
    with open(args.train_config) as f:
        resolved = json.load(f)
    cfg = resolved_config(args.train_config)
    cfg["_minibatch"] = resolved.get("minibatch_at_resolution") or cfg["minibatch"][str(cfg["resolution"])]
    device = torch.device(args.device)
    precision = args.precision or cfg.get("precision", "fp32")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    wanted = ["hp", "nohp", "infogan"] if args.variants == "all" else [v.strip() for v in args.variants.split(",")]
    torch.manual_seed(1)
    variants = []
    for v in wanted:
        c = dict(cfg)
        if v == "hp":
            c["hp_lambda"] = c["hp_lambda"] if c.get("hp_lambda", 0) > 0 else 0.1
        elif v == "nohp":
            c["hp_lambda"] = 0.0
        elif v == "infogan":
            c["hp_lambda"], c["infogan_lambda"], c["infogan_nz"] = 0.0, 1.0, min(c["nz"], 4)
        else:
            sys.exit(f"pytorch_baseline: --variants: unknown variant '{v}' (use hp, nohp, infogan or all)")
        step = Step(c, device, not args.no_channels_last, precision)
        infogan = v == "infogan"
        d_ms = g_ms = g_nohp_ms = 0.0
        for i in range(args.warmup + args.steps):
            sync(device)
            t0 = time.perf_counter()
            step.d_step(infogan)
            sync(device)
            t1 = time.perf_counter()
            step.g_step(c["hp_lambda"], infogan)
            sync(device)
            t2 = time.perf_counter()
            if v == "hp":
                step.g_step(0.0, infogan)
                sync(device)
            if i >= args.warmup:
                d_ms += (t1 - t0) * 1e3
                g_ms += (t2 - t1) * 1e3
                g_nohp_ms += (time.perf_counter() - t2) * 1e3
        n = args.steps
        d_ms, g_ms, g_nohp_ms = d_ms / n, g_ms / n, g_nohp_ms / n
        variants.append({
            "variant": v,
            "images_per_s": step.batch / ((d_ms + g_ms) / 1e3),
            "ms_per_d_step": d_ms,
            "ms_per_g_step": g_ms,
            "hp_share_of_g_step": max((g_ms - g_nohp_ms) / g_ms, 0.0) if v == "hp" else None,
        })
    report = {
        "implementation": "pytorch-eager",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "channels_last": not args.no_channels_last,
        "device": str(device),
        "precision": precision,
        "resolution": cfg["resolution"],
        "minibatch": cfg["_minibatch"],
        "chunks": cfg["num_gpus"],
        "steps": args.steps,
        "variants": variants,
        "peak_memory_gb": peak_memory_gb(device),
    }
    print(json.dumps(report, indent=2))


# --------------------------------------------------------------------------- check against a hessian-gan snapshot

def read_safetensors(path):
    """The safetensors format: u64 header length, a JSON header, raw little-endian data."""
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen])
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "U8": np.uint8}
    tensors = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        arr = np.frombuffer(data, dtype=dtypes[info["dtype"]], count=(b - a) // np.dtype(dtypes[info["dtype"]]).itemsize,
                            offset=8 + hlen + a)
        tensors[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return tensors, meta


def load_into(module, tensors, prefix, names):
    """`names` maps our module's parameter names to the snapshot's (`4x4.Conv.weight` style, spec §1.7 table)."""
    with torch.no_grad():
        for ours, theirs in names.items():
            key = f"{prefix}/{theirs}"
            if key not in tensors:
                sys.exit(f"pytorch_baseline: snapshot has no {key}")
            dict(module.named_parameters())[ours].copy_(tensors[key])


def g_names(cfg):
    r = log2(cfg["resolution"])
    names = {"dense.weight": "4x4.Dense.weight", "dense.bias": "4x4.Dense.bias",
             "conv4.weight": "4x4.Conv.weight", "conv4.bias": "4x4.Conv.bias"}
    for i, s in enumerate(range(2, r + 1)):
        for p in ("weight", "bias"):
            names[f"torgb.{i}.{p}"] = f"ToRGB_lod{r - s}.{p}"
    for i, s in enumerate(range(3, r + 1)):
        for ours, theirs in (("up", "Conv0_up"), ("conv", "Conv1")):
            for p in ("weight", "bias"):
                names[f"{ours}.{i}.{p}"] = f"{1 << s}x{1 << s}.{theirs}.{p}"
    return names


def d_names(cfg):
    r = log2(cfg["resolution"])
    names = {}
    for i, s in enumerate(range(2, r + 1)):
        for p in ("weight", "bias"):
            names[f"fromrgb.{i}.{p}"] = f"FromRGB_lod{r - s}.{p}"
    for i, s in enumerate(range(r, 2, -1)):
        for ours, theirs in (("conv0", "Conv0"), ("conv1_down", "Conv1_down")):
            for p in ("weight", "bias"):
                names[f"{ours}.{i}.{p}"] = f"{1 << s}x{1 << s}.{theirs}.{p}"
    for ours, theirs in (("conv4", "Conv"), ("dense0", "Dense0"), ("dense1", "Dense1")):
        for p in ("weight", "bias"):
            names[f"{ours}.{p}"] = f"4x4.{theirs}.{p}"
    if cfg.get("infogan_nz", 0) > 0:
        for ours, theirs in (("conv", "Conv"), ("dense0", "Dense0"), ("dense1", "Dense1")):
            for p in ("weight", "bias"):
                names[f"q.{ours}.{p}"] = f"4x4.Q_Encoder.{theirs}.{p}"
    return names


def check(args):
    tensors, meta = read_safetensors(args.snapshot)
    cfg = json.loads(meta["config"])
    cfg.setdefault("num_channels", 3)
    torch.set_default_dtype(torch.float32)
    g = Generator(cfg, channels_last=not args.no_channels_last)
    d = Discriminator(cfg, channels_last=not args.no_channels_last)
    gn, dn = g_names(cfg), d_names(cfg)
    load_into(g, tensors, "G", gn)
    load_into(d, tensors, "D", dn)
    if not args.no_channels_last:
        to_channels_last(g)
        to_channels_last(d)
    os.makedirs(args.out, exist_ok=True)
    z = torch.from_numpy(np.load(args.z).astype(np.float32))
    layers = list(range(1, 2 * log2(cfg["resolution"])))
    with torch.no_grad():
        images, _ = g(z)
        scores, _ = d(images, cfg.get("num_gpus", 1) if z.shape[0] % cfg.get("num_gpus", 1) == 0 else 1)
        np.save(os.path.join(args.out, "images.npy"), images.contiguous().numpy())
        np.save(os.path.join(args.out, "scores.npy"), scores.numpy())
        if args.directions:
            v = torch.from_numpy(np.load(args.directions).astype(np.float32))
            pens = hessian_penalty(g, z, layers, v.shape[0], cfg["epsilon"], directions=v)
            np.save(os.path.join(args.out, "hp.npy"), torch.stack(pens).numpy())
    counts = {
        "g": sum(p.numel() for p in g.parameters()),
        "d": sum(p.numel() for p in d.parameters()) - (sum(p.numel() for p in d.q.parameters()) if d.q else 0),
        "q": sum(p.numel() for p in d.q.parameters()) if d.q else 0,
        "g_tensors": len(gn),
        "d_tensors": len(dn),
    }
    with open(os.path.join(args.out, "params.json"), "w") as f:
        json.dump(counts, f)
    print(json.dumps(counts))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="time the training step")
    b.add_argument("--train-config", required=True)
    b.add_argument("--steps", type=int, default=20)
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--variants", default="all")
    b.add_argument("--device", default="cpu")
    b.add_argument("--precision", choices=["fp32", "tf32", "bf16"])
    b.add_argument("--no-channels-last", action="store_true")
    c = sub.add_parser("check", help="forward a hessian-gan snapshot")
    c.add_argument("--snapshot", required=True)
    c.add_argument("--z", required=True)
    c.add_argument("--directions")
    c.add_argument("--out", required=True)
    c.add_argument("--no-channels-last", action="store_true")
    args = ap.parse_args()
    if args.cmd == "bench":
        if args.steps < 1:
            sys.exit("pytorch_baseline: --steps must be at least 1")
        bench(args)
    else:
        check(args)


if __name__ == "__main__":
    main()
