//! Discovered directions beside the baselines (issue 20): coordinate axes, random orthonormal directions, PCA of
//! G's first-layer activations transferred to z (GANSpace-style), and the top eigenvectors of the latent metric
//! tensor (`core::geometry`, L2 distance, averaged over reference codes).
//!
//! Each set is a rotation of z: with B an orthonormal basis whose first rows are the set's directions
//! (`core::discover::complete_basis`), `G'(c) = G(c·B)` is the same generator in the set's coordinates, and
//! c ~ N(0, I) when z is. So `score`'s encoder-free suite, effect matrix included, scores a direction set exactly as
//! it scores z's components; for ProGAN models trained on data with factors every set gets those numbers. Every set
//! gets a traversal picture (a row per direction, the columns from −extent to +extent at one base latent).

use super::DiscoverOptions;
use crate::checkpoint::frozen::FrozenGenerator;
use crate::checkpoint::snapshot_config;
use crate::commands::figures::render::save_matrix_heatmap;
use crate::commands::Globals;
use crate::core::discover::{
    complete_basis, discovery_loss, discovery_penalty, draw_coefficients, gram_schmidt,
    orthonormality_error,
};
use crate::core::geometry::hvp::Reduction as DistanceReduction;
use crate::core::geometry::{full_hessian, symmetric_eigh, BackwardHvp, PulledMetric};
use crate::core::traversal;
use crate::data::{locate, Dataset};
use crate::io::{fs, imageio};
use crate::metrics::disentanglement::dci_from_importance;
use crate::metrics::encoder_free::{score_generator, EncoderFreeOptions};
use crate::metrics::predictor::{require_factors, FactorPredictor, PredictorOptions};
use anyhow::{ensure, Context, Result};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Settings of the comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareOptions {
    /// Baselines to compute: any of coords, random, pca, geometry.
    pub baselines: Vec<String>,
    /// Score on this dataset (with factors) instead of the one the model trained on.
    pub dataset: Option<String>,
    pub datasets_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// The encoder-free suite's sample counts (smaller than `score`'s defaults: one run per direction set).
    pub samples: usize,
    pub groups: usize,
    pub group_size: usize,
    pub effect_bases: usize,
    pub effect_steps: usize,
    /// Sweep extent of the effect matrix and of the pictures.
    pub extent: f64,
    /// Latents of the PCA baseline, reference codes of the geometry baseline.
    pub pca_samples: i64,
    pub geometry_points: i64,
    /// Columns of the traversal pictures.
    pub steps: i64,
    /// Batches (of 32 latents) of the penalty each set is measured with.
    pub penalty_batches: i64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            baselines: ["coords", "random", "pca", "geometry"]
                .map(String::from)
                .to_vec(),
            dataset: None,
            datasets_dir: "datasets".into(),
            cache_dir: crate::metrics::DEFAULT_CACHE_DIR.into(),
            samples: 10_000,
            groups: 300,
            group_size: 50,
            effect_bases: 16,
            effect_steps: 9,
            extent: 2.0,
            pca_samples: 5000,
            geometry_points: 8,
            steps: 9,
            penalty_batches: 16,
        }
    }
}

/// One direction set's numbers.
#[derive(Clone, Debug, Serialize)]
pub struct SetReport {
    pub name: String,
    /// `<set>.npy`: the directions `[k, nz]`, one per row.
    pub directions: PathBuf,
    pub traversal: PathBuf,
    /// The discovery loss of the set (the HP in the coefficients), averaged over
    /// `penalty_batches` batches whose latents, directions, distances and signs are the same for every set: the
    /// objective discovery lowers, comparable across sets.
    pub penalty: f64,
    /// With a dataset with factors: the effect matrix of the set's directions (rows) on the factors.
    pub effect: Option<Vec<Vec<f64>>>,
    pub effect_disentanglement: Option<f64>,
    pub effect_completeness: Option<f64>,
    pub effect_max: Option<f64>,
    pub factor_vae: Option<f64>,
    pub mig: Option<f64>,
    pub dci_disentanglement: Option<f64>,
}

/// The comparison, also written as `compare.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub dir: PathBuf,
    pub factor_names: Vec<String>,
    pub sets: Vec<SetReport>,
    /// Why there are no scores, when there are none.
    pub unscored: Option<String>,
}

/// The eased path of `frames` values: centre → −1 → centre, then centre → +1 → centre, each half manim's
/// "there and back" with the smooth sigmoid easing (docs/spec/progan_hp.md §11 `vis_directions`). The reference
/// subtracts the easing's error term inside the sigmoid, so its curve stops near ±0.98 and 0.01; ours reaches −1,
/// +1 and 0 exactly.
pub fn eased_path(frames: usize) -> Vec<f64> {
    let smooth = |t: f64| {
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let err = s(-5.0);
        ((s(10.0 * (t - 0.5)) - err) / (1.0 - 2.0 * err)).clamp(0.0, 1.0)
    };
    let there_and_back = |t: f64| {
        if t < 0.5 {
            smooth(2.0 * t)
        } else {
            smooth(2.0 - 2.0 * t)
        }
    };
    let half = (frames / 2).max(2);
    let mut out = Vec::with_capacity(2 * half);
    for sign in [-1.0, 1.0] {
        for i in 0..half {
            out.push(sign * there_and_back(i as f64 / (half - 1) as f64));
        }
    }
    out
}

/// `z` walked to coefficient `v` along the unit direction `q` (`[nz]`): z's own component along q is removed
/// first, then `v·q` added (docs/spec/progan_hp.md §11 `vis_directions`).
pub fn walk(z: &Tensor, q: &Tensor, v: f64) -> Tensor {
    let q = q.to_kind(z.kind());
    let along = z.matmul(&q).unsqueeze(1) * q.unsqueeze(0);
    z - along + q.unsqueeze(0) * v
}

/// The baseline direction sets of `g` with `k` directions each; `(name, [k, nz])`.
pub fn baselines(
    g: &FrozenGenerator,
    k: i64,
    which: &[String],
    opts: &CompareOptions,
    seed: u64,
) -> Result<Vec<(String, Tensor)>> {
    let nz = g.nz();
    let mut out = Vec::new();
    for name in which {
        let dirs = match name.as_str() {
            "coords" => Tensor::eye(nz, (Kind::Float, Device::Cpu)).narrow(0, 0, k),
            "random" => {
                tch::manual_seed(seed as i64 + 1);
                gram_schmidt(&Tensor::randn([k, nz], (Kind::Float, Device::Cpu)))?
            }
            "pca" => pca_directions(g, k, opts.pca_samples, seed)?,
            "geometry" => geometry_directions(g, k, opts.geometry_points, seed)?,
            other => anyhow::bail!(
                "--baselines {other}: unknown; choose from coords, random, pca, geometry"
            ),
        };
        out.push((name.clone(), dirs));
    }
    Ok(out)
}

/// GANSpace for a generator without an intermediate latent: PCA of the first layer's activations over
/// `samples` latents, each principal component transferred to z by least squares (z ≈ c·V for the PCA coordinates
/// c), then orthonormalised in the order of explained variance.
fn pca_directions(g: &FrozenGenerator, k: i64, samples: i64, seed: u64) -> Result<Tensor> {
    let lg = g.progan().context(
        "--baselines pca needs the generator's first layer: available for ProGAN models",
    )?;
    let device = g.device();
    tch::manual_seed(seed as i64 + 2);
    let z = Tensor::randn([samples, g.nz()], (Kind::Float, device));
    let acts = tch::no_grad(|| lg.g.hp_layers(&z, lg.lod, &[1], true))
        .remove(0)
        .reshape([samples, -1])
        .to_kind(Kind::Double)
        .to_device(Device::Cpu);
    let centred = &acts - acts.mean_dim(0, true, Kind::Double);
    let vh = centred.svd(true, true).2.tr(); // rows: principal axes, by variance
    let kk = k.min(vh.size()[0]);
    let coords = centred.matmul(&vh.narrow(0, 0, kk).tr()); // [samples, k]
    let z = z.to_device(Device::Cpu).to_kind(Kind::Double);
    let v = coords.linalg_lstsq(&z, None, "gelsd").0; // [k, nz]
    gram_schmidt(&v.to_kind(Kind::Float))
}

/// The top-k eigenvectors of the L2 metric tensor averaged over `points` reference codes (exact Hessians by
/// double backprop, `geometry --methods bp`).
fn geometry_directions(g: &FrozenGenerator, k: i64, points: i64, seed: u64) -> Result<Tensor> {
    let device = g.device();
    let nz = g.nz();
    tch::manual_seed(seed as i64 + 3);
    let codes = Tensor::randn([points, nz], (Kind::Float, device));
    let classes = g.classes(1);
    let mut sum = Tensor::zeros([nz, nz], (Kind::Double, Device::Cpu));
    for i in 0..points {
        let phi = |z: &Tensor| -> Result<Tensor> {
            let c = classes.repeat([z.size()[0]]);
            Ok((g.forward(z, &c) + 1.0) / 2.0)
        };
        let metric = PulledMetric::new(phi, DistanceReduction::Mean, &codes.get(i), device)?;
        let mut op = BackwardHvp::new(&metric)?;
        sum += full_hessian(&mut op)?;
    }
    let (_, vectors) = symmetric_eigh(&(sum / points as f64))?.descending();
    Ok(vectors
        .narrow(1, 0, k)
        .tr()
        .to_kind(Kind::Float)
        .contiguous())
}

/// The mean discovery loss of directions `q` (`[k, nz]`) over `batches` batches of 32, every draw seeded so that
/// all sets see the same latents, classes, directions, distances and signs.
pub fn mean_penalty(g: &FrozenGenerator, q: &Tensor, path_size: f64, batches: i64) -> Result<f64> {
    let device = g.device();
    let q = q.to_device(device);
    let k = q.size()[0];
    let mut sum = 0.0;
    for b in 0..batches {
        tch::manual_seed(1_000 + b);
        let z = Tensor::randn([32, g.nz()], (Kind::Float, device));
        let classes = g.classes(32).repeat([2 * discovery_penalty().k as i64]);
        let w = draw_coefficients(32, k, path_size, device);
        let signs = discovery_penalty().rademacher(&w);
        let gen = |x: &Tensor| g.forward(x, &classes);
        let loss = tch::no_grad(|| discovery_loss(&gen, &z, &w, &q, Some(&signs)))?;
        sum += loss.double_value(&[]);
    }
    Ok(sum / batches.max(1) as f64)
}

/// Traversal picture of a set: a row per direction (at most 16), `steps` columns from −extent to +extent at one
/// base latent.
fn traversal_picture(
    g: &FrozenGenerator,
    dirs: &Tensor,
    opts: &CompareOptions,
    path: &Path,
) -> Result<()> {
    let device = g.device();
    tch::manual_seed(11);
    let base = Tensor::randn([1, g.nz()], (Kind::Float, device));
    let classes = g.classes(1).repeat([opts.steps]);
    let values = traversal::sweep_values(opts.steps, opts.extent);
    let rows = dirs.size()[0].min(16);
    let mut images = Vec::new();
    for j in 0..rows {
        let q = dirs.get(j).to_device(device);
        let z = Tensor::cat(
            &values
                .iter()
                .map(|&v| walk(&base, &q, v))
                .collect::<Vec<_>>(),
            0,
        );
        images.push(tch::no_grad(|| g.forward(&z, &classes)).to_device(Device::Cpu));
    }
    let grid = imageio::grid(
        &imageio::float_to_u8(&Tensor::cat(&images, 0).clamp(-1.0, 1.0)),
        opts.steps as usize,
        2,
        0,
    )?;
    imageio::save_png(&grid, path)
}

/// The dataset with factors the sets are scored on, or why there is none.
fn scoring_data(
    g: &FrozenGenerator,
    opts: &CompareOptions,
    globals: &Globals,
) -> std::result::Result<PathBuf, String> {
    let base_url = globals.base_url.as_deref();
    let found = match &opts.dataset {
        Some(name) => locate::locate(name, &opts.datasets_dir, base_url),
        None => {
            if g.progan().is_none() {
                return Err(format!(
                    "{} was not trained on data with factors (pass --dataset to score on one)",
                    g.path.display()
                ));
            }
            snapshot_config(&g.path)
                .and_then(|cfg| locate::locate(&cfg.dataset, &cfg.datasets_dir, base_url))
        }
    };
    found.map_err(|e| format!("no dataset to score on: {e:#}"))
}

/// Writes every set's directions and picture, scores them where the data has factors, and writes
/// `compare.json` and the effect heatmaps into `dir`.
pub fn run(
    globals: &Globals,
    g: &FrozenGenerator,
    discovered: &Tensor,
    dir: &Path,
    discover: &DiscoverOptions,
    seed: u64,
) -> Result<Comparison> {
    let opts = &discover.compare;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let k = discovered.size()[0];
    let device = g.device();
    let mut sets = vec![("discovered".to_string(), discovered.to_device(Device::Cpu))];
    sets.extend(baselines(g, k, &opts.baselines, opts, seed)?);

    let data = scoring_data(g, opts, globals);
    let mut scoring: Option<(Dataset, FactorPredictor)> = None;
    let mut unscored = None;
    match data {
        Ok(path) => {
            let ds = Dataset::open(&path)?;
            match require_factors(&ds) {
                Ok(_) => {
                    let log2 = g.resolution().trailing_zeros();
                    let p = FactorPredictor::load_or_train(
                        &ds,
                        log2,
                        &opts.cache_dir,
                        &PredictorOptions::default(),
                        device,
                    )?;
                    scoring = Some((ds, p));
                }
                Err(e) => unscored = Some(format!("{e:#}")),
            }
        }
        Err(why) => unscored = Some(why),
    }
    if let Some(why) = &unscored {
        log::info!("direction sets are not scored: {why}");
    }

    let mut reports = Vec::new();
    let mut factor_names = Vec::new();
    for (name, dirs) in &sets {
        let npy = dir.join(format!("{name}.npy"));
        crate::core::latents::write_npy(dirs, &npy)?;
        let picture = dir.join(format!("traversal_{name}.png"));
        traversal_picture(g, dirs, opts, &picture)?;
        let penalty = mean_penalty(g, dirs, discover.path_size, opts.penalty_batches)?;
        let mut report = SetReport {
            name: name.clone(),
            directions: npy,
            traversal: picture,
            penalty,
            effect: None,
            effect_disentanglement: None,
            effect_completeness: None,
            effect_max: None,
            factor_vae: None,
            mig: None,
            dci_disentanglement: None,
        };
        if let Some((ds, predictor)) = &scoring {
            // The set as a rotation of z (orthonormalised first where A was left free).
            let q = if orthonormality_error(dirs) > 1e-4 {
                gram_schmidt(dirs)?
            } else {
                dirs.shallow_clone()
            };
            let basis = complete_basis(&q)?.to_device(device);
            let classes = g.classes(1);
            let rotated = |c: &Tensor| g.forward(&c.matmul(&basis), &classes.repeat([c.size()[0]]));
            let free = EncoderFreeOptions {
                samples: opts.samples,
                groups: opts.groups,
                group_size: opts.group_size,
                effect_bases: opts.effect_bases,
                effect_steps: opts.effect_steps,
                extent: opts.extent,
                seed,
                ..EncoderFreeOptions::default()
            };
            let s = score_generator(&rotated, g.nz(), predictor, ds, &free, device)
                .with_context(|| format!("scoring the {name} directions"))?;
            let effect: Vec<Vec<f64>> = s.effect[..k as usize].to_vec();
            let m =
                Array2::from_shape_fn((effect.len(), s.factor_names.len()), |(i, j)| effect[i][j]);
            let (dis, comp) = dci_from_importance(&m);
            save_matrix_heatmap(
                &format!("{name} directions: factor change per direction (effect)"),
                &(0..k).map(|i| format!("d{i}")).collect::<Vec<_>>(),
                &s.factor_names,
                &effect,
                (0.0, 1.0),
                &dir.join(format!("effect_{name}.png")),
            )?;
            report.effect_max = Some(effect.iter().flatten().copied().fold(0.0, f64::max));
            report.effect = Some(effect);
            report.effect_disentanglement = Some(dis);
            report.effect_completeness = Some(comp);
            report.factor_vae = Some(s.factor_vae_z);
            report.mig = Some(s.scores.mig);
            report.dci_disentanglement = Some(s.scores.dci_lasso_disentanglement);
            factor_names = s.factor_names.clone();
        }
        reports.push(report);
    }
    ensure!(!reports.is_empty(), "no direction sets");
    let comparison = Comparison {
        dir: dir.to_path_buf(),
        factor_names,
        sets: reports,
        unscored,
    };
    fs::write_bytes_atomic(
        &dir.join("compare.json"),
        serde_json::to_string_pretty(&comparison)?.as_bytes(),
    )?;
    Ok(comparison)
}
