//! `hessian-gan bench`: steady-state training throughput at a fixed lod, split into D step, G step and the Hessian
//! Penalty's share of the G step, with peak memory and achieved FLOP/s from a FLOP count of the networks.
//!
//! Timing needs the device to be idle at each boundary, so the benchmark (unlike training) synchronises CUDA around
//! every timed phase.
//!
//! It also measures what reduced precision does to the Hessian Penalty estimate (`hp_error_vs_fp32`): the penalty of
//! the benchmarked G on one minibatch, with the same z and the same Rademacher directions, computed in float32 and in
//! TF32 / bfloat16 autocast. This is why `--precision` never applies to the HP passes (src/core/precision.rs).

use crate::commands::train::{self, TrainRequest};
use crate::commands::{launch, Globals};
use crate::config::TrainConfig;
use crate::core::distributed::{Backend, ProcessGroup, WorldInfo};
use crate::core::hessian::HessianPenalty;
use crate::core::native::{self, OpTime};
use crate::core::networks::{Generator, NetConfig};
use crate::core::precision::Precision;
use crate::data::synth::{self, Kind as SynthKind, SynthOptions};
use crate::data::Dataset;
use crate::training::Trainer;
use anyhow::{Context, Result};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Settings of `bench`: the training configuration to measure plus the measurement's own.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The configuration, resolved as `train` resolves it.
    pub train: TrainRequest,
    /// Timed iterations per variant.
    pub steps: usize,
    /// Untimed iterations first (allocator, cuDNN autotuning).
    pub warmup: usize,
    /// Which variants: all, or a comma list of hp, nohp, infogan and geometry (not in `all`).
    pub variants: String,
    /// Also profile `steps` more iterations per variant and report the operators' times (CPU).
    pub profile: bool,
}

/// Operators listed per step in a profile.
const PROFILE_TOP: usize = 25;

/// Where the time of one variant's steps goes, per libtorch operator (self time, largest first), averaged per
/// iteration.
#[derive(Debug, Serialize)]
pub struct StepProfile {
    pub d_step: Vec<OpTime>,
    pub g_step: Vec<OpTime>,
}

/// Forward FLOPs per image (multiply-adds × 2) of the networks at lod 0, counted from the layer shapes; element-wise
/// ops (bias, activation, pixel norm, pooling) are not counted.
#[derive(Clone, Debug, Serialize)]
pub struct FlopCount {
    pub g_forward: f64,
    pub d_forward: f64,
    pub q_forward: f64,
    /// G forward up to each HP layer (index 0 = layer 1).
    pub g_forward_to_layer: Vec<f64>,
}

fn conv(k: i64, cin: i64, cout: i64, res: i64) -> f64 {
    2.0 * (k * k * cin * cout * res * res) as f64
}

pub fn flops(net: &NetConfig) -> FlopCount {
    let nf = |s: i64| net.nf(s);
    let r = net.log2_res();
    // G: dense, 4×4 conv, then per resolution up-conv and conv (docs/spec/progan_hp.md §1.3), then the final ToRGB.
    let mut to_layer = vec![2.0 * (net.nz * nf(1) * 16) as f64];
    to_layer.push(to_layer[0] + conv(3, nf(1), nf(1), 4));
    for s in 3..=r {
        let res = 1 << s;
        let up = to_layer.last().copied().unwrap_or(0.0) + conv(3, nf(s - 2), nf(s - 1), res);
        to_layer.push(up);
        to_layer.push(up + conv(3, nf(s - 1), nf(s - 1), res));
    }
    let g_forward =
        to_layer.last().copied().unwrap_or(0.0) + conv(1, nf(r - 1), net.num_channels, 1 << r);
    to_layer.push(g_forward);
    // D: FromRGB at full resolution, per resolution conv + conv-then-pool, then the 4×4 head (docs/spec/progan_hp.md §1.5).
    let mut d = conv(1, net.num_channels, nf(r - 1), 1 << r);
    for s in (3..=r).rev() {
        let res = 1 << s;
        d += conv(3, nf(s - 1), nf(s - 1), res) + conv(3, nf(s - 1), nf(s - 2), res);
    }
    d += conv(3, nf(1) + 1, nf(1), 4) + 2.0 * (nf(1) * 16 * nf(0)) as f64 + 2.0 * nf(0) as f64;
    let q = if net.infogan_nz > 0 {
        conv(3, nf(1), nf(1), 4)
            + 2.0 * (nf(1) * 16 * nf(0)) as f64
            + 2.0 * (nf(0) * net.infogan_nz) as f64
    } else {
        0.0
    };
    FlopCount {
        g_forward,
        d_forward: d,
        q_forward: q,
        g_forward_to_layer: to_layer,
    }
}

/// One measured variant.
#[derive(Debug, Serialize)]
pub struct VariantReport {
    pub variant: String,
    pub images_per_s: f64,
    pub ms_per_d_step: f64,
    pub ms_per_g_step: f64,
    /// (G step with HP − G step without HP) / G step with HP, from the same run.
    pub hp_share_of_g_step: Option<f64>,
    pub tflops_achieved: f64,
    pub flops_per_iteration: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<StepProfile>,
}

/// The Hessian Penalty in a reduced precision against float32, on the same G, z and directions.
#[derive(Debug, Serialize)]
pub struct HpPrecisionError {
    pub precision: Precision,
    /// |HP_p − HP_fp32| / HP_fp32 of the weighted sum over the regularised layers, as in training.
    pub relative_error: f64,
    /// The same per regularised layer, in layer order.
    pub per_layer: Vec<f64>,
    /// The float32 penalty the errors are relative to.
    pub hp_fp32: f64,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub device: String,
    /// `--precision` of the adversarial passes in the timed variants.
    pub precision: Precision,
    pub resolution: i64,
    pub minibatch: i64,
    pub chunks: i64,
    pub steps: usize,
    pub flops_per_image: FlopCount,
    pub variants: Vec<VariantReport>,
    /// Peak resident memory (CPU) or device memory held (CUDA), in GB, after all variants.
    pub peak_memory_gb: Option<f64>,
    /// Measured with the G of the `hp` variant (TF32 only on CUDA, where it exists).
    pub hp_error_vs_fp32: Vec<HpPrecisionError>,
    /// `--variants geometry`: `geometry`'s methods at one code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geometry: Option<GeometryTiming>,
    /// Data-parallel processes the figures above were measured with (1 unless a worker of `bench --nproc`).
    pub processes: usize,
    /// `bench --nproc N`: the same benchmark in N processes beside these one-process figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
}

/// Seconds of each `geometry` method for one reference code of a freshly initialised G (l2 distance at lod 0),
/// with the products each used.
#[derive(Debug, Serialize)]
pub struct GeometryTiming {
    pub nz: i64,
    pub cutoff: usize,
    pub bp_s: f64,
    pub backward_iter_s: f64,
    pub forward_iter_s: f64,
    pub bp_products: u64,
    pub backward_iter_products: u64,
    pub forward_iter_products: u64,
}

/// [`GeometryTiming`] for the configuration's G: the full Hessian (n products), then n/2 − 1 eigenpairs by Lanczos on
/// exact and on finite-difference products, as the reference's defaults.
pub fn geometry_timing(net: &NetConfig, device: Device, seed: u64) -> Result<GeometryTiming> {
    use crate::core::geometry::{
        full_hessian, lanczos, BackwardHvp, ForwardHvp, HvpOperator, LanczosOptions, PulledMetric,
        Reduction,
    };
    let mut vs = tch::nn::VarStore::new(device);
    let g = Generator::new(&vs.root(), net);
    vs.freeze();
    let z0 = crate::core::latents::seeded_normal(seed, 1, net.nz)?;
    let phi = |z: &Tensor| Ok((g.forward(z, 0.0, true) + 1.0) / 2.0);
    let metric = PulledMetric::new(phi, Reduction::Mean, &z0, device)?;
    let cutoff = ((net.nz / 2 - 1).max(1)) as usize;
    let mut opts = LanczosOptions::new(cutoff);
    opts.seed = seed;
    let t = Instant::now();
    let mut op = BackwardHvp::new(&metric)?;
    let _h = full_hessian(&mut op)?;
    let (bp_s, bp_products) = (t.elapsed().as_secs_f64(), op.products());
    let t = Instant::now();
    let mut op = BackwardHvp::new(&metric)?;
    lanczos(&mut op, &opts)?;
    let (backward_iter_s, backward_iter_products) = (t.elapsed().as_secs_f64(), op.products());
    opts.max_restarts = 200;
    let t = Instant::now();
    let mut op = ForwardHvp::new(&metric, 1e-3)?;
    lanczos(&mut op, &opts)?;
    Ok(GeometryTiming {
        nz: net.nz,
        cutoff,
        bp_s,
        backward_iter_s,
        forward_iter_s: t.elapsed().as_secs_f64(),
        bp_products,
        backward_iter_products,
        forward_iter_products: op.products(),
    })
}

/// The relative error of the Hessian Penalty computed inside `precision` regions against float32 on the same G, z,
/// directions and layers (weights 1), at `lod`.
pub fn hp_precision_error(
    g: &Generator,
    hp: &HessianPenalty,
    z: &Tensor,
    lod: f64,
    layers: &[usize],
    precision: Precision,
    device: Device,
) -> Result<HpPrecisionError> {
    let directions = hp.rademacher(z);
    let penalties = |p: Precision| -> Result<Vec<f64>> {
        let per = tch::no_grad(|| {
            p.run(device, || {
                hp.penalties(|x| g.hp_layers(x, lod, layers, true), z, Some(&directions))
            })
        })?;
        Ok(per
            .iter()
            .map(|t| t.to_kind(Kind::Double).double_value(&[]))
            .collect())
    };
    let exact = penalties(Precision::Fp32)?;
    let reduced = penalties(precision)?;
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(f64::MIN_POSITIVE);
    let (sum_e, sum_r) = (exact.iter().sum::<f64>(), reduced.iter().sum::<f64>());
    Ok(HpPrecisionError {
        precision,
        relative_error: rel(sum_r, sum_e),
        per_layer: exact
            .iter()
            .zip(&reduced)
            .map(|(e, r)| rel(*r, *e))
            .collect(),
        hp_fp32: sum_e,
    })
}

/// Approximate FLOPs of one iteration at lod 0 (documented rule: a backward pass costs twice its forward; the
/// gradient penalty's double backward costs twice the forward + first backward).
fn iteration_flops(
    f: &FlopCount,
    cfg: &TrainConfig,
    batch: i64,
    hp: bool,
    layers: &[usize],
) -> f64 {
    let d = f.d_forward;
    let q = f.q_forward;
    // D step: G forward (no grad); real and fake D passes with backward (3× each); the mixed pass with its
    // gradient (3×) and the double backward (6×).
    let d_step = f.g_forward + 2.0 * 3.0 * d + 9.0 * d + 3.0 * q;
    // G step: G and D forward + backward, and 2k partial G passes to the deepest regularised layer with backward.
    let mut g_step = 3.0 * (f.g_forward + d + q);
    if hp {
        let deepest = layers.iter().max().copied().unwrap_or(1);
        g_step += 3.0 * 2.0 * cfg.num_rademacher_samples as f64 * f.g_forward_to_layer[deepest - 1];
    }
    (d_step + g_step) * batch as f64
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// What `bench --dry-run` prints: the resolved training configuration and the minibatch at full resolution, which
/// `benches/pytorch_baseline.py --train-config` reads so that both sides measure the same flags.
#[derive(Debug, Serialize)]
pub struct ResolvedBench {
    pub config: TrainConfig,
    pub minibatch_at_resolution: i64,
}

pub fn resolve(globals: &Globals, args: &BenchOptions) -> Result<ResolvedBench> {
    let (config, _) = train::resolve(globals, &args.train)?;
    config.validate()?;
    let minibatch_at_resolution = config.schedule().minibatch(config.resolution);
    Ok(ResolvedBench {
        config,
        minibatch_at_resolution,
    })
}

/// `bench --nproc N`: the data-parallel job's throughput against one process, measured back to back.
#[derive(Debug, Serialize)]
pub struct Scaling {
    pub processes: usize,
    pub backend: String,
    pub variants: Vec<ScalingRow>,
}

/// One variant's scaling: the same global minibatch in one process (all chunks) and in N (their share each).
#[derive(Debug, Serialize)]
pub struct ScalingRow {
    pub variant: String,
    pub images_per_s_one_process: f64,
    pub images_per_s: f64,
    pub ms_per_d_step: f64,
    pub ms_per_g_step: f64,
    /// images_per_s / images_per_s_one_process.
    pub speedup: f64,
    /// speedup / processes (1 = perfect scaling).
    pub efficiency: f64,
}

/// Where rank 0 of `bench --nproc`'s workers leaves its report for the parent.
const BENCH_OUT_ENV: &str = "HESSIAN_GAN_BENCH_OUT";

pub fn run(globals: &Globals, args: &BenchOptions) -> Result<BenchReport> {
    let world = WorldInfo::from_env()?;
    launch::check_nproc(args.train.nproc, world.as_ref().map(|w| w.world))?;
    if world.is_none() && args.train.nproc > 1 {
        return run_scaling(globals, args);
    }
    let report = run_here(globals, args, world.as_ref())?;
    if let (Some(info), Ok(out)) = (&world, std::env::var(BENCH_OUT_ENV)) {
        if info.is_writer() {
            crate::io::fs::write_bytes_atomic(
                std::path::Path::new(&out),
                serde_json::to_string(&report)?.as_bytes(),
            )?;
        }
    }
    Ok(report)
}

/// One process, then `nproc` workers of this same command, and the ratio per variant.
fn run_scaling(globals: &Globals, args: &BenchOptions) -> Result<BenchReport> {
    let nproc = args.train.nproc;
    anyhow::ensure!(
        !args.variants.split(',').any(|v| v.trim() == "geometry"),
        "--variants geometry has no multi-process mode; leave out --nproc"
    );
    let mut one = run_here(globals, args, None)?;
    let out = std::env::temp_dir().join(format!(
        "hessian-gan-bench-{}-ranks.json",
        std::process::id()
    ));
    let env = [(BENCH_OUT_ENV.to_string(), out.display().to_string())];
    launch::run_workers_with(
        nproc,
        args.train.master_port,
        &launch::own_args(),
        &env,
        false,
    )
    .map_err(|f| launch::failure_error(nproc, &f, None))?;
    let text = std::fs::read_to_string(&out)
        .with_context(|| format!("rank 0 left no report in {}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    let multi: serde_json::Value = serde_json::from_str(&text)?;
    let rows = one
        .variants
        .iter()
        .zip(multi["variants"].as_array().into_iter().flatten())
        .map(|(a, b)| {
            let ips = b["images_per_s"].as_f64().unwrap_or(f64::NAN);
            let speedup = ips / a.images_per_s;
            ScalingRow {
                variant: a.variant.clone(),
                images_per_s_one_process: a.images_per_s,
                images_per_s: ips,
                ms_per_d_step: b["ms_per_d_step"].as_f64().unwrap_or(f64::NAN),
                ms_per_g_step: b["ms_per_g_step"].as_f64().unwrap_or(f64::NAN),
                speedup,
                efficiency: speedup / nproc as f64,
            }
        })
        .collect();
    one.scaling = Some(Scaling {
        processes: nproc,
        backend: format!("{:?}", Backend::for_device(globals.device.resolve()?)),
        variants: rows,
    });
    Ok(one)
}

/// The benchmark in this process: alone (`world` None), or as one rank of a `bench --nproc` job.
fn run_here(
    globals: &Globals,
    args: &BenchOptions,
    world: Option<&WorldInfo>,
) -> Result<BenchReport> {
    let (base, _) = train::resolve(globals, &args.train)?;
    let device = train::rank_device(globals.device.resolve()?, world)?;
    let mut group = match world {
        Some(info) => Some(ProcessGroup::join(
            info,
            Backend::for_device(device),
            args.train
                .dist_timeout
                .max(std::time::Duration::from_secs(60)),
        )?),
        None => None,
    };
    let processes = group.as_ref().map_or(1, |g| g.world);
    // A small synthetic dataset at the benchmark's resolution: the loader's cost is included, the disk's is not.
    let tmp = std::env::temp_dir().join(format!("hessian-gan-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let data_dir = tmp.join("data");
    let opts = SynthOptions {
        kind: SynthKind::ClevrSimple,
        count: 256,
        resolution: base.resolution as u32,
        seed: 1,
        name: Some("bench".into()),
    };
    synth::generate(&data_dir, &opts)?;
    let dataset = Arc::new(Dataset::open(&data_dir)?);
    let batch = base.schedule().minibatch(base.resolution);
    let wanted: Vec<&str> = if args.variants == "all" {
        vec!["hp", "nohp", "infogan"]
    } else {
        args.variants.split(',').map(str::trim).collect()
    };
    let fl = flops(&base.net());
    let mut variants = Vec::new();
    let mut hp_errors = Vec::new();
    let mut geometry = None;
    let bar = crate::io::progress::bar(
        Some((wanted.len() * (args.warmup + args.steps)) as u64),
        "bench iterations",
    );
    for v in wanted {
        if v == "geometry" {
            geometry = Some(geometry_timing(&base.net(), device, base.seed)?);
            continue;
        }
        let mut cfg = base.clone();
        match v {
            "hp" => {
                cfg.hp_lambda = if cfg.hp_lambda > 0.0 {
                    cfg.hp_lambda
                } else {
                    0.1
                };
                cfg.warmup_kimg = 0.0;
                cfg.hp_start_kimg = 0.0;
            }
            "nohp" => cfg.hp_lambda = 0.0,
            "infogan" => {
                cfg.hp_lambda = 0.0;
                cfg.infogan_lambda = 1.0;
                cfg.infogan_nz = cfg.nz.min(4);
            }
            other => anyhow::bail!(
                "--variants: unknown variant '{other}' (use hp, nohp, infogan, geometry or all)"
            ),
        }
        cfg.validate()?;
        let run_dir = tmp.join(v);
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("cannot create {}", run_dir.display()))?;
        let mut t = Trainer::new_in_group(
            cfg.clone(),
            device,
            dataset.clone(),
            run_dir,
            None,
            group.take(),
        )?;
        let (mut d_ms, mut g_ms, mut g_nohp_ms) = (0.0, 0.0, 0.0);
        let hp_on = v == "hp";
        for i in 0..args.warmup + args.steps {
            let timed = i >= args.warmup;
            sync(device);
            let t0 = Instant::now();
            t.d_step(0.0, cfg.resolution, batch)?;
            sync(device);
            let t1 = Instant::now();
            t.g_step(0.0, batch, true)?;
            sync(device);
            let t2 = Instant::now();
            if hp_on {
                t.g_step(0.0, batch, false)?;
                sync(device);
            }
            bar.inc(1);
            if timed {
                d_ms += (t1 - t0).as_secs_f64() * 1e3;
                g_ms += (t2 - t1).as_secs_f64() * 1e3;
                g_nohp_ms += t2.elapsed().as_secs_f64() * 1e3;
            }
        }
        let profile = if args.profile {
            let per_iteration = |mut ops: Vec<OpTime>| {
                ops.truncate(PROFILE_TOP);
                for o in &mut ops {
                    o.self_ms /= args.steps as f64;
                    o.total_ms /= args.steps as f64;
                    o.calls /= args.steps as u64;
                }
                ops
            };
            let (r, d_ops) = native::profile(|| -> Result<()> {
                for _ in 0..args.steps {
                    t.d_step(0.0, cfg.resolution, batch)?;
                }
                Ok(())
            })?;
            r?;
            let (r, g_ops) = native::profile(|| -> Result<()> {
                for _ in 0..args.steps {
                    t.g_step(0.0, batch, true)?;
                }
                Ok(())
            })?;
            r?;
            Some(StepProfile {
                d_step: per_iteration(d_ops),
                g_step: per_iteration(g_ops),
            })
        } else {
            None
        };
        let _ = t.take_stats();
        if hp_on {
            let z = Tensor::randn([batch, cfg.nz], (Kind::Float, device));
            let layers = cfg.hp_layers();
            for p in [Precision::Tf32, Precision::Bf16] {
                if p.is_reduced_on(device) {
                    let g = &t.models().g;
                    let e =
                        hp_precision_error(g, t.hessian_penalty(), &z, 0.0, &layers, p, device)?;
                    hp_errors.push(e);
                }
            }
        }
        group = t.into_group();
        let n = args.steps as f64;
        let (d_ms, g_ms, g_nohp_ms) = (d_ms / n, g_ms / n, g_nohp_ms / n);
        let iter_s = (d_ms + g_ms) / 1e3;
        let fl_it = iteration_flops(&fl, &cfg, batch, hp_on, &cfg.hp_layers());
        variants.push(VariantReport {
            variant: v.to_string(),
            images_per_s: batch as f64 / iter_s,
            ms_per_d_step: d_ms,
            ms_per_g_step: g_ms,
            hp_share_of_g_step: hp_on.then(|| ((g_ms - g_nohp_ms) / g_ms).max(0.0)),
            tflops_achieved: fl_it / iter_s / 1e12,
            flops_per_iteration: fl_it,
            profile,
        });
    }
    bar.finish_and_clear();
    let report = BenchReport {
        device: crate::core::device::device_name(device),
        precision: base.precision,
        resolution: base.resolution,
        minibatch: batch,
        chunks: base.num_gpus,
        steps: args.steps,
        flops_per_image: fl,
        variants,
        peak_memory_gb: crate::core::device::peak_memory_gb(device),
        hp_error_vs_fp32: hp_errors,
        geometry,
        processes,
        scaling: None,
    };
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_at_the_paper_configuration() {
        let f = flops(&NetConfig::default());
        // Hand count of the largest terms at 128²: G's 128² up-conv 256→128 and conv 128→128.
        let g_128 = conv(3, 256, 128, 128) + conv(3, 128, 128, 128);
        assert!(f.g_forward > g_128);
        assert_eq!(f.g_forward_to_layer.len(), 13);
        assert!((f.g_forward_to_layer[0] - 2.0 * 12.0 * 8192.0).abs() < 1.0);
        assert!(f.g_forward_to_layer.windows(2).all(|w| w[1] > w[0]));
        assert_eq!(f.q_forward, 0.0);
        // 2·Σ k²·Cin·Cout·H·W over the layers of docs/spec/progan_hp.md §1.3 / §1.5 (computed by hand): G 41.763 and D 41.771 GFLOP.
        assert!(
            (f.g_forward / 1e9 - 41.762_881_536).abs() < 1e-6,
            "{}",
            f.g_forward / 1e9
        );
        assert!(
            (f.d_forward / 1e9 - 41.771_222_016).abs() < 1e-6,
            "{}",
            f.d_forward / 1e9
        );
        let q = flops(&NetConfig {
            infogan_nz: 4,
            ..NetConfig::default()
        })
        .q_forward;
        assert_eq!(
            q,
            conv(3, 512, 512, 4) + 2.0 * (8192.0 * 512.0) + 2.0 * 512.0 * 4.0
        );
    }

    #[test]
    fn hp_precision_error_is_zero_in_fp32_and_measured_in_bf16() {
        let cfg = NetConfig {
            resolution: 16,
            nz: 5,
            num_channels: 3,
            fmap_base: 64,
            fmap_max: 16,
            infogan_nz: 0,
        };
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let g = Generator::new(&(vs.root() / "G"), &cfg);
        let hp = HessianPenalty::new(2, 0.1).unwrap();
        let z = Tensor::randn([8, cfg.nz], (Kind::Float, Device::Cpu));
        let layers = [1, 3, 5];
        let same =
            hp_precision_error(&g, &hp, &z, 0.0, &layers, Precision::Fp32, Device::Cpu).unwrap();
        assert_eq!(same.relative_error, 0.0);
        assert_eq!(same.per_layer, vec![0.0; 3]);
        assert!(same.hp_fp32 > 0.0);
        let bf16 =
            hp_precision_error(&g, &hp, &z, 0.0, &layers, Precision::Bf16, Device::Cpu).unwrap();
        assert_eq!(bf16.per_layer.len(), 3);
        // bfloat16 keeps 8 bits of mantissa and the second differences are divided by ε² = 0.01: the error is far
        // above float32's rounding (~1e-7). Per layer it is of order 1e-2; the total, dominated by one layer whose
        // errors partly cancel, can fall to a few 1e-4 for some random weights (seen in 1 of 12 runs).
        let worst = bf16.per_layer.iter().copied().fold(0.0f64, f64::max);
        assert!(
            bf16.relative_error.is_finite() && bf16.relative_error > 1e-5 && worst > 1e-3,
            "{bf16:?}"
        );
    }
}
