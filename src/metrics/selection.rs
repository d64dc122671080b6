//! Unsupervised model selection among runs of one method (docs/spec/geometry_infogancr.md §B.2):
//! - **ModelCentrality** (Lin et al., ICML 2020): `C[i][j]` is the FactorVAE score of model i's encoder on model j's
//!   probe set (images from groups that fix one of model j's codes, labelled by that code); `A = (C + Cᵀ)/2`, and a
//!   model's centrality is its row mean without the diagonal. The most central model agrees most with the others.
//! - **UDR** (Duan et al., ICLR 2020), the baseline of the paper's Table 3, as disentanglement_lib computes it: every
//!   model encodes the same images; the codes are z-scored; for each ordered pair (i, j) a similarity matrix `R`
//!   between i's and j's code dimensions — `|Lasso(α = 0.1)|` weights predicting j's codes from i's, or `|Spearman
//!   ρ|` — gives the pair's score `(mean_col max²/sum + mean_row max²/sum)/2`, and a model's UDR is the median of
//!   its column without the diagonal. GANs have no posterior KL, so every code counts as informative (the VAE
//!   filter of uninformative latents does not apply).

use super::disentanglement::{lasso_importance, standardise};
use anyhow::{ensure, Result};
use ndarray::{Array2, ArrayView2, Axis};
use serde::Serialize;

/// ModelCentrality from the cross-evaluation matrix: (the symmetrised matrix, each model's centrality).
pub fn model_centrality(cross: &Array2<f64>) -> Result<(Array2<f64>, Vec<f64>)> {
    let m = cross.nrows();
    ensure!(
        m >= 2 && cross.ncols() == m,
        "ModelCentrality needs a square matrix of at least two models, got {:?}",
        cross.shape()
    );
    let sym = (cross + &cross.t()) / 2.0;
    let mc = (0..m)
        .map(|i| (0..m).filter(|&j| j != i).map(|j| sym[[i, j]]).sum::<f64>() / (m - 1) as f64)
        .collect();
    Ok((sym, mc))
}

/// The similarity UDR builds between two models' codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UdrVariant {
    Lasso,
    Spearman,
}

/// disentanglement_lib's Lasso penalty for UDR.
pub const UDR_LASSO_ALPHA: f64 = 0.1;

/// How well the dimensions of two codes match one to one: for `R` `[D_a, D_b]` of non-negative similarities,
/// `(mean_b max_a R² / Σ_a R + mean_a max_b R² / Σ_b R) / 2`, a 0/0 counted as 0.
pub fn relative_strength(r: ArrayView2<f64>) -> f64 {
    let side = |axis: Axis| -> f64 {
        let lanes: Vec<f64> = r
            .lanes(axis)
            .into_iter()
            .map(|lane| {
                let max = lane.iter().copied().fold(0.0, f64::max);
                let sum: f64 = lane.sum();
                let v = max * max / sum;
                if v.is_finite() {
                    v
                } else {
                    0.0
                }
            })
            .collect();
        lanes.iter().sum::<f64>() / lanes.len().max(1) as f64
    };
    (side(Axis(0)) + side(Axis(1))) / 2.0
}

/// Ranks (1-based, ties averaged) of a column.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// `|Spearman ρ|` between every column of `a` `[N, D_a]` and of `b` `[N, D_b]`; a constant column gives 0.
pub fn spearman_abs(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Array2<f64> {
    let ranked = |x: ArrayView2<f64>| -> Array2<f64> {
        let mut out = Array2::zeros(x.raw_dim());
        for (j, col) in x.axis_iter(Axis(1)).enumerate() {
            let r = ranks(&col.to_vec());
            out.column_mut(j).assign(&ndarray::Array1::from(r));
        }
        standardise(out.view())
    };
    let (ra, rb) = (ranked(a), ranked(b));
    let n = a.nrows().max(1) as f64;
    (ra.t().dot(&rb) / n).mapv(|v| if v.is_finite() { v.abs() } else { 0.0 })
}

/// `|coef|` `[D_a, D_b]` of Lasso(α) regressions of each column of `b` on `a`.
pub fn lasso_abs(a: ArrayView2<f64>, b: ArrayView2<f64>, alpha: f64) -> Result<Array2<f64>> {
    lasso_importance(a, b, alpha)
}

/// UDR over models whose encoders read the same images: `codes[m]` is `[N, D_m]`. Returns (the pairwise scores,
/// `pair[i][j]` for i ≠ j and 0 on the diagonal; each model's UDR).
pub fn udr(codes: &[Array2<f64>], variant: UdrVariant) -> Result<(Array2<f64>, Vec<f64>)> {
    let m = codes.len();
    ensure!(m >= 2, "UDR compares models: it needs at least two");
    let n = codes[0].nrows();
    ensure!(
        codes.iter().all(|c| c.nrows() == n) && n >= 2,
        "UDR needs every model's codes of the same images"
    );
    let z: Vec<Array2<f64>> = codes.iter().map(|c| standardise(c.view())).collect();
    let mut pair = Array2::zeros((m, m));
    for i in 0..m {
        for j in 0..m {
            if i == j {
                continue;
            }
            let r = match variant {
                UdrVariant::Lasso => lasso_abs(z[i].view(), z[j].view(), UDR_LASSO_ALPHA)?,
                UdrVariant::Spearman => spearman_abs(z[i].view(), z[j].view()),
            };
            pair[[i, j]] = relative_strength(r.view());
        }
    }
    let scores = (0..m)
        .map(|i| {
            let mut col: Vec<f64> = (0..m).filter(|&j| j != i).map(|j| pair[[j, i]]).collect();
            median(&mut col)
        })
        .collect();
    Ok((pair, scores))
}

/// NumPy's median (the mean of the two middle values for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The index of the largest value (the first on ties); NaN never wins.
pub fn argmax(values: &[f64]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn centrality_prefers_the_model_the_others_agree_with() {
        // Three models that agree (0.9 with each other) and an outlier (0.3 with everyone).
        let mut c = Array2::from_elem((4, 4), 0.9);
        for k in 0..4 {
            c[[3, k]] = 0.3;
            c[[k, 3]] = 0.3;
            c[[k, k]] = 1.0;
        }
        let (sym, mc) = model_centrality(&c).unwrap();
        assert_eq!(sym, c);
        assert_eq!(mc[0], mc[1]);
        assert_eq!(mc[1], mc[2]);
        assert!((mc[0] - (0.9 + 0.9 + 0.3) / 3.0).abs() < 1e-12);
        assert!((mc[3] - 0.3).abs() < 1e-12);
        assert_eq!(argmax(&mc), Some(0));
        // Asymmetric agreement is averaged.
        let c = array![[1.0, 0.8], [0.4, 1.0]];
        let (sym, mc) = model_centrality(&c).unwrap();
        assert!((sym[[0, 1]] - 0.6).abs() < 1e-12 && (mc[0] - 0.6).abs() < 1e-12);
        assert_eq!(mc[0], mc[1]);
        assert!(model_centrality(&array![[1.0]]).is_err());
    }

    #[test]
    fn relative_strength_of_permutations_and_of_mixing() {
        // A permutation: every dimension matches exactly one.
        let p = array![[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]];
        assert!((relative_strength(p.view()) - 1.0).abs() < 1e-12);
        // Everything mixed evenly: max²/sum = 1/3 per lane at D = 3.
        let e = Array2::from_elem((3, 3), 1.0);
        assert!((relative_strength(e.view()) - 1.0 / 3.0).abs() < 1e-12);
        // A dead column (all zero) counts 0 on its side.
        let d = array![[1.0, 0.0], [0.0, 0.0]];
        assert!((relative_strength(d.view()) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn spearman_is_rank_correlation() {
        // y = x³ is monotone: ρ = 1 although Pearson's r < 1; a reversed column gives |−1| = 1; a constant 0.
        let x: Vec<f64> = (0..50).map(|i| i as f64 - 20.0).collect();
        let a = Array2::from_shape_fn((50, 1), |(r, _)| x[r]);
        let b = Array2::from_shape_fn((50, 3), |(r, c)| match c {
            0 => x[r].powi(3),
            1 => -x[r],
            _ => 2.0,
        });
        let s = spearman_abs(a.view(), b.view());
        assert!((s[[0, 0]] - 1.0).abs() < 1e-12 && (s[[0, 1]] - 1.0).abs() < 1e-12);
        assert_eq!(s[[0, 2]], 0.0);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn udr_scores_models_that_agree_up_to_permutation_higher() {
        // Models 0–2 encode the same three latent factors, permuted and rescaled; model 3 mixes them.
        let mut rng = crate::core::rng::Rng::new(4);
        let n = 400;
        let f = Array2::from_shape_fn((n, 3), |_| rng.uniform() * 2.0 - 1.0);
        let perm = |order: [usize; 3], scale: f64| {
            Array2::from_shape_fn((n, 3), |(r, c)| f[[r, order[c]]] * scale)
        };
        let mixed = Array2::from_shape_fn((n, 3), |(r, c)| {
            f[[r, 0]] + f[[r, 1]] + f[[r, 2]] * (c as f64 + 1.0)
        });
        let codes = vec![
            perm([0, 1, 2], 1.0),
            perm([2, 0, 1], 3.0),
            perm([1, 2, 0], -0.5),
            mixed,
        ];
        for variant in [UdrVariant::Spearman, UdrVariant::Lasso] {
            let (pair, scores) = udr(&codes, variant).unwrap();
            // Lasso shrinks each matching weight by α (1 → 0.9 on z-scored codes): max²/sum = 0.9.
            assert!(pair[[0, 1]] > 0.89, "{variant:?}: {pair:?}");
            assert_eq!(
                argmax(&scores).map(|i| i < 3),
                Some(true),
                "{variant:?}: {scores:?}"
            );
            assert!(scores[3] < scores[0] && scores[3] < scores[1] && scores[3] < scores[2]);
        }
        assert!(udr(&codes[..1], UdrVariant::Lasso).is_err());
    }

    #[test]
    fn medians_and_argmax() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(argmax(&[0.1, f64::NAN, 0.5, 0.5]), Some(2));
        assert_eq!(argmax(&[]), None);
    }
}
