//! `hessian-gan geometry --models M…`: the generator's latent metric tensor (docs/spec/geometry_infogancr.md Part A).
//!
//! For each model, at `num_points` reference codes z0 drawn from the prior, the Hessian of an image distance
//! pulled back through G, by one or more methods (`bp`: the full matrix by double backprop; `backward-iter`: exact
//! products plus Lanczos; `forward-iter`: finite-difference products plus Lanczos), each timed. Then (§A.3) the
//! averaged H and its spectrum, the consistency of the eigenframes across codes, the eigenbasis comparisons (each
//! code's top eigenvectors against the averaged H's, and method against method), and our axis alignment: how
//! diagonal H is and how close its top eigenvectors are to coordinate axes — what the Hessian Penalty should change.
//! Pictures (§A.4): montages along the top eigenvectors, one eigenvector at many codes, distance curves.
//!
//! Images enter the distances as follows. `l2`: G's [−1, 1] output mapped to [0, 1] (the reference's wrappers
//! render to [0, 1]), mean squared difference. `lpips`: PPL's VGG16 (`vgg16.pt`, `return_lpips=True`), fed as PPL
//! feeds it — `(x + 1)·127.5` in [0, 255], upsampled to 256² unless `--lpips-native` — because that is the input
//! this network was exported for; the reference fed [0, 1] images to the `lpips` package without its
//! normalisation, which we do not copy. `layer:K`: the squared L2 of G's HP layer K (1-based, as `--hp-layers`).
//! The latent is G's raw z (G normalises it, as in training), so the radial direction has eigenvalue 0; with
//! `post_norm` it is the pixel-normalised z with G's normalisation off (`visualize`'s default), and H has full rank.

mod methods;
mod plots;

pub use methods::{Distance, Method};

use crate::checkpoint::reference::{self, LoadedGenerator, ModelRef};
use crate::commands::Globals;
use crate::core::geometry::analysis::{
    self, axis_alignment, canonical_correlations, consistency, matched_vector_correlations,
    off_diagonal_stats, random_max_component, AxisAlignment, Diagonalness, DiagonalnessAccumulator,
    Frame, SpectrumRank,
};
use crate::core::geometry::lanczos::LanczosReport;
use crate::core::geometry::{
    full_hessian, lanczos, symmetric_eigh, BackwardHvp, Eigenpairs, FeatureMap, ForwardHvp,
    HvpOperator, LanczosOptions, PulledMetric,
};
use crate::core::latents::{self, LatentConvention};
use crate::data::npy::npz_f64_bytes;
use crate::io::{fs, progress};
use crate::metrics::detector::{Detector, DetectorKind};
use crate::metrics::ppl::to_vgg_input;
use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Settings of `geometry` (the command line: `cli::geometry::GeometryArgs`).
#[derive(Clone, Debug)]
pub struct GeometryOptions {
    pub models: Vec<String>,
    pub snapshot_kimgs: Vec<String>,
    pub results_dir: PathBuf,
    pub pretrained_dir: PathBuf,
    /// `l2`, `lpips` or `layer:K`.
    pub distance: String,
    /// PPL's LPIPS network for `lpips` (local file or URL; default `<cache_dir>/vgg16.pt`).
    pub ppl_detector: Option<String>,
    pub cache_dir: PathBuf,
    /// Feed LPIPS G's own resolution instead of upsampling to 256² as PPL does.
    pub lpips_native: bool,
    /// Differentiate with respect to the pixel-normalised z with G's own latent normalisation off (`visualize`'s
    /// default convention) instead of the raw z.
    pub post_norm: bool,
    /// Methods, in order; the first one's results are drawn.
    pub methods: Vec<String>,
    /// Reference codes per model.
    pub num_points: usize,
    /// Eigenpairs of the iterative methods (default n/2 − 1, as the reference).
    pub cutoff: Option<usize>,
    pub tol: f64,
    /// Lanczos restarts (default 20 for backward-iter, 200 for forward-iter).
    pub max_steps: Option<usize>,
    /// forward-iter's relative step.
    pub eps: f64,
    /// Axes to draw: k means the (k+1)-th largest eigenvector of the averaged H.
    pub eig_list: Vec<usize>,
    /// Extent of the explorations: an L2 distance in latent space, or an angle in radians with `sphere`.
    pub max_dist: f64,
    /// Images per axis in the montages.
    pub steps: usize,
    /// Spherical exploration (keeps ‖z‖).
    pub sphere: bool,
    /// Reference codes in the eigenvector-action montage.
    pub action_codes: usize,
    /// Points per distance curve.
    pub dist_steps: usize,
    /// Codes per generator call when rendering.
    pub batch: i64,
    /// Root of the outputs: `<out>/<run dir>/<snapshot>/<distance>/`.
    pub out: PathBuf,
}

impl Default for GeometryOptions {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            snapshot_kimgs: vec!["latest".into()],
            results_dir: "results".into(),
            pretrained_dir: reference::PRETRAINED_DIR.into(),
            distance: "l2".into(),
            ppl_detector: None,
            cache_dir: crate::metrics::DEFAULT_CACHE_DIR.into(),
            lpips_native: false,
            post_norm: false,
            methods: vec!["auto".into()],
            num_points: 10,
            cutoff: None,
            tol: 1e-6,
            max_steps: None,
            eps: 1e-3,
            eig_list: vec![0, 1, 2, 3, 4],
            max_dist: 2.0,
            steps: 7,
            sphere: false,
            action_codes: 6,
            dist_steps: 19,
            batch: 32,
            out: "geometry".into(),
        }
    }
}

/// Off-diagonal mean and median of the two consistency matrices.
#[derive(Clone, Debug, Serialize)]
pub struct Consistency {
    pub log_mean: f64,
    pub log_median: f64,
    pub lin_mean: f64,
    pub lin_median: f64,
}

/// Each code's top eigenvectors against the averaged H's.
#[derive(Clone, Debug, Serialize)]
pub struct BasisAgreement {
    /// Eigenvectors compared.
    pub top: usize,
    /// Mean canonical correlation, averaged over codes, and the same for random orthonormal bases.
    pub cca_mean: f64,
    pub cca_random: f64,
    /// Mean |Pearson| of rank-matched eigenvectors, averaged over codes.
    pub matched_mean: f64,
}

/// Axis alignment over the codes' own H's.
#[derive(Clone, Debug, Serialize)]
pub struct PointAlignment {
    pub off_diagonal_share_mean: f64,
    pub diagonalness: Diagonalness,
    pub mean_top_max_component: f64,
}

/// One method's results for one model.
#[derive(Clone, Debug, Serialize)]
pub struct MethodSummary {
    pub method: Method,
    pub points: usize,
    /// Eigenpairs per code (n for bp).
    pub eigenpairs: usize,
    pub seconds_per_point: f64,
    pub seconds_total: f64,
    pub products_per_point: f64,
    /// Lanczos per code (iterative methods).
    pub lanczos: Vec<LanczosReport>,
    /// |λ| per rank (descending) over the codes.
    pub spectrum: Vec<SpectrumRank>,
    /// Eigenvalues of the averaged H, descending.
    pub average_eigenvalues: Vec<f64>,
    pub consistency: Option<Consistency>,
    pub basis_agreement: BasisAgreement,
    /// Of the averaged H.
    pub alignment: AxisAlignment,
    pub point_alignment: PointAlignment,
}

/// A later method against the first one, at the same codes.
#[derive(Clone, Debug, Serialize)]
pub struct MethodComparison {
    pub method: Method,
    pub against: Method,
    /// Entrywise Pearson correlation of the two H's, averaged over codes (the reference's 0.9974 for BigGAN's
    /// rank-20 BackwardIter against BP).
    pub h_correlation: f64,
    /// Largest |λ_a − λ_b| / λ_max over the compared top eigenvalues, over codes.
    pub max_relative_eigenvalue_error: f64,
    /// Mean canonical correlation of the top eigenvectors.
    pub cca_mean: f64,
}

/// `geometry`'s results for one model.
#[derive(Clone, Debug, Serialize)]
pub struct ModelGeometry {
    pub name: String,
    pub snapshot: PathBuf,
    pub nz: i64,
    pub resolution: i64,
    pub distance: String,
    pub lpips_input: Option<String>,
    /// `PreNorm`: the raw z, normalised by G; `PostNorm`: the pixel-normalised z, G's normalisation off.
    pub latents: LatentConvention,
    pub dir: PathBuf,
    pub seed: u64,
    pub methods: Vec<MethodSummary>,
    pub comparisons: Vec<MethodComparison>,
    /// Mean largest |component| of random unit vectors in R^nz: the chance level of the alignment numbers.
    pub chance_max_component: f64,
    pub figures: Vec<PathBuf>,
}

/// Everything `geometry` computed, also written to `<out>/geometry.json`.
#[derive(Clone, Debug, Serialize)]
pub struct GeometryReport {
    pub models: Vec<ModelGeometry>,
    pub json: PathBuf,
}

fn validate(opts: &GeometryOptions) -> Result<()> {
    ensure!(!opts.models.is_empty(), "--models: give at least one model");
    ensure!(opts.num_points >= 1, "--num-points must be at least 1");
    ensure!(
        !opts.methods.is_empty(),
        "--methods: give at least one method"
    );
    ensure!(
        opts.steps >= 2 && opts.dist_steps >= 2,
        "--steps and --dist-steps must be at least 2"
    );
    ensure!(
        opts.max_dist.is_finite() && opts.max_dist > 0.0,
        "--max-dist {}: must be positive",
        opts.max_dist
    );
    ensure!(
        !opts.eig_list.is_empty(),
        "--eig-list: give at least one axis"
    );
    ensure!(opts.batch >= 1, "--batch must be at least 1");
    ensure!(
        opts.eps.is_finite() && opts.eps > 0.0,
        "--eps {}: the relative finite-difference step must be positive",
        opts.eps
    );
    ensure!(
        opts.tol.is_finite() && opts.tol > 0.0,
        "--tol {}: must be positive",
        opts.tol
    );
    Ok(())
}

/// Entry point of `hessian-gan geometry`.
pub fn run(globals: &Globals, opts: &GeometryOptions) -> Result<GeometryReport> {
    validate(opts)?;
    let distance = Distance::parse(&opts.distance)?;
    let device = globals.device.resolve()?;
    let mut resolver = globals.resolver(&opts.results_dir);
    resolver.pretrained_dir = opts.pretrained_dir.clone();
    let refs = resolver.resolve_all(&opts.models, &opts.snapshot_kimgs)?;
    let detector = match distance {
        Distance::Lpips => Some(Detector::load(
            DetectorKind::Lpips,
            opts.ppl_detector.as_deref(),
            &opts.cache_dir,
            device,
        )?),
        _ => None,
    };
    let seed = globals.seed.unwrap_or(0);
    let mut models = Vec::new();
    for r in &refs {
        let mut g = reference::load_gs(&r.path, device)
            .with_context(|| format!("cannot load model {}", r.name))?;
        // Only the latent gets gradients (§A.1).
        g.vs.freeze();
        models.push(
            analyse_model(&g, r, distance, detector.as_ref(), opts, seed, device)
                .with_context(|| format!("geometry of {}", r.name))?,
        );
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("--out {}: cannot create the directory", opts.out.display()))?;
    let json = opts.out.join("geometry.json");
    let report = GeometryReport { models, json };
    fs::write_bytes_atomic(
        &report.json,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    Ok(report)
}

/// What one method produced at one code.
struct PointResult {
    pairs: Eigenpairs,
    /// H (`bp`), or its rank-k reconstruction (iterative methods).
    h: Tensor,
    seconds: f64,
    products: u64,
}

/// The feature map of `distance` through `g` (see the module docs for how images are scaled).
pub fn feature_map<'a>(
    g: &'a LoadedGenerator,
    distance: Distance,
    detector: Option<&'a Detector>,
    native: bool,
    convention: LatentConvention,
) -> FeatureMap<'a> {
    let lod = g.lod;
    let normalize = convention.g_normalizes();
    match distance {
        Distance::L2 => {
            Box::new(move |z: &Tensor| Ok((g.g.forward(z, lod, normalize) + 1.0) / 2.0))
        }
        Distance::Lpips => Box::new(move |z: &Tensor| {
            let det = detector.context("internal: lpips without its network")?;
            let img = g.g.forward(z, lod, normalize);
            let x = if native {
                (img + 1.0) * 127.5
            } else {
                to_vgg_input(&img)
            };
            det.lpips_features_differentiable(&x)
        }),
        Distance::Layer(k) => {
            Box::new(move |z: &Tensor| Ok(g.g.hp_layers(z, lod, &[k], normalize).remove(0)))
        }
    }
}

fn solve(
    metric: &PulledMetric,
    method: Method,
    lanczos_opts: &LanczosOptions,
    eps: f64,
) -> Result<PointResult> {
    let t0 = Instant::now();
    let (pairs, h, products) = match method {
        Method::Bp => {
            let mut op = BackwardHvp::new(metric)?;
            let h = full_hessian(&mut op)?;
            (symmetric_eigh(&h)?, h, op.products())
        }
        Method::BackwardIter => {
            let mut op = BackwardHvp::new(metric)?;
            let e = lanczos(&mut op, lanczos_opts)?;
            let h = analysis::reconstruct(&e.values, &e.vectors);
            (e, h, op.products())
        }
        Method::ForwardIter => {
            let mut op = ForwardHvp::new(metric, eps)?;
            let e = lanczos(&mut op, lanczos_opts)?;
            let h = analysis::reconstruct(&e.values, &e.vectors);
            (e, h, op.products())
        }
    };
    Ok(PointResult {
        pairs,
        h,
        seconds: t0.elapsed().as_secs_f64(),
        products,
    })
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(
        &t.to_device(Device::Cpu)
            .to_kind(Kind::Double)
            .flatten(0, -1),
    )
    .expect("float64 values")
}

fn dims(t: &Tensor) -> Vec<u64> {
    t.size().iter().map(|&d| d as u64).collect()
}

/// `Hess_<TAG>_<i>.npz` with the reference's keys: `eva_<TAG>` (ascending), `evc_<TAG>` (columns), `H_<TAG>`, `feat`.
fn write_point(dir: &Path, method: Method, i: usize, r: &PointResult, z0: &Tensor) -> Result<()> {
    let tag = method.npz_tag();
    let (eva, evc, h, feat) = (
        Tensor::from_slice(&r.pairs.values),
        &r.pairs.vectors,
        &r.h,
        z0.reshape([1, -1]),
    );
    let (k_eva, k_evc, k_h) = (
        format!("eva_{tag}"),
        format!("evc_{tag}"),
        format!("H_{tag}"),
    );
    let bytes = npz_f64_bytes(&[
        (&k_eva, &dims(&eva), &to_vec(&eva)),
        (&k_evc, &dims(evc), &to_vec(evc)),
        (&k_h, &dims(h), &to_vec(h)),
        ("feat", &dims(&feat), &to_vec(&feat)),
    ])?;
    fs::write_bytes_atomic(&dir.join(format!("Hess_{tag}_{i}.npz")), &bytes)
}

fn mean(v: impl IntoIterator<Item = f64>) -> f64 {
    let (s, n) = v
        .into_iter()
        .filter(|x| x.is_finite())
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Random orthonormal columns `[n, k]` from a fixed seed (the chance level of the CCA agreement).
fn random_basis(n: i64, k: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    let g = Tensor::randn([n, k], (Kind::Double, Device::Cpu));
    Tensor::linalg_qr(&g, "reduced").0
}

fn analyse_model(
    g: &LoadedGenerator,
    mref: &ModelRef,
    distance: Distance,
    detector: Option<&Detector>,
    opts: &GeometryOptions,
    seed: u64,
    device: Device,
) -> Result<ModelGeometry> {
    let net = &g.net;
    let n = net.nz;
    if let Distance::Layer(k) = distance {
        net.check_hp_layers(&[k])
            .map_err(|e| anyhow::anyhow!("--distance layer:{k}: {e}"))?;
    }
    let methods = opts
        .methods
        .iter()
        .map(|m| Method::parse(m, n))
        .collect::<Result<Vec<_>>>()?;
    if methods.contains(&Method::Bp) {
        ensure!(
            n <= crate::core::geometry::hvp::BP_MAX_SIZE,
            "--methods bp: {} has n = {n} latent dimensions, above {} for the full Hessian; use --methods \
             backward-iter (Lanczos on exact products)",
            mref.name,
            crate::core::geometry::hvp::BP_MAX_SIZE
        );
    }
    let cutoff = opts.cutoff.unwrap_or(((n / 2 - 1).max(1)) as usize);
    if methods.iter().any(|m| *m != Method::Bp) {
        ensure!(
            cutoff >= 1 && (cutoff as i64) < n,
            "--cutoff {cutoff}: must be at least 1 and below {}'s latent size {n} (for all {n} eigenpairs use \
             --methods bp)",
            mref.name
        );
    }
    let pairs_of = |m: Method| if m == Method::Bp { n as usize } else { cutoff };
    let shown = methods.iter().map(|&m| pairs_of(m)).min().unwrap_or(1);
    if let Some(&k) = opts.eig_list.iter().find(|&&k| k >= shown) {
        bail!(
            "--eig-list {k}: only {shown} eigenvectors are computed (axis k is the (k+1)-th largest, from 0); \
             raise --cutoff or list smaller axes"
        );
    }

    let tag = if opts.post_norm {
        format!("{}_postnorm", distance.tag())
    } else {
        distance.tag()
    };
    let dir = opts.out.join(&mref.visuals_subdir).join(tag);
    let points_dir = dir.join("points");
    std::fs::create_dir_all(&points_dir)
        .with_context(|| format!("cannot create {}", points_dir.display()))?;
    let convention = LatentConvention::from_pre_norm(!opts.post_norm);
    let zs = convention.prepare(&latents::seeded_normal(seed, opts.num_points as i64, n)?);
    let phi_for = || feature_map(g, distance, detector, opts.lpips_native, convention);

    // Every code, every method: eigenpairs, timed, each written as it is done.
    let p = opts.num_points;
    let bar = progress::bar(Some((p * methods.len()) as u64), "Hessians");
    let mut results: Vec<Vec<PointResult>> = methods.iter().map(|_| Vec::new()).collect();
    for i in 0..p {
        let z0 = zs.get(i as i64);
        let metric = PulledMetric::new(phi_for(), distance.reduction(), &z0, device)?;
        for (mi, &method) in methods.iter().enumerate() {
            let mut lo = LanczosOptions::new(cutoff);
            lo.tol = opts.tol;
            lo.max_restarts = opts.max_steps.unwrap_or(method.default_max_steps());
            lo.seed = seed.wrapping_add(i as u64);
            let r = solve(&metric, method, &lo, opts.eps)?;
            log::info!(
                "{}: Hessian {}/{p} computed with {} in {:.2} s ({} products)",
                mref.name,
                i + 1,
                method.name(),
                r.seconds,
                r.products
            );
            let rep = &r.pairs.report;
            if rep.converged < rep.wanted {
                let worst = rep.residuals.iter().copied().fold(0.0, f64::max);
                if rep.stalled {
                    log::warn!(
                        "{}: at code {i}, {} of {} eigenpairs reached --tol {}; the rest stalled at a relative \
                         residual of {worst:.1e}, the accuracy of {}'s products",
                        mref.name,
                        rep.converged,
                        rep.wanted,
                        opts.tol,
                        method.name()
                    );
                } else {
                    log::warn!(
                        "{}: at code {i}, Lanczos kept {} of {} eigenpairs within --tol {} after {} cycles \
                         (worst relative residual {worst:.1e}); raise --max-steps",
                        mref.name,
                        rep.converged,
                        rep.wanted,
                        opts.tol,
                        rep.cycles
                    );
                }
            }
            write_point(&points_dir, method, i, &r, &z0)?;
            results[mi].push(r);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    let k_cmp = cutoff.min(n as usize - 1).clamp(1, 10);
    let chance = random_max_component(n, 20_000, 0);
    let mut summaries = Vec::new();
    let mut averages = Vec::new();
    for (mi, &method) in methods.iter().enumerate() {
        let rs = &results[mi];
        let hs: Vec<Tensor> = rs.iter().map(|r| r.h.shallow_clone()).collect();
        let h_avg = analysis::average(&hs)?;
        let avg_pairs = symmetric_eigh(&h_avg)?;
        let (avg_vals, avg_vecs) = avg_pairs.descending();
        let tag = method.npz_tag();
        let (k_avg, k_eva, k_evc) = (
            format!("H_avg_{tag}"),
            format!("eva_avg_{tag}"),
            format!("evc_avg_{tag}"),
        );
        let eva_asc = Tensor::from_slice(&avg_pairs.values);
        fs::write_bytes_atomic(
            &dir.join(format!("H_avg_{tag}.npz")),
            &npz_f64_bytes(&[
                (&k_avg, &dims(&h_avg), &to_vec(&h_avg)),
                (&k_eva, &dims(&eva_asc), &to_vec(&eva_asc)),
                (
                    &k_evc,
                    &dims(&avg_pairs.vectors),
                    &to_vec(&avg_pairs.vectors),
                ),
                ("feats", &dims(&zs), &to_vec(&zs)),
            ])?,
        )?;
        let spectrum = analysis::spectrum(
            &rs.iter()
                .map(|r| r.pairs.values.clone())
                .collect::<Vec<_>>(),
        )?;
        let frames: Vec<Frame> = rs
            .iter()
            .map(|r| Frame {
                values: &r.pairs.values,
                vectors: &r.pairs.vectors,
            })
            .collect();
        let consistency_mats = (p >= 2).then(|| consistency(&frames));
        let consistency_summary = consistency_mats.as_ref().map(|(log, lin)| {
            let (lm, lmed) = off_diagonal_stats(log);
            let (nm, nmed) = off_diagonal_stats(lin);
            Consistency {
                log_mean: lm,
                log_median: lmed,
                lin_mean: nm,
                lin_median: nmed,
            }
        });
        let top_avg = avg_vecs.narrow(1, 0, k_cmp as i64);
        let mut cca = Vec::new();
        let mut matched = Vec::new();
        for r in rs {
            let (_, v) = r.pairs.descending();
            let top = v.narrow(1, 0, k_cmp as i64);
            cca.push(mean(canonical_correlations(&top, &top_avg)?));
            matched.push(mean(matched_vector_correlations(&top, &top_avg)));
        }
        let cca_random = mean(canonical_correlations(
            &random_basis(n, k_cmp as i64, 1),
            &top_avg,
        )?);
        let mut acc = DiagonalnessAccumulator::default();
        let mut shares = Vec::new();
        let mut max_comp = Vec::new();
        for r in rs {
            acc.add(&r.h)?;
            let a = axis_alignment(&r.h, k_cmp)?;
            shares.push(a.off_diagonal_share);
            max_comp.push(a.mean_top_max_component);
        }
        let n_pairs = pairs_of(method);
        summaries.push(MethodSummary {
            method,
            points: p,
            eigenpairs: n_pairs,
            seconds_per_point: mean(rs.iter().map(|r| r.seconds)),
            seconds_total: rs.iter().map(|r| r.seconds).sum(),
            products_per_point: mean(rs.iter().map(|r| r.products as f64)),
            lanczos: if method == Method::Bp {
                Vec::new()
            } else {
                rs.iter().map(|r| r.pairs.report.clone()).collect()
            },
            spectrum,
            average_eigenvalues: avg_vals.clone(),
            consistency: consistency_summary,
            basis_agreement: BasisAgreement {
                top: k_cmp,
                cca_mean: mean(cca),
                cca_random,
                matched_mean: mean(matched),
            },
            alignment: axis_alignment(&h_avg, k_cmp)?,
            point_alignment: PointAlignment {
                off_diagonal_share_mean: mean(shares),
                diagonalness: acc.finish()?,
                mean_top_max_component: mean(max_comp),
            },
        });
        averages.push((h_avg, avg_vals, avg_vecs, consistency_mats));
    }

    // Later methods against the first, code by code.
    let mut comparisons = Vec::new();
    for mi in 1..methods.len() {
        let k = pairs_of(methods[mi]).min(pairs_of(methods[0])).min(k_cmp);
        let mut hc = Vec::new();
        let mut err: f64 = 0.0;
        let mut cca = Vec::new();
        for (a, b) in results[mi].iter().zip(&results[0]) {
            hc.push(analysis::pearson(&to_vec(&a.h), &to_vec(&b.h)));
            let (va, xa) = a.pairs.descending();
            let (vb, xb) = b.pairs.descending();
            let top = vb[0].abs().max(1e-300);
            for j in 0..k {
                err = err.max((va[j] - vb[j]).abs() / top);
            }
            cca.push(mean(canonical_correlations(
                &xa.narrow(1, 0, k as i64),
                &xb.narrow(1, 0, k as i64),
            )?));
        }
        comparisons.push(MethodComparison {
            method: methods[mi],
            against: methods[0],
            h_correlation: mean(hc),
            max_relative_eigenvalue_error: err,
            cca_mean: mean(cca),
        });
    }

    // Pictures of the first method.
    let (_, avg_vals, avg_vecs, mats) = &averages[0];
    let primary: Vec<(Vec<f64>, Tensor)> = results[0]
        .iter()
        .map(|r| (r.pairs.values.clone(), r.pairs.vectors.shallow_clone()))
        .collect();
    let figures = plots::draw(&plots::Inputs {
        g,
        name: &mref.name,
        distance,
        phi: &phi_for,
        dir: &dir,
        zs: &zs,
        spectrum: &summaries[0].spectrum,
        frames: &primary,
        consistency: mats.as_ref(),
        avg_vals,
        avg_vecs,
        opts,
        convention,
        device,
    })?;

    Ok(ModelGeometry {
        name: mref.name.clone(),
        snapshot: mref.path.clone(),
        nz: n,
        resolution: net.resolution,
        distance: distance.tag(),
        latents: convention,
        lpips_input: (distance == Distance::Lpips).then(|| {
            if opts.lpips_native {
                format!("(x + 1)·127.5 at {0}x{0}", net.resolution)
            } else {
                format!(
                    "(x + 1)·127.5, {}",
                    crate::metrics::ppl::resize_description(net.resolution)
                )
            }
        }),
        dir,
        seed,
        methods: summaries,
        comparisons,
        chance_max_component: chance,
        figures,
    })
}
