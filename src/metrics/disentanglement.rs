//! Disentanglement metrics of codes against ground-truth factors, as InfoGAN-CR's `metric.py` computes them
//! (docs/spec/geometry_infogancr.md §B.3): FactorVAE (and the revised variant), BetaVAE, SAP, MIG, modularity and
//! explicitness (Ridgeway & Mozer), DCI disentanglement/completeness with Lasso(α = 0.02), and dHSIC.
//!
//! Codes are `[n, D]` (one row per image), factor values `[n, K]`. As in the reference, every fitted model is
//! scored on its own training data. The solvers and their settings are named in [`SOLVERS`]:
//! - logistic regression: `linfa-logistic` (multinomial, L2 with α = 1 on the weights and none on the intercept,
//!   L-BFGS, 100 iterations, gradient tolerance 1e-4): the objective of scikit-learn's default `LogisticRegression()`;
//! - Lasso: `linfa-elasticnet` (coordinate descent on `1/(2n)‖y − Xw‖² + α‖w‖₁` with an intercept, 1000 iterations,
//!   tolerance 1e-4): scikit-learn's `Lasso(alpha)` objective;
//! - the linear SVC of SAP's discrete factors: written here, because no Rust crate offers liblinear's
//!   `LinearSVC` (squared hinge, L2 also on the bias, liblinear's one-vs-rest weighting, balanced class weights).
//!   With one feature it is a two-parameter convex problem, solved to convergence by Newton's method; its
//!   solutions equal scikit-learn's to 1e-8 on the test fixture.

use crate::metrics::forest::{self, ForestOptions};
use anyhow::{bail, ensure, Context, Result};
use linfa::prelude::*;
use linfa_elasticnet::ElasticNet;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::Serialize;

/// The solvers behind the fitted metrics, recorded with every result.
pub const SOLVERS: &str = "logistic regression: linfa-logistic 0.7 multinomial L-BFGS, alpha 1 (= scikit-learn C 1), \
                           100 iterations, gradient tolerance 1e-4; Lasso: linfa-elasticnet 0.7 coordinate descent, \
                           1000 iterations, tolerance 1e-4; SAP's LinearSVC(C=0.01, class_weight=balanced): \
                           hand-written squared-hinge one-vs-rest Newton solver (liblinear's objective); DCI \
                           random forest: metrics::forest, 100 trees of max depth 5 on bootstraps, all features per \
                           split, 64 histogram bins per feature, MDI importances";

/// Depth of the trees of DCI's random-forest variant (the reference tuned [4, 5, 2, 5, 5] per dSprites factor; one
/// depth serves any dataset here).
pub const FOREST_DEPTH: usize = 5;

/// Codes that share one fixed factor: `codes[g]` is `[L, D]`, `labels[g]` the index of the factor group g fixed.
/// FactorVAE scales the codes by their std over `std_codes` (the reference's random 10 % of the dataset), or over
/// all the suite's codes when None.
pub struct Groups {
    pub codes: Vec<Array2<f64>>,
    pub labels: Vec<usize>,
    pub std_codes: Option<Array2<f64>>,
}

/// The whole suite's result.
#[derive(Clone, Debug, Serialize)]
pub struct Scores {
    pub factor_vae: Option<f64>,
    pub factor_vae_revised: Option<f64>,
    /// `votes[d][k]`: groups whose least-varying code dimension was d and whose fixed factor was k.
    pub factor_vae_votes: Option<Vec<Vec<u64>>>,
    pub beta_vae: Option<f64>,
    pub sap: f64,
    /// `sap_matrix[i][j]`: how well code i alone predicts factor j.
    pub sap_matrix: Vec<Vec<f64>>,
    pub mig: f64,
    /// `mi[i][j]`: mutual information (nats) between discretised code i and factor j's ids.
    pub mi: Vec<Vec<f64>>,
    pub factor_entropies: Vec<f64>,
    pub modularity: f64,
    pub explicitness: f64,
    pub dci_lasso_disentanglement: f64,
    pub dci_lasso_completeness: f64,
    /// `|coef|` of the Lasso predicting factor j from the standardised codes, `[D][K]`.
    pub dci_lasso_importance: Vec<Vec<f64>>,
    /// DCI with random-forest importances (trees of depth [`FOREST_DEPTH`]).
    pub dci_forest_disentanglement: f64,
    pub dci_forest_completeness: f64,
    pub dci_forest_importance: Vec<Vec<f64>>,
    pub dhsic: f64,
    pub solvers: &'static str,
}

fn rows(a: &Array2<f64>) -> Vec<Vec<f64>> {
    a.outer_iter().map(|r| r.to_vec()).collect()
}

/// Checks shapes and values: the same number of rows, finite numbers, at least two of each.
pub fn validate(codes: ArrayView2<f64>, factors: ArrayView2<f64>) -> Result<()> {
    ensure!(
        codes.nrows() == factors.nrows(),
        "codes have {} rows but factors {}: they must describe the same images, row for row",
        codes.nrows(),
        factors.nrows()
    );
    ensure!(
        codes.nrows() >= 2,
        "at least two rows are needed, got {}",
        codes.nrows()
    );
    ensure!(
        codes.ncols() >= 1 && factors.ncols() >= 1,
        "codes and factors need at least one column each"
    );
    if let Some(((r, c), _)) = codes.indexed_iter().find(|(_, v)| !v.is_finite()) {
        bail!("code [{r}, {c}] is not finite; the encoder produced NaN or infinity");
    }
    if let Some(((r, c), _)) = factors.indexed_iter().find(|(_, v)| !v.is_finite()) {
        bail!("factor [{r}, {c}] is not finite");
    }
    Ok(())
}

/// The factor's values as class ids 0..m: its distinct values in increasing order when there are at most 64 (a grid
/// such as dSprites' 40 orientations, or a category), else 20 equal-width bins (the reference's treatment of
/// continuous factors without a grid).
pub fn factor_ids(values: ArrayView1<f64>) -> Vec<usize> {
    let mut distinct: Vec<f64> = values.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() <= 64 {
        values
            .iter()
            .map(|v| distinct.partition_point(|d| d < v))
            .collect()
    } else {
        discretize(values, 20).into_iter().map(|b| b - 1).collect()
    }
}

/// `np.digitize(c, np.histogram(c, bins)[1][:-1])`: `bins` equal-width bins over [min, max], numbered 1..=bins, the
/// maximum in the last. A constant code falls in bin 1 … as NumPy's histogram centres a degenerate range, so do we.
pub fn discretize(values: ArrayView1<f64>, bins: usize) -> Vec<usize> {
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if lo == hi {
        lo -= 0.5;
        hi += 0.5;
    }
    let edges: Vec<f64> = (0..bins)
        .map(|i| lo + (hi - lo) * i as f64 / bins as f64)
        .collect();
    values
        .iter()
        .map(|v| edges.partition_point(|e| e <= v))
        .collect()
}

/// scikit-learn's `mutual_info_score(a, b)` in nats from the contingency table.
pub fn mutual_info(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len() as f64;
    let (na, nb) = (
        a.iter().max().map_or(0, |m| m + 1),
        b.iter().max().map_or(0, |m| m + 1),
    );
    let mut joint = vec![0u64; na * nb];
    let (mut pa, mut pb) = (vec![0u64; na], vec![0u64; nb]);
    for (&x, &y) in a.iter().zip(b) {
        joint[x * nb + y] += 1;
        pa[x] += 1;
        pb[y] += 1;
    }
    let mut mi = 0.0;
    for x in 0..na {
        for y in 0..nb {
            let c = joint[x * nb + y] as f64;
            if c > 0.0 {
                mi += c / n * (c * n / (pa[x] as f64 * pb[y] as f64)).ln();
            }
        }
    }
    mi.max(0.0)
}

/// MIG (Chen et al.): the codes discretised into 20 bins, `MI[i][j]` against factor j's ids, `H_j = MI(v_j, v_j)`;
/// the mean over factors of (largest − second largest MI) / H_j. Returns (MIG, MI, H).
pub fn mig(codes: ArrayView2<f64>, ids: &[Vec<usize>]) -> (f64, Array2<f64>, Vec<f64>) {
    let binned: Vec<Vec<usize>> = codes
        .axis_iter(Axis(1))
        .map(|c| discretize(c, 20))
        .collect();
    let mut mi = Array2::zeros((codes.ncols(), ids.len()));
    for (i, b) in binned.iter().enumerate() {
        for (j, f) in ids.iter().enumerate() {
            mi[[i, j]] = mutual_info(b, f);
        }
    }
    let entropies: Vec<f64> = ids.iter().map(|f| mutual_info(f, f)).collect();
    let gaps: Vec<f64> = (0..ids.len())
        .map(|j| {
            let mut col: Vec<f64> = mi.column(j).to_vec();
            col.sort_by(|a, b| b.total_cmp(a));
            let second = col.get(1).copied().unwrap_or(0.0);
            if entropies[j] > 0.0 {
                (col[0] - second) / entropies[j]
            } else {
                0.0
            }
        })
        .collect();
    (mean(&gaps), mi, entropies)
}

/// Modularity (Ridgeway & Mozer) on the MI matrix: per code, `1 − (Σ_j MI² − θ)/(θ·(K − 1))` with θ the largest
/// MI², averaged over codes. A code with no information counts as modular, as the reference's 0/0 guard leaves it.
pub fn modularity(mi: &Array2<f64>) -> f64 {
    let k = mi.ncols();
    let per_code: Vec<f64> = mi
        .outer_iter()
        .map(|row| {
            let sq: Vec<f64> = row.iter().map(|v| v * v).collect();
            let theta = sq.iter().copied().fold(0.0, f64::max);
            if theta <= 0.0 || k < 2 {
                return 1.0;
            }
            1.0 - (sq.iter().sum::<f64>() - theta) / (theta * (k - 1) as f64)
        })
        .collect();
    mean(&per_code)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Sample covariance (ddof 1).
fn covariance(a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.sum() / n, b.sum() / n);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f64>()
        / (n - 1.0)
}

/// SAP (Kumar et al.): `S[i][j]` = R² of code i for a continuous factor j, or the training accuracy of a linear SVC
/// on code i alone for a discrete one; SAP = the mean over factors of (largest − second largest S).
pub fn sap(
    codes: ArrayView2<f64>,
    factors: ArrayView2<f64>,
    ids: &[Vec<usize>],
    discrete: &[bool],
) -> (f64, Array2<f64>) {
    let mut s = Array2::zeros((codes.ncols(), factors.ncols()));
    for i in 0..codes.ncols() {
        let c = codes.column(i);
        for j in 0..factors.ncols() {
            s[[i, j]] = if discrete[j] {
                linear_svc_accuracy(c, &ids[j], 0.01)
            } else {
                let v = factors.column(j);
                let (vc, vv) = (covariance(c, c), covariance(v, v));
                if vc > 0.0 && vv > 0.0 {
                    covariance(c, v).powi(2) / (vc * vv)
                } else {
                    0.0
                }
            };
        }
    }
    let gaps: Vec<f64> = (0..factors.ncols())
        .map(|j| {
            let mut col: Vec<f64> = s.column(j).to_vec();
            col.sort_by(|a, b| b.total_cmp(a));
            col[0] - col.get(1).copied().unwrap_or(0.0)
        })
        .collect();
    (mean(&gaps), s)
}

/// Training accuracy of liblinear's `LinearSVC(C, class_weight="balanced")` on one feature. Each binary problem is
/// `min ½(w² + b²) + Σ_i C_i max(0, 1 − y_i(w·x_i + b))²` (the bias regularised, as liblinear's intercept column).
/// With two classes one problem is fitted, each point weighted by its class's balanced weight
/// `n / (2·n_class)`; with more, liblinear's one-vs-rest weights the positives by their class's weight and the rest
/// by 1. Solved by Newton's method with backtracking (the objective is convex, piecewise quadratic); prediction by
/// the largest decision value.
pub fn linear_svc_accuracy(x: ArrayView1<f64>, labels: &[usize], c: f64) -> f64 {
    let n = labels.len();
    let m = labels.iter().max().map_or(0, |v| v + 1);
    let mut counts = vec![0usize; m];
    for &l in labels {
        counts[l] += 1;
    }
    let present: Vec<usize> = (0..m).filter(|&k| counts[k] > 0).collect();
    if present.len() < 2 {
        return 1.0;
    }
    let balanced: Vec<f64> = counts
        .iter()
        .map(|&k| {
            if k > 0 {
                n as f64 / (present.len() * k) as f64
            } else {
                0.0
            }
        })
        .collect();
    // Fits "class positive vs the rest" with per-point costs C_i = c · cost(label_i).
    let fit = |positive: usize, cost: &dyn Fn(usize) -> f64| -> (f64, f64) {
        let y: Vec<f64> = labels
            .iter()
            .map(|&l| if l == positive { 1.0 } else { -1.0 })
            .collect();
        let ci: Vec<f64> = labels.iter().map(|&l| c * cost(l)).collect();
        let objective = |w: f64, b: f64| {
            let loss: f64 = (0..n)
                .map(|i| ci[i] * (1.0 - y[i] * (w * x[i] + b)).max(0.0).powi(2))
                .sum();
            0.5 * (w * w + b * b) + loss
        };
        let (mut w, mut b) = (0.0f64, 0.0f64);
        for _ in 0..200 {
            let (mut gw, mut gb) = (w, b);
            let (mut hww, mut hwb, mut hbb) = (1.0, 0.0, 1.0);
            for i in 0..n {
                let margin = y[i] * (w * x[i] + b);
                if margin < 1.0 {
                    let two_c = 2.0 * ci[i];
                    gw += two_c * (margin - 1.0) * y[i] * x[i];
                    gb += two_c * (margin - 1.0) * y[i];
                    hww += two_c * x[i] * x[i];
                    hwb += two_c * x[i];
                    hbb += two_c;
                }
            }
            let det = hww * hbb - hwb * hwb;
            let (dw, db) = ((hbb * gw - hwb * gb) / det, (hww * gb - hwb * gw) / det);
            let (f0, mut step) = (objective(w, b), 1.0);
            while objective(w - step * dw, b - step * db) > f0 && step > 1e-12 {
                step /= 2.0;
            }
            w -= step * dw;
            b -= step * db;
            if (step * dw).abs().max((step * db).abs()) < 1e-13 * (1.0 + w.abs().max(b.abs())) {
                break;
            }
        }
        (w, b)
    };
    if present.len() == 2 {
        let (w, b) = fit(present[1], &|l| balanced[l]);
        let correct = (0..n)
            .filter(|&i| (w * x[i] + b > 0.0) == (labels[i] == present[1]))
            .count();
        return correct as f64 / n as f64;
    }
    let models: Vec<(usize, (f64, f64))> = present
        .iter()
        .map(|&k| (k, fit(k, &|l| if l == k { balanced[k] } else { 1.0 })))
        .collect();
    let correct = (0..n)
        .filter(|&i| {
            let best = models
                .iter()
                .max_by(|a, b| (a.1 .0 * x[i] + a.1 .1).total_cmp(&(b.1 .0 * x[i] + b.1 .1)))
                .map(|m| m.0);
            best == Some(labels[i])
        })
        .count();
    correct as f64 / n as f64
}

/// Multinomial logistic regression (scikit-learn's default objective) on `x`, returning class probabilities
/// `[n, m]` for the classes 0..m present in `labels`, in increasing order.
fn logistic_probabilities(x: &Array2<f64>, labels: &[usize]) -> Result<(Array2<f64>, Vec<usize>)> {
    let targets = Array1::from(labels.to_vec());
    let dataset = Dataset::new(x.clone(), targets);
    // L-BFGS's line search can fail near the optimum ("search direction must be a descent direction") when the
    // objective is flat to float precision; the fit of fewer iterations is then the answer, as scikit-learn returns
    // its last iterate.
    let fit = |iterations: u64| {
        MultiLogisticRegression::default()
            .alpha(1.0)
            .max_iterations(iterations)
            .fit(&dataset)
    };
    let mut fitted = fit(100);
    for iterations in [50, 25, 10, 5] {
        match &fitted {
            Ok(_) => break,
            Err(e) => {
                log::debug!("logistic regression: {e}; retrying with {iterations} iterations")
            }
        }
        fitted = fit(iterations);
    }
    let model = fitted.context("logistic regression")?;
    let mut classes: Vec<usize> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    Ok((model.predict_probabilities(x), classes))
}

/// Training accuracy of the logistic regression.
fn logistic_accuracy(x: &Array2<f64>, labels: &[usize]) -> Result<f64> {
    let (p, classes) = logistic_probabilities(x, labels)?;
    let correct = p
        .outer_iter()
        .zip(labels)
        .filter(|(row, &l)| {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| classes[i]);
            best == Some(l)
        })
        .count();
    Ok(correct as f64 / labels.len() as f64)
}

/// ROC-AUC of `scores` for the positive set `positive` (ties count one half), Mann–Whitney.
fn roc_auc(scores: ArrayView1<f64>, positive: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks over ties.
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r)
        .sum();
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// Explicitness (Ridgeway & Mozer): per factor, a logistic regression on the raw codes predicting its ids, scored
/// by the macro-averaged one-vs-rest ROC-AUC of its probabilities on the training data; the mean over factors.
pub fn explicitness(codes: ArrayView2<f64>, ids: &[Vec<usize>]) -> Result<f64> {
    let x = codes.to_owned();
    let mut per_factor = Vec::new();
    for labels in ids {
        let (p, classes) = logistic_probabilities(&x, labels)?;
        let aucs: Vec<f64> = classes
            .iter()
            .enumerate()
            .filter_map(|(col, &k)| {
                let positive: Vec<bool> = labels.iter().map(|&l| l == k).collect();
                roc_auc(p.column(col), &positive)
            })
            .collect();
        per_factor.push(mean(&aucs));
    }
    Ok(mean(&per_factor))
}

pub fn standardise(a: ArrayView2<f64>) -> Array2<f64> {
    let mut out = a.to_owned();
    for mut col in out.axis_iter_mut(Axis(1)) {
        let n = col.len() as f64;
        let m = col.sum() / n;
        let sd = (col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n).sqrt();
        col.mapv_inplace(|v| if sd > 0.0 { (v - m) / sd } else { 0.0 });
    }
    out
}

/// `1 − H_base(p)` of a distribution `p` (unnormalised weights), with the reference's 1e-12 guard in the log.
fn one_minus_entropy(p: &[f64], base: usize) -> f64 {
    let total: f64 = p.iter().sum();
    if total <= 0.0 || base < 2 {
        return 0.0;
    }
    let h: f64 = p
        .iter()
        .map(|&v| {
            let q = v / total;
            -q * (q + 1e-12).ln() / (base as f64).ln()
        })
        .sum();
    1.0 - h
}

/// DCI (Eastwood & Williams) with `Lasso(alpha)` importances on z-scored codes and factor values: the
/// disentanglement of code i weighted by its share of importance, and the mean completeness over factors.
/// Returns (disentanglement, completeness, R `[D, K]`).
pub fn dci_lasso(
    codes: ArrayView2<f64>,
    factors: ArrayView2<f64>,
    alpha: f64,
) -> Result<(f64, f64, Array2<f64>)> {
    let r = lasso_importance(
        standardise(codes).view(),
        standardise(factors).view(),
        alpha,
    )?;
    let (disent, complete) = dci_from_importance(&r);
    Ok((disent, complete, r))
}

/// `|coef|` `[inputs, targets]` of one `Lasso(alpha)` per target column of `y` on the inputs `x` (scikit-learn's
/// multi-target Lasso fits the targets independently, as here).
pub fn lasso_importance(x: ArrayView2<f64>, y: ArrayView2<f64>, alpha: f64) -> Result<Array2<f64>> {
    let mut r = Array2::zeros((x.ncols(), y.ncols()));
    for j in 0..y.ncols() {
        let dataset = Dataset::new(x.to_owned(), y.column(j).to_owned());
        let model = ElasticNet::<f64>::lasso()
            .penalty(alpha)
            .max_iterations(1000)
            .tolerance(1e-4)
            .fit(&dataset)
            .with_context(|| format!("Lasso for target {j}"))?;
        r.column_mut(j).assign(&model.hyperplane().mapv(f64::abs));
    }
    Ok(r)
}

/// DCI with random-forest importances (MDI, `metrics::forest`) of trees of depth `max_depth`: as [`dci_lasso`]
/// but nonlinear, so a code that determines a factor through a non-monotone map still counts.
/// Returns (disentanglement, completeness, R `[D, K]`).
pub fn dci_forest(
    codes: ArrayView2<f64>,
    factors: ArrayView2<f64>,
    max_depth: usize,
    seed: u64,
) -> (f64, f64, Array2<f64>) {
    let (x, y) = (standardise(codes), standardise(factors));
    let (d, k) = (codes.ncols(), factors.ncols());
    let mut r = Array2::zeros((d, k));
    for j in 0..k {
        let opts = ForestOptions {
            max_depth,
            seed: seed.wrapping_add(j as u64),
            ..ForestOptions::default()
        };
        r.column_mut(j)
            .assign(&forest::importances(x.view(), y.column(j), &opts));
    }
    let (disent, complete) = dci_from_importance(&r);
    (disent, complete, r)
}

/// DCI's disentanglement and completeness of an importance matrix `r` `[codes, factors]`: per code
/// `1 − H_K(P_i·)` weighted by its share of the total importance, and per factor `1 − H_D(P̃_·j)` averaged. An
/// all-zero matrix gives (0, 0).
pub fn dci_from_importance(r: &Array2<f64>) -> (f64, f64) {
    let (d, k) = r.dim();
    let total = r.sum();
    if total <= 0.0 {
        return (0.0, 0.0);
    }
    let disent = r
        .outer_iter()
        .map(|row| row.sum() / total * one_minus_entropy(&row.to_vec(), k))
        .sum();
    let complete: Vec<f64> = r
        .axis_iter(Axis(1))
        .map(|col| one_minus_entropy(&col.to_vec(), d))
        .collect();
    (disent, mean(&complete))
}

/// FactorVAE (Kim & Mnih): codes scaled by their std over `std_codes`; per group the dimension with the least
/// variance votes for the group's fixed factor. Score = Σ_d max_k V[d][k] / #groups; the revised score keeps only
/// the K largest row maxima. Returns (score, revised, V).
pub fn factor_vae(
    groups: &Groups,
    std_codes: ArrayView2<f64>,
    num_factors: usize,
) -> (f64, f64, Array2<u64>) {
    let scale = std_codes.std_axis(Axis(0), 0.0);
    let d = std_codes.ncols();
    let mut votes = Array2::<u64>::zeros((d, num_factors));
    for (g, &label) in groups.codes.iter().zip(&groups.labels) {
        let scaled = g / &scale.mapv(|s| if s > 0.0 { s } else { 1.0 });
        let var = scaled.std_axis(Axis(0), 0.0);
        let best = var
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        votes[[best, label]] += 1;
    }
    let mut maxima: Vec<u64> = votes
        .outer_iter()
        .map(|r| r.iter().copied().max().unwrap_or(0))
        .collect();
    let n = groups.labels.len().max(1) as f64;
    let score = maxima.iter().sum::<u64>() as f64 / n;
    maxima.sort_unstable_by(|a, b| b.cmp(a));
    let revised = maxima.iter().take(num_factors).sum::<u64>() as f64 / n;
    (score, revised, votes)
}

/// BetaVAE (Higgins et al.): per group, the mean |difference| of consecutive row pairs (0,1), (2,3), … as a
/// feature; a logistic regression predicts the fixed factor; its training accuracy.
pub fn beta_vae(groups: &Groups) -> Result<f64> {
    let d = groups.codes.first().map_or(0, |g| g.ncols());
    let mut features = Array2::zeros((groups.codes.len(), d));
    for (row, g) in features.outer_iter_mut().zip(&groups.codes) {
        let pairs = g.nrows() / 2;
        ensure!(pairs >= 1, "a group needs at least two codes");
        let a = g.slice(s![0..2 * pairs;2, ..]);
        let b = g.slice(s![1..2 * pairs;2, ..]);
        let mut row = row;
        row.assign(
            &(&a - &b)
                .mapv(f64::abs)
                .mean_axis(Axis(0))
                .expect("pairs ≥ 1"),
        );
    }
    logistic_accuracy(&features, &groups.labels)
}

/// dHSIC of the code dimensions (lower = more independent), with the reference's kernels
/// `K_d[a, b] = exp(−|c_a − c_b| / h_d²)`, `h_d` the median of all n² distances (zeros included, NumPy's median).
/// The kernels are never stored: one pass over the pairs accumulates the three terms.
pub fn dhsic(codes: ArrayView2<f64>) -> f64 {
    let (n, d) = (codes.nrows(), codes.ncols());
    let h2: Vec<f64> = (0..d)
        .map(|j| {
            let c = codes.column(j);
            let mut dist: Vec<f64> = Vec::with_capacity(n * n);
            for a in 0..n {
                for b in 0..n {
                    dist.push((c[a] - c[b]).abs());
                }
            }
            let mid = dist.len() / 2;
            let (below, upper, _) = dist.select_nth_unstable_by(mid, f64::total_cmp);
            let upper = *upper;
            let h = if n * n % 2 == 0 {
                (below.iter().copied().fold(f64::NEG_INFINITY, f64::max) + upper) / 2.0
            } else {
                upper
            };
            (h * h).max(f64::MIN_POSITIVE)
        })
        .collect();
    let (mut term1, mut term3) = (0.0, 0.0);
    let mut sums = vec![0.0; d];
    let mut row = vec![0.0; d];
    for a in 0..n {
        row.iter_mut().for_each(|r| *r = 0.0);
        for b in 0..n {
            let mut prod = 1.0;
            for j in 0..d {
                let k = (-(codes[[a, j]] - codes[[b, j]]).abs() / h2[j]).exp();
                prod *= k;
                row[j] += k;
            }
            term1 += prod;
        }
        term3 += row.iter().product::<f64>();
        for j in 0..d {
            sums[j] += row[j];
        }
    }
    let nn = (n * n) as f64;
    let term2: f64 = sums.iter().map(|s| s / nn).product();
    term1 / nn + term2 - 2.0 / (n as f64).powi(d as i32 + 1) * term3
}

/// The whole suite on `codes` against `factors` (`discrete[j]` marks categorical factors), with FactorVAE and
/// BetaVAE when `groups` are given. dHSIC uses the first `dhsic_rows` rows.
pub fn score(
    codes: ArrayView2<f64>,
    factors: ArrayView2<f64>,
    discrete: &[bool],
    groups: Option<&Groups>,
    dhsic_rows: usize,
) -> Result<Scores> {
    validate(codes, factors)?;
    ensure!(
        discrete.len() == factors.ncols(),
        "{} discrete flags for {} factors",
        discrete.len(),
        factors.ncols()
    );
    let mut clock = std::time::Instant::now();
    let mut lap = |what: &str| {
        log::debug!("suite: {what} {:.2} s", clock.elapsed().as_secs_f64());
        clock = std::time::Instant::now();
    };
    let ids: Vec<Vec<usize>> = factors.axis_iter(Axis(1)).map(factor_ids).collect();
    let (mig_value, mi, entropies) = mig(codes, &ids);
    lap("MIG");
    let (sap_value, sap_matrix) = sap(codes, factors, &ids, discrete);
    lap("SAP");
    let (dis, com, r) = dci_lasso(codes, factors, 0.02)?;
    lap("DCI-Lasso");
    let (fdis, fcom, fr) = dci_forest(codes, factors, FOREST_DEPTH, 0);
    lap("DCI-RF");
    let explicit = explicitness(codes, &ids)?;
    lap("explicitness");
    let dhsic_value = dhsic(codes.slice(s![..dhsic_rows.min(codes.nrows()), ..]));
    lap("dHSIC");
    let mut out = Scores {
        factor_vae: None,
        factor_vae_revised: None,
        factor_vae_votes: None,
        beta_vae: None,
        sap: sap_value,
        sap_matrix: rows(&sap_matrix),
        mig: mig_value,
        modularity: modularity(&mi),
        mi: rows(&mi),
        factor_entropies: entropies,
        explicitness: explicit,
        dci_lasso_disentanglement: dis,
        dci_lasso_completeness: com,
        dci_lasso_importance: rows(&r),
        dci_forest_disentanglement: fdis,
        dci_forest_completeness: fcom,
        dci_forest_importance: rows(&fr),
        dhsic: dhsic_value,
        solvers: SOLVERS,
    };
    if let Some(g) = groups {
        ensure!(
            g.codes.iter().all(|c| c.ncols() == codes.ncols()),
            "group codes must have the same {} columns as the codes",
            codes.ncols()
        );
        ensure!(
            g.labels.iter().all(|&l| l < factors.ncols()),
            "a group label names a factor beyond the {} factors",
            factors.ncols()
        );
        let std_codes = match &g.std_codes {
            Some(s) => s.view(),
            None => codes.view(),
        };
        ensure!(
            std_codes.ncols() == codes.ncols() && std_codes.nrows() > 1,
            "the FactorVAE std set must have more than one row of {} columns",
            codes.ncols()
        );
        let (fv, rev, votes) = factor_vae(g, std_codes, factors.ncols());
        out.factor_vae = Some(fv);
        out.factor_vae_revised = Some(rev);
        out.factor_vae_votes = Some(votes.outer_iter().map(|r| r.to_vec()).collect());
        out.beta_vae = Some(beta_vae(g)?);
    }
    Ok(out)
}
