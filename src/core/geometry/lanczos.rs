//! The top eigenpairs of a symmetric operator given only its products: thick-restart Lanczos with full
//! reorthogonalisation (docs/spec/geometry_infogancr.md §A.2; the reference calls ARPACK's `eigsh(which="LM")`).
//!
//! Each cycle grows an orthonormal basis V to `basis` vectors, one product per vector, continuing the Krylov
//! sequence (the next vector is `A·v_last` made orthogonal to all of V, twice). The Ritz pairs come from an explicit
//! Rayleigh–Ritz step on `T = Vᵀ(AV)` (A·V is kept, so no product is recomputed) and their residuals
//! `‖Ay − θy‖` are measured directly. A restart keeps the best Ritz vectors with their products and continues from
//! the residual direction of the last vector, which keeps the Krylov structure (Krylov–Schur).
//!
//! A single start vector sees only one direction of each eigenspace, so a repeated eigenvalue would be found once.
//! When all wanted pairs look converged we therefore run one more cycle from a fresh random vector orthogonal to the
//! kept ones; the result is accepted only when that cycle changes none of the wanted eigenvalues.

use super::hvp::HvpOperator;
use anyhow::{ensure, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// Settings of [`lanczos`].
#[derive(Clone, Debug)]
pub struct LanczosOptions {
    /// Eigenpairs wanted, the largest in magnitude (H is PSD, so the largest). `1 ≤ k < n`.
    pub k: usize,
    /// A pair is converged when `‖Ay − θy‖ ≤ tol·max|θ|`.
    pub tol: f64,
    /// Restart cycles after the first (ARPACK's `maxiter`).
    pub max_restarts: usize,
    /// Basis size per cycle (ARPACK's `ncv`); default `min(max(2k + 1, k + 8), n)`.
    pub basis: Option<usize>,
    /// Seed of the start vectors.
    pub seed: u64,
}

impl LanczosOptions {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            tol: 1e-6,
            max_restarts: 20,
            basis: None,
            seed: 0,
        }
    }
}

/// Eigenpairs in the reference's layout: values ascending, vectors as the columns of `[n, k]` (CPU float64).
#[derive(Debug)]
pub struct Eigenpairs {
    pub values: Vec<f64>,
    pub vectors: Tensor,
    pub report: LanczosReport,
}

/// How a Lanczos solve went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LanczosReport {
    /// Wanted pairs within tolerance at the end.
    pub converged: usize,
    pub wanted: usize,
    /// Stopped because a cycle no longer changed the wanted values, short of the tolerance (the products' own
    /// error, e.g. finite differences, sets the floor).
    pub stalled: bool,
    /// Cycles run (the first included).
    pub cycles: usize,
    /// Operator products used.
    pub products: u64,
    /// Relative residual of each returned pair outside the basis, `‖(I − VVᵀ)Ay‖ / max|θ|` (the whole
    /// `‖Ay − θy‖ / max|θ|` for an exact symmetric operator), in the order of `values`.
    pub residuals: Vec<f64>,
}

impl Eigenpairs {
    /// The values in descending order with the matching columns.
    pub fn descending(&self) -> (Vec<f64>, Tensor) {
        let k = self.values.len() as i64;
        let mut v = self.values.clone();
        v.reverse();
        (v, self.vectors.flip([1]).narrow(1, 0, k))
    }
}

/// All eigenpairs of a dense symmetric matrix (ascending values, vectors as columns), by `linalg_eigh` on
/// `(H + Hᵀ)/2` in float64.
pub fn symmetric_eigh(h: &Tensor) -> Result<Eigenpairs> {
    let h = h.to_device(Device::Cpu).to_kind(Kind::Double);
    let s = h.size();
    ensure!(
        s.len() == 2 && s[0] == s[1],
        "eigendecomposition needs a square matrix, got shape {s:?}"
    );
    let (w, v) = ((&h + h.transpose(0, 1)) / 2.0).f_linalg_eigh("L")?;
    let values = Vec::<f64>::try_from(&w)?;
    Ok(Eigenpairs {
        report: LanczosReport {
            converged: values.len(),
            stalled: false,
            wanted: values.len(),
            cycles: 0,
            products: 0,
            residuals: vec![0.0; values.len()],
        },
        values,
        vectors: v,
    })
}

/// A random unit vector orthogonal to the columns of `v` (`[n, m]`, orthonormal), from `gen`.
fn random_orthogonal(
    n: i64,
    v: Option<&Tensor>,
    rng: &mut crate::core::latents::NumpyRandomState,
) -> Tensor {
    loop {
        let r = Tensor::from_slice(&rng.randn(n as usize));
        let r = orthogonalise(&r, v);
        let norm = r.norm().double_value(&[]);
        if norm > 1e-6 {
            return r / norm;
        }
    }
}

/// `w` minus its projection on the columns of `v`, done twice (classical Gram–Schmidt twice is as accurate as
/// modified Gram–Schmidt, and one matrix product each).
fn orthogonalise(w: &Tensor, v: Option<&Tensor>) -> Tensor {
    let Some(v) = v else {
        return w.shallow_clone();
    };
    let mut w = w.shallow_clone();
    for _ in 0..2 {
        w = &w - v.mv(&v.transpose(0, 1).mv(&w));
    }
    w
}

/// The `k` eigenpairs of `op` largest in magnitude (module docs). Fails on `k = 0` or `k ≥ n` (as ARPACK does); a
/// solve that runs out of restarts returns its best pairs with `report.converged < k`.
pub fn lanczos(op: &mut dyn HvpOperator, opts: &LanczosOptions) -> Result<Eigenpairs> {
    let n = op.size();
    let k = opts.k as i64;
    ensure!(
        k >= 1 && k < n,
        "--cutoff {k}: the number of eigenpairs must be at least 1 and below the latent size {n} (for all {n}, use \
         --method bp)"
    );
    ensure!(
        opts.tol.is_finite() && opts.tol > 0.0,
        "--tol {}: the tolerance must be positive",
        opts.tol
    );
    let m = opts
        .basis
        .map(|b| b as i64)
        .unwrap_or_else(|| (2 * k + 1).max(k + 8))
        .min(n);
    ensure!(
        m > k,
        "Lanczos basis of {m} vectors cannot hold {k} eigenpairs and grow; give a basis above the cutoff"
    );
    let mut rng = crate::core::latents::NumpyRandomState::from_seed(opts.seed)?;
    let products_before = op.products();

    // Columns of the basis and their products; `next` is the vector to add next.
    let mut basis: Vec<Tensor> = Vec::new();
    let mut images: Vec<Tensor> = Vec::new();
    let mut next = random_orthogonal(n, None, &mut rng);
    let mut verifying: Option<Vec<f64>> = None;
    let mut previous: Option<Vec<f64>> = None;
    let mut cycles = 0usize;
    loop {
        cycles += 1;
        while (basis.len() as i64) < m {
            let av = op.apply(&next)?;
            basis.push(next);
            images.push(av.shallow_clone());
            if (basis.len() as i64) == m {
                break;
            }
            let v = Tensor::stack(&basis, 1);
            let w = orthogonalise(&av, Some(&v));
            let norm = w.norm().double_value(&[]);
            let scale = av.norm().double_value(&[]).max(1e-300);
            // A (numerically) invariant subspace: continue from a fresh direction.
            next = if norm > 1e-10 * scale {
                w / norm
            } else {
                random_orthogonal(n, Some(&v), &mut rng)
            };
        }
        let v = Tensor::stack(&basis, 1);
        let av = Tensor::stack(&images, 1);
        let t = v.transpose(0, 1).matmul(&av);
        let (theta, s) = ((&t + t.transpose(0, 1)) / 2.0).f_linalg_eigh("L")?;
        let theta = Vec::<f64>::try_from(&theta)?;
        // Largest magnitude first.
        let mut order: Vec<usize> = (0..theta.len()).collect();
        order.sort_by(|&a, &b| theta[b].abs().total_cmp(&theta[a].abs()));
        let idx = Tensor::from_slice(&order.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let s = s.index_select(1, &idx);
        let theta: Vec<f64> = order.iter().map(|&i| theta[i]).collect();
        let y = v.matmul(&s);
        let ay = av.matmul(&s);
        let scale = theta.iter().fold(0.0f64, |a, t| a.max(t.abs())).max(1e-300);
        // The residual outside the basis, ‖(I − VVᵀ)Ay‖: for an exactly symmetric operator it is the whole residual
        // ‖Ay − θy‖ (inside the basis that is T's asymmetry, zero); for float32 products it leaves out the part of
        // their rounding that no basis can remove.
        let outside = &ay - v.matmul(&t.matmul(&s));
        let residuals = Vec::<f64>::try_from(
            &(outside
                .square()
                .sum_dim_intlist(0, false, Kind::Double)
                .sqrt()
                / scale),
        )?;
        let wanted = &theta[..k as usize];
        let converged = residuals[..k as usize]
            .iter()
            .filter(|&&r| r <= opts.tol)
            .count();
        let exact = m == n;
        let all = converged == k as usize;
        let unchanged = |before: &[f64]| {
            before
                .iter()
                .zip(wanted)
                .all(|(a, b)| (a - b).abs() <= opts.tol * scale)
        };
        // A verification cycle that moved no wanted value (relative to the largest) confirms the pairs.
        let confirmed = all && verifying.as_ref().is_some_and(|b| unchanged(b));
        // Products with their own error (finite differences) stall above the tolerance: stop when a whole cycle no
        // longer moves the wanted values.
        let stalled = !all && previous.as_ref().is_some_and(|b| unchanged(b));
        previous = Some(wanted.to_vec());
        if exact || confirmed || stalled || cycles > opts.max_restarts {
            let mut values: Vec<f64> = wanted.to_vec();
            let mut res: Vec<f64> = residuals[..k as usize].to_vec();
            let mut vectors = y.narrow(1, 0, k);
            // Ascending, as the reference returns them.
            values.reverse();
            res.reverse();
            vectors = vectors.flip([1]);
            return Ok(Eigenpairs {
                values,
                vectors,
                report: LanczosReport {
                    converged: if exact { k as usize } else { converged },
                    stalled,
                    wanted: k as usize,
                    cycles,
                    products: op.products() - products_before,
                    residuals: res,
                },
            });
        }
        // Restart: keep the wanted pairs and half of the rest of the basis.
        let keep = (k + (m - k) / 2).min(m - 1);
        let kept_v = y.narrow(1, 0, keep);
        let kept_av = ay.narrow(1, 0, keep);
        if all {
            // Looks converged: one more cycle from a random direction, to find any missing copy of a repeated
            // eigenvalue.
            verifying = Some(wanted.to_vec());
            next = random_orthogonal(n, Some(&kept_v), &mut rng);
        } else {
            verifying = None;
            // The residual direction of the last basis vector continues the Krylov sequence.
            let last = av.select(1, m - 1);
            let w = orthogonalise(&last, Some(&v));
            let norm = w.norm().double_value(&[]);
            next = if norm > 1e-10 * last.norm().double_value(&[]).max(1e-300) {
                orthogonalise(&(w / norm), Some(&kept_v))
            } else {
                random_orthogonal(n, Some(&kept_v), &mut rng)
            };
            let norm = next.norm().double_value(&[]);
            next /= norm;
        }
        basis = (0..keep).map(|i| kept_v.select(1, i)).collect();
        images = (0..keep).map(|i| kept_av.select(1, i)).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::geometry::hvp::MatrixOperator;

    /// A random symmetric PSD matrix with the given eigenvalues.
    fn with_spectrum(values: &[f64], seed: i64) -> Tensor {
        tch::manual_seed(seed);
        let n = values.len() as i64;
        let (q, _) = Tensor::linalg_qr(
            &Tensor::randn([n, n], (Kind::Double, Device::Cpu)),
            "reduced",
        );
        let d = Tensor::from_slice(values);
        (&q * d.unsqueeze(0)).matmul(&q.transpose(0, 1))
    }

    fn check_against_eigh(values: &[f64], k: usize, seed: i64) -> LanczosReport {
        let h = with_spectrum(values, seed);
        let exact = symmetric_eigh(&h).unwrap();
        let mut op = MatrixOperator::new(&h).unwrap();
        let mut opts = LanczosOptions::new(k);
        opts.tol = 1e-9;
        opts.max_restarts = 200;
        let got = lanczos(&mut op, &opts).unwrap();
        assert_eq!(got.report.converged, k, "{:?}", got.report);
        let (want, want_v) = exact.descending();
        let (vals, vecs) = got.descending();
        let top = want[0];
        for i in 0..k {
            assert!(
                (vals[i] - want[i]).abs() <= 1e-7 * top,
                "eigenvalue {i}: {} vs {}",
                vals[i],
                want[i]
            );
        }
        // Each returned vector is an eigenvector for its value (also inside a repeated eigenspace).
        for i in 0..k as i64 {
            let y = vecs.select(1, i);
            let r = h.mv(&y) - &y * vals[i as usize];
            assert!(r.norm().double_value(&[]) <= 1e-6 * top);
            assert!((y.norm().double_value(&[]) - 1.0).abs() < 1e-9);
        }
        // Distinct leading values: the vector agrees with eigh's up to sign.
        if want[0] > want[1] * 1.01 {
            let c = vecs
                .select(1, 0)
                .dot(&want_v.select(1, 0))
                .abs()
                .double_value(&[]);
            assert!((c - 1.0).abs() < 1e-8);
        }
        got.report
    }

    #[test]
    fn matches_eigh_on_a_spread_spectrum() {
        let values: Vec<f64> = (0..60).map(|i| 1.15f64.powi(i)).collect();
        let r = check_against_eigh(&values, 8, 1);
        assert!(r.products < 60 * 20);
    }

    #[test]
    fn matches_eigh_on_a_clustered_spectrum() {
        let mut values: Vec<f64> = (0..50).map(|i| 0.01 * i as f64).collect();
        values.extend([10.0, 10.001, 10.002, 9.999, 5.0, 4.9999]);
        check_against_eigh(&values, 6, 2);
    }

    #[test]
    fn finds_every_copy_of_a_repeated_eigenvalue() {
        let mut values: Vec<f64> = (0..40).map(|i| 0.05 * i as f64).collect();
        values.extend([10.0, 10.0, 10.0, 6.0, 6.0]);
        check_against_eigh(&values, 5, 3);
    }

    #[test]
    fn rank_deficient_and_full_basis_cases() {
        // Many zero eigenvalues (a generator that ignores most of z): the Krylov space becomes invariant quickly.
        let mut values = vec![0.0; 30];
        values.extend([3.0, 2.0, 1.0]);
        check_against_eigh(&values, 3, 4);
        // A basis as large as n is one exact cycle.
        let h = with_spectrum(&[1.0, 2.0, 3.0, 4.0, 5.0], 5);
        let mut op = MatrixOperator::new(&h).unwrap();
        let got = lanczos(&mut op, &LanczosOptions::new(4)).unwrap();
        assert_eq!(got.report.cycles, 1);
        assert_eq!(got.report.products, 5);
        assert!((got.values[3] - 5.0).abs() < 1e-10 && (got.values[0] - 2.0).abs() < 1e-10);
    }

    #[test]
    fn bad_cutoffs_are_refused() {
        let mut op = MatrixOperator::new(&Tensor::eye(4, (Kind::Double, Device::Cpu))).unwrap();
        for k in [0, 4, 5] {
            let err = lanczos(&mut op, &LanczosOptions::new(k))
                .unwrap_err()
                .to_string();
            assert!(err.contains("--cutoff") && err.contains("bp"), "{err}");
        }
    }
}
