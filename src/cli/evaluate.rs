//! `evaluate`'s flags (docs/spec/progan_hp.md §4.3) and its table / JSON-lines output.

use crate::checkpoint::reference;
use crate::commands::evaluate::{EvaluateOptions, Evaluation};
use std::path::PathBuf;

/// Command-line flags of `evaluate`.
#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    /// Models: snapshot files, run directories, results run numbers or pretrained names (default: the latest
    /// snapshot of the newest run in --results-dir, with its own training dataset).
    #[arg(long, alias = "model", num_args = 1..)]
    pub models: Vec<String>,
    /// Snapshot of each run number / run directory: `latest` or a kimg number (one value for all, or one per model).
    #[arg(long, aliases = ["snapshot_kimg", "snapshot_kimgs", "snapshot-kimg"], num_args = 1.., default_value = "latest")]
    pub snapshot_kimgs: Vec<String>,
    /// Real data for FID: a dataset name under --datasets-dir (known names are downloaded) or a dataset directory;
    /// default: the dataset the snapshot was trained on.
    #[arg(long)]
    pub dataset: Option<String>,
    #[arg(long, default_value = "datasets")]
    pub datasets_dir: PathBuf,
    /// Where run numbers are looked up and metrics.jsonl is appended.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Where pretrained models (`clevr_simple_ft`, …) are downloaded and converted.
    #[arg(long, default_value = reference::PRETRAINED_DIR)]
    pub pretrained_dir: PathBuf,
    /// Metrics, comma-separated: fid (fid50k) and/or ppl (ppl_zend_v2).
    #[arg(long, num_args = 1.., value_delimiter = ',', default_value = "fid,ppl")]
    pub metrics: Vec<String>,
    /// Real and fake images for FID.
    #[arg(long, default_value_t = crate::metrics::FID_DEFAULT_IMAGES)]
    pub num_images: usize,
    /// Latent pairs for PPL.
    #[arg(long, default_value_t = crate::metrics::PPL_DEFAULT_SAMPLES)]
    pub num_samples: usize,
    /// Images per generator / detector call (PPL: half as many pairs).
    #[arg(long, default_value_t = crate::metrics::DEFAULT_BATCH)]
    pub batch_size: usize,
    /// PPL latents (.npy, float32): [N, nz] start latents (end latents drawn from --seed) or [N, 2, nz] pairs, e.g.
    /// a `-ppl-z.npy` written by an earlier run. Sets the number of PPL samples.
    #[arg(long)]
    pub z: Option<PathBuf>,
    /// Inception TorchScript for FID: a local file or an http(s) URL (default: <cache-dir>/inception-2015-12-05.pt,
    /// downloaded from NVIDIA when missing).
    #[arg(long)]
    pub fid_detector: Option<String>,
    /// LPIPS-VGG16 TorchScript for PPL: a local file or an http(s) URL (default: <cache-dir>/vgg16.pt).
    #[arg(long)]
    pub ppl_detector: Option<String>,
    /// Downloaded metric networks and cached real-image statistics.
    #[arg(long, default_value = crate::metrics::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Neither read nor write the real-image statistics cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Print the results as JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// evaluate.py's `--num_gpus`: accepted so its command lines run; metrics run on the one `--device`.
    #[arg(long, alias = "num_gpus", hide = true)]
    pub num_gpus: Option<i64>,
    /// evaluate.py's `--resolution`: accepted so its command lines run; FID uses the model's own resolution.
    #[arg(long, hide = true)]
    pub resolution: Option<i64>,
}

impl EvaluateArgs {
    /// Notes on the reference's flags that have no effect here.
    pub fn warn_ignored(&self) {
        if let Some(n) = self.num_gpus {
            log::warn!(
                "--num-gpus {n} has no effect on evaluate: the metrics run on the one --device"
            );
        }
        if let Some(r) = self.resolution {
            log::warn!(
                "--resolution {r} has no effect on evaluate: FID compares the model's images with the dataset at \
                 the model's own resolution"
            );
        }
    }
}

impl From<EvaluateArgs> for EvaluateOptions {
    fn from(a: EvaluateArgs) -> Self {
        EvaluateOptions {
            models: a.models,
            snapshot_kimgs: a.snapshot_kimgs,
            dataset: a.dataset,
            datasets_dir: a.datasets_dir,
            results_dir: a.results_dir,
            pretrained_dir: a.pretrained_dir,
            metrics: a.metrics,
            num_images: a.num_images,
            num_samples: a.num_samples,
            batch_size: a.batch_size,
            z: a.z,
            fid_detector: a.fid_detector,
            ppl_detector: a.ppl_detector,
            cache_dir: a.cache_dir,
            no_cache: a.no_cache,
        }
    }
}

/// Prints the results: a JSON line per model with `--json`, else one table row per metric and model.
pub fn print(evaluations: &[Evaluation], json: bool) {
    if json {
        for e in evaluations {
            println!("{}", e.record);
        }
        return;
    }
    let w = evaluations
        .iter()
        .map(|e| e.model.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<w$}  {:<12} {:>12} {:>9} {:>9} {:>9}",
        "model", "metric", "value", "samples", "img/s", "seconds"
    );
    for e in evaluations {
        for r in &e.rows {
            println!(
                "{:<w$}  {:<12} {:>12.4} {:>9} {:>9.1} {:>9.1}",
                e.model, r.metric, r.value, r.samples, r.rate, r.seconds
            );
        }
    }
}
