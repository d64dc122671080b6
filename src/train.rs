//! `hessian-gan train`: ProGAN with the Hessian Penalty (or the InfoGAN baseline), as the reference trained it
//! (spec progan_hp §2, §3), with exact resume.
//!
//! Read top to bottom: configuration → dataset → networks (fresh or from a snapshot) → the loop of
//! {schedule, 4 × (D step, Gs EMA, G step)} → per-tick reporting, images and snapshots.

use crate::config::TrainConfig;
use crate::dataset::{Dataset, Loader, LoaderState};
use crate::device::device_name;
use crate::hessian::HessianPenalty;
use crate::losses;
use crate::networks::{self, Discriminator, Generator};
use crate::optim::{Adam, FlatParams};
use crate::schedule::{hp_layer_gate, hp_weight, ScheduleConfig};
use crate::{fsutil, imageio, snapshot, Globals};
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// The reference recomputes the schedule every 4 iterations (`minibatch_repeats`, §2.1).
const MINIBATCH_REPEATS: usize = 4;
/// How often (in iterations) the consecutive-skip counter is read back from the device.
const SKIP_CHECK_ITERATIONS: u64 = 64;

/// Command-line flags of `train`. Every setting is optional here: unset flags come from `--config`, from the
/// snapshot being resumed, or from the defaults (spec §4.1), in that order of precedence below the command line.
#[derive(clap::Args, Debug, Default)]
pub struct TrainArgs {
    /// A preset, e.g. configs/clevr_simple_hp.json; any setting below may come from it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the resolved configuration and the network summary, then exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Results run number to resume or fine-tune (results/NNNNN-*).
    #[arg(long)]
    pub resume_exp: Option<u32>,
    /// Which snapshot of --resume-exp: latest or a kimg number.
    #[arg(long, default_value = "latest")]
    pub resume_snapshot: String,
    /// Resume from this snapshot file instead of --resume-exp.
    #[arg(long, conflicts_with = "resume_exp")]
    pub resume: Option<PathBuf>,
    /// Dataset name under --datasets-dir (known names are downloaded when missing) or a dataset directory.
    #[arg(long)]
    pub dataset: Option<String>,
    #[arg(long)]
    pub resolution: Option<i64>,
    /// Latent dimension.
    #[arg(long)]
    pub nz: Option<i64>,
    /// Training length in thousands of real images shown to D.
    #[arg(long)]
    pub total_kimg: Option<f64>,
    /// Hessian Penalty weight (after ramp-up); 0 disables it.
    #[arg(long)]
    pub hp_lambda: Option<f64>,
    /// Finite-difference step of the Hessian Penalty.
    #[arg(long)]
    pub epsilon: Option<f64>,
    /// Rademacher samples k of the Hessian Penalty (≥ 2).
    #[arg(long)]
    pub num_rademacher_samples: Option<usize>,
    /// Generator layers to regularise (1 = dense, 2..2R−2 = convs, 2R−1 = RGB); default 1..10.
    #[arg(long, num_args = 1..)]
    pub layers_to_reg: Option<Vec<usize>>,
    /// Linear ramp of the HP weight, in kimg from --hp-start-kimg (the reference default is 10000).
    #[arg(long)]
    pub warmup_kimg: Option<f64>,
    #[arg(long)]
    pub hp_start_kimg: Option<f64>,
    #[arg(long)]
    pub infogan_lambda: Option<f64>,
    /// Number of leading z components regularised by InfoGAN.
    #[arg(long)]
    pub infogan_nz: Option<i64>,
    /// Virtual GPUs: total batch = 4-GPU table × num_gpus/4, processed as num_gpus chunks (1, 2, 4 or 8).
    #[arg(long)]
    pub num_gpus: Option<i64>,
    /// Ticks between traversal GIFs (−1 disables).
    #[arg(long)]
    pub compute_interp_ticks: Option<i64>,
    /// Ticks between metric evaluations (only on snapshot ticks, as the reference).
    #[arg(long)]
    pub compute_metrics_ticks: Option<i64>,
    /// Metrics at snapshot ticks, comma-separated: fid (fid50k), ppl (ppl_zend_v2); see `evaluate`.
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub metrics: Option<Vec<String>>,
    #[arg(long)]
    pub fmap_base: Option<i64>,
    #[arg(long)]
    pub fmap_max: Option<i64>,
    #[arg(long)]
    pub lod_initial_resolution: Option<i64>,
    #[arg(long)]
    pub lod_training_kimg: Option<f64>,
    #[arg(long)]
    pub lod_transition_kimg: Option<f64>,
    /// Multiplies the per-resolution minibatch table.
    #[arg(long)]
    pub minibatch_scale: Option<f64>,
    /// Explicit total minibatch per resolution, e.g. --minibatch 32=16 16=32.
    #[arg(long, num_args = 1.., value_parser = parse_res_batch)]
    pub minibatch: Option<Vec<(i64, i64)>>,
    /// Tick length in kimg (default: per resolution, as the reference).
    #[arg(long)]
    pub tick_kimg: Option<f64>,
    /// Ticks between network snapshots (the reference: 5).
    #[arg(long)]
    pub network_snapshot_ticks: Option<i64>,
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
    #[arg(long)]
    pub datasets_dir: Option<PathBuf>,
    /// Arithmetic of the adversarial passes (G's images for D, D, the gradient penalty): fp32, tf32 (CUDA) or
    /// bf16 autocast. The Hessian Penalty passes always run in float32.
    #[arg(long, value_enum)]
    pub precision: Option<crate::precision::Precision>,
}

fn parse_res_batch(s: &str) -> std::result::Result<(i64, i64), String> {
    let (r, b) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not RES=BATCH (e.g. 32=16)"))?;
    let r = r
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': resolution '{r}' is not an integer"))?;
    let b = b
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': batch '{b}' is not an integer"))?;
    Ok((r, b))
}

impl TrainArgs {
    /// The flags that were given, as JSON fields named like `TrainConfig`'s.
    pub fn overrides(&self, seed: Option<u64>) -> Map<String, Value> {
        let mut m = Map::new();
        macro_rules! put {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field {
                    m.insert(stringify!($field).to_string(), serde_json::json!(v));
                }
            )*};
        }
        put!(
            dataset,
            resolution,
            nz,
            total_kimg,
            hp_lambda,
            epsilon,
            num_rademacher_samples,
            layers_to_reg,
            warmup_kimg,
            hp_start_kimg,
            infogan_lambda,
            infogan_nz,
            num_gpus,
            compute_interp_ticks,
            compute_metrics_ticks,
            metrics,
            fmap_base,
            fmap_max,
            lod_initial_resolution,
            lod_training_kimg,
            lod_transition_kimg,
            minibatch_scale,
            tick_kimg,
            network_snapshot_ticks,
            results_dir,
            datasets_dir,
            precision
        );
        if let Some(pairs) = &self.minibatch {
            let obj: Map<String, Value> = pairs
                .iter()
                .map(|(r, b)| (r.to_string(), serde_json::json!(b)))
                .collect();
            m.insert("minibatch".into(), Value::Object(obj));
        }
        if let Some(s) = seed {
            m.insert("seed".into(), serde_json::json!(s));
        }
        m
    }
}

/// Counters that, with the networks, optimisers and loader position, make a run resumable exactly.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainState {
    pub cur_nimg: u64,
    /// D+G iterations done (each seeds libtorch's generator as `seed ⊕ iteration`, so draws need no saved RNG).
    pub iteration: u64,
    /// floor/ceil of the lod at the last schedule update (Adam is reset when they change, §2.3).
    pub lod_bounds: Option<(i64, i64)>,
    pub loader: LoaderState,
    /// Where the HP ramp starts after a fine-tune shift (§2.6), in kimg.
    pub hp_start_kimg: f64,
}

/// The networks, their flat parameter buffers and optimisers.
pub struct Models {
    pub g_vs: nn::VarStore,
    pub g: Generator,
    pub g_params: FlatParams,
    pub d_vs: nn::VarStore,
    pub d: Discriminator,
    pub d_params: FlatParams,
    pub gs_vs: nn::VarStore,
    pub gs: Generator,
    pub gs_params: FlatParams,
    pub opt_g: Adam,
    pub opt_d: Adam,
}

impl Models {
    /// Fresh networks (weights from libtorch's generator, which the caller seeds); Gs starts as a copy of G.
    pub fn new(cfg: &TrainConfig, device: Device) -> Result<Self> {
        let net = cfg.net();
        let g_vs = nn::VarStore::new(device);
        let g = Generator::new(&g_vs.root(), &net);
        let d_vs = nn::VarStore::new(device);
        let d = Discriminator::new(&d_vs.root(), &net);
        let gs_vs = nn::VarStore::new(device);
        let gs = Generator::new(&gs_vs.root(), &net);
        let g_params = FlatParams::new(&g_vs);
        let d_params = FlatParams::new(&d_vs);
        let gs_params = FlatParams::new(&gs_vs);
        gs_params.copy_from(&g_params)?;
        let opt_g = Adam::new(&g_params, cfg.learning_rate);
        let opt_d = Adam::new(&d_params, cfg.learning_rate);
        Ok(Self {
            g_vs,
            g,
            g_params,
            d_vs,
            d,
            d_params,
            gs_vs,
            gs,
            gs_params,
            opt_g,
            opt_d,
        })
    }

    /// Every tensor of the snapshot, by name: `G/…`, `D/…`, `Gs/…`, and with `optimizer` also
    /// `opt_G/{m,v}/…`, `opt_G/{step,skipped}`, ….
    fn named_tensors(&self, optimizer: bool) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (prefix, p) in [
            ("G", &self.g_params),
            ("D", &self.d_params),
            ("Gs", &self.gs_params),
        ] {
            for (name, t) in p.names.iter().zip(&p.params) {
                out.push((format!("{prefix}/{name}"), t.shallow_clone()));
            }
        }
        let optimizers = [
            ("opt_G", &self.opt_g, &self.g_params),
            ("opt_D", &self.opt_d, &self.d_params),
        ];
        for (prefix, opt, p) in optimizers.into_iter().filter(|_| optimizer) {
            for (name, t) in p.views(&opt.m) {
                out.push((format!("{prefix}/m/{name}"), t));
            }
            for (name, t) in p.views(&opt.v) {
                out.push((format!("{prefix}/v/{name}"), t));
            }
            out.push((format!("{prefix}/step"), opt.step.shallow_clone()));
            out.push((format!("{prefix}/skipped"), opt.skipped.shallow_clone()));
        }
        out
    }

    /// Loads weights (and optimiser state when present) from a snapshot's tensors.
    fn load(&mut self, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (prefix, p) in [
            ("G", &self.g_params),
            ("D", &self.d_params),
            ("Gs", &self.gs_params),
        ] {
            for (name, var) in p.names.iter().zip(&p.params) {
                let key = format!("{prefix}/{name}");
                let t = tensors.get(&key).with_context(|| {
                    format!(
                        "{}: missing {key}; it was written for a different network configuration",
                        path.display()
                    )
                })?;
                ensure!(
                    t.size() == var.size(),
                    "{}: {key} has shape {:?}, the network expects {:?} (different --nz, --resolution, fmap or \
                     --infogan-nz?)",
                    path.display(),
                    t.size(),
                    var.size()
                );
                var.detach().copy_(t);
            }
        }
        for (prefix, opt, p) in [
            ("opt_G", &mut self.opt_g, &self.g_params),
            ("opt_D", &mut self.opt_d, &self.d_params),
        ] {
            if !tensors.contains_key(&format!("{prefix}/step")) {
                continue; // an imported checkpoint: fresh optimiser state
            }
            for (which, buf) in [("m", &opt.m), ("v", &opt.v)] {
                for (name, view) in p.views(buf) {
                    let key = format!("{prefix}/{which}/{name}");
                    let t = tensors
                        .get(&key)
                        .with_context(|| format!("{}: missing {key}", path.display()))?;
                    view.detach().copy_(t);
                }
            }
            opt.step.copy_(&tensors[&format!("{prefix}/step")]);
            if let Some(s) = tensors.get(&format!("{prefix}/skipped")) {
                opt.skipped.copy_(s);
            }
        }
        Ok(())
    }
}

/// Snapshot metadata keys.
const META_FORMAT: &str = "hessian-gan-snapshot";

/// Writes a snapshot of the models, config and state; `optimizer = false` leaves out the Adam state (an imported
/// checkpoint has none, and it would double the file).
pub fn save_snapshot(
    path: &Path,
    models: &Models,
    cfg: &TrainConfig,
    state: &TrainState,
    optimizer: bool,
) -> Result<()> {
    let metadata = HashMap::from([
        ("format".to_string(), META_FORMAT.to_string()),
        ("version".to_string(), "1".to_string()),
        ("config".to_string(), serde_json::to_string(cfg)?),
        ("state".to_string(), serde_json::to_string(state)?),
        (
            "kimg".to_string(),
            format!("{:.3}", state.cur_nimg as f64 / 1000.0),
        ),
    ]);
    snapshot::save(path, &models.named_tensors(optimizer), metadata)
}

/// A loaded snapshot: its tensors, training config and state.
pub struct LoadedSnapshot {
    pub path: PathBuf,
    pub tensors: HashMap<String, Tensor>,
    pub config: TrainConfig,
    pub state: TrainState,
}

pub fn load_snapshot(path: &Path) -> Result<LoadedSnapshot> {
    let (tensors, meta) = snapshot::load(path)?;
    ensure!(
        meta.get("format").map(String::as_str) == Some(META_FORMAT),
        "{} is not a hessian-gan snapshot (no format tag)",
        path.display()
    );
    let config: TrainConfig = serde_json::from_str(meta.get("config").map_or("", String::as_str))
        .with_context(|| {
        format!(
            "{}: unreadable config in the snapshot metadata",
            path.display()
        )
    })?;
    let state: TrainState = serde_json::from_str(meta.get("state").map_or("", String::as_str))
        .with_context(|| {
            format!(
                "{}: unreadable state in the snapshot metadata",
                path.display()
            )
        })?;
    Ok(LoadedSnapshot {
        path: path.to_path_buf(),
        tensors,
        config,
        state,
    })
}

/// The snapshot files of a run directory, sorted by name (= by kimg).
pub fn snapshots_in(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .with_context(|| format!("cannot read run directory {}", run_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("network-snapshot-") && n.ends_with(".safetensors"))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// `results/NNNNN-*` for a run number (§2.8).
pub fn run_dir_of(results_dir: &Path, exp: u32) -> Result<PathBuf> {
    let prefix = format!("{exp:05}-");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results_dir)
        .with_context(|| format!("cannot read results directory {}", results_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .with_context(|| format!("no run {exp:05} in {}", results_dir.display()))
}

/// The snapshot `which` (`latest` or a kimg number) of a run directory.
pub fn find_snapshot(run_dir: &Path, which: &str) -> Result<PathBuf> {
    let snaps = snapshots_in(run_dir)?;
    if which == "latest" {
        return snaps
            .last()
            .cloned()
            .with_context(|| format!("{} holds no snapshot yet", run_dir.display()));
    }
    let kimg: u64 = which.parse().map_err(|_| {
        anyhow::anyhow!("--resume-snapshot '{which}' must be 'latest' or a kimg number")
    })?;
    let name = format!("network-snapshot-{kimg:06}.safetensors");
    snaps
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == name.as_str()))
        .with_context(|| {
            format!(
                "{} has no snapshot at {kimg} kimg ({name})",
                run_dir.display()
            )
        })
}

/// `results/{1 + largest run number:05}-{desc}` (§2.7).
pub fn next_run_dir(results_dir: &Path, desc: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(results_dir)
        .with_context(|| format!("cannot create results directory {}", results_dir.display()))?;
    let mut next = 0u32;
    for entry in std::fs::read_dir(results_dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(n) = digits.parse::<u32>() {
            next = next.max(n + 1);
        }
    }
    Ok(results_dir.join(format!("{next:05}-{desc}")))
}

/// Set by Ctrl-C: stop at the next safe point after a snapshot.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn install_ctrlc() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                std::process::exit(130); // a second Ctrl-C stops at once
            }
            eprintln!("\ninterrupted: stopping after the next snapshot (Ctrl-C again to stop now)");
        });
    });
}

/// Per-iteration seed: the run seed mixed with the iteration (splitmix64), so every draw is reproducible after a
/// resume without saving libtorch's generator state.
fn iteration_seed(seed: u64, iteration: u64) -> i64 {
    let mut x = seed ^ iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) >> 1) as i64
}

/// Device-side running sums of the scalars logged per tick; read back only at ticks.
#[derive(Default)]
struct TickStats {
    sums: Vec<(String, Tensor)>,
    counts: HashMap<String, u64>,
}

impl TickStats {
    fn add(&mut self, key: &str, value: &Tensor) {
        let v = value.detach().to_kind(Kind::Float);
        match self.sums.iter_mut().find(|(k, _)| k == key) {
            Some((_, s)) => *s += v,
            None => self.sums.push((key.to_string(), v)),
        }
        *self.counts.entry(key.to_string()).or_default() += 1;
    }

    /// Means over the tick (one host read per key) and a reset.
    fn take(&mut self) -> Vec<(String, f64)> {
        let out = self
            .sums
            .iter()
            .map(|(k, s)| (k.clone(), s.double_value(&[]) / self.counts[k] as f64))
            .collect();
        self.sums.clear();
        self.counts.clear();
        out
    }
}

/// Entry point of `hessian-gan train`.
pub fn run(globals: &Globals, args: TrainArgs) -> Result<()> {
    // Configuration: defaults < snapshot being resumed < preset < command line.
    let resume_path = match (&args.resume, args.resume_exp) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(exp)) => {
            // The run number is looked up in the results directory the preset or the command line names.
            let prelim = TrainConfig::resolve(
                TrainConfig::default(),
                args.config.as_deref(),
                args.overrides(None),
            );
            let results_dir =
                prelim.map_or_else(|_| TrainConfig::default().results_dir, |c| c.results_dir);
            Some(find_snapshot(
                &run_dir_of(&results_dir, exp)?,
                &args.resume_snapshot,
            )?)
        }
        (None, None) => None,
    };
    let resumed = resume_path.as_deref().map(load_snapshot).transpose()?;
    let base = resumed
        .as_ref()
        .map_or_else(TrainConfig::default, |s| s.config.clone());
    let cfg = TrainConfig::resolve(base, args.config.as_deref(), args.overrides(globals.seed))?;
    let device = globals.device.resolve()?;

    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&cfg)?);
        println!("{}", networks::summary(&cfg.net())?);
        print_schedule(&cfg.schedule());
        return Ok(());
    }

    let dataset_dir = crate::fetch::locate(&cfg.dataset, &cfg.datasets_dir, globals)?;
    let dataset = Arc::new(Dataset::open(&dataset_dir)?);
    let meta = dataset.meta();
    ensure!(
        meta.resolution as i64 >= cfg.resolution,
        "dataset {} has resolution {}, below --resolution {}",
        dataset_dir.display(),
        meta.resolution,
        cfg.resolution
    );
    ensure!(
        meta.channels == 3,
        "dataset {} has {} channel(s); the networks are built for RGB (3)",
        dataset_dir.display(),
        meta.channels
    );

    let run_dir = next_run_dir(&cfg.results_dir, &cfg.run_description())?;
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    fsutil::write_bytes_atomic(
        &run_dir.join("config.json"),
        serde_json::to_string_pretty(&cfg)?.as_bytes(),
    )?;
    let mut trainer = Trainer::new(globals, cfg, device, dataset, run_dir, resumed)?;
    trainer.train()
}

fn print_schedule(s: &ScheduleConfig) {
    println!("schedule (kimg → lod, data resolution, total minibatch, per-chunk):");
    // Each phase: its start, the middle of its transition and its end.
    let phase = s.lod_training_kimg + s.lod_transition_kimg;
    let points = (0..=s.max_lod() as i64).flat_map(|p| {
        let start = p as f64 * phase;
        [
            start,
            start + s.lod_training_kimg + s.lod_transition_kimg / 2.0,
        ]
    });
    for kimg in points {
        let p = s.at((kimg * 1000.0) as u64);
        println!(
            "  {kimg:>8.0}  lod {:>4.2}  {:>4}²  batch {:>5}  ({} × {})",
            p.lod,
            p.resolution,
            p.minibatch,
            s.num_gpus,
            p.minibatch / s.num_gpus
        );
    }
}

/// A training run in progress: the loop of `train`, exposed step by step for tests and benchmarks.
pub struct Trainer {
    cfg: TrainConfig,
    sched: ScheduleConfig,
    device: Device,
    verbosity: i8,
    dataset: Arc<Dataset>,
    loader: Loader,
    models: Models,
    state: TrainState,
    run_dir: PathBuf,
    log: std::fs::File,
    hp: HessianPenalty,
    /// The regularised layers that exist at this resolution.
    hp_layers: Vec<usize>,
    grid_z: Tensor,
    interp_z: Tensor,
    stats: TickStats,
    events: crate::tensorboard::EventWriter,
    /// The metric networks, loaded when training starts with `metrics` set.
    metrics: Option<crate::evaluate::MetricSuite>,
}

impl Trainer {
    pub fn new(
        globals: &Globals,
        mut cfg: TrainConfig,
        device: Device,
        dataset: Arc<Dataset>,
        run_dir: PathBuf,
        resumed: Option<LoadedSnapshot>,
    ) -> Result<Self> {
        // libtorch lets cuDNN use TF32 by default; outside `--precision` regions everything is strict float32.
        crate::precision::set_strict_fp32();
        if device.is_cuda() {
            // Fixed shapes per phase: let cuDNN pick the fastest algorithms once.
            tch::Cuda::cudnn_set_benchmark(true);
        }
        tch::manual_seed(iteration_seed(cfg.seed, u64::MAX));
        let mut models = Models::new(&cfg, device)?;
        let mut state = TrainState {
            hp_start_kimg: cfg.hp_start_kimg,
            ..Default::default()
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run_dir.join("log.txt"))
            .with_context(|| format!("cannot open {}", run_dir.join("log.txt").display()))?;
        let mut notes = Vec::new();
        if let Some(snap) = &resumed {
            models.load(&snap.tensors, &snap.path)?;
            state = snap.state.clone();
            state.hp_start_kimg = cfg.hp_start_kimg;
            // Fine-tuning a run trained without HP: the penalty ramps from 0 at the resume point (§2.6). The
            // reference decided this from the checkpoint's path; the snapshot's own config says it exactly.
            if snap.config.hp_lambda == 0.0 && cfg.hp_lambda > 0.0 {
                state.hp_start_kimg = cfg.hp_start_kimg + state.cur_nimg as f64 / 1000.0;
                notes.push(format!(
                    "fine-tuning a run without HP: the penalty ramps from 0 at {:.1} kimg over {} kimg",
                    state.hp_start_kimg, cfg.warmup_kimg
                ));
            }
            notes.push(format!(
                "resumed from {} at {:.1} kimg",
                snap.path.display(),
                state.cur_nimg as f64 / 1000.0
            ));
        }
        cfg.hp_start_kimg = state.hp_start_kimg;
        let loader = match &resumed {
            Some(_) => Loader::with_state(dataset.clone(), cfg.seed, state.loader.clone())?,
            None => Loader::new(dataset.clone(), cfg.seed),
        };
        let hp = HessianPenalty::new(
            cfg.num_rademacher_samples.max(2),
            cfg.epsilon.max(f64::MIN_POSITIVE),
        )?
        .with_chunks(cfg.num_gpus as usize)?;
        // Fixed latents for the fakes grid and the traversal GIFs, drawn once from the run seed (§2.1, §7.2).
        let (grid_w, grid_h) = grid_size(cfg.resolution);
        let grid_z = Tensor::randn([grid_w * grid_h, cfg.nz], (Kind::Float, device));
        let interp_z = Tensor::randn([8, cfg.nz], (Kind::Float, device));
        // The fakes grid's latents, so that `visualize --z` renders the same samples from any snapshot (issue 9).
        crate::latents::write_npy(&grid_z, &run_dir.join("z.npy"))?;
        let hp_layers = cfg.hp_layers();
        let events = crate::tensorboard::EventWriter::create(&run_dir)?;
        let mut trainer = Self {
            sched: cfg.schedule(),
            cfg,
            device,
            verbosity: globals.verbosity,
            dataset,
            loader,
            models,
            state,
            run_dir,
            log,
            hp,
            hp_layers,
            grid_z,
            interp_z,
            stats: TickStats::default(),
            events,
            metrics: None,
        };
        trainer.say(&format!(
            "run {} on {} ({}), dataset {} ({} images)",
            trainer.run_dir.display(),
            device_name(device),
            crate::info::short_device_description(device),
            trainer.cfg.dataset,
            trainer.dataset.meta().count
        ));
        let dropped: Vec<usize> = trainer
            .cfg
            .layers_to_reg
            .iter()
            .copied()
            .filter(|l| !trainer.hp_layers.contains(l))
            .collect();
        if trainer.cfg.hp_lambda > 0.0 && !dropped.is_empty() {
            notes.push(format!(
                "layers {dropped:?} do not exist at {}²; regularising {:?}",
                trainer.cfg.resolution, trainer.hp_layers
            ));
        }
        for n in notes {
            trainer.say(&n);
        }
        Ok(trainer)
    }

    /// A line to the console (unless --quiet) and to log.txt.
    fn say(&mut self, line: &str) {
        if self.verbosity >= 0 {
            eprintln!("{line}");
        }
        let _ = writeln!(self.log, "{line}");
    }

    pub fn models(&self) -> &Models {
        &self.models
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The Hessian Penalty estimator of this run (k, ε, chunks).
    pub fn hessian_penalty(&self) -> &HessianPenalty {
        &self.hp
    }

    /// Means of the scalars logged since the last call (a host read per key).
    pub fn take_stats(&mut self) -> Vec<(String, f64)> {
        self.stats.take()
    }

    /// The whole run: iterations, ticks, snapshots, until total_kimg, abort.txt or Ctrl-C.
    pub fn train(&mut self) -> Result<()> {
        install_ctrlc();
        let total_nimg = (self.cfg.total_kimg * 1000.0).round() as u64;
        ensure!(
            self.state.cur_nimg < total_nimg,
            "--total-kimg {} is not beyond the resumed snapshot's {:.1} kimg; raise --total-kimg",
            self.cfg.total_kimg,
            self.state.cur_nimg as f64 / 1000.0
        );
        self.load_metrics()?;
        self.write_reals_grid()?;
        self.write_fakes_grid()?;
        if self.cfg.compute_interp_ticks > 0 && self.cfg.compute_interp_ticks < 9999 {
            self.write_traversals()?;
        }
        let bar = crate::progress::bar(Some(total_nimg / 1000), "kimg", self.verbosity);
        bar.set_position(self.state.cur_nimg / 1000);
        let start = Instant::now();
        let mut tick = 0i64;
        let mut tick_start_nimg = self.state.cur_nimg;
        let mut tick_start_time = Instant::now();
        let mut stop_reason: Option<String> = None;
        while self.state.cur_nimg < total_nimg {
            let phase = self.sched.at(self.state.cur_nimg);
            let bounds = (phase.lod.floor() as i64, phase.lod.ceil() as i64);
            if self.state.lod_bounds != Some(bounds) {
                self.models.opt_g.reset();
                self.models.opt_d.reset();
                self.state.lod_bounds = Some(bounds);
            }
            for _ in 0..MINIBATCH_REPEATS {
                self.iteration(phase.lod, phase.resolution, phase.minibatch)?;
                if self.state.iteration.is_multiple_of(SKIP_CHECK_ITERATIONS) {
                    self.check_skips()?;
                }
            }
            bar.set_position(self.state.cur_nimg / 1000);
            let done = self.state.cur_nimg >= total_nimg;
            if self.run_dir.join("abort.txt").exists() {
                stop_reason = Some("abort.txt found".into());
            } else if INTERRUPTED.load(Ordering::SeqCst) {
                stop_reason = Some("interrupted".into());
            }
            let tick_due =
                self.state.cur_nimg >= tick_start_nimg + (phase.tick_kimg * 1000.0) as u64;
            if tick_due || done || stop_reason.is_some() {
                tick += 1;
                let tick_time = tick_start_time.elapsed().as_secs_f64();
                let tick_kimg = (self.state.cur_nimg - tick_start_nimg) as f64 / 1000.0;
                let maintenance = Instant::now();
                let stats = self.stats.take();
                let hp_w = self.hp_weight_now();
                let line = format!(
                    "tick {tick:<5} kimg {:<8.1} lod {:<5.2} minibatch {:<4} hessian_weight {:<7.4} time {:<9} \
                     sec/tick {:<7.1} sec/kimg {:<7.2} {}",
                    self.state.cur_nimg as f64 / 1000.0,
                    phase.lod,
                    phase.minibatch,
                    hp_w,
                    format_duration(start.elapsed().as_secs_f64()),
                    tick_time,
                    tick_time / tick_kimg.max(1e-9),
                    stats.iter().map(|(k, v)| format!("{k} {v:.4}")).collect::<Vec<_>>().join(" ")
                );
                bar.suspend(|| self.say(&line));
                bar.set_message(format!(
                    "lod {:.2} batch {} {:.1} s/kimg hp_w {:.3}",
                    phase.lod,
                    phase.minibatch,
                    tick_time / tick_kimg.max(1e-9),
                    hp_w
                ));
                self.log_tick_scalars(&stats, &phase, hp_w, tick_time, tick_kimg)?;
                self.write_fakes_grid()?;
                let interp = self.cfg.compute_interp_ticks;
                if interp > 0 && tick % interp == 0 {
                    self.write_traversals()?;
                }
                if tick == 1
                    || tick % self.cfg.network_snapshot_ticks == 0
                    || done
                    || stop_reason.is_some()
                {
                    let snapshot = self.save()?;
                    if crate::metrics::due(tick, self.cfg.compute_metrics_ticks, done)
                        && stop_reason.is_none()
                    {
                        bar.suspend(|| self.compute_metrics(&snapshot))?;
                    }
                }
                self.say_maintenance(maintenance.elapsed().as_secs_f64());
                tick_start_nimg = self.state.cur_nimg;
                tick_start_time = Instant::now();
                if let Some(reason) = &stop_reason {
                    bar.abandon();
                    self.say(&format!(
                        "stopped ({reason}) at {:.1} kimg; resume with --resume-exp",
                        self.state.cur_nimg as f64 / 1000.0
                    ));
                    return Ok(());
                }
            }
        }
        bar.finish();
        fsutil::write_bytes_atomic(&self.run_dir.join("_finished.txt"), b"")?;
        self.say(&format!(
            "done: {} in {}",
            self.run_dir.display(),
            format_duration(start.elapsed().as_secs_f64())
        ));
        Ok(())
    }

    /// TensorBoard scalars for the tick under the reference's keys (§2.7), step = images shown.
    fn log_tick_scalars(
        &mut self,
        stats: &[(String, f64)],
        phase: &crate::schedule::Phase,
        hp_w: f64,
        tick_time: f64,
        tick_kimg: f64,
    ) -> Result<()> {
        let mut values: Vec<(String, f64)> = stats.to_vec();
        let skipped_g = self.models.opt_g.skipped.double_value(&[]);
        let skipped_d = self.models.opt_d.skipped.double_value(&[]);
        let its = self.state.iteration.max(1) as f64;
        values.extend([
            ("Progress/lod".to_string(), phase.lod),
            ("Progress/minibatch".to_string(), phase.minibatch as f64),
            ("Progress/hessian_weight".to_string(), hp_w),
            (
                "Progress/kimg".to_string(),
                self.state.cur_nimg as f64 / 1000.0,
            ),
            ("Timing/sec_per_tick".to_string(), tick_time),
            (
                "Timing/sec_per_kimg".to_string(),
                tick_time / tick_kimg.max(1e-9),
            ),
            ("TrainG/learning_rate".to_string(), self.cfg.learning_rate),
            ("TrainD/learning_rate".to_string(), self.cfg.learning_rate),
            ("TrainG/overflow_frequency".to_string(), skipped_g / its),
            ("TrainD/overflow_frequency".to_string(), skipped_d / its),
        ]);
        if let Some(peak) = crate::info::peak_memory_gb(self.device) {
            values.push(("Resources/peak_gpu_mem_gb".to_string(), peak));
        }
        self.events.scalars(self.state.cur_nimg as i64, &values)?;
        self.events.flush()
    }

    fn say_maintenance(&mut self, secs: f64) {
        if self.verbosity >= 1 {
            let line = format!("  maintenance {secs:.1} s");
            self.say(&line);
        }
    }

    fn hp_weight_now(&self) -> f64 {
        hp_weight(
            self.cfg.hp_lambda,
            self.state.hp_start_kimg,
            self.cfg.warmup_kimg,
            self.state.cur_nimg,
        )
    }

    /// One D step (with the Gs EMA update) and one G step (§2.3).
    pub fn iteration(&mut self, lod: f64, data_res: i64, minibatch: i64) -> Result<()> {
        tch::manual_seed(iteration_seed(self.cfg.seed, self.state.iteration));
        self.d_step(lod, data_res, minibatch)?;
        self.g_step(lod, minibatch, true)?;
        self.state.iteration += 1;
        Ok(())
    }

    /// The D step: WGAN-GP on reals and fakes from G (+ InfoGAN MSE), §3.2, §3.4; then the Gs EMA update.
    pub fn d_step(&mut self, lod: f64, data_res: i64, minibatch: i64) -> Result<()> {
        let level = data_res.trailing_zeros();
        debug_assert_eq!(
            level,
            crate::dataset::reals::level_for_lod(lod, self.sched.log2_resolution() as u32)
        );
        let chunks = self.cfg.num_gpus;
        let nz = self.cfg.nz;
        let info_k = self.cfg.infogan_nz;
        let opts = (Kind::Float, self.device);

        // D step: WGAN-GP on reals and fakes from G (+ InfoGAN MSE), §3.2, §3.4.
        let reals = self.loader.next_batch(level, minibatch as usize)?;
        let reals = if self.device.is_cuda() {
            // Page-locked staging and an asynchronous copy: the host does not wait for the GPU here (issue 8).
            reals
                .pin_memory(self.device)
                .to_device_(self.device, reals.kind(), true, false)
        } else {
            reals
        };
        let reals = crate::dataset::reals::process_reals(&reals, lod);
        let z = Tensor::randn([minibatch, nz], opts);
        let models = &self.models;
        let (d, d_loss, mi, grads) = self.cfg.precision.run(self.device, || {
            let fakes = tch::no_grad(|| models.g.forward(&z, lod, true));
            let d = losses::d_wgan_gp(&models.d, &reals, &fakes, lod, chunks);
            let mut d_loss = d.loss.shallow_clone();
            let mi = (info_k > 0).then(|| {
                let q = d
                    .fake_q
                    .as_ref()
                    .expect("Q head exists when infogan_nz > 0");
                losses::infogan_mse(q, &z, info_k)
            });
            if let Some(mi) = &mi {
                d_loss = &d_loss + mi * self.cfg.infogan_lambda;
            }
            let params: Vec<&Tensor> = models.d_params.params.iter().collect();
            let grads = Tensor::run_backward(&[&d_loss], &params, false, false);
            (d, d_loss, mi, grads)
        });
        if let Some(mi) = &mi {
            self.stats.add("Loss/InfoGAN", mi);
        }
        let flat = self.models.d_params.flatten_grads(&grads);
        self.models.opt_d.step(&self.models.d_params, &flat);
        self.models
            .gs_params
            .ema_from(&self.models.g_params, self.sched.ema_beta(minibatch));
        self.stats.add("Loss/D", &d_loss);
        self.stats
            .add("Loss/scores/real", &d.real_scores.mean(Kind::Float));
        self.stats
            .add("Loss/scores/fake", &d.fake_scores.mean(Kind::Float));
        self.stats
            .add("Loss/mixed_norms", &d.mixed_norms.mean(Kind::Float));
        self.state.cur_nimg += minibatch as u64;
        Ok(())
    }

    /// The G step: WGAN + λ_t·HP (+ InfoGAN MSE) on a fresh z, §3.1, §3.3. `with_hp = false` leaves the penalty
    /// out whatever its weight (the benchmark's "without HP" variant).
    pub fn g_step(&mut self, lod: f64, minibatch: i64, with_hp: bool) -> Result<()> {
        let chunks = self.cfg.num_gpus;
        let info_k = self.cfg.infogan_nz;
        let hp_w = self.hp_weight_now();
        let z = Tensor::randn([minibatch, self.cfg.nz], (Kind::Float, self.device));
        let gates: Vec<(usize, f64)> = self
            .hp_layers
            .iter()
            .map(|&l| {
                (
                    l,
                    hp_layer_gate(
                        self.sched.log2_resolution(),
                        self.cfg.net().hp_layer_resolution(l),
                        lod,
                    ),
                )
            })
            .filter(|&(_, w)| w > 0.0)
            .collect();
        let use_hp = with_hp && hp_w > 0.0 && !gates.is_empty();
        let layers: Vec<usize> = gates.iter().map(|&(l, _)| l).collect();
        let precision = self.cfg.precision;
        // In float32 the adversarial pass also gives the HP's unperturbed activations (one pass saved) and one
        // backward serves both terms. In a reduced precision the adversarial backward runs inside the precision
        // region, and the HP passes run apart, in float32, with their own backward (src/precision.rs).
        let separate = precision.is_reduced_on(self.device);
        let models = &self.models;
        let params: Vec<&Tensor> = models.g_params.params.iter().collect();
        let (adv_loss, g_score_loss, centre, adv_grads) = precision.run(self.device, || {
            let (images, centre) = if use_hp && !separate {
                models.g.forward_with_layers(&z, lod, &layers, true)
            } else {
                (models.g.forward(&z, lod, true), Vec::new())
            };
            let (scores, q) = models.d.forward(&images, lod, chunks);
            let score_loss = (-scores).mean(Kind::Float);
            let mut loss = score_loss.shallow_clone();
            if info_k > 0 {
                let q = q.as_ref().expect("Q head exists when infogan_nz > 0");
                let mi = losses::infogan_mse(q, &z, info_k);
                loss = &loss + mi * self.cfg.infogan_lambda;
            }
            let grads = separate.then(|| Tensor::run_backward(&[&loss], &params, false, false));
            (loss, score_loss, centre, grads)
        });
        let mut g_loss = adv_loss;
        let mut hp_loss = None;
        if use_hp {
            let g = &models.g;
            let per_layer = self.hp.penalties(
                |x| g.hp_layers(x, lod, &layers, true),
                &z,
                (!separate).then_some(centre.as_slice()),
                None,
            )?;
            let weights: Vec<f64> = gates.iter().map(|&(_, w)| w).collect();
            let total = crate::hessian::weighted_sum(&per_layer, Some(&weights))?;
            for (&(l, _), p) in gates.iter().zip(&per_layer) {
                let key = format!("HessianPenalties/{}", self.cfg.net().hp_layer_name(l));
                self.stats.add(&key, p);
            }
            self.stats.add("Loss/hessian_penalty", &total);
            hp_loss = Some(total * hp_w);
        }
        self.stats.add("Loss/G", &g_score_loss);
        let flat = match (adv_grads, hp_loss) {
            (Some(adv), Some(hp)) => {
                let hp_grads = Tensor::run_backward(&[&hp], &params, false, false);
                self.models.g_params.flatten_grads(&adv)
                    + self.models.g_params.flatten_grads(&hp_grads)
            }
            (Some(adv), None) => self.models.g_params.flatten_grads(&adv),
            (None, hp) => {
                if let Some(hp) = hp {
                    g_loss = &g_loss + hp;
                }
                let grads = Tensor::run_backward(&[&g_loss], &params, false, false);
                self.models.g_params.flatten_grads(&grads)
            }
        };
        self.models.opt_g.step(&self.models.g_params, &flat);
        Ok(())
    }

    /// Stops with a clear message when updates keep being skipped for non-finite gradients (§2.3).
    fn check_skips(&mut self) -> Result<()> {
        let g = self.models.opt_g.consecutive_skips.double_value(&[]);
        let d = self.models.opt_d.consecutive_skips.double_value(&[]);
        let worst = g.max(d) as i64;
        if worst >= self.cfg.max_consecutive_skips {
            let last = snapshots_in(&self.run_dir)?.pop();
            bail!(
                "{worst} consecutive updates of {} had non-finite gradients at {:.1} kimg; stopping. The last good \
                 snapshot is {}. Try a smaller --hp-lambda or a larger --epsilon",
                if g >= d { "G" } else { "D" },
                self.state.cur_nimg as f64 / 1000.0,
                last.map_or("(none yet)".to_string(), |p| p.display().to_string())
            );
        }
        Ok(())
    }

    /// Loads the metric networks (downloading them if needed) before the first iteration, so a missing network
    /// fails at once rather than at the first snapshot tick.
    fn load_metrics(&mut self) -> Result<()> {
        let kinds = crate::metrics::parse_names(&self.cfg.metrics)?;
        if !kinds.is_empty() && self.metrics.is_none() {
            let opts = self.cfg.metrics_options.clone();
            let suite =
                crate::evaluate::MetricSuite::new(&kinds, opts, self.device, self.verbosity)?;
            self.metrics = Some(suite);
        }
        Ok(())
    }

    /// FID / PPL of Gs (spec §2.7, §8): `Metrics/<name>` in TensorBoard, a line in the log, and the records next
    /// to the snapshot and in `<results>/metrics.jsonl`.
    fn compute_metrics(&mut self, snapshot: &Path) -> Result<()> {
        let Some(suite) = &self.metrics else {
            return Ok(());
        };
        let lod = self.current_lod();
        let (values, line) = suite.run_for_training(
            &self.models.gs,
            lod,
            &self.dataset,
            &self.cfg,
            self.state.cur_nimg,
            snapshot,
        )?;
        self.events.scalars(self.state.cur_nimg as i64, &values)?;
        self.events.flush()?;
        self.say(&line);
        Ok(())
    }

    fn save(&mut self) -> Result<PathBuf> {
        self.state.loader = self.loader.state();
        let kimg = self.state.cur_nimg / 1000;
        let path = self
            .run_dir
            .join(format!("network-snapshot-{kimg:06}.safetensors"));
        save_snapshot(&path, &self.models, &self.cfg, &self.state, true)?;
        let skipped = self.models.opt_g.skipped.double_value(&[])
            + self.models.opt_d.skipped.double_value(&[]);
        let line = format!(
            "snapshot {} (skipped updates so far: {skipped})",
            path.display()
        );
        self.say(&line);
        Ok(path)
    }

    fn current_lod(&self) -> f64 {
        self.sched.at(self.state.cur_nimg).lod
    }

    fn write_reals_grid(&mut self) -> Result<()> {
        let (w, h) = grid_size(self.cfg.resolution);
        let n = (w * h).min(self.dataset.meta().count as i64);
        let level = self.cfg.resolution.trailing_zeros();
        let reals = self.dataset.first_images(level, n as usize)?;
        let reals = crate::dataset::reals::to_float(&reals);
        imageio::save_grid(&reals, w as usize, &self.run_dir.join("reals.png"))
    }

    /// `fakes<kimg>.png` from Gs on the fixed grid latents (§2.7).
    fn write_fakes_grid(&mut self) -> Result<()> {
        let (w, _) = grid_size(self.cfg.resolution);
        let lod = self.current_lod();
        let images = tch::no_grad(|| {
            let parts: Vec<Tensor> = self
                .grid_z
                .split(64, 0)
                .iter()
                .map(|z| self.models.gs.forward(z, lod, true))
                .collect();
            Tensor::cat(&parts, 0)
        });
        let kimg = self.state.cur_nimg / 1000;
        let path = self.run_dir.join(format!("fakes{kimg:06}.png"));
        imageio::save_grid(&images, w as usize, &path)?;
        let png =
            std::fs::read(&path).with_context(|| format!("cannot read back {}", path.display()))?;
        let img = image::load_from_memory(&png)?;
        self.events.image(
            self.state.cur_nimg as i64,
            "fakes",
            img.width(),
            img.height(),
            &png,
        )
    }

    /// Per-component traversal GIFs of Gs (§7.2: 24 steps, 8 samples, ±2, raw z with G's latent norm).
    fn write_traversals(&mut self) -> Result<()> {
        let lod = self.current_lod();
        let kimg = self.state.cur_nimg / 1000;
        let dir = self.run_dir.join(format!("traversals{kimg:06}"));
        for i in 0..self.cfg.nz {
            let frames = crate::traversal::sweep_frames(&self.interp_z, i, 24, 2.0, |z| {
                tch::no_grad(|| self.models.gs.forward(z, lod, true))
            });
            let path = dir.join(format!("z{i:03}.gif"));
            crate::traversal::save_gif(&frames, 8, 24, &path)?;
            let gif = std::fs::read(&path)
                .with_context(|| format!("cannot read back {}", path.display()))?;
            let s = frames.size();
            let (w, h) = ((s[1] * s[4]) as u32, s[3] as u32);
            self.events.image(
                self.state.cur_nimg as i64,
                &format!("z/z{i:03}"),
                w,
                h,
                &gif,
            )?;
        }
        self.events.flush()
    }
}

/// The reference's '1080p' snapshot grid (§2.1): 1920×1080 worth of images, at least 7×4 and at most 32×32 —
/// capped here at 15×8 = 120 images so small-resolution runs stay quick.
pub fn grid_size(resolution: i64) -> (i64, i64) {
    let w = (1920 / resolution).clamp(7, 32).min(15);
    let h = (1080 / resolution).clamp(4, 32).min(8);
    (w, h)
}

fn format_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, (s / 60) % 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
