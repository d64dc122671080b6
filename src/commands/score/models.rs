//! `score --models M…`: each model's generator through the factor predictor (encoder-free, any model), and an
//! InfoGAN's Q head on real images (with an encoder), on a dataset with ground-truth factors. Beside each snapshot:
//! `<stem>-scores.json`, `<stem>-effect.png` (components × factors) and `<stem>-mi.png` (the MIG matrix; with the Q
//! head also `<stem>-q-mi.png`); one line per model in `<results>/scores.jsonl`; with several models a bar chart
//! comparing them.

use super::ScoreReport;
use crate::checkpoint::coded::{trained_dataset, CodedModel};
use crate::checkpoint::infogan_cr::is_cr_snapshot;
use crate::checkpoint::reference::{self, ModelRef};
use crate::checkpoint::snapshot_config;
use crate::commands::figures::render::{save_bar_panels, save_matrix_heatmap, BarPanel};
use crate::commands::Globals;
use crate::data::{locate, Dataset};
use crate::metrics::encoder::{score_encoder, EncoderOptions, EncoderScores};
use crate::metrics::encoder_free::{score_generator, EncoderFreeOptions, EncoderFreeScores};
use crate::metrics::predictor::{require_factors, FactorPredictor, PredictorOptions};
use crate::metrics::suite::{append_jsonl, beside, header, unix_time};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which codes a model is scored with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScoreMethod {
    /// Encoder-free for every model, and the Q head too where the model has one.
    #[default]
    Auto,
    /// Encoder-free only.
    Free,
    /// The Q head only (an error for a model without one).
    Q,
}

/// Settings of `score --models`.
#[derive(Clone, Debug, Default)]
pub struct ModelScoreOptions {
    /// Snapshot files, run directories, results run numbers or pretrained names.
    pub models: Vec<String>,
    /// Snapshot of each run number / run directory: `latest` or a kimg number (one for all, or one per model).
    pub snapshot_kimgs: Vec<String>,
    /// A dataset with factors (name under `datasets_dir` or a directory); default: the one each model trained on.
    pub dataset: Option<String>,
    pub datasets_dir: PathBuf,
    pub results_dir: PathBuf,
    pub pretrained_dir: PathBuf,
    /// Where the factor predictors are cached.
    pub cache_dir: PathBuf,
    pub method: ScoreMethod,
    pub free: EncoderFreeOptions,
    pub encoder: EncoderOptions,
    pub predictor: PredictorOptions,
    /// The comparison chart of several models (default `<results>/scores.png`).
    pub chart: Option<PathBuf>,
}

/// The metrics of the comparison chart: (label, value of a report).
type Column = (&'static str, fn(&ScoreReport) -> Option<f64>);
const CHART: [Column; 8] = [
    ("FactorVAE", |r| r.factor_vae),
    ("BetaVAE", |r| r.scores.beta_vae),
    ("MIG", |r| Some(r.scores.mig)),
    ("SAP", |r| Some(r.scores.sap)),
    ("modularity", |r| Some(r.scores.modularity)),
    ("explicitness", |r| Some(r.scores.explicitness)),
    ("DCI-D", |r| Some(r.scores.dci_lasso_disentanglement)),
    ("DCI-C", |r| Some(r.scores.dci_lasso_completeness)),
];

pub(super) fn run(
    globals: &Globals,
    opts: &ModelScoreOptions,
    dhsic_rows: usize,
) -> Result<Vec<ScoreReport>> {
    // Resolve every model before the long work starts, so that a typo fails at once.
    let mut resolver = globals.resolver(&opts.results_dir);
    resolver.pretrained_dir = opts.pretrained_dir.clone();
    let kimgs = match opts.snapshot_kimgs.as_slice() {
        [] => vec!["latest".to_string()],
        given => given.to_vec(),
    };
    let refs: Vec<ModelRef> = resolver.resolve_all(&opts.models, &kimgs)?;
    let device = globals.device.resolve()?;
    let seed = globals.seed_or_default();
    let mut datasets: HashMap<PathBuf, Dataset> = HashMap::new();
    let mut predictors: HashMap<(PathBuf, u32), FactorPredictor> = HashMap::new();
    let mut reports = Vec::new();
    for mref in &refs {
        if is_cr_snapshot(&mref.path) {
            reports.push(score_cr_model(mref, opts, globals, dhsic_rows, seed)?);
            continue;
        }
        let loaded = reference::load_gs(&mref.path, device)?;
        let net = loaded.net.clone();
        let log2 = net.log2_res() as u32;
        let dir = dataset_dir(mref, opts, globals)?;
        if !datasets.contains_key(&dir) {
            datasets.insert(dir.clone(), Dataset::open(&dir)?);
        }
        let ds = &datasets[&dir];
        require_factors(ds)?;
        ensure!(
            ds.channels() as i64 == net.num_channels,
            "{} makes {}-channel images but the dataset {} has {} channels; score it on the dataset it was \
             trained on",
            mref.name,
            net.num_channels,
            dir.display(),
            ds.channels()
        );
        ds.level(log2).with_context(|| {
            format!(
                "{} makes {0}² images, so the scores need the dataset at {0}²; rebuild it with --resolution {0} \
                 or larger",
                net.resolution
            )
        })?;
        let encoder = match opts.method {
            ScoreMethod::Free => None,
            _ => reference::load_encoder(&mref.path, device)?,
        };
        if opts.method == ScoreMethod::Q && encoder.is_none() {
            anyhow::bail!(
                "--method q: {} has no Q head (infogan_nz 0); score it with --method free",
                mref.name
            );
        }
        let head = header(&mref.name, &mref.path, loaded.lod, &net, device, seed);
        let mut record = Value::Object(head);
        record["dataset"] = json!({
            "dir": dir, "name": ds.meta().name, "count": ds.count(),
        });

        let mut free = None;
        if opts.method != ScoreMethod::Q {
            let key = (dir.clone(), log2);
            if !predictors.contains_key(&key) {
                let p = FactorPredictor::load_or_train(
                    ds,
                    log2,
                    &opts.cache_dir,
                    &opts.predictor,
                    device,
                )?;
                predictors.insert(key.clone(), p);
            }
            let predictor = &predictors[&key];
            let g = |z: &tch::Tensor| loaded.g.forward(z, loaded.lod, true);
            let mut fo = opts.free.clone();
            fo.seed = seed;
            fo.dhsic_rows = dhsic_rows;
            let scores = score_generator(&g, net.nz, predictor, ds, &fo, device)
                .with_context(|| format!("scoring {}", mref.name))?;
            record["encoder_free"] = serde_json::to_value(&scores)?;
            free = Some(scores);
        }
        let mut q = None;
        if let Some(enc) = &encoder {
            let mut eo = opts.encoder.clone();
            eo.seed = seed;
            eo.dhsic_rows = dhsic_rows;
            let scores = score_encoder(&|x| enc.encode(x), ds, log2, &eo, device)
                .with_context(|| format!("scoring the Q head of {}", mref.name))?;
            record["q_head"] = serde_json::to_value(&scores)?;
            q = Some(scores);
        }
        let files = write_outputs(mref, &record, free.as_ref(), q.as_ref(), &opts.results_dir)?;
        let mut notes: Vec<String> = Vec::new();
        if let Some(f) = &free {
            notes.push(format!(
                "{}: effect matrix disentanglement {:.4}, completeness {:.4}, largest entry {:.4}; predictor \
                 Fréchet distance {:.4}; predictor held-out {}",
                mref.name,
                f.effect_disentanglement,
                f.effect_completeness,
                f.effect_max,
                f.predictor_frechet_distance,
                f.predictor_quality
                    .iter()
                    .map(|q| format!(
                        "{} {} {:.3}{}",
                        q.name,
                        q.metric,
                        q.value,
                        if q.poor { " (poor)" } else { "" }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        notes.extend(files.iter().map(|f| format!("wrote {}", f.display())));
        if let Some(f) = free {
            let mut r = record.clone();
            r["method"] = json!("encoder-free");
            reports.push(ScoreReport {
                subject: mref.name.clone(),
                method: "encoder-free",
                factor_vae: Some(f.factor_vae_z),
                scores: f.scores,
                record: r,
                notes: std::mem::take(&mut notes),
            });
        }
        if let Some(s) = q {
            let mut r = record.clone();
            r["method"] = json!("q-head");
            reports.push(ScoreReport {
                subject: mref.name.clone(),
                method: "q-head",
                factor_vae: s.scores.factor_vae,
                scores: s.scores,
                record: r,
                notes,
            });
        }
    }
    if refs.len() > 1 {
        let chart = opts
            .chart
            .clone()
            .unwrap_or_else(|| opts.results_dir.join("scores.png"));
        save_chart(&reports, &chart)?;
        if let Some(last) = reports.last_mut() {
            last.notes.push(format!("wrote {}", chart.display()));
        }
    }
    Ok(reports)
}

/// An InfoGAN-CR model through its Q head (`checkpoint::coded`). The encoder-free suite draws Gaussian z, and these
/// codes are uniform, so it does not apply.
fn score_cr_model(
    mref: &ModelRef,
    opts: &ModelScoreOptions,
    globals: &Globals,
    dhsic_rows: usize,
    seed: u64,
) -> Result<ScoreReport> {
    ensure!(
        opts.method != ScoreMethod::Free,
        "{} is an InfoGAN-CR model: it is scored through its Q head (--method q or auto); the encoder-free suite \
         draws Gaussian z and its codes are uniform",
        mref.name
    );
    let device = globals.device.resolve()?;
    let model = CodedModel::load(&mref.path, device)?;
    let dir = match &opts.dataset {
        Some(name) => locate::locate(name, &opts.datasets_dir, globals.base_url.as_deref())?,
        None => {
            let (name, datasets_dir) = trained_dataset(&mref.path)?;
            locate::locate(&name, &datasets_dir, globals.base_url.as_deref())?
        }
    };
    let ds = Dataset::open(&dir)?;
    require_factors(&ds)?;
    ensure!(
        ds.channels() as i64 == model.channels,
        "{} makes {}-channel images but the dataset {} has {} channels; score it on the dataset it was trained on",
        mref.name,
        model.channels,
        dir.display(),
        ds.channels()
    );
    let log2 = model.resolution.trailing_zeros();
    let mut eo = opts.encoder.clone();
    eo.seed = seed;
    eo.dhsic_rows = dhsic_rows;
    let scores = score_encoder(&|x| model.encode(x), &ds, log2, &eo, device)
        .with_context(|| format!("scoring the Q head of {}", mref.name))?;
    let record = json!({
        "model": mref.name,
        "snapshot": mref.path,
        "kind": model.kind,
        "codes": model.codes,
        "nz": model.nz,
        "resolution": model.resolution,
        "seed": seed,
        "time": unix_time(),
        "dataset": {"dir": dir, "name": ds.meta().name, "count": ds.count()},
        "q_head": scores,
        "method": "q-head",
    });
    let files = write_outputs(mref, &record, None, Some(&scores), &opts.results_dir)?;
    Ok(ScoreReport {
        subject: mref.name.clone(),
        method: "q-head",
        factor_vae: scores.scores.factor_vae,
        scores: scores.scores,
        record,
        notes: files
            .iter()
            .map(|f| format!("wrote {}", f.display()))
            .collect(),
    })
}

/// The dataset to score a model on: `--dataset`, else the one it was trained on.
fn dataset_dir(mref: &ModelRef, opts: &ModelScoreOptions, globals: &Globals) -> Result<PathBuf> {
    let base_url = globals.base_url.as_deref();
    match &opts.dataset {
        Some(name) => locate::locate(name, &opts.datasets_dir, base_url),
        None => {
            let cfg = snapshot_config(&mref.path)?;
            locate::locate(&cfg.dataset, &cfg.datasets_dir, base_url).with_context(|| {
                format!(
                    "the dataset {} was trained on; pass --dataset (one with factors)",
                    mref.path.display()
                )
            })
        }
    }
}

/// `<stem>-scores.json`, the heatmaps beside the snapshot and the line in `<results>/scores.jsonl`.
fn write_outputs(
    mref: &ModelRef,
    record: &Value,
    free: Option<&EncoderFreeScores>,
    q: Option<&EncoderScores>,
    results_dir: &Path,
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let json_path = beside(&mref.path, "scores.json");
    crate::io::fs::write_bytes_atomic(
        &json_path,
        serde_json::to_string_pretty(record)?.as_bytes(),
    )?;
    files.push(json_path);
    let mut line = record.clone();
    line["time"] = json!(unix_time());
    append_jsonl(&results_dir.join("scores.jsonl"), &line)?;
    let components = |n: usize| (0..n).map(|i| format!("z{i}")).collect::<Vec<_>>();
    let mi_range = |mi: &[Vec<f64>]| {
        let hi = mi.iter().flatten().copied().fold(0.0f64, f64::max);
        (0.0, if hi > 0.0 { hi } else { 1.0 })
    };
    if let Some(f) = free {
        let png = beside(&mref.path, "effect.png");
        save_matrix_heatmap(
            &format!("{}: factor change per z component (effect)", mref.name),
            &components(f.effect.len()),
            &f.factor_names,
            &f.effect,
            (0.0, 1.0),
            &png,
        )?;
        files.push(png);
        let png = beside(&mref.path, "mi.png");
        save_matrix_heatmap(
            &format!(
                "{}: mutual information (nats), z vs predicted factors",
                mref.name
            ),
            &components(f.scores.mi.len()),
            &f.factor_names,
            &f.scores.mi,
            mi_range(&f.scores.mi),
            &png,
        )?;
        files.push(png);
    }
    if let Some(s) = q {
        let png = beside(&mref.path, "q-mi.png");
        let codes: Vec<String> = (0..s.scores.mi.len()).map(|i| format!("c{i}")).collect();
        save_matrix_heatmap(
            &format!(
                "{}: mutual information (nats), Q codes vs factors",
                mref.name
            ),
            &codes,
            &s.factor_names,
            &s.scores.mi,
            mi_range(&s.scores.mi),
            &png,
        )?;
        files.push(png);
    }
    Ok(files)
}

/// Several models side by side: one bar group per metric, one series per (model, method).
fn save_chart(reports: &[ScoreReport], png: &Path) -> Result<()> {
    let series = reports
        .iter()
        .map(|r| {
            (
                format!("{} ({})", r.subject, r.method),
                CHART.iter().map(|(_, f)| f(r).unwrap_or(0.0)).collect(),
            )
        })
        .collect();
    let panel = BarPanel {
        title: "Disentanglement (higher is better)".into(),
        series,
        categories: Some(CHART.iter().map(|(n, _)| n.to_string()).collect()),
        y_desc: "score".into(),
    };
    save_bar_panels(&[panel], png, &png.with_extension("svg"))
}
