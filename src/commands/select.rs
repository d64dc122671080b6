//! `hessian-gan select --runs R…`: which of several runs of one method to keep, without labels
//! (docs/spec/geometry_infogancr.md §B.2, `metrics::selection`).
//!
//! 1. Every model makes a probe set: `groups` groups of `group_size` images, group g fixing code `g mod K` at the
//!    value of its first sample (the other codes and the noise drawn), and `std_samples` images of random codes for
//!    FactorVAE's per-code scale.
//! 2. Every model's encoder reads every probe set: `C[i][j]` = FactorVAE of encoder i on model j's probe set,
//!    labelled by model j's codes. ModelCentrality = row means of `(C + Cᵀ)/2` without the diagonal.
//! 3. UDR (Lasso and Spearman), the baseline selector: every encoder reads the same `udr_samples` real images.
//! 4. Where the dataset has ground-truth factors, each model's own scores (its Q head on real images,
//!    `metrics::encoder`) and each selector's regret: the best model's FactorVAE minus the pick's.
//!
//! Writes `select.json` (everything above) and `select.png`/`.svg` (a bar per model and selector) and returns the
//! report for the table.

use crate::checkpoint::coded::{trained_dataset, CodedModel};
use crate::checkpoint::reference::ModelRef;
use crate::commands::figures::render::{save_bar_panels, BarPanel};
use crate::commands::Globals;
use crate::core::rng;
use crate::data::reals::to_float;
use crate::data::{locate, Dataset};
use crate::metrics::disentanglement::{factor_vae, Groups};
use crate::metrics::encoder::{score_encoder, EncoderOptions};
use crate::metrics::encoder_free::to_array;
use crate::metrics::predictor::require_factors;
use crate::metrics::selection::{argmax, median, model_centrality, udr, UdrVariant};
use anyhow::{ensure, Context, Result};
use ndarray::Array2;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Settings of `select`.
#[derive(Clone, Debug)]
pub struct SelectOptions {
    /// Runs: run numbers, run directories or snapshot files (pretrained names too, if they have a Q head).
    pub runs: Vec<String>,
    /// Snapshot of each run number / directory: `latest` or a number.
    pub snapshot: String,
    /// Real images for UDR and the own scores (default: the first run's dataset).
    pub dataset: Option<String>,
    pub datasets_dir: PathBuf,
    pub results_dir: PathBuf,
    pub pretrained_dir: PathBuf,
    /// Probe sets: groups, images per group, images for the per-code std (the reference: 500, 100, 73,728).
    pub groups: usize,
    pub group_size: usize,
    pub std_samples: usize,
    /// Real images every encoder reads for UDR.
    pub udr_samples: usize,
    /// Images per generator / encoder call.
    pub batch: usize,
    /// Score each model against the dataset's factors (when it has them).
    pub own_scores: bool,
    pub encoder: EncoderOptions,
    /// The JSON report (default `<results_dir>/select.json`; the figure goes beside it).
    pub out: Option<PathBuf>,
}

impl Default for SelectOptions {
    fn default() -> Self {
        SelectOptions {
            runs: Vec::new(),
            snapshot: "latest".into(),
            dataset: None,
            datasets_dir: "datasets".into(),
            results_dir: "results".into(),
            pretrained_dir: crate::checkpoint::reference::PRETRAINED_DIR.into(),
            groups: 500,
            group_size: 100,
            std_samples: 73_728,
            udr_samples: 10_000,
            batch: 100,
            own_scores: true,
            encoder: EncoderOptions::default(),
            out: None,
        }
    }
}

/// A model's ground-truth scores (its Q head on the dataset's images).
#[derive(Clone, Debug, Serialize)]
pub struct OwnScores {
    pub factor_vae: Option<f64>,
    pub beta_vae: Option<f64>,
    pub mig: f64,
    pub sap: f64,
    pub modularity: f64,
    pub explicitness: f64,
    pub dci: f64,
}

/// One model's line.
#[derive(Clone, Debug, Serialize)]
pub struct SelectedModel {
    pub name: String,
    pub path: PathBuf,
    pub kind: &'static str,
    pub model_centrality: f64,
    pub udr_lasso: f64,
    pub udr_spearman: f64,
    pub own: Option<OwnScores>,
}

/// What a selector picked and, with ground truth, how good the pick is.
#[derive(Clone, Debug, Serialize)]
pub struct Pick {
    pub selector: &'static str,
    pub model: usize,
    pub name: String,
    /// The pick's own FactorVAE, the best and the median over the models, and the regret (best − pick).
    pub factor_vae: Option<f64>,
    pub best_factor_vae: Option<f64>,
    pub median_factor_vae: Option<f64>,
    pub regret: Option<f64>,
}

/// Everything `select` measured.
#[derive(Clone, Debug, Serialize)]
pub struct SelectReport {
    /// In the order given.
    pub models: Vec<SelectedModel>,
    /// Model indices by decreasing ModelCentrality.
    pub ranking: Vec<usize>,
    /// `cross[i][j]`: FactorVAE of model i's encoder on model j's probe set; `symmetric` = (C + Cᵀ)/2.
    pub cross: Vec<Vec<f64>>,
    pub symmetric: Vec<Vec<f64>>,
    pub udr_lasso_pairs: Vec<Vec<f64>>,
    pub udr_spearman_pairs: Vec<Vec<f64>>,
    pub picks: Vec<Pick>,
    pub codes: i64,
    pub dataset: PathBuf,
    pub groups: usize,
    pub group_size: usize,
    pub std_samples: usize,
    pub udr_samples: usize,
    pub seed: u64,
    pub json: PathBuf,
    pub figure: PathBuf,
}

fn rows(a: &Array2<f64>) -> Vec<Vec<f64>> {
    a.outer_iter().map(|r| r.to_vec()).collect()
}

/// Images in [−1, 1] of `z`, in batches of `batch`.
fn generate(model: &CodedModel, z: &Tensor, batch: usize) -> Tensor {
    let parts: Vec<Tensor> = z
        .split(batch.max(1) as i64, 0)
        .iter()
        .map(|zb| model.generate(zb))
        .collect();
    Tensor::cat(&parts, 0)
}

/// Codes of `images` by every model's encoder, as host matrices.
fn encode_all(models: &[CodedModel], images: &Tensor, batch: usize) -> Result<Vec<Array2<f64>>> {
    models
        .iter()
        .map(|m| {
            let parts: Vec<Tensor> = images
                .split(batch.max(1) as i64, 0)
                .iter()
                .map(|x| m.encode(x).to_device(Device::Cpu))
                .collect();
            to_array(&Tensor::cat(&parts, 0))
        })
        .collect()
}

pub fn run(globals: &Globals, opts: &SelectOptions) -> Result<SelectReport> {
    ensure!(
        opts.runs.len() >= 2,
        "select compares runs: give at least two with --runs (got {})",
        opts.runs.len()
    );
    ensure!(
        opts.groups >= 1 && opts.group_size >= 2 && opts.std_samples >= 2 && opts.udr_samples >= 2,
        "--groups must be at least 1 and --group-size, --std-samples and --udr-samples at least 2"
    );
    let device = globals.device.resolve()?;
    let seed = globals.seed_or_default();
    let mut resolver = globals.resolver(&opts.results_dir);
    resolver.pretrained_dir = opts.pretrained_dir.clone();
    let refs: Vec<ModelRef> = opts
        .runs
        .iter()
        .map(|r| resolver.resolve(r, &opts.snapshot))
        .collect::<Result<_>>()?;
    let models: Vec<CodedModel> = refs
        .iter()
        .map(|r| CodedModel::load(&r.path, device))
        .collect::<Result<_>>()?;
    let first = &models[0];
    for (r, m) in refs.iter().zip(&models) {
        ensure!(
            m.codes == first.codes && m.resolution == first.resolution && m.channels == first.channels,
            "{} has {} codes at {}² × {} channel(s) but {} has {} at {}² × {}: select compares runs of one \
             configuration",
            r.name,
            m.codes,
            m.resolution,
            m.channels,
            refs[0].name,
            first.codes,
            first.resolution,
            first.channels
        );
    }
    let k = first.codes;
    ensure!(
        k >= 2,
        "{} has {k} code(s): ModelCentrality needs at least two",
        refs[0].name
    );
    let (name, dir) = match &opts.dataset {
        Some(d) => (d.clone(), opts.datasets_dir.clone()),
        None => trained_dataset(&refs[0].path)?,
    };
    let dataset_dir = locate::locate(&name, &dir, globals.base_url.as_deref())?;
    let dataset = Dataset::open(&dataset_dir)?;
    let log2 = first.resolution.trailing_zeros();
    dataset.level(log2).with_context(|| {
        format!(
            "the models make {0}² images, so UDR reads the dataset at {0}²",
            first.resolution
        )
    })?;
    ensure!(
        dataset.channels() as i64 == first.channels,
        "{} has {} channel(s) but the models make {}",
        dataset_dir.display(),
        dataset.channels(),
        first.channels
    );

    let m = models.len();
    let batch = opts.batch.max(1);
    let calls = m
        * (opts.groups * opts.group_size.div_ceil(batch)
            + opts.std_samples.div_ceil(batch)
            + opts.udr_samples.div_ceil(batch));
    let bar = crate::io::progress::bar(Some(calls as u64), "select: probe sets");

    // 1–2. Probe sets and the cross-evaluation.
    let mut cross = Array2::zeros((m, m));
    for (j, model) in models.iter().enumerate() {
        // The same draws for every model (common random numbers): identical models get identical probe sets.
        tch::manual_seed((rng::derive_seed(seed, &[0x5e1ec7]) >> 1) as i64);
        let mut groups: Vec<Groups> = (0..m)
            .map(|_| Groups {
                codes: Vec::new(),
                labels: Vec::new(),
                std_codes: None,
            })
            .collect();
        for g in 0..opts.groups {
            let fixed = (g % k as usize) as i64;
            let z = model.sample(opts.group_size as i64, device);
            let value = z.narrow(0, 0, 1).narrow(1, fixed, 1).copy();
            z.narrow(1, fixed, 1)
                .copy_(&value.expand([opts.group_size as i64, 1], false));
            let images = generate(model, &z, batch);
            for (i, codes) in encode_all(&models, &images, batch)?.into_iter().enumerate() {
                groups[i].codes.push(codes);
                groups[i].labels.push(fixed as usize);
            }
            bar.inc(opts.group_size.div_ceil(batch) as u64);
        }
        let z = model.sample(opts.std_samples as i64, device);
        let images = generate(model, &z, batch);
        let std_codes = encode_all(&models, &images, batch)?;
        bar.inc(opts.std_samples.div_ceil(batch) as u64);
        for i in 0..m {
            cross[[i, j]] = factor_vae(&groups[i], std_codes[i].view(), k as usize).0;
        }
    }
    let (symmetric, mc) = model_centrality(&cross)?;

    // 3. UDR on real images.
    let n = dataset.count();
    let mut pick_rng = rng::Rng::stream(seed, &[0x0d12]);
    let indices: Vec<u32> = if opts.udr_samples <= n {
        let mut all: Vec<u32> = (0..n as u32).collect();
        pick_rng.shuffle(&mut all);
        all.truncate(opts.udr_samples);
        all
    } else {
        (0..opts.udr_samples)
            .map(|_| pick_rng.below(n as u64) as u32)
            .collect()
    };
    let level = dataset.level(log2)?;
    let mut reps: Vec<Vec<Array2<f64>>> = vec![Vec::new(); m];
    for chunk in indices.chunks(batch) {
        let x = to_float(&level.tensor(chunk).to_device(device));
        for (i, codes) in encode_all(&models, &x, batch)?.into_iter().enumerate() {
            reps[i].push(codes);
        }
        bar.inc(m as u64);
    }
    bar.finish_and_clear();
    let reps: Vec<Array2<f64>> = reps
        .into_iter()
        .map(|parts| {
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            ndarray::concatenate(ndarray::Axis(0), &views).map_err(anyhow::Error::from)
        })
        .collect::<Result<_>>()?;
    let (udr_lasso_pairs, udr_lasso) = udr(&reps, UdrVariant::Lasso)?;
    let (udr_spearman_pairs, udr_spearman) = udr(&reps, UdrVariant::Spearman)?;

    // 4. Ground truth, where there is some.
    let own: Vec<Option<OwnScores>> = if opts.own_scores && require_factors(&dataset).is_ok() {
        let mut out = Vec::new();
        for (r, model) in refs.iter().zip(&models) {
            log::info!("own scores of {}", r.name);
            let encode = |x: &Tensor| model.encode(x);
            let s = score_encoder(&encode, &dataset, log2, &opts.encoder, device)?.scores;
            out.push(Some(OwnScores {
                factor_vae: s.factor_vae,
                beta_vae: s.beta_vae,
                mig: s.mig,
                sap: s.sap,
                modularity: s.modularity,
                explicitness: s.explicitness,
                dci: s.dci_lasso_disentanglement,
            }));
        }
        out
    } else {
        if opts.own_scores {
            log::info!(
                "{} has no ground-truth factors: no own scores and no regret",
                dataset_dir.display()
            );
        }
        vec![None; m]
    };

    let selected: Vec<SelectedModel> = (0..m)
        .map(|i| SelectedModel {
            name: refs[i].name.clone(),
            path: refs[i].path.clone(),
            kind: models[i].kind,
            model_centrality: mc[i],
            udr_lasso: udr_lasso[i],
            udr_spearman: udr_spearman[i],
            own: own[i].clone(),
        })
        .collect();
    let truth: Option<Vec<f64>> = own
        .iter()
        .map(|o| o.as_ref().and_then(|o| o.factor_vae))
        .collect();
    let picks = [
        ("ModelCentrality", &mc),
        ("UDR (Lasso)", &udr_lasso),
        ("UDR (Spearman)", &udr_spearman),
    ]
    .into_iter()
    .filter_map(|(selector, scores)| {
        let model = argmax(scores)?;
        let best = truth.as_ref().and_then(|t| argmax(t).map(|b| t[b]));
        let factor = truth.as_ref().map(|t| t[model]);
        Some(Pick {
            selector,
            model,
            name: refs[model].name.clone(),
            factor_vae: factor,
            best_factor_vae: best,
            median_factor_vae: truth.as_ref().map(|t| median(&mut t.clone())),
            regret: best.zip(factor).map(|(b, f)| b - f),
        })
    })
    .collect();
    let mut ranking: Vec<usize> = (0..m).collect();
    ranking.sort_by(|&a, &b| mc[b].total_cmp(&mc[a]));

    let json = opts
        .out
        .clone()
        .unwrap_or_else(|| opts.results_dir.join("select.json"));
    let figure = json.with_extension("png");
    let report = SelectReport {
        models: selected,
        ranking,
        cross: rows(&cross),
        symmetric: rows(&symmetric),
        udr_lasso_pairs: rows(&udr_lasso_pairs),
        udr_spearman_pairs: rows(&udr_spearman_pairs),
        picks,
        codes: k,
        dataset: dataset_dir,
        groups: opts.groups,
        group_size: opts.group_size,
        std_samples: opts.std_samples,
        udr_samples: opts.udr_samples,
        seed,
        json: json.clone(),
        figure: figure.clone(),
    };
    crate::io::fs::write_bytes_atomic(&json, serde_json::to_string_pretty(&report)?.as_bytes())?;
    write_figure(&report, &figure)?;
    Ok(report)
}

/// One bar per model for each selector and, with ground truth, its FactorVAE.
fn write_figure(report: &SelectReport, png: &Path) -> Result<()> {
    let names: Vec<String> = (0..report.models.len()).map(|i| format!("{i}")).collect();
    let panel = |title: &str, values: Vec<f64>, y: &str| BarPanel {
        title: title.to_string(),
        series: vec![("model (index in select.json)".to_string(), values)],
        categories: Some(names.clone()),
        y_desc: y.to_string(),
    };
    let mut panels = vec![
        panel(
            "ModelCentrality",
            report.models.iter().map(|m| m.model_centrality).collect(),
            "MC",
        ),
        panel(
            "UDR (Lasso)",
            report.models.iter().map(|m| m.udr_lasso).collect(),
            "UDR",
        ),
        panel(
            "UDR (Spearman)",
            report.models.iter().map(|m| m.udr_spearman).collect(),
            "UDR",
        ),
    ];
    let truth: Option<Vec<f64>> = report
        .models
        .iter()
        .map(|m| m.own.as_ref().and_then(|o| o.factor_vae))
        .collect();
    if let Some(t) = truth {
        panels.push(panel("FactorVAE (ground truth)", t, "FactorVAE"));
    }
    save_bar_panels(&panels, png, &png.with_extension("svg"))
}
