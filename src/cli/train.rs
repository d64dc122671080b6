//! `train`'s and `bench`'s flags (docs/spec/progan_hp.md §4.1): every setting optional, turned into overrides of
//! the configuration (defaults < snapshot being resumed < `--config` preset < these flags).

use crate::cli::values::PrecisionArg;
use crate::commands::bench::BenchOptions;
use crate::commands::train::TrainRequest;
use crate::core::precision::Precision;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Command-line flags of `train`. Every setting is optional here: unset flags come from `--config`, from the
/// snapshot being resumed, or from the defaults (docs/spec/progan_hp.md §4.1), in that order of precedence below the command line.
#[derive(clap::Args, Debug, Default)]
pub struct TrainArgs {
    /// A preset, e.g. configs/clevr_simple_hp.json; any setting below may come from it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The model: progan (ProGAN with the Hessian Penalty or InfoGAN; the default) or infogan-cr (InfoGAN-CR's own
    /// recipe, e.g. with --config configs/infogan_cr_dsprites.json). A preset or a resumed snapshot may set it.
    #[arg(long, value_parser = ["progan", "infogan-cr"])]
    pub model: Option<String>,
    /// Any setting by its configuration name, e.g. --set iterations=5000 --set cr_coe_increase=2 (JSON values;
    /// repeatable). The flags below win over --set.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub set: Vec<(String, Value)>,
    /// Print the resolved configuration and the network summary, then exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Results run number to resume or fine-tune (results/NNNNN-*).
    #[arg(long, alias = "resume_exp")]
    pub resume_exp: Option<u32>,
    /// Which snapshot of --resume-exp: latest or a kimg number.
    #[arg(long, alias = "resume_snapshot", default_value = "latest")]
    pub resume_snapshot: String,
    /// Resume from this snapshot file instead of --resume-exp.
    #[arg(long, conflicts_with = "resume_exp")]
    pub resume: Option<PathBuf>,
    /// Data-parallel worker processes on this machine (one per GPU with CUDA, Gloo processes on the CPU): each takes
    /// --num-gpus/N of every minibatch's chunks and the gradients are averaged. Leave it out when an external
    /// launcher (torchrun, srun) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub nproc: u64,
    /// TCP port of --nproc's rendezvous on 127.0.0.1 (default: a free port).
    #[arg(long)]
    pub master_port: Option<u16>,
    /// Seconds a data-parallel rank waits for the others (a collective, rank 0's decisions) before the job fails;
    /// rank 0's metric and score ticks must fit in it.
    #[arg(long, default_value_t = 1800)]
    pub dist_timeout: u64,
    /// Dataset name under --datasets-dir (known names are downloaded when missing) or a dataset directory.
    #[arg(long)]
    pub dataset: Option<String>,
    #[arg(long)]
    pub resolution: Option<i64>,
    /// Latent dimension.
    #[arg(long)]
    pub nz: Option<i64>,
    /// Training length in thousands of real images shown to D.
    #[arg(long, alias = "total_kimg")]
    pub total_kimg: Option<f64>,
    /// Hessian Penalty weight (after ramp-up); 0 disables it.
    #[arg(long, alias = "hp_lambda")]
    pub hp_lambda: Option<f64>,
    /// Finite-difference step of the Hessian Penalty.
    #[arg(long)]
    pub epsilon: Option<f64>,
    /// Rademacher samples k of the Hessian Penalty (≥ 2).
    #[arg(long, alias = "num_rademacher_samples")]
    pub num_rademacher_samples: Option<usize>,
    /// Generator layers to regularise (1 = dense, 2..2R−2 = convs, 2R−1 = RGB); default 1..10.
    #[arg(long, alias = "layers_to_reg", num_args = 1..)]
    pub layers_to_reg: Option<Vec<usize>>,
    /// Linear ramp of the HP weight, in kimg from --hp-start-kimg (the reference default is 10000).
    #[arg(long, alias = "warmup_kimg")]
    pub warmup_kimg: Option<f64>,
    #[arg(long, alias = "hp_start_kimg")]
    pub hp_start_kimg: Option<f64>,
    #[arg(long, alias = "infogan_lambda")]
    pub infogan_lambda: Option<f64>,
    /// Number of leading z components regularised by InfoGAN.
    #[arg(long, alias = "infogan_nz")]
    pub infogan_nz: Option<i64>,
    /// InfoGAN-CR's contrastive regulariser on this trainer: the weight of H's cross-entropy in G's loss (0 = off).
    /// H (our D on image pairs) learns which code two images share; see docs/spec/geometry_infogancr.md §B.1.
    #[arg(long, alias = "cr_lambda")]
    pub cr_lambda: Option<f64>,
    /// The CR weight applies from this kimg on (H trains from the start and restarts here).
    #[arg(long, alias = "cr_start_kimg")]
    pub cr_start_kimg: Option<f64>,
    /// The other codes of a CR pair are at least this far apart (until --cr-gap-end-kimg).
    #[arg(long, alias = "cr_gap")]
    pub cr_gap: Option<f64>,
    /// The gap ends (becomes 0, H restarts) at this kimg; 0 = never.
    #[arg(long, alias = "cr_gap_end_kimg")]
    pub cr_gap_end_kimg: Option<f64>,
    /// Leading z components a CR pair can share (default: --infogan-nz when InfoGAN is on, else --nz).
    #[arg(long, alias = "cr_codes")]
    pub cr_codes: Option<i64>,
    /// Virtual GPUs: total batch = 4-GPU table × num_gpus/4, processed as num_gpus chunks (1, 2, 4 or 8).
    #[arg(long, alias = "num_gpus")]
    pub num_gpus: Option<i64>,
    /// Ticks between traversal GIFs (−1 disables).
    #[arg(long, alias = "compute_interp_ticks", allow_negative_numbers = true)]
    pub compute_interp_ticks: Option<i64>,
    /// Ticks between metric evaluations (only on snapshot ticks, as the reference).
    #[arg(long, alias = "compute_metrics_ticks", allow_negative_numbers = true)]
    pub compute_metrics_ticks: Option<i64>,
    /// Metrics at snapshot ticks, comma-separated: fid (fid50k), ppl (ppl_zend_v2); see `evaluate`.
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub metrics: Option<Vec<String>>,
    /// Ticks between encoder-free disentanglement scores (snapshot ticks only; needs a dataset with factors; 0 =
    /// never): TensorBoard Scores/*, log.txt and the snapshot's metrics JSON. See `score`.
    #[arg(long)]
    pub score_ticks: Option<i64>,
    /// (z, factor) pairs of each score tick.
    #[arg(long)]
    pub score_samples: Option<usize>,
    /// FactorVAE groups (of 100 latents) of each score tick.
    #[arg(long)]
    pub score_groups: Option<usize>,
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
    pub precision: Option<PrecisionArg>,
}

fn parse_setting(s: &str) -> std::result::Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE (e.g. iterations=5000)"))?;
    let k = k.trim().replace('-', "_");
    if k.is_empty() {
        return Err(format!("'{s}': empty setting name"));
    }
    // A JSON value (number, true/false, list, object), else the text as a string.
    let v = serde_json::from_str(v.trim()).unwrap_or_else(|_| Value::String(v.trim().to_string()));
    Ok((k, v))
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
    pub fn overrides(&self) -> Map<String, Value> {
        let mut m: Map<String, Value> = self.set.iter().cloned().collect();
        macro_rules! put {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field {
                    m.insert(stringify!($field).to_string(), serde_json::json!(v));
                }
            )*};
        }
        put!(
            model,
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
            cr_lambda,
            cr_start_kimg,
            cr_gap,
            cr_gap_end_kimg,
            cr_codes,
            num_gpus,
            compute_interp_ticks,
            compute_metrics_ticks,
            metrics,
            score_ticks,
            score_samples,
            score_groups,
            fmap_base,
            fmap_max,
            lod_initial_resolution,
            lod_training_kimg,
            lod_transition_kimg,
            minibatch_scale,
            tick_kimg,
            network_snapshot_ticks,
            results_dir,
            datasets_dir
        );
        if let Some(p) = self.precision {
            m.insert("precision".into(), serde_json::json!(Precision::from(p)));
        }
        if let Some(pairs) = &self.minibatch {
            let obj: Map<String, Value> = pairs
                .iter()
                .map(|(r, b)| (r.to_string(), serde_json::json!(b)))
                .collect();
            m.insert("minibatch".into(), Value::Object(obj));
        }
        m
    }
}

impl From<TrainArgs> for TrainRequest {
    fn from(a: TrainArgs) -> Self {
        TrainRequest {
            overrides: a.overrides(),
            config: a.config,
            dry_run: a.dry_run,
            resume_exp: a.resume_exp,
            resume_snapshot: a.resume_snapshot,
            resume: a.resume,
            nproc: a.nproc as usize,
            master_port: a.master_port,
            dist_timeout: std::time::Duration::from_secs(a.dist_timeout.max(1)),
        }
    }
}

/// Flags of `bench`: any training flag (e.g. --config, --resolution, --hp-lambda) plus the measurement's own.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub train: TrainArgs,
    /// Timed iterations per variant.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed iterations first (allocator, cuDNN autotuning).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Which variants: all (hp, nohp, infogan), or a comma list of hp, nohp, infogan and geometry (the latent metric
    /// tensor's methods at one code).
    #[arg(long, default_value = "all")]
    pub variants: String,
    /// Also profile --steps more iterations per variant and add each step's libtorch operators (self and total ms
    /// per iteration, calls) to the JSON: where the time goes.
    #[arg(long)]
    pub profile: bool,
}

impl From<BenchArgs> for BenchOptions {
    fn from(a: BenchArgs) -> Self {
        BenchOptions {
            train: a.train.into(),
            steps: a.steps,
            warmup: a.warmup,
            variants: a.variants,
            profile: a.profile,
        }
    }
}
