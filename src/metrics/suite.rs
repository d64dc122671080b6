//! The metric suite: the metric networks loaded once and run on any number of generators, and the records of
//! its results (`<snapshot stem>-metrics.json` beside a snapshot, a line in `<results>/metrics.jsonl`). Both the
//! `evaluate` command and the trainer's metric ticks use it.

use crate::core::device::device_name;
use crate::core::networks::{Generator, NetConfig};
use crate::data::Dataset;
use crate::io::fs;
use crate::metrics::fid::{self, FidResult};
use crate::metrics::ppl::{self, PplResult};
use crate::metrics::{Detector, DetectorKind, MetricKind, MetricsOptions};
use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// The loaded metric networks and settings; built once, run on any number of generators.
pub struct MetricSuite {
    pub kinds: Vec<MetricKind>,
    pub opts: MetricsOptions,
    fid: Option<Detector>,
    ppl: Option<Detector>,
    device: Device,
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
    pub fn new(kinds: &[MetricKind], opts: MetricsOptions, device: Device) -> Result<Self> {
        opts.validate()?;
        let load = |kind: DetectorKind, spec: &Option<String>| {
            Detector::load(kind, spec.as_deref(), &opts.cache_dir, device)
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
            let (r, z) = fid::run(g, lod, ds, det, &self.opts, seed, self.device)?;
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
            let r = ppl::run(g, lod, &pairs, source, det, &self.opts, self.device)?;
            out.ppl = Some(r);
            out.ppl_z = Some(pairs);
        }
        Ok(out)
    }
}

/// The description of an evaluated model that heads its records.
pub fn header(
    model: &str,
    snapshot: &Path,
    lod: f64,
    net: &NetConfig,
    device: Device,
    seed: u64,
) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert("model".into(), json!(model));
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
    fs::write_bytes_atomic(&path, serde_json::to_string_pretty(&doc)?.as_bytes())?;

    let mut line = header;
    line.insert("time".into(), json!(unix_time()));
    line.insert("metrics".into(), Value::Object(records));
    append_jsonl(&results_dir.join("metrics.jsonl"), &Value::Object(line))?;
    Ok(path)
}

/// Seconds since the Unix epoch: the `time` of a JSON-lines record.
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Appends `value` as one line to the JSON-lines file `path` (creating its directory). One write per line, so
/// concurrent runs do not interleave within a line.
pub fn append_jsonl(path: &Path, value: &Value) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    // One write of one whole line; if the disk takes only part of it, the part is cut off again so that the file
    // keeps whole lines only.
    f.write_all(format!("{value}\n").as_bytes()).map_err(|e| {
        let _ = f.set_len(len);
        anyhow::Error::new(e).context(format!("cannot append to {}", path.display()))
    })
}
