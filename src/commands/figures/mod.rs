//! `hessian-gan figures` (docs/spec/progan_hp.md §4.4, §9): the paper's Hessian heatmaps (`hessians`), Table 2's
//! diagonal-ness numbers (`diag`), per-pixel Hessian Penalty heatmaps (`heatmaps`) and activeness bar charts
//! (`active`), for one or more trained generators.
//!
//! Outputs go to `<out>/figure_<fig>/<model names joined by _>/seed_<seed>/` (with `--z FILE`: `…/z_<file stem>/`),
//! each with the latents used, `z.npy`.
//!
//! The statistics live in [`stats`] and take any generator closure, so they are tested on analytic functions.

pub mod charts;
pub mod render;
pub mod stats;

use crate::checkpoint::reference::{self, ModelRef};
use crate::commands::Globals;
use crate::core::latents::{self, LatentConvention};
use crate::io::fs;
use crate::io::imageio;
use crate::io::progress;
use anyhow::{ensure, Context, Result};
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Rademacher directions of the per-pixel HP that picks the element of `hessians` (docs/spec/progan_hp.md §9.2).
pub const HESSIANS_K: usize = 200;
/// Rademacher directions of the per-pixel HP maps of `heatmaps` (docs/spec/progan_hp.md §9.4).
pub const HEATMAPS_K: usize = 2;
/// How much the generated image's brightness shades the HP colour map in `heatmaps`. The reference draws the image
/// at alpha 0.08 over the map, which nearly hides it; shading keeps the map's hues (so the colour bar stays exact
/// in hue) while the scene stays recognisable.
pub const IMAGE_SHADE: f64 = 0.4;

/// Which figure to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fig {
    /// |H| at the output element with the largest per-pixel HP (k 200): rows = models, columns = samples.
    Hessians,
    /// Table 2: fraction of per-element Hessians with their max on the diagonal, relative diagonal strength.
    Diag,
    /// Per-pixel HP (k 2, max over channels) over the generated images.
    Heatmaps,
    /// Activeness of each z component (variance over z_i ∈ {−2, 0, 2}), bar charts per dataset.
    Active,
}

impl Fig {
    pub fn name(self) -> &'static str {
        match self {
            Fig::Hessians => "hessians",
            Fig::Diag => "diag",
            Fig::Heatmaps => "heatmaps",
            Fig::Active => "active",
        }
    }
}

/// Settings of `figures` (the command line: `cli::figures::FiguresOptions`).
#[derive(Clone, Debug)]
pub struct FiguresOptions {
    /// Models: snapshot files, run directories or results run numbers. For --fig active, ordered dataset-major
    /// (all models of the first dataset, then the next …).
    pub models: Vec<String>,
    /// Which figure.
    pub fig: Fig,
    /// Snapshot of each run-number / run-directory model: `latest` or a kimg number; one for all or one per model.
    pub snapshot_kimgs: Vec<String>,
    /// NumPy seeds of the latents; one figure per seed.
    pub seeds: Vec<u64>,
    /// Number of base latents (default 8; the paper uses 100 for diag and 300 for active).
    pub samples: Option<usize>,
    /// Give G the raw z and let it pixel-normalise (as training did) instead of normalising here first.
    pub interpolate_pre_norm: bool,
    /// Legend names (active: one per model of a dataset) or row labels (other figures: one per model).
    pub model_names: Option<Vec<String>>,
    /// Subplot titles of --fig active, one per dataset.
    pub dataset_names: Option<Vec<String>>,
    /// Finite-difference step of the Hessians and Hessian Penalties.
    pub epsilon: f64,
    /// The set values of --fig active are −extent, 0, +extent (the reference hard-codes 2).
    pub extent: f64,
    /// Use these latents (a float .npy of shape [samples, nz], as written to z.npy) instead of seeded draws.
    pub z: Option<PathBuf>,
    /// Most latents per generator call.
    pub minibatch_size: usize,
    /// Root of the outputs.
    pub out: PathBuf,
    /// Where run numbers are looked up.
    pub results_dir: PathBuf,
    /// Where pretrained models (`clevr_simple_ft`, …) are downloaded and converted.
    pub pretrained_dir: PathBuf,
}

impl FiguresOptions {
    /// The defaults of every optional flag, for library callers.
    pub fn new(models: Vec<String>, fig: Fig) -> Self {
        Self {
            models,
            fig,
            snapshot_kimgs: vec!["latest".into()],
            seeds: vec![0],
            samples: None,
            interpolate_pre_norm: false,
            model_names: None,
            dataset_names: None,
            epsilon: 0.1,
            extent: 2.0,
            z: None,
            minibatch_size: 100,
            out: PathBuf::from("visuals"),
            results_dir: PathBuf::from("results"),
            pretrained_dir: PathBuf::from(reference::PRETRAINED_DIR),
        }
    }
}

/// Default number of base latents (`--samples`, docs/spec/progan_hp.md §4.4).
pub const DEFAULT_SAMPLES: usize = 8;

/// What one `figures` call wrote.
#[derive(Clone, Debug)]
pub struct FiguresReport {
    /// One output directory per seed (or the one for `--z`).
    pub dirs: Vec<PathBuf>,
    /// The files written, in order.
    pub files: Vec<PathBuf>,
    /// For `diag`: the numbers per seed and model (its row label: `--model-names` or the model's name).
    pub diag: Vec<(u64, String, stats::Diagonalness)>,
}

/// A folder-safe version of a model name.
fn folder_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `<model names joined by _>`, shortened with a hash when it would be too long for a file name.
fn joined_names(refs: &[ModelRef]) -> String {
    let joined = refs
        .iter()
        .map(|m| folder_name(&m.name))
        .collect::<Vec<_>>()
        .join("_");
    if joined.len() <= 180 {
        return joined;
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(joined.as_bytes());
    let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let cut: String = joined.chars().take(160).collect();
    format!("{cut}-{hex}")
}

/// Dataset titles and legend names of `active` (docs/spec/progan_hp.md §9.5): `--models` is dataset-major with
/// `len(models) = len(model_names)·len(dataset_names)`. Without names, one panel holds every model under its own
/// name; with only one of the two lists, the other count follows from the number of models.
pub fn active_groups(
    models: &[String],
    model_names: Option<&[String]>,
    dataset_names: Option<&[String]>,
) -> Result<(Vec<String>, Vec<String>)> {
    let n = models.len();
    match (model_names, dataset_names) {
        (None, None) => Ok((vec![String::new()], models.to_vec())),
        (Some(m), Some(d)) => {
            ensure!(
                m.len() * d.len() == n,
                "--fig active: {n} --models but {} --model-names × {} --dataset-names = {}; give the models \
                 dataset-major, one per (dataset, model name)",
                m.len(),
                d.len(),
                m.len() * d.len()
            );
            Ok((d.to_vec(), m.to_vec()))
        }
        (Some(m), None) => {
            ensure!(
                !m.is_empty() && n.is_multiple_of(m.len()),
                "--fig active: {n} --models do not split into datasets of {} --model-names",
                m.len()
            );
            let d = (1..=n / m.len()).map(|i| format!("dataset {i}")).collect();
            Ok((d, m.to_vec()))
        }
        (None, Some(d)) => {
            ensure!(
                !d.is_empty() && n.is_multiple_of(d.len()),
                "--fig active: {n} --models do not split evenly over {} --dataset-names",
                d.len()
            );
            let m = (1..=n / d.len()).map(|i| format!("model {i}")).collect();
            Ok((d.to_vec(), m))
        }
    }
}

/// Checks the flags that do not need the models.
fn validate(args: &FiguresOptions) -> Result<()> {
    ensure!(!args.models.is_empty(), "--models: give at least one model");
    ensure!(
        args.epsilon.is_finite() && args.epsilon > 0.0,
        "--epsilon {} must be a positive number (the reference uses 0.1)",
        args.epsilon
    );
    ensure!(
        args.extent.is_finite() && args.extent > 0.0,
        "--extent {} must be a positive number",
        args.extent
    );
    ensure!(
        args.minibatch_size >= 1,
        "--minibatch-size must be at least 1"
    );
    ensure!(
        args.samples != Some(0),
        "--samples 0: need at least one sample"
    );
    ensure!(!args.seeds.is_empty(), "--seeds: give at least one seed");
    ensure!(
        args.snapshot_kimgs.len() == 1 || args.snapshot_kimgs.len() == args.models.len(),
        "--snapshot-kimgs: {} values for {} models; give one for all or one per model",
        args.snapshot_kimgs.len(),
        args.models.len()
    );
    if args.fig == Fig::Active {
        active_groups(
            &args.models,
            args.model_names.as_deref(),
            args.dataset_names.as_deref(),
        )?;
    } else {
        ensure!(
            args.dataset_names.is_none(),
            "--dataset-names applies to --fig active only"
        );
        if let Some(names) = &args.model_names {
            ensure!(
                names.len() == args.models.len(),
                "--model-names: {} names for {} --models; give one per model",
                names.len(),
                args.models.len()
            );
        }
    }
    Ok(())
}

/// The latents of one output folder: raw (before the convention), per latent size.
struct LatentSource {
    /// `Some(file latents)` with `--z`.
    file: Option<(PathBuf, Tensor)>,
    seed: u64,
    samples: usize,
}

impl LatentSource {
    fn raw(&self, nz: i64, model: &str, device: Device) -> Result<Tensor> {
        match &self.file {
            Some((path, z)) => {
                let width = z.size()[1];
                ensure!(
                    width == nz,
                    "--z {}: latents have {width} components but model {model} has nz {nz}",
                    path.display()
                );
                Ok(z.to_device(device))
            }
            None => {
                Ok(latents::seeded_normal(self.seed, self.samples as i64, nz)?.to_device(device))
            }
        }
    }
}

/// Runs `hessian-gan figures`.
pub fn run(globals: &Globals, args: &FiguresOptions) -> Result<FiguresReport> {
    validate(args)?;
    let mut resolver = globals.resolver(&args.results_dir);
    resolver.pretrained_dir = args.pretrained_dir.clone();
    let refs: Vec<ModelRef> = args
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let snap = &args.snapshot_kimgs[if args.snapshot_kimgs.len() == 1 { 0 } else { i }];
            resolver
                .resolve(m, snap)
                .with_context(|| format!("--models {m}"))
        })
        .collect::<Result<_>>()?;
    let device = globals.device.resolve()?;
    let file_z = match &args.z {
        Some(path) => {
            let z = latents::read_z(path)?;
            let rows = z.size()[0] as usize;
            if let Some(s) = args.samples {
                ensure!(
                    s == rows,
                    "--samples {s} but --z {} holds {rows} latents; drop --samples to use them all",
                    path.display()
                );
            }
            Some((path.clone(), z))
        }
        None => None,
    };
    let base = args
        .out
        .join(format!("figure_{}", args.fig.name()))
        .join(joined_names(&refs));
    let mut report = FiguresReport {
        dirs: Vec::new(),
        files: Vec::new(),
        diag: Vec::new(),
    };
    let runs: Vec<(PathBuf, LatentSource)> = match file_z {
        Some((path, z)) => {
            let stem = path
                .file_stem()
                .map(|s| folder_name(&s.to_string_lossy()))
                .unwrap_or_else(|| "z".into());
            let samples = z.size()[0] as usize;
            vec![(
                base.join(format!("z_{stem}")),
                LatentSource {
                    file: Some((path, z)),
                    seed: globals.seed_or_default(),
                    samples,
                },
            )]
        }
        None => args
            .seeds
            .iter()
            .map(|&seed| {
                (
                    base.join(format!("seed_{seed}")),
                    LatentSource {
                        file: None,
                        seed,
                        samples: args.samples.unwrap_or(DEFAULT_SAMPLES),
                    },
                )
            })
            .collect(),
    };
    for (dir, source) in runs {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let files = one_figure(args, &refs, &source, &dir, device, &mut report)?;
        report.files.extend(files);
        report.dirs.push(dir);
    }
    Ok(report)
}

/// Per-model data gathered for one figure.
struct ModelRun {
    name: String,
    path: PathBuf,
    nz: i64,
    raw_z: Tensor,
}

/// Loads each model in turn (one in memory at a time), calls `work` with its generator closure and the latents in
/// the figure's convention, and collects what `work` returns.
fn for_each_model<T>(
    args: &FiguresOptions,
    refs: &[ModelRef],
    source: &LatentSource,
    device: Device,
    mut work: impl FnMut(
        &dyn Fn(&Tensor) -> Tensor,
        &Tensor,
        &indicatif::ProgressBar,
        &ModelRef,
    ) -> Result<T>,
) -> Result<Vec<(ModelRun, T)>> {
    let mut out = Vec::new();
    for m in refs {
        let lg = reference::load_gs(&m.path, device)
            .with_context(|| format!("cannot load model {}", m.path.display()))?;
        let nz = lg.net.nz;
        let raw_z = source.raw(nz, &m.name, device)?;
        let convention = LatentConvention::from_pre_norm(args.interpolate_pre_norm);
        let (z, normalize) = (convention.prepare(&raw_z), convention.g_normalizes());
        let lod = lg.lod;
        let g = |x: &Tensor| lg.g.forward(x, lod, normalize);
        // The same Rademacher directions for every model of one seed (docs/spec/progan_hp.md §9.2, §9.4).
        tch::manual_seed(source.seed as i64);
        let bar = progress::bar(
            Some(z.size()[0] as u64),
            &format!("{} {}", args.fig.name(), m.name),
        );
        let value = work(&g, &z, &bar, m)?;
        bar.finish_and_clear();
        out.push((
            ModelRun {
                name: m.name.clone(),
                path: m.path.clone(),
                nz,
                raw_z,
            },
            value,
        ));
    }
    Ok(out)
}

/// Writes the raw latents used: `z.npy`, or `z_nz<N>.npy` per latent size when the models differ.
fn write_latents(dir: &Path, runs: &[&ModelRun], files: &mut Vec<PathBuf>) -> Result<()> {
    let mut sizes: Vec<i64> = runs.iter().map(|r| r.nz).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for nz in &sizes {
        let run = runs.iter().find(|r| r.nz == *nz).expect("size from runs");
        let path = if sizes.len() == 1 {
            dir.join("z.npy")
        } else {
            dir.join(format!("z_nz{nz}.npy"))
        };
        latents::write_npy(&run.raw_z, &path)?;
        files.push(path);
    }
    Ok(())
}

fn row_labels(args: &FiguresOptions, runs: &[&ModelRun]) -> Vec<String> {
    match &args.model_names {
        Some(names) => names.clone(),
        None => runs.iter().map(|r| r.name.clone()).collect(),
    }
}

fn write_json(path: &Path, value: &serde_json::Value, files: &mut Vec<PathBuf>) -> Result<()> {
    fs::write_bytes_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())?;
    files.push(path.to_path_buf());
    Ok(())
}

fn common_json(args: &FiguresOptions, source: &LatentSource) -> serde_json::Value {
    json!({
        "fig": args.fig,
        "seed": if source.file.is_some() { None } else { Some(source.seed) },
        "z_file": source.file.as_ref().map(|(p, _)| p.display().to_string()),
        "samples": source.samples,
        "epsilon": args.epsilon,
        "interpolate_pre_norm": args.interpolate_pre_norm,
    })
}

fn host_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(
        &t.to_device(Device::Cpu)
            .to_kind(Kind::Double)
            .contiguous()
            .view([-1]),
    )?)
}

fn one_figure(
    args: &FiguresOptions,
    refs: &[ModelRef],
    source: &LatentSource,
    dir: &Path,
    device: Device,
    report: &mut FiguresReport,
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let eps = args.epsilon;
    let mb = args.minibatch_size;
    match args.fig {
        Fig::Hessians => {
            let runs = for_each_model(args, refs, source, device, |g, z, bar, _| {
                stats::hessian_at_largest_hp(g, z, HESSIANS_K, eps, mb, Some(bar))
            })?;
            let meta: Vec<&ModelRun> = runs.iter().map(|r| &r.0).collect();
            write_latents(dir, &meta, &mut files)?;
            let nz_max = meta.iter().map(|r| r.nz).max().unwrap_or(1) as u32;
            let panel = nz_max * 120u32.div_ceil(nz_max);
            let mut panels = Vec::new();
            let mut models_json = Vec::new();
            for (run, h) in &runs {
                let nz = run.nz as usize;
                let abs = host_f64(&h.hessians.abs())?;
                let row: Vec<render::HeatPanel> = abs
                    .chunks(nz * nz)
                    .map(|m| render::HeatPanel {
                        values: m.to_vec(),
                        height: nz,
                        width: nz,
                        overlay: None,
                    })
                    .collect();
                panels.push(row);
                let signed = host_f64(&h.hessians)?;
                let samples: Vec<serde_json::Value> = signed
                    .chunks(nz * nz)
                    .zip(&h.elements)
                    .zip(&h.hp)
                    .map(|((m, e), hp)| {
                        json!({
                            "element": e,
                            "hp": hp,
                            "hessian": m.chunks(nz).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                models_json.push(json!({
                    "name": run.name, "path": run.path, "nz": run.nz, "samples": samples,
                }));
            }
            let (vmin, vmax) = render::value_range(&panels);
            let grid = render::HeatmapGrid {
                title: format!(
                    "|Hessian| at the output element with the largest Hessian Penalty (k = {HESSIANS_K}, ε = {eps})"
                ),
                row_labels: row_labels(args, &meta),
                panels,
                layout: render::GridLayout::new(panel),
                overlay_shade: 0.0,
            };
            let png = dir.join("hessians_largest_hp.png");
            imageio::save_png(&render::render_heatmap_grid(&grid)?, &png)?;
            files.push(png);
            let mut j = common_json(args, source);
            j["k"] = json!(HESSIANS_K);
            j["vmin"] = json!(vmin);
            j["vmax"] = json!(vmax);
            j["models"] = json!(models_json);
            write_json(&dir.join("hessians_largest_hp.json"), &j, &mut files)?;
        }
        Fig::Diag => {
            let runs = for_each_model(args, refs, source, device, |g, z, bar, _| {
                stats::diagonalness(g, z, eps, mb, Some(bar))
            })?;
            let meta: Vec<&ModelRun> = runs.iter().map(|r| &r.0).collect();
            write_latents(dir, &meta, &mut files)?;
            let labels = row_labels(args, &meta);
            let mut models_json = Vec::new();
            for ((run, d), label) in runs.iter().zip(&labels) {
                models_json.push(json!({
                    "name": label, "model": run.name, "path": run.path, "nz": run.nz,
                    "fraction_max_on_diagonal": d.fraction_max_on_diagonal,
                    "relative_diagonal_strength": d.relative_diagonal_strength,
                    "matrices": d.matrices,
                }));
                report.diag.push((source.seed, label.clone(), d.clone()));
            }
            let mut j = common_json(args, source);
            j["models"] = json!(models_json);
            write_json(&dir.join("diag.json"), &j, &mut files)?;
        }
        Fig::Heatmaps => {
            let runs = for_each_model(args, refs, source, device, |g, z, bar, _| {
                let map = stats::hp_heatmap(g, z, HEATMAPS_K, eps, mb, Some(bar))?;
                let images = stats::batched(g, z, mb);
                Ok((map, images))
            })?;
            let meta: Vec<&ModelRun> = runs.iter().map(|r| &r.0).collect();
            write_latents(dir, &meta, &mut files)?;
            let res_max = runs.iter().map(|r| r.1 .0.size()[2]).max().unwrap_or(128);
            let panel = res_max.max(128) as u32;
            let mut panels = Vec::new();
            let mut models_json = Vec::new();
            for (run, (map, images)) in &runs {
                let s = map.size();
                let (n, h, w) = (s[0] as usize, s[1] as usize, s[2] as usize);
                let values = host_f64(map)?;
                let u8s = imageio::float_to_u8(images);
                let mut row = Vec::with_capacity(n);
                for (i, v) in values.chunks(h * w).enumerate() {
                    let overlay = imageio::grid(&u8s.narrow(0, i as i64, 1), 1, 0, 0)?;
                    row.push(render::HeatPanel {
                        values: v.to_vec(),
                        height: h,
                        width: w,
                        overlay: Some(overlay),
                    });
                }
                panels.push(row);
                let max: Vec<f64> = host_f64(&map.reshape([n as i64, -1]).amax(1, false))?;
                let mean: Vec<f64> =
                    host_f64(&map.reshape([n as i64, -1]).mean_dim(1, false, Kind::Double))?;
                models_json.push(json!({
                    "name": run.name, "path": run.path, "max_hp": max, "mean_hp": mean,
                }));
            }
            let (vmin, vmax) = render::value_range(&panels);
            let grid = render::HeatmapGrid {
                title: format!(
                    "Per-pixel Hessian Penalty (k = {HEATMAPS_K}, ε = {eps}, max over channels)"
                ),
                row_labels: row_labels(args, &meta),
                panels,
                layout: render::GridLayout::new(panel),
                overlay_shade: IMAGE_SHADE,
            };
            let png = dir.join("heatmaps.png");
            imageio::save_png(&render::render_heatmap_grid(&grid)?, &png)?;
            files.push(png);
            let mut j = common_json(args, source);
            j["k"] = json!(HEATMAPS_K);
            j["vmin"] = json!(vmin);
            j["vmax"] = json!(vmax);
            j["models"] = json!(models_json);
            write_json(&dir.join("heatmaps.json"), &j, &mut files)?;
        }
        Fig::Active => {
            let extent = args.extent;
            let runs = for_each_model(args, refs, source, device, |g, z, bar, _| {
                host_f64(&stats::activeness(g, z, extent, mb, Some(bar))?)
            })?;
            let meta: Vec<&ModelRun> = runs.iter().map(|r| &r.0).collect();
            write_latents(dir, &meta, &mut files)?;
            let names: Vec<String> = meta.iter().map(|r| r.name.clone()).collect();
            let (datasets, model_names) = active_groups(
                &names,
                args.model_names.as_deref(),
                args.dataset_names.as_deref(),
            )?;
            let per = model_names.len();
            let mut panels = Vec::new();
            let mut csv = String::from("dataset,model,snapshot,component,activeness,rank\n");
            let mut models_json = Vec::new();
            for (d, dataset) in datasets.iter().enumerate() {
                let mut series = Vec::new();
                for (m, model) in model_names.iter().enumerate() {
                    let (run, scores) = &runs[d * per + m];
                    let mut order: Vec<usize> = (0..scores.len()).collect();
                    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
                    let mut rank = vec![0usize; scores.len()];
                    for (r, &i) in order.iter().enumerate() {
                        rank[i] = r;
                    }
                    for (i, s) in scores.iter().enumerate() {
                        csv.push_str(&format!(
                            "{},{},{},{i},{s:e},{}\n",
                            csv_field(dataset),
                            csv_field(model),
                            csv_field(&run.path.display().to_string()),
                            rank[i]
                        ));
                    }
                    models_json.push(json!({
                        "dataset": dataset, "model": model, "snapshot": run.name, "path": run.path,
                        "nz": run.nz, "activeness": scores, "sorted_components": order,
                    }));
                    series.push((model.clone(), scores.clone()));
                }
                panels.push(render::BarPanel {
                    title: dataset.clone(),
                    series,
                    categories: None,
                    y_desc: "Activeness".into(),
                });
            }
            let png = dir.join("activeness.png");
            let svg = dir.join("activeness.svg");
            render::save_bar_panels(&panels, &png, &svg)?;
            files.push(png);
            files.push(svg);
            let csv_path = dir.join("activeness.csv");
            fs::write_bytes_atomic(&csv_path, csv.as_bytes())?;
            files.push(csv_path);
            let mut j = common_json(args, source);
            j["extent"] = json!(extent);
            j["models"] = json!(models_json);
            write_json(&dir.join("activeness.json"), &j, &mut files)?;
        }
    }
    Ok(files)
}

/// A CSV field, quoted when it holds a separator or a quote.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_groups_follow_the_names() {
        let models: Vec<String> = (0..6).map(|i| i.to_string()).collect();
        let m = vec!["hp".to_string(), "vanilla".to_string()];
        let d = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let (ds, ms) = active_groups(&models, Some(&m), Some(&d)).unwrap();
        assert_eq!((ds, ms), (d.clone(), m.clone()));
        let (ds, _) = active_groups(&models, Some(&m), None).unwrap();
        assert_eq!(ds.len(), 3);
        let (_, ms) = active_groups(&models, None, Some(&d)).unwrap();
        assert_eq!(ms, vec!["model 1", "model 2"]);
        let err = active_groups(&models[..5], Some(&m), Some(&d)).unwrap_err();
        assert!(err.to_string().contains("5 --models"), "{err}");
        assert!(active_groups(&models[..5], Some(&m), None).is_err());
    }

    #[test]
    fn folder_names_are_safe_and_bounded() {
        assert_eq!(folder_name("00003-run/000120"), "00003-run-000120");
        let refs: Vec<ModelRef> = (0..30)
            .map(|i| {
                reference::describe(Path::new(&format!(
                    "results/0000{i}-long-run-name/network-snapshot-000100.safetensors"
                )))
            })
            .collect();
        let j = joined_names(&refs);
        assert!(j.len() <= 180 && !j.contains('/'), "{j}");
    }
}
