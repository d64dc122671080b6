//! Analyses of metric tensors at many reference codes (docs/spec/geometry_infogancr.md §A.3): the averaged H, the
//! spectrum statistics, the consistency of the eigenframes across codes, eigenbasis comparisons (top-eigenvector
//! correlation, CCA), and our own axis alignment (how close H is to diagonal and its top eigenvectors to the
//! coordinate axes), which is what the Hessian Penalty should change. Everything is CPU float64.

use anyhow::{ensure, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// Table 2's two "diagonal-ness" numbers (docs/spec/progan_hp.md §9.3).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagonalness {
    /// Share of the per-element Hessians whose largest |entry| lies on the diagonal (ties count as diagonal).
    pub fraction_max_on_diagonal: f64,
    /// Mean over the Hessians of `[Σ_i |H_ii| / nz] / [Σ_{i≠j} |H_ij| / (nz(nz−1)) + 1e-8]`.
    pub relative_diagonal_strength: f64,
    /// Number of nz×nz Hessians averaged (samples × output elements).
    pub matrices: u64,
}

/// Accumulates [`Diagonalness`] over batches of Hessians `[.., nz, nz]` on their device.
#[derive(Default)]
pub struct DiagonalnessAccumulator {
    on_diagonal: Option<Tensor>,
    strength: Option<Tensor>,
    matrices: u64,
}

impl DiagonalnessAccumulator {
    /// The constant added to the off-diagonal mean (docs/spec/progan_hp.md §9.3).
    pub const STABILITY: f64 = 1e-8;

    pub fn add(&mut self, hessians: &Tensor) -> Result<()> {
        let s = hessians.size();
        ensure!(
            s.len() >= 2 && s[s.len() - 1] == s[s.len() - 2],
            "diagonal-ness needs square Hessians [.., nz, nz], got shape {s:?}"
        );
        let nz = s[s.len() - 1];
        ensure!(
            nz >= 2,
            "diagonal-ness needs nz ≥ 2 (a 1×1 Hessian has no off-diagonal entries)"
        );
        let a = hessians.abs().to_kind(Kind::Double).reshape([-1, nz, nz]);
        let m = a.size()[0];
        let overall = a.reshape([m, nz * nz]).amax(1, false);
        let diag = a.diagonal(0, 1, 2); // [m, nz]
                                        // The largest diagonal entry equals the overall max exactly when some arg-max is on the diagonal.
        let on = diag.amax(1, false).ge_tensor(&overall).sum(Kind::Double);
        let diag_sum = diag.sum_dim_intlist(1, false, Kind::Double);
        let off_sum = a.sum_dim_intlist([1, 2].as_slice(), false, Kind::Double) - &diag_sum;
        let ratio = (diag_sum / nz as f64) / (off_sum / (nz * (nz - 1)) as f64 + Self::STABILITY);
        let ratio = ratio.sum(Kind::Double);
        self.on_diagonal = Some(match self.on_diagonal.take() {
            Some(t) => t + on,
            None => on,
        });
        self.strength = Some(match self.strength.take() {
            Some(t) => t + ratio,
            None => ratio,
        });
        self.matrices += m as u64;
        Ok(())
    }

    pub fn finish(&self) -> Result<Diagonalness> {
        let (Some(on), Some(strength)) = (&self.on_diagonal, &self.strength) else {
            anyhow::bail!("diagonal-ness of no Hessians")
        };
        let m = self.matrices as f64;
        Ok(Diagonalness {
            fraction_max_on_diagonal: on.double_value(&[]) / m,
            relative_diagonal_strength: strength.double_value(&[]) / m,
            matrices: self.matrices,
        })
    }
}

fn cpu64(t: &Tensor) -> Tensor {
    t.to_device(Device::Cpu).to_kind(Kind::Double)
}

/// `V diag(λ) Vᵀ` for values `[k]` and column vectors `[n, k]` (a low-rank H from k Lanczos pairs).
pub fn reconstruct(values: &[f64], vectors: &Tensor) -> Tensor {
    let v = cpu64(vectors);
    let d = Tensor::from_slice(values);
    (&v * d.unsqueeze(0)).matmul(&v.transpose(0, 1))
}

/// The mean of the per-code H's `[n, n]` (the reference's `average_H` averages their eigen-reconstructions, which
/// are the H's themselves).
pub fn average(hs: &[Tensor]) -> Result<Tensor> {
    ensure!(!hs.is_empty(), "averaging no Hessians");
    let stacked = Tensor::stack(&hs.iter().map(cpu64).collect::<Vec<_>>(), 0);
    Ok(stacked.mean_dim(0, false, Kind::Double))
}

/// NumPy's default (linear) percentile of `sorted` (ascending), `q` in [0, 100].
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// One rank of the spectrum across codes: `|λ|` at that rank (descending), its mean and its 5th–95th percentiles.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SpectrumRank {
    pub rank: usize,
    pub mean: f64,
    pub median: f64,
    pub p5: f64,
    pub p95: f64,
}

/// Per rank, statistics of `|λ|` over the codes (the reference's `plot_spectra` with `abs=True`). Each code's
/// magnitudes are sorted in decreasing order first, so rank 1 is every code's largest.
pub fn spectrum(eigenvalues: &[Vec<f64>]) -> Result<Vec<SpectrumRank>> {
    ensure!(!eigenvalues.is_empty(), "a spectrum of no codes");
    let k = eigenvalues[0].len();
    ensure!(
        eigenvalues.iter().all(|e| e.len() == k),
        "spectra of different lengths cannot be aggregated"
    );
    let sorted: Vec<Vec<f64>> = eigenvalues
        .iter()
        .map(|e| {
            let mut a: Vec<f64> = e.iter().map(|x| x.abs()).collect();
            a.sort_by(|x, y| y.total_cmp(x));
            a
        })
        .collect();
    Ok((0..k)
        .map(|r| {
            let mut col: Vec<f64> = sorted.iter().map(|s| s[r]).collect();
            col.sort_by(f64::total_cmp);
            SpectrumRank {
                rank: r + 1,
                mean: col.iter().sum::<f64>() / col.len() as f64,
                median: percentile(&col, 50.0),
                p5: percentile(&col, 5.0),
                p95: percentile(&col, 95.0),
            }
        })
        .collect())
}

/// Pearson correlation of the pairs whose both members are finite; NaN with fewer than two or no variance.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let pairs: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|(a, b)| (*a, *b))
        .collect();
    let n = pairs.len() as f64;
    if pairs.len() < 2 {
        return f64::NAN;
    }
    let mx = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in &pairs {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// One code's eigenpairs: values ascending `[k]`, vectors as columns `[n, k]`.
pub struct Frame<'a> {
    pub values: &'a [f64],
    pub vectors: &'a Tensor,
}

/// `vᵀH_j v` for every eigenvector v of code i (in its rank order), with `H_j = V_j diag(λ_j) V_jᵀ`:
/// `diag((V_iᵀV_j) diag(λ_j) (V_iᵀV_j)ᵀ)`.
pub fn cross_quadratic(i: &Frame, j: &Frame) -> Vec<f64> {
    let c = cpu64(i.vectors).transpose(0, 1).matmul(&cpu64(j.vectors));
    let d = Tensor::from_slice(j.values);
    let q = (c.square() * d.unsqueeze(0)).sum_dim_intlist(1, false, Kind::Double);
    Vec::<f64>::try_from(&q).expect("a float64 vector")
}

/// The consistency matrices of §A.3 `compute_hess_corr`: `corr_log[i][j]` = Pearson(log10 vᵀH_jv over code i's
/// eigenvectors, log10 λ_j), pairing by rank (non-finite logs are left out), and `corr_lin[i][j]` the same without
/// logs. Identical H's everywhere give 1 off the diagonal.
pub fn consistency(frames: &[Frame]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let p = frames.len();
    let mut log = vec![vec![f64::NAN; p]; p];
    let mut lin = vec![vec![f64::NAN; p]; p];
    for i in 0..p {
        for j in 0..p {
            let vhv = cross_quadratic(&frames[i], &frames[j]);
            let lam = frames[j].values;
            lin[i][j] = pearson(&vhv, lam);
            let lv: Vec<f64> = vhv.iter().map(|x| x.log10()).collect();
            let ll: Vec<f64> = lam.iter().map(|x| x.log10()).collect();
            log[i][j] = pearson(&lv, &ll);
        }
    }
    (log, lin)
}

/// Mean and median of the finite off-diagonal entries of a square matrix (NaN when there are none).
pub fn off_diagonal_stats(m: &[Vec<f64>]) -> (f64, f64) {
    let mut v: Vec<f64> = m
        .iter()
        .enumerate()
        .flat_map(|(i, row)| {
            row.iter()
                .enumerate()
                .filter(move |(j, _)| *j != i)
                .map(|(_, x)| *x)
        })
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    (v.iter().sum::<f64>() / v.len() as f64, percentile(&v, 50.0))
}

/// Canonical correlations (descending) between the column spaces of `x` and `y` `[n, k]`, rows as samples and
/// columns centred as CCA does: the singular values of `Q_xᵀQ_y` for orthonormal bases Q of the centred columns.
/// The reference calls scikit-learn's iterative CCA; this is the exact value it approximates.
pub fn canonical_correlations(x: &Tensor, y: &Tensor) -> Result<Vec<f64>> {
    let (x, y) = (cpu64(x), cpu64(y));
    ensure!(
        x.size().len() == 2 && x.size() == y.size(),
        "CCA needs two [n, k] bases of one shape, got {:?} and {:?}",
        x.size(),
        y.size()
    );
    let centre = |t: &Tensor| t - t.mean_dim(0, true, Kind::Double);
    let (qx, _) = Tensor::f_linalg_qr(&centre(&x), "reduced")?;
    let (qy, _) = Tensor::f_linalg_qr(&centre(&y), "reduced")?;
    // Singular values of M = Q_xᵀQ_y as the square roots of MᵀM's eigenvalues (k is small).
    let m = qx.transpose(0, 1).matmul(&qy);
    let (w, _) = m.transpose(0, 1).matmul(&m).f_linalg_eigh("L")?;
    let mut s = Vec::<f64>::try_from(&w.clamp(0.0, 1.0).sqrt())?;
    s.reverse();
    Ok(s)
}

/// |Pearson| of matched columns of two eigenbases (the reference's `top_eigvec_corr`; columns in the same order).
pub fn matched_vector_correlations(x: &Tensor, y: &Tensor) -> Vec<f64> {
    let (x, y) = (cpu64(x), cpu64(y));
    let k = x.size()[1].min(y.size()[1]);
    (0..k)
        .map(|c| {
            let a = Vec::<f64>::try_from(&x.select(1, c)).expect("float64");
            let b = Vec::<f64>::try_from(&y.select(1, c)).expect("float64");
            pearson(&a, &b).abs()
        })
        .collect()
}

/// How axis-aligned a metric tensor is: the share of |H|'s mass off the diagonal, Table 2's diagonal-ness of it,
/// and, for its top eigenvectors, the largest |component| (1 for a coordinate axis, about √(2 ln n / n) for a random
/// direction) and which axis that is.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AxisAlignment {
    /// `Σ_{i≠j} |H_ij| / Σ_ij |H_ij|`.
    pub off_diagonal_share: f64,
    pub diagonalness: Diagonalness,
    /// Largest |component| of each top eigenvector (descending eigenvalues).
    pub top_max_component: Vec<f64>,
    /// The coordinate each top eigenvector is closest to.
    pub top_axis: Vec<i64>,
    /// Mean of `top_max_component`.
    pub mean_top_max_component: f64,
}

/// [`AxisAlignment`] of `h` `[n, n]` with its `top` largest eigenvectors.
pub fn axis_alignment(h: &Tensor, top: usize) -> Result<AxisAlignment> {
    let h = cpu64(h);
    let a = h.abs();
    let total = a.sum(Kind::Double).double_value(&[]);
    let diag = a.diagonal(0, 0, 1).sum(Kind::Double).double_value(&[]);
    let mut acc = DiagonalnessAccumulator::default();
    acc.add(&h)?;
    let (vals, vecs) = super::lanczos::symmetric_eigh(&h)?.descending();
    let top = top.min(vals.len()) as i64;
    let v = vecs.narrow(1, 0, top).abs();
    let (m, idx) = v.max_dim(0, false);
    let top_max_component = Vec::<f64>::try_from(&m)?;
    Ok(AxisAlignment {
        off_diagonal_share: if total > 0.0 {
            (total - diag) / total
        } else {
            f64::NAN
        },
        diagonalness: acc.finish()?,
        mean_top_max_component: top_max_component.iter().sum::<f64>() / top.max(1) as f64,
        top_max_component,
        top_axis: Vec::<i64>::try_from(&idx)?,
    })
}

/// The mean largest |component| of uniformly random unit vectors in R^n (the chance level of
/// `top_max_component`), from `samples` seeded draws.
pub fn random_max_component(n: i64, samples: i64, seed: i64) -> f64 {
    tch::manual_seed(seed);
    let g = Tensor::randn([samples, n], (Kind::Double, Device::Cpu));
    let u = &g / g.norm_scalaropt_dim(2, [1i64].as_slice(), true);
    u.abs().amax(1, false).mean(Kind::Double).double_value(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(h: &Tensor) -> (Vec<f64>, Tensor) {
        let e = super::super::lanczos::symmetric_eigh(h).unwrap();
        (e.values, e.vectors)
    }

    #[test]
    fn identical_hessians_are_perfectly_consistent() {
        tch::manual_seed(1);
        let a = Tensor::randn([6, 6], (Kind::Double, Device::Cpu));
        let h = a.matmul(&a.transpose(0, 1)) + Tensor::eye(6, (Kind::Double, Device::Cpu)) * 0.1;
        let (v, e) = frame_of(&h);
        let frames = vec![
            Frame {
                values: &v,
                vectors: &e,
            },
            Frame {
                values: &v,
                vectors: &e,
            },
            Frame {
                values: &v,
                vectors: &e,
            },
        ];
        let (log, lin) = consistency(&frames);
        for m in [&log, &lin] {
            let (mean, median) = off_diagonal_stats(m);
            assert!((mean - 1.0).abs() < 1e-12 && (median - 1.0).abs() < 1e-12);
        }
        // vᵀHv of H's own eigenvectors are its eigenvalues.
        let q = cross_quadratic(&frames[0], &frames[1]);
        for (a, b) in q.iter().zip(&v) {
            assert!((a - b).abs() < 1e-9 * v[5]);
        }
    }

    #[test]
    fn reversed_frames_anticorrelate() {
        // Code 2's eigenvectors are code 1's in reverse rank order: its large axes are code 1's small ones.
        let vals = vec![1.0, 2.0, 4.0, 8.0];
        let eye = Tensor::eye(4, (Kind::Double, Device::Cpu));
        let rev = eye.flip([1]);
        let frames = vec![
            Frame {
                values: &vals,
                vectors: &eye,
            },
            Frame {
                values: &vals,
                vectors: &rev,
            },
        ];
        let (log, lin) = consistency(&frames);
        assert!((log[0][1] + 1.0).abs() < 1e-12);
        assert!(lin[0][1] < -0.8);
    }

    #[test]
    fn spectrum_percentiles_follow_numpy() {
        let e = vec![vec![1.0, -3.0], vec![2.0, 5.0], vec![0.5, 4.0]];
        let s = spectrum(&e).unwrap();
        // Rank 1: the largest magnitudes 3, 5, 4.
        assert_eq!(s[0].mean, 4.0);
        assert_eq!(s[0].median, 4.0);
        assert!((s[0].p5 - 3.1).abs() < 1e-12 && (s[0].p95 - 4.9).abs() < 1e-12);
        assert_eq!(s[1].mean, (1.0 + 2.0 + 0.5) / 3.0);
        assert!(spectrum(&[vec![1.0], vec![1.0, 2.0]]).is_err());
    }

    #[test]
    fn cca_and_matched_correlations_on_known_bases() {
        tch::manual_seed(2);
        let (q, _) = Tensor::linalg_qr(
            &Tensor::randn([20, 20], (Kind::Double, Device::Cpu)),
            "reduced",
        );
        let x = q.narrow(1, 0, 4);
        // The same subspace in another basis: all canonical correlations 1.
        let (r, _) = Tensor::linalg_qr(
            &Tensor::randn([4, 4], (Kind::Double, Device::Cpu)),
            "reduced",
        );
        let cc = canonical_correlations(&x, &x.matmul(&r)).unwrap();
        assert!(cc.iter().all(|c| (c - 1.0).abs() < 1e-9), "{cc:?}");
        // Orthogonal subspaces of centred data have small correlations (exactly 0 only without centring).
        let cc = canonical_correlations(&x, &q.narrow(1, 4, 4)).unwrap();
        assert!(cc[0] < 0.5, "{cc:?}");
        let m = matched_vector_correlations(&x, &(-&x));
        assert!(m.iter().all(|c| (c - 1.0).abs() < 1e-12));
    }

    #[test]
    fn axis_alignment_of_diagonal_and_rotated_metrics() {
        let d = Tensor::from_slice(&[5.0, 3.0, 1.0, 0.5]).diag(0);
        let a = axis_alignment(&d, 2).unwrap();
        assert_eq!(a.off_diagonal_share, 0.0);
        assert_eq!(a.top_axis, vec![0, 1]);
        assert!(a.top_max_component.iter().all(|c| (c - 1.0).abs() < 1e-12));
        assert_eq!(a.diagonalness.fraction_max_on_diagonal, 1.0);
        // Rotating the top plane by 45° spreads the top eigenvectors over two axes.
        let c = std::f64::consts::FRAC_1_SQRT_2;
        let r = Tensor::from_slice(&[
            c, -c, 0.0, 0.0, c, c, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0,
        ])
        .reshape([4, 4]);
        let rot = r.matmul(&d).matmul(&r.transpose(0, 1));
        let a = axis_alignment(&rot, 2).unwrap();
        assert!(a.off_diagonal_share > 0.1);
        assert!(a.top_max_component.iter().all(|x| (x - c).abs() < 1e-9));
        let chance = random_max_component(4, 20000, 0);
        assert!(chance > 0.5 && chance < 1.0, "{chance}");
    }
}
