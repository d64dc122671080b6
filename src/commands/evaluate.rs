//! `hessian-gan evaluate` (docs/spec/progan_hp.md §4.3, §8): FID and PPL of snapshots' Gs, with the metric networks loaded
//! once; a table or JSON lines (printed by the CLI), `<snapshot stem>-metrics.json` next to each snapshot, a line per model in
//! `<results>/metrics.jsonl`, and the latents used (`<snapshot stem>-fid-z.npy`, `<snapshot stem>-ppl-z.npy`). The
//! trainer runs the same [`MetricSuite`] at snapshot ticks.

use crate::checkpoint::{newest_snapshot, reference, snapshot_config};
use crate::commands::Globals;
use crate::core::latents;
use crate::data::{locate, Dataset};
use crate::metrics::ppl;
use crate::metrics::suite::{beside, header, record};
use crate::metrics::{parse_names, MetricKind, MetricSuite, MetricsOptions};
use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Settings of `evaluate` (the command line: `cli::evaluate::EvaluateArgs`).
#[derive(Clone, Debug)]
pub struct EvaluateOptions {
    /// Models: snapshot files, run directories, results run numbers or pretrained names; empty: the latest
    /// snapshot of the newest run in `results_dir` ([`default_model`]).
    pub models: Vec<String>,
    /// Snapshot of each run number / run directory: `latest` or a kimg number (one value for all, or one per model).
    pub snapshot_kimgs: Vec<String>,
    /// Real data for FID: a dataset name under --datasets-dir (known names are downloaded) or a dataset directory;
    /// default: the dataset the snapshot was trained on.
    pub dataset: Option<String>,
    pub datasets_dir: PathBuf,
    /// Where run numbers are looked up and metrics.jsonl is appended.
    pub results_dir: PathBuf,
    /// Where pretrained models (`clevr_simple_ft`, …) are downloaded and converted.
    pub pretrained_dir: PathBuf,
    /// Metrics, comma-separated: fid (fid50k) and/or ppl (ppl_zend_v2).
    pub metrics: Vec<String>,
    /// Real and fake images for FID.
    pub num_images: usize,
    /// Latent pairs for PPL.
    pub num_samples: usize,
    /// Images per generator / detector call (PPL: half as many pairs).
    pub batch_size: usize,
    /// PPL latents (.npy, float32): [N, nz] start latents (end latents drawn from --seed) or [N, 2, nz] pairs, e.g.
    /// a `-ppl-z.npy` written by an earlier run. Sets the number of PPL samples.
    pub z: Option<PathBuf>,
    /// Inception TorchScript for FID: a local file or an http(s) URL (default: <cache-dir>/inception-2015-12-05.pt,
    /// downloaded from NVIDIA when missing).
    pub fid_detector: Option<String>,
    /// LPIPS-VGG16 TorchScript for PPL: a local file or an http(s) URL (default: <cache-dir>/vgg16.pt).
    pub ppl_detector: Option<String>,
    /// Downloaded metric networks and cached real-image statistics.
    pub cache_dir: PathBuf,
    /// Neither read nor write the real-image statistics cache.
    pub no_cache: bool,
}

/// One metric of one model, as the table shows it.
#[derive(Clone, Debug)]
pub struct MetricRow {
    pub metric: String,
    pub value: f64,
    pub samples: usize,
    pub rate: f64,
    pub seconds: f64,
}

/// What `evaluate` measured for one model.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The model's name (as resolved from the reference the user gave).
    pub model: String,
    /// The record appended to `metrics.jsonl` without its time: the model's description and `metrics`.
    pub record: Value,
    pub rows: Vec<MetricRow>,
}

/// The model of a bare `evaluate`: the latest snapshot of the newest run in `results_dir` (the reference's
/// evaluate.py needs `--model`; the project's own instructions run `hessian-gan evaluate` after training).
pub fn default_model(results_dir: &Path) -> Result<PathBuf> {
    let snapshot = newest_snapshot(results_dir)?.with_context(|| {
        format!(
            "no snapshot in {} to evaluate; name a model with --models (a snapshot file, a run directory, a run \
             number, or a pretrained name such as clevr_simple_ft), or train one first",
            results_dir.display()
        )
    })?;
    log::info!(
        "evaluating {} (the latest snapshot of the newest run in {}) on the dataset it was trained on",
        snapshot.display(),
        results_dir.display()
    );
    Ok(snapshot)
}

/// Entry point of `hessian-gan evaluate`.
pub fn run(globals: &Globals, args: &EvaluateOptions) -> Result<Vec<Evaluation>> {
    let kinds = parse_names(&args.metrics)?;
    ensure!(
        !kinds.is_empty(),
        "--metrics is empty; use fid, ppl or fid,ppl"
    );
    let models = match args.models.as_slice() {
        [] => vec![default_model(&args.results_dir)?.display().to_string()],
        given => given.to_vec(),
    };
    let z_file = match &args.z {
        Some(p) => {
            ensure!(
                kinds.contains(&MetricKind::Ppl),
                "--z gives PPL's latents, but --metrics does not include ppl"
            );
            let t = Tensor::read_npy(p).map_err(|e| {
                anyhow::anyhow!("--z {}: not a readable .npy array ({e})", p.display())
            })?;
            Some((p.clone(), t))
        }
        None => None,
    };
    let opts = MetricsOptions {
        fid_num_images: args.num_images,
        ppl_num_samples: args.num_samples,
        batch_size: args.batch_size,
        fid_detector: args.fid_detector.clone(),
        ppl_detector: args.ppl_detector.clone(),
        cache_dir: args.cache_dir.clone(),
        use_cache: !args.no_cache,
    };
    // Resolve every model before the (long) work starts, so a typo fails at once.
    let mut resolver = globals.resolver(&args.results_dir);
    resolver.pretrained_dir = args.pretrained_dir.clone();
    let refs = resolver.resolve_all(&models, &args.snapshot_kimgs)?;
    let device = globals.device.resolve()?;
    let seed = globals.seed_or_default();
    let suite = MetricSuite::new(&kinds, opts, device)?;
    let base_url = globals.base_url.as_deref();
    let mut datasets: HashMap<PathBuf, Dataset> = HashMap::new();
    let mut evaluations = Vec::new();
    for mref in &refs {
        let loaded = reference::load_gs(&mref.path, device)?;
        let nz = loaded.net.nz;
        let reals_dir = if kinds.contains(&MetricKind::Fid) {
            let dir = match &args.dataset {
                Some(name) => locate::locate(name, &args.datasets_dir, base_url)?,
                None => {
                    let cfg = snapshot_config(&mref.path)?;
                    locate::locate(&cfg.dataset, &cfg.datasets_dir, base_url).with_context(
                        || {
                            format!(
                                "the dataset {} was trained on; pass --dataset",
                                mref.path.display()
                            )
                        },
                    )?
                }
            };
            if !datasets.contains_key(&dir) {
                datasets.insert(dir.clone(), Dataset::open(&dir)?);
            }
            let ds = &datasets[&dir];
            let log2 = loaded.net.log2_res() as u32;
            ds.level(log2).with_context(|| {
                format!(
                    "FID compares {} at {}² with the dataset at the same resolution",
                    mref.name, loaded.net.resolution
                )
            })?;
            Some(dir)
        } else {
            None
        };
        let pairs = match &z_file {
            Some((p, t)) => {
                let what = format!("--z {}", p.display());
                let pairs = ppl::pairs_from_z(t, nz, seed, &what)?;
                let rows_n = pairs.size()[0];
                Some((pairs, format!("--z {} ({rows_n} rows)", p.display())))
            }
            None => None,
        };
        let out = suite.run(
            &loaded.g,
            loaded.lod,
            reals_dir.as_ref().map(|d| &datasets[d]),
            seed,
            pairs.as_ref().map(|(t, s)| (t, s.clone())),
        )?;
        if let Some(z) = &out.fid_z {
            latents::write_npy(z, &beside(&mref.path, "fid-z.npy"))?;
        }
        if let Some(z) = &out.ppl_z {
            latents::write_npy(z, &beside(&mref.path, "ppl-z.npy"))?;
        }
        let mut header = header(
            &mref.name,
            &mref.path,
            loaded.lod,
            &loaded.net,
            device,
            seed,
        );
        let json_path = record(&mref.path, header.clone(), &out, &args.results_dir)?;
        log::debug!("wrote {}", json_path.display());
        header.insert("metrics".into(), Value::Object(out.records()?));
        let mut rows = Vec::new();
        if let Some(r) = &out.fid {
            if (r.num_fake as i64) < r.feature_dims {
                log::warn!(
                    "{} uses {} images for {}-d features: the covariances are rank-deficient and the value is not \
                     comparable with FID-50k",
                    r.name,
                    r.num_fake,
                    r.feature_dims
                );
            }
            rows.push(MetricRow {
                metric: r.name.clone(),
                value: r.value,
                samples: r.num_fake,
                rate: r.images_per_second,
                seconds: r.seconds,
            });
        }
        if let Some(r) = &out.ppl {
            rows.push(MetricRow {
                metric: r.name.clone(),
                value: r.value,
                samples: r.num_samples,
                rate: r.images_per_second,
                seconds: r.seconds,
            });
        }
        if rows.iter().any(|r| r.value.is_nan()) {
            log::warn!(
                "a metric of {} is NaN: the generator produced non-finite images",
                mref.name
            );
        }
        evaluations.push(Evaluation {
            model: mref.name.clone(),
            record: Value::Object(header),
            rows,
        });
    }
    Ok(evaluations)
}
