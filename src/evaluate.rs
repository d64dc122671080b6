//! `hessian-gan evaluate` (spec progan_hp §4.3, §8): FID and PPL of snapshots' Gs, with the metric networks loaded
//! once; a table on stdout, `<snapshot stem>-metrics.json` next to each snapshot, a line per model in
//! `<results>/metrics.jsonl`, and the latents used (`<snapshot stem>-fid-z.npy`, `<snapshot stem>-ppl-z.npy`). The
//! trainer runs the same [`MetricSuite`] at snapshot ticks.

use crate::dataset::Dataset;
use crate::device::device_name;
use crate::metrics::fid::{self, FidResult};
use crate::metrics::ppl::{self, PplResult};
use crate::metrics::{parse_names, Detector, DetectorKind, MetricKind, MetricsOptions};
use crate::networks::Generator;
use crate::{fetch, fsutil, latents, models, Globals};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Command-line flags of `evaluate`.
#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    /// Models: snapshot files, run directories or results run numbers.
    #[arg(long, num_args = 1.., required = true)]
    pub models: Vec<String>,
    /// Snapshot of each run number / run directory: `latest` or a kimg number (one value for all, or one per model).
    #[arg(long, num_args = 1.., default_value = "latest")]
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
    #[arg(long, default_value = models::PRETRAINED_DIR)]
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
}

/// The loaded metric networks and settings; built once, run on any number of generators.
pub struct MetricSuite {
    pub kinds: Vec<MetricKind>,
    pub opts: MetricsOptions,
    fid: Option<Detector>,
    ppl: Option<Detector>,
    device: Device,
    verbosity: i8,
}

/// What one evaluation of a generator produced.
pub struct EvalOutput {
    pub fid: Option<FidResult>,
    pub ppl: Option<PplResult>,
    /// The FID fake latents `[N, nz]` and the PPL pairs `[N, 2, nz]` (CPU).
    pub fid_z: Option<Tensor>,
    pub ppl_z: Option<Tensor>,
}

impl EvalOutput {
    /// (name, value) per metric, in order.
    pub fn values(&self) -> Vec<(String, f64)> {
        let mut v = Vec::new();
        if let Some(r) = &self.fid {
            v.push((r.name.clone(), r.value));
        }
        if let Some(r) = &self.ppl {
            v.push((r.name.clone(), r.value));
        }
        v
    }

    /// The full records by metric name.
    pub fn records(&self) -> Result<Map<String, Value>> {
        let mut m = Map::new();
        if let Some(r) = &self.fid {
            m.insert(r.name.clone(), serde_json::to_value(r)?);
        }
        if let Some(r) = &self.ppl {
            m.insert(r.name.clone(), serde_json::to_value(r)?);
        }
        Ok(m)
    }

    /// `fid50k 12.3456 (50000 img, 812 img/s) ppl_zend_v2 …` for logs.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.fid {
            parts.push(format!(
                "{} {:.4} ({} img, {:.0} img/s, reals {})",
                r.name, r.value, r.num_fake, r.images_per_second, r.reals.cache
            ));
        }
        if let Some(r) = &self.ppl {
            parts.push(format!(
                "{} {:.4} ({} samples, {:.0} img/s)",
                r.name, r.value, r.num_samples, r.images_per_second
            ));
        }
        parts.join(" ")
    }
}

impl MetricSuite {
    /// Validates the settings and locates (downloading when needed) and loads the networks the metrics need.
    pub fn new(
        kinds: &[MetricKind],
        opts: MetricsOptions,
        device: Device,
        verbosity: i8,
    ) -> Result<Self> {
        opts.validate()?;
        let load = |kind: DetectorKind, spec: &Option<String>| {
            Detector::load(kind, spec.as_deref(), &opts.cache_dir, device, verbosity)
        };
        let fid = if kinds.contains(&MetricKind::Fid) {
            Some(load(DetectorKind::Inception, &opts.fid_detector)?)
        } else {
            None
        };
        let ppl = if kinds.contains(&MetricKind::Ppl) {
            Some(load(DetectorKind::Lpips, &opts.ppl_detector)?)
        } else {
            None
        };
        Ok(MetricSuite {
            kinds: kinds.to_vec(),
            opts,
            fid,
            ppl,
            device,
            verbosity,
        })
    }

    /// The metrics of `g` at `lod`: FID against `reals` (required when FID is on), PPL on `ppl_pairs` `[N, 2, nz]`
    /// or on `opts.ppl_num_samples` pairs drawn from `seed`. `g` must live on the suite's device.
    pub fn run(
        &self,
        g: &Generator,
        lod: f64,
        reals: Option<&Dataset>,
        seed: u64,
        ppl_pairs: Option<(&Tensor, String)>,
    ) -> Result<EvalOutput> {
        let mut out = EvalOutput {
            fid: None,
            ppl: None,
            fid_z: None,
            ppl_z: None,
        };
        if let Some(det) = &self.fid {
            let ds = reals.context("FID needs a dataset of real images")?;
            let (r, z) = fid::run(
                g,
                lod,
                ds,
                det,
                &self.opts,
                seed,
                self.device,
                self.verbosity,
            )?;
            out.fid = Some(r);
            out.fid_z = Some(z);
        }
        if let Some(det) = &self.ppl {
            let nz = g.config().nz;
            let (pairs, source) = match ppl_pairs {
                Some((p, source)) => (p.shallow_clone(), source),
                None => (
                    ppl::latent_pairs(seed, self.opts.ppl_num_samples, nz as usize),
                    format!(
                        "z0, z1 ~ N(0, I) [{}, 2, {nz}] from seed {seed} (host SplitMix64 + Box-Muller)",
                        self.opts.ppl_num_samples
                    ),
                ),
            };
            let r = ppl::run(
                g,
                lod,
                &pairs,
                source,
                det,
                &self.opts,
                self.device,
                self.verbosity,
            )?;
            out.ppl = Some(r);
            out.ppl_z = Some(pairs);
        }
        Ok(out)
    }
}

impl MetricSuite {
    /// The trainer's metric tick: runs the metrics on Gs with the run's seed, records them next to `snapshot` and
    /// in `<results_dir>/metrics.jsonl`, and returns the TensorBoard scalars (`Metrics/<name>`) and a log line.
    pub fn run_for_training(
        &self,
        gs: &Generator,
        lod: f64,
        dataset: &Dataset,
        cfg: &crate::config::TrainConfig,
        cur_nimg: u64,
        snapshot: &Path,
    ) -> Result<(Vec<(String, f64)>, String)> {
        let out = self.run(gs, lod, Some(dataset), cfg.seed, None)?;
        let mut h = header(snapshot, lod, &cfg.net(), self.device, cfg.seed);
        h.insert("kimg".into(), json!(cur_nimg as f64 / 1000.0));
        record(snapshot, h, &out, &cfg.results_dir)?;
        let values = out
            .values()
            .into_iter()
            .map(|(k, v)| (format!("Metrics/{k}"), v))
            .collect();
        let line = format!(
            "metrics kimg {:.1} {}",
            cur_nimg as f64 / 1000.0,
            out.summary()
        );
        Ok((values, line))
    }
}

/// The description of an evaluated model that heads its records.
pub fn header(
    snapshot: &Path,
    lod: f64,
    net: &crate::networks::NetConfig,
    device: Device,
    seed: u64,
) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert("model".into(), json!(models::describe(snapshot).name));
    h.insert("snapshot".into(), json!(snapshot));
    h.insert("lod".into(), json!(lod));
    h.insert("nz".into(), json!(net.nz));
    h.insert("resolution".into(), json!(net.resolution));
    h.insert("device".into(), json!(device_name(device)));
    h.insert("seed".into(), json!(seed));
    h
}

/// `<dir>/<snapshot stem>-<suffix>`.
pub fn beside(snapshot: &Path, suffix: &str) -> PathBuf {
    let stem = snapshot
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    snapshot.with_file_name(format!("{stem}-{suffix}"))
}

/// Writes `<stem>-metrics.json` next to the snapshot (merged with the metrics an earlier run recorded there) and
/// appends one line to `<results_dir>/metrics.jsonl`. `header` holds the model's description (name, kimg, lod, …).
pub fn record(
    snapshot: &Path,
    header: Map<String, Value>,
    out: &EvalOutput,
    results_dir: &Path,
) -> Result<PathBuf> {
    let records = out.records()?;
    let path = beside(snapshot, "metrics.json");
    let mut metrics = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("metrics").and_then(Value::as_object).cloned())
        .unwrap_or_default();
    metrics.extend(records.clone());
    let mut doc = header.clone();
    doc.insert("metrics".into(), Value::Object(metrics));
    fsutil::write_bytes_atomic(&path, serde_json::to_string_pretty(&doc)?.as_bytes())?;

    let mut line = header;
    line.insert(
        "time".into(),
        json!(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())),
    );
    line.insert("metrics".into(), Value::Object(records));
    std::fs::create_dir_all(results_dir)
        .with_context(|| format!("cannot create {}", results_dir.display()))?;
    let log = results_dir.join("metrics.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    // One write per line, so concurrent runs do not interleave within a line.
    f.write_all(format!("{}\n", Value::Object(line)).as_bytes())
        .with_context(|| format!("cannot append to {}", log.display()))?;
    Ok(path)
}

/// The training configuration stored in a snapshot's header (without reading its tensors).
pub fn snapshot_config(path: &Path) -> Result<crate::config::TrainConfig> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{} is not a snapshot (too short)", path.display()))?;
    let n = u64::from_le_bytes(len);
    ensure!(
        n < 100 << 20,
        "{} is not a snapshot (header of {n} bytes)",
        path.display()
    );
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .with_context(|| format!("{} is truncated", path.display()))?;
    let v: Value = serde_json::from_slice(&header)
        .with_context(|| format!("{} has a corrupt header", path.display()))?;
    let cfg = v
        .get("__metadata__")
        .and_then(|m| m.get("config"))
        .and_then(Value::as_str)
        .with_context(|| format!("{} holds no training configuration", path.display()))?;
    serde_json::from_str(cfg)
        .with_context(|| format!("{}: unreadable training configuration", path.display()))
}

/// One row of the stdout table.
struct Row {
    model: String,
    metric: String,
    value: f64,
    samples: usize,
    rate: f64,
    seconds: f64,
}

fn print_table(rows: &[Row]) {
    let w = rows.iter().map(|r| r.model.len()).max().unwrap_or(5).max(5);
    println!(
        "{:<w$}  {:<12} {:>12} {:>9} {:>9} {:>9}",
        "model", "metric", "value", "samples", "img/s", "seconds"
    );
    for r in rows {
        println!(
            "{:<w$}  {:<12} {:>12.4} {:>9} {:>9.1} {:>9.1}",
            r.model, r.metric, r.value, r.samples, r.rate, r.seconds
        );
    }
}

/// Entry point of `hessian-gan evaluate`.
pub fn run(globals: &Globals, args: EvaluateArgs) -> Result<()> {
    let kinds = parse_names(&args.metrics)?;
    ensure!(
        !kinds.is_empty(),
        "--metrics is empty; use fid, ppl or fid,ppl"
    );
    ensure!(
        args.snapshot_kimgs.len() == 1 || args.snapshot_kimgs.len() == args.models.len(),
        "--snapshot-kimgs has {} values for {} models; give one for all or one per model",
        args.snapshot_kimgs.len(),
        args.models.len()
    );
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
    let mut resolver = models::Resolver::new(globals, &args.results_dir);
    resolver.pretrained_dir = args.pretrained_dir.clone();
    let refs: Vec<models::ModelRef> = args
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let snap = &args.snapshot_kimgs[i.min(args.snapshot_kimgs.len() - 1)];
            resolver.resolve(m, snap)
        })
        .collect::<Result<_>>()?;
    let device = globals.device.resolve()?;
    let seed = globals.seed_or_default();
    let suite = MetricSuite::new(&kinds, opts, device, globals.verbosity)?;
    let mut datasets: HashMap<PathBuf, Dataset> = HashMap::new();
    let mut rows = Vec::new();
    for mref in &refs {
        let loaded = models::load_gs(&mref.path, device)?;
        let nz = loaded.net.nz;
        let reals_dir = if kinds.contains(&MetricKind::Fid) {
            let dir = match &args.dataset {
                Some(name) => fetch::locate(name, &args.datasets_dir, globals)?,
                None => {
                    let cfg = snapshot_config(&mref.path)?;
                    fetch::locate(&cfg.dataset, &cfg.datasets_dir, globals).with_context(|| {
                        format!(
                            "the dataset {} was trained on; pass --dataset",
                            mref.path.display()
                        )
                    })?
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
        let mut header = header(&mref.path, loaded.lod, &loaded.net, device, seed);
        header.insert("model".into(), json!(mref.name));
        let json_path = record(&mref.path, header.clone(), &out, &args.results_dir)?;
        if args.json {
            let mut line = header;
            line.insert("metrics".into(), Value::Object(out.records()?));
            println!("{}", Value::Object(line));
        }
        if globals.verbosity >= 1 {
            eprintln!("wrote {}", json_path.display());
        }
        if let Some(r) = &out.fid {
            if (r.num_fake as i64) < r.feature_dims && globals.verbosity >= 0 {
                eprintln!(
                    "note: {} uses {} images for {}-d features: the covariances are rank-deficient and the value \
                     is not comparable with FID-50k",
                    r.name, r.num_fake, r.feature_dims
                );
            }
            rows.push(Row {
                model: mref.name.clone(),
                metric: r.name.clone(),
                value: r.value,
                samples: r.num_fake,
                rate: r.images_per_second,
                seconds: r.seconds,
            });
        }
        if let Some(r) = &out.ppl {
            rows.push(Row {
                model: mref.name.clone(),
                metric: r.name.clone(),
                value: r.value,
                samples: r.num_samples,
                rate: r.images_per_second,
                seconds: r.seconds,
            });
        }
    }
    if !args.json {
        print_table(&rows);
    }
    if rows.iter().any(|r| r.value.is_nan()) && globals.verbosity >= 0 {
        eprintln!("note: a metric is NaN: the generator produced non-finite images");
    }
    Ok(())
}
