//! Hessian-vector products of a pulled-back distance (docs/spec/geometry_infogancr.md §A.1, §A.2).
//!
//! The distance is `d(z) = reduce((φ(z) − φ(z0))²)` for a differentiable feature map φ from latents `[B, n]` to
//! features `[B, ...]`: G's images in [0, 1] (`l2`, reduced by the mean), LPIPS feature vectors (`lpips`, summed) or
//! one of G's activations (`layer:K`, summed). For such a squared feature distance `H = 2·JᵀJ` (J the Jacobian of
//! φ at z0, scaled by 1/numel for the mean), so H is symmetric positive semi-definite.
//!
//! Vectors cross the [`HvpOperator`] boundary as CPU float64 `[n]` (what the eigensolver works in); the network runs
//! in float32 on its own device, as the reference's operators do.

use anyhow::{ensure, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// Largest latent size for which [`full_hessian`] (n double-backprop passes plus a dense eigendecomposition) is
/// offered by `geometry --method bp`; above it the iterative methods are the way.
pub const BP_MAX_SIZE: i64 = 1024;

/// How the squared feature differences of one sample become its distance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// Mean over the feature elements (`l2`: the mean squared pixel difference).
    Mean,
    /// Sum over the feature elements (LPIPS feature vectors, a layer's squared L2).
    Sum,
}

/// A differentiable feature map φ: latents `[B, n]` → features `[B, ...]`.
pub type FeatureMap<'a> = Box<dyn Fn(&Tensor) -> Result<Tensor> + 'a>;

/// The distance to a reference code z0 through a feature map φ.
pub struct PulledMetric<'a> {
    phi: FeatureMap<'a>,
    reduction: Reduction,
    z0: Tensor,
    reference: Tensor,
}

impl<'a> PulledMetric<'a> {
    /// `z0` is one code `[1, n]` or `[n]`; it is moved to `device` as float32 and φ(z0) is computed once, detached.
    pub fn new<F>(phi: F, reduction: Reduction, z0: &Tensor, device: Device) -> Result<Self>
    where
        F: Fn(&Tensor) -> Result<Tensor> + 'a,
    {
        let z0 = z0.to_device(device).to_kind(Kind::Float).reshape([1, -1]);
        ensure!(z0.size()[1] >= 1, "geometry: the reference code is empty");
        let reference = {
            let _guard = tch::no_grad_guard();
            phi(&z0)?.detach()
        };
        ensure!(
            reference.size().first() == Some(&1),
            "geometry: the feature map returned a batch of {:?} for one code",
            reference.size().first()
        );
        Ok(Self {
            phi: Box::new(phi),
            reduction,
            z0,
            reference,
        })
    }

    /// The latent dimension n.
    pub fn size(&self) -> i64 {
        self.z0.size()[1]
    }

    /// The reference code `[1, n]` (float32, on the device).
    pub fn z0(&self) -> &Tensor {
        &self.z0
    }

    /// Distances `[B]` of the codes `z` `[B, n]` to the reference (differentiable in z).
    pub fn distances(&self, z: &Tensor) -> Result<Tensor> {
        let diff = (self.phi)(z)? - &self.reference;
        let sq = diff.square().flatten(1, -1);
        Ok(match self.reduction {
            Reduction::Mean => sq.mean_dim(1, false, Kind::Float),
            Reduction::Sum => sq.sum_dim_intlist(1, false, Kind::Float),
        })
    }
}

/// A symmetric linear operator `v ↦ Hv` on R^n (the reference's `apply`, `vHv_form` and `size`).
pub trait HvpOperator {
    /// n.
    fn size(&self) -> i64;
    /// `Hv` for a CPU float64 vector `[n]`, as CPU float64 `[n]`.
    fn apply(&mut self, v: &Tensor) -> Result<Tensor>;
    /// The quadratic form `vᵀHv`.
    fn vhv(&mut self, v: &Tensor) -> Result<f64> {
        let hv = self.apply(v)?;
        Ok(hv.dot(&v.to_kind(Kind::Double)).double_value(&[]))
    }
    /// How many products have been evaluated so far.
    fn products(&self) -> u64;
}

fn check_vector(v: &Tensor, n: i64) -> Result<()> {
    ensure!(
        v.size() == [n],
        "Hessian-vector product: expected a vector of {n}, got shape {:?}",
        v.size()
    );
    Ok(())
}

/// The exact HVP by double backpropagation (the reference's BackwardIter operator): the gradient `g = ∂d/∂δ` at
/// `z0 + δ` is built once with its graph, and each product is one more backward pass of `g·v`.
///
/// We differentiate at z0 itself (δ = 0). The reference starts δ at 1e-4·randn, i.e. a point next to z0 (a quirk,
/// §A.1); exactly at z0 the first-order term vanishes and the product is exactly the metric `2JᵀJ`.
pub struct BackwardHvp<'m, 'a> {
    delta: Tensor,
    grad: Tensor,
    count: u64,
    _metric: &'m PulledMetric<'a>,
}

impl<'m, 'a> BackwardHvp<'m, 'a> {
    pub fn new(metric: &'m PulledMetric<'a>) -> Result<Self> {
        let z0 = metric.z0();
        let delta = z0.zeros_like().set_requires_grad(true);
        let d = metric.distances(&(z0 + &delta))?.sum(Kind::Float);
        // Backward through a tensor without a graph crashes libtorch instead of failing.
        ensure!(
            d.requires_grad(),
            "geometry: the distance is not differentiable in z (a feature map computed without gradients)"
        );
        let grad = Tensor::f_run_backward(&[&d], &[&delta], true, true)?
            .remove(0)
            .flatten(0, -1);
        Ok(Self {
            delta,
            grad,
            count: 0,
            _metric: metric,
        })
    }
}

impl HvpOperator for BackwardHvp<'_, '_> {
    fn size(&self) -> i64 {
        self.delta.size()[1]
    }

    fn apply(&mut self, v: &Tensor) -> Result<Tensor> {
        check_vector(v, self.size())?;
        let v = v.to_device(self.grad.device()).to_kind(Kind::Float);
        let gv = (&self.grad * v).sum(Kind::Float);
        let hv = Tensor::f_run_backward(&[&gv], &[&self.delta], true, false)?.remove(0);
        self.count += 1;
        Ok(hv
            .flatten(0, -1)
            .to_device(Device::Cpu)
            .to_kind(Kind::Double))
    }

    fn products(&self) -> u64 {
        self.count
    }
}

/// The finite-difference HVP (the reference's ForwardIter operator): `Hv ≈ (∇d(z0 + εv) − ∇d(z0 − εv)) / (2ε)`
/// with the step relative to the reference code, `ε = eps·‖z0‖/‖v‖` (§A.2).
///
/// Both gradients come from one backward pass of the **sum** of the two distances. The reference differentiates
/// their mean, so its products are ½·Hv (halved eigenvalues, §A.1 quirk); `reference_mean` reproduces that, for the
/// test that shows the check would catch it.
pub struct ForwardHvp<'m, 'a> {
    metric: &'m PulledMetric<'a>,
    eps: f64,
    z0_norm: f64,
    count: u64,
    pub reference_mean: bool,
}

impl<'m, 'a> ForwardHvp<'m, 'a> {
    pub fn new(metric: &'m PulledMetric<'a>, eps: f64) -> Result<Self> {
        ensure!(
            eps.is_finite() && eps > 0.0,
            "--eps {eps}: the relative finite-difference step must be positive"
        );
        let z0_norm = metric.z0().norm().double_value(&[]);
        ensure!(
            z0_norm > 0.0,
            "forward-iter: the reference code is zero and its step is relative to ‖z0‖; use backward-iter"
        );
        Ok(Self {
            metric,
            eps,
            z0_norm,
            count: 0,
            reference_mean: false,
        })
    }
}

impl HvpOperator for ForwardHvp<'_, '_> {
    fn size(&self) -> i64 {
        self.metric.size()
    }

    fn apply(&mut self, v: &Tensor) -> Result<Tensor> {
        let n = self.size();
        check_vector(v, n)?;
        let v_norm = v.norm().double_value(&[]);
        if v_norm < 1e-8 {
            return Ok(Tensor::zeros([n], (Kind::Double, Device::Cpu)));
        }
        let step = self.eps * self.z0_norm / v_norm;
        let z0 = self.metric.z0();
        let dv = v
            .to_device(z0.device())
            .to_kind(Kind::Float)
            .reshape([1, n])
            * step;
        let z = Tensor::cat(&[z0 + &dv, z0 - &dv], 0)
            .detach()
            .set_requires_grad(true);
        let d = self.metric.distances(&z)?;
        ensure!(
            d.requires_grad(),
            "geometry: the distance is not differentiable in z (a feature map computed without gradients)"
        );
        let total = if self.reference_mean {
            d.mean(Kind::Float)
        } else {
            d.sum(Kind::Float)
        };
        let g = Tensor::f_run_backward(&[&total], &[&z], false, false)?
            .remove(0)
            .to_device(Device::Cpu)
            .to_kind(Kind::Double);
        self.count += 1;
        Ok((g.get(0) - g.get(1)) / (2.0 * step))
    }

    fn products(&self) -> u64 {
        self.count
    }
}

/// A given symmetric matrix as an operator (tests, and Lanczos on a dense H).
pub struct MatrixOperator {
    matrix: Tensor,
    count: u64,
}

impl MatrixOperator {
    pub fn new(matrix: &Tensor) -> Result<Self> {
        let s = matrix.size();
        ensure!(
            s.len() == 2 && s[0] == s[1],
            "matrix operator: expected a square matrix, got shape {s:?}"
        );
        Ok(Self {
            matrix: matrix.to_device(Device::Cpu).to_kind(Kind::Double),
            count: 0,
        })
    }
}

impl HvpOperator for MatrixOperator {
    fn size(&self) -> i64 {
        self.matrix.size()[0]
    }

    fn apply(&mut self, v: &Tensor) -> Result<Tensor> {
        check_vector(v, self.size())?;
        self.count += 1;
        Ok(self.matrix.mv(&v.to_kind(Kind::Double)))
    }

    fn products(&self) -> u64 {
        self.count
    }
}

/// The dense Hessian `[n, n]` (CPU float64) from n products with the unit vectors: row k is `H e_k` (the
/// reference's BP method, one second-order backward pass per coordinate). Symmetrised as `(H + Hᵀ)/2`, which only
/// removes float32 rounding (the exact H is symmetric).
pub fn full_hessian(op: &mut dyn HvpOperator) -> Result<Tensor> {
    let n = op.size();
    ensure!(
        n <= BP_MAX_SIZE,
        "--method bp: n = {n} latent dimensions is above {BP_MAX_SIZE} for the full Hessian; use --method \
         backward-iter (Lanczos on exact products)"
    );
    let eye = Tensor::eye(n, (Kind::Double, Device::Cpu));
    let rows = (0..n)
        .map(|k| op.apply(&eye.get(k)))
        .collect::<Result<Vec<_>>>()?;
    let h = Tensor::stack(&rows, 0);
    Ok((&h + h.transpose(0, 1)) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_abs(t: &Tensor) -> f64 {
        t.abs().max().double_value(&[])
    }

    #[test]
    fn bp_of_a_linear_map_is_two_jtj() {
        tch::manual_seed(3);
        let a = Tensor::randn([7, 5], (Kind::Float, Device::Cpu));
        let phi = |z: &Tensor| Ok(z.matmul(&a.transpose(0, 1)));
        let z0 = Tensor::randn([1, 5], (Kind::Float, Device::Cpu));
        let m = PulledMetric::new(phi, Reduction::Sum, &z0, Device::Cpu).unwrap();
        let mut op = BackwardHvp::new(&m).unwrap();
        let h = full_hessian(&mut op).unwrap();
        let a64 = a.to_kind(Kind::Double);
        let want = a64.transpose(0, 1).matmul(&a64) * 2.0;
        assert!(max_abs(&(h - &want)) < 1e-4 * max_abs(&want));
        assert_eq!(op.products(), 5);
        // The mean reduction divides by the feature count.
        let m = PulledMetric::new(phi, Reduction::Mean, &z0, Device::Cpu).unwrap();
        let h = full_hessian(&mut BackwardHvp::new(&m).unwrap()).unwrap();
        assert!(max_abs(&(h * 7.0 - &want)) < 1e-4 * max_abs(&want));
    }

    #[test]
    fn forward_products_match_backward_and_the_mean_quirk_halves_them() {
        tch::manual_seed(4);
        let a = Tensor::randn([9, 4], (Kind::Float, Device::Cpu));
        // A nonlinear map: H = 2JᵀJ at z0 with J the Jacobian of tanh(Az) there.
        let phi = |z: &Tensor| Ok(z.matmul(&a.transpose(0, 1)).tanh());
        let z0 = Tensor::randn([1, 4], (Kind::Float, Device::Cpu)) * 0.5;
        let m = PulledMetric::new(phi, Reduction::Sum, &z0, Device::Cpu).unwrap();
        let v = Tensor::randn([4], (Kind::Double, Device::Cpu));
        let exact = BackwardHvp::new(&m).unwrap().apply(&v).unwrap();
        let mut fwd = ForwardHvp::new(&m, 1e-3).unwrap();
        let approx = fwd.apply(&v).unwrap();
        let rel = max_abs(&(&approx - &exact)) / max_abs(&exact);
        assert!(rel < 1e-2, "forward vs backward: relative error {rel}");
        fwd.reference_mean = true;
        let halved = fwd.apply(&v).unwrap();
        assert!(max_abs(&(halved * 2.0 - &approx)) < 1e-6 * max_abs(&approx));
        // A zero probe gives zeros, as the reference's guard does.
        let zero = fwd
            .apply(&Tensor::zeros([4], (Kind::Double, Device::Cpu)))
            .unwrap();
        assert_eq!(max_abs(&zero), 0.0);
    }

    #[test]
    fn bad_sizes_are_refused() {
        let big = Tensor::zeros([1, BP_MAX_SIZE + 1], (Kind::Float, Device::Cpu));
        let m = PulledMetric::new(
            |z: &Tensor| Ok(z.shallow_clone()),
            Reduction::Sum,
            &big,
            Device::Cpu,
        )
        .unwrap();
        let err = full_hessian(&mut BackwardHvp::new(&m).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("backward-iter"), "{err}");
        let err = ForwardHvp::new(&m, 1e-3).err().unwrap().to_string();
        assert!(err.contains("‖z0‖"), "{err}");
        let mut op = MatrixOperator::new(&Tensor::eye(3, (Kind::Double, Device::Cpu))).unwrap();
        assert!(op
            .apply(&Tensor::zeros([4], (Kind::Double, Device::Cpu)))
            .is_err());
    }
}
