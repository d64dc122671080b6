//! The Hessian Penalty (docs/spec/progan_hp.md §3.3, §10, §12) and the full finite-difference Hessian (§9.1).
//!
//! The penalty estimates the off-diagonal mass of the Hessian of each activation `A(z)` with respect to `z`:
//! for Rademacher directions `v_1..v_k` and `x_k = ε·v_k`,
//! `D_k = (A(z + x_k) − 2·A(z) + A(z − x_k)) / ε²` is a central second difference, equal to `v_kᵀ H v_k` for a
//! quadratic, and `Var_k(D_k)` has expectation `2·Σ_{i≠j} H_ij²`. The variance is taken elementwise, then reduced.
//!
//! Everything works on any closure `Fn(&Tensor) -> Vec<Tensor>`: a network returning one or several activations.
//! The 2k perturbed inputs go through the closure as ONE batch of size 2k·n, ordered `+x_1, −x_1, +x_2, −x_2, …`
//! (docs/spec/progan_hp.md §3.3 point 8), and the result stays differentiable with respect to the closure's parameters.

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// How the variance over the k second differences is normalised (docs/spec/progan_hp.md §3.3, "Variance convention").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variance {
    /// Divide by k: the ProGAN trainer's (and portable TF's) convention; what `hp_lambda = 0.1` was tuned for.
    #[default]
    Population,
    /// Divide by k − 1: the portable PyTorch / NumPy / BigGAN versions'. At k = 2 it is twice the population value.
    Unbiased,
}

/// How the elementwise variance map of one activation becomes the penalty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// Max over the batch and every neuron (the reference default): the worst sample's worst neuron.
    #[default]
    Max,
    /// Mean over the batch and every neuron (BigGAN direction discovery).
    Mean,
    /// No reduction: the per-element variance map, shaped like the activation.
    None,
}

/// Settings of the estimator. Build with [`HessianPenalty::new`], which validates them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HessianPenalty {
    /// Number of Rademacher directions (≥ 2).
    pub k: usize,
    /// Finite-difference step (> 0).
    pub epsilon: f64,
    pub variance: Variance,
    pub reduction: Reduction,
    /// With `Max`, split the batch into this many equal chunks, take the max within each and average the chunk
    /// maxima. This reproduces the reference's per-GPU max on one device (docs/spec/progan_hp.md §3.3 point 8, §15.3). 1 = one global max.
    pub chunks: usize,
}

impl Default for HessianPenalty {
    fn default() -> Self {
        Self {
            k: 2,
            epsilon: 0.1,
            variance: Variance::Population,
            reduction: Reduction::Max,
            chunks: 1,
        }
    }
}

impl HessianPenalty {
    /// The reference's estimator (population variance, max reduction) with the given k and ε.
    pub fn new(k: usize, epsilon: f64) -> Result<Self> {
        let hp = Self {
            k,
            epsilon,
            ..Self::default()
        };
        hp.validate()?;
        Ok(hp)
    }

    pub fn with_variance(mut self, variance: Variance) -> Self {
        self.variance = variance;
        self
    }

    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    pub fn with_chunks(mut self, chunks: usize) -> Result<Self> {
        self.chunks = chunks;
        self.validate()?;
        Ok(self)
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.k >= 2,
            "Hessian Penalty: k (number of Rademacher samples) must be at least 2, got {}",
            self.k
        );
        ensure!(
            self.epsilon.is_finite() && self.epsilon > 0.0,
            "Hessian Penalty: epsilon must be a positive finite number, got {}",
            self.epsilon
        );
        ensure!(
            self.chunks >= 1,
            "Hessian Penalty: chunks must be at least 1, got {}",
            self.chunks
        );
        Ok(())
    }

    /// Rademacher directions of shape `[k, ..z.shape]`, entries ±1 in z's kind and device.
    ///
    /// Drawn from libtorch's generator of z's device, which the caller seeds (`tch::manual_seed`); so a seeded run
    /// draws the same directions every time, on the device, without a host round trip.
    pub fn rademacher(&self, z: &Tensor) -> Tensor {
        let mut shape = vec![self.k as i64];
        shape.extend(z.size());
        Tensor::randint(2, shape.as_slice(), (z.kind(), z.device())) * 2.0 - 1.0
    }

    /// The batched perturbed input `[z+εv_1, z−εv_1, z+εv_2, z−εv_2, …]` of shape `[2k·n, ..]`.
    pub fn perturbed_inputs(&self, z: &Tensor, directions: &Tensor) -> Result<Tensor> {
        let mut want = vec![self.k as i64];
        want.extend(z.size());
        ensure!(
            directions.size() == want,
            "Hessian Penalty: directions have shape {:?}, expected {:?} (k × z's shape)",
            directions.size(),
            want
        );
        let x = directions * self.epsilon;
        let z = z.unsqueeze(0);
        let pm = Tensor::stack(&[&z + &x, &z - &x], 1); // [k, 2, n, ..]
        let mut flat = vec![-1i64];
        flat.extend(&z.size()[2..]);
        Ok(pm.reshape(flat.as_slice()))
    }

    /// The penalty of each activation returned by `f`, in order, with `directions` (`[k, ..z.shape]`, ±1) or
    /// fresh ones drawn with [`Self::rademacher`].
    ///
    /// With `Max`/`Mean` each entry is a scalar tensor; with `None` it is the variance map shaped like the
    /// activation. Only the 2k perturbed copies are evaluated, see [`Self::from_activations`].
    pub fn penalties<F>(&self, f: F, z: &Tensor, directions: Option<&Tensor>) -> Result<Vec<Tensor>>
    where
        F: Fn(&Tensor) -> Vec<Tensor>,
    {
        self.validate()?;
        let drawn;
        let directions = match directions {
            Some(d) => d,
            None => {
                drawn = self.rademacher(z);
                &drawn
            }
        };
        let perturbed = f(&self.perturbed_inputs(z, directions)?);
        let n = z.size().first().copied().unwrap_or(0);
        self.from_activations(n, &perturbed)
    }

    /// The weighted sum of [`Self::penalties`] (weights default to 1); needs a reducing `Reduction`.
    pub fn penalty<F>(
        &self,
        f: F,
        z: &Tensor,
        directions: Option<&Tensor>,
        weights: Option<&[f64]>,
    ) -> Result<Tensor>
    where
        F: Fn(&Tensor) -> Vec<Tensor>,
    {
        ensure!(
            self.reduction != Reduction::None,
            "Hessian Penalty: a summed penalty needs reduction max or mean, not none"
        );
        let per = self.penalties(f, z, directions)?;
        weighted_sum(&per, weights)
    }

    /// The penalty from the activations of the perturbed batch (`perturbed[i]` is `A_i` on
    /// [`Self::perturbed_inputs`] of a z batch of `n`: 2k·n samples in that order).
    ///
    /// The unperturbed activation is not needed: with `S_k = A(z + x_k) + A(z − x_k)`, every second difference is
    /// `D_k = (S_k − 2·A(z)) / ε²`, and the shift `−2·A(z)/ε²` is the same for every k, so it cancels in the
    /// variance over k: `Var_k(D_k) = Var_k(S_k) / ε⁴` exactly. This saves the centre pass and its backward, and
    /// for k = 2 the variance is `(S_1 − S_2)² / (2·divisor·ε⁴)` (divisor k or k − 1), a subtraction instead of a
    /// reduction over a short leading dimension (slow on the CPU).
    pub fn from_activations(&self, n: i64, perturbed: &[Tensor]) -> Result<Vec<Tensor>> {
        let k = self.k as i64;
        let eps4 = self.epsilon.powi(4);
        let divisor = match self.variance {
            Variance::Population => k,
            Variance::Unbiased => k - 1,
        } as f64;
        perturbed
            .iter()
            .enumerate()
            .map(|(i, ap)| {
                let shape = ap.size();
                let Some(&batch) = shape.first() else {
                    bail!("Hessian Penalty: activation {i} is a scalar; it needs a batch dimension")
                };
                ensure!(
                    batch == 2 * k * n,
                    "Hessian Penalty: activation {i} has a batch of {batch} on the perturbed batch of 2k·n = {} \
                     (k = {k}, n = {n}); every activation must keep the batch dimension first",
                    2 * k * n
                );
                let mut split = vec![k, 2, n];
                split.extend(&shape[1..]);
                // S_k, [k, n, ..]
                let sums = ap.reshape(split.as_slice()).sum_dim_intlist(1, false, None::<Kind>);
                let var = if k == 2 {
                    let pair = sums.unbind(0);
                    (&pair[0] - &pair[1]).square() * (1.0 / (2.0 * divisor * eps4))
                } else {
                    let dev = &sums - sums.mean_dim(0, true, None::<Kind>);
                    dev.square().sum_dim_intlist(0, false, None::<Kind>) * (1.0 / (divisor * eps4))
                }; // [n, ..]
                self.reduce(var, i)
            })
            .collect()
    }

    fn reduce(&self, var: Tensor, index: usize) -> Result<Tensor> {
        match self.reduction {
            Reduction::None => Ok(var),
            Reduction::Mean => Ok(var.mean(var.kind())),
            Reduction::Max => {
                let n = var.size()[0];
                let c = self.chunks as i64;
                ensure!(
                    n % c == 0,
                    "Hessian Penalty: batch of {n} (activation {index}) does not split into {c} equal chunks"
                );
                Ok(var.reshape([c, -1]).amax(1, false).mean(var.kind()))
            }
        }
    }
}

/// `Σ_i w_i·p_i` over scalar penalties; `weights` default to 1 and must match in number.
pub fn weighted_sum(penalties: &[Tensor], weights: Option<&[f64]>) -> Result<Tensor> {
    if let Some(w) = weights {
        ensure!(
            w.len() == penalties.len(),
            "Hessian Penalty: {} weights for {} activations",
            w.len(),
            penalties.len()
        );
    }
    let Some(first) = penalties.first() else {
        bail!("Hessian Penalty: the network returned no activations")
    };
    let mut total = Tensor::zeros([], (first.kind(), first.device()));
    for (i, p) in penalties.iter().enumerate() {
        let w = weights.map_or(1.0, |w| w[i]);
        if w != 0.0 {
            total += p * w;
        }
    }
    Ok(total)
}

/// The full Hessian of every output element of `f` with respect to z (docs/spec/progan_hp.md §9.1), by 4-point central differences:
/// `H_ij = [f(z+d_i+d_j) − f(z+d_i−d_j) − f(z−d_i+d_j) + f(z−d_i−d_j)] / (4ε²)` with `d_i = ε·e_i`, for i ≥ j,
/// mirrored to `H_ji` (so the diagonal uses step 2ε). Exact for cubic polynomials.
///
/// `z` is `[n, nz]`; the result is float64 of shape `[n, ..output shape.., nz, nz]`. The 4·nz(nz+1)/2 perturbed
/// copies of the batch are evaluated in calls of at most `max_batch` rows, so memory stays bounded by the chunk
/// size plus the result. No gradient is recorded.
pub fn full_hessian<F>(f: F, z: &Tensor, epsilon: f64, max_batch: usize) -> Result<Tensor>
where
    F: Fn(&Tensor) -> Tensor,
{
    ensure!(
        epsilon.is_finite() && epsilon > 0.0,
        "full Hessian: epsilon must be positive, got {epsilon}"
    );
    ensure!(max_batch >= 1, "full Hessian: max_batch must be at least 1");
    let zs = z.size();
    ensure!(
        zs.len() == 2,
        "full Hessian: z must be [n, nz], got shape {zs:?}"
    );
    let (n, nz) = (zs[0], zs[1]);
    let _guard = tch::no_grad_guard();

    // Every (i ≥ j) pair contributes four signed corner evaluations.
    let pairs: Vec<(i64, i64)> = (0..nz).flat_map(|i| (0..=i).map(move |j| (i, j))).collect();
    let signs = [
        (1.0, 1.0, 1.0),
        (1.0, -1.0, -1.0),
        (-1.0, 1.0, -1.0),
        (-1.0, -1.0, 1.0),
    ];

    let eye = Tensor::eye(nz, (z.kind(), z.device())) * epsilon;
    // Pairs per call: each pair needs 4·n rows.
    let pairs_per_call = (max_batch as i64 / (4 * n)).max(1) as usize;
    let mut h_flat: Option<Tensor> = None; // [nz·nz, n, ..out] in f64
    for group in pairs.chunks(pairs_per_call) {
        let mut inputs = Vec::with_capacity(group.len() * 4);
        for &(i, j) in group {
            for &(si, sj, _) in &signs {
                inputs.push(z + eye.get(i) * si + eye.get(j) * sj);
            }
        }
        let out = f(&Tensor::cat(&inputs, 0)).to_kind(Kind::Double);
        let os = out.size();
        ensure!(
            os.first() == Some(&(inputs.len() as i64 * n)),
            "full Hessian: the network returned a batch of {:?} for {} inputs",
            os.first(),
            inputs.len() as i64 * n
        );
        let mut split = vec![group.len() as i64, 4, n];
        split.extend(&os[1..]);
        let out = out.reshape(split.as_slice());
        let w = Tensor::from_slice(&signs.map(|s| s.2)).to_device(out.device());
        let mut wshape = vec![1i64, 4];
        wshape.extend(std::iter::repeat_n(1, split.len() - 2));
        let vals = (out * w.reshape(wshape.as_slice())).sum_dim_intlist(1, false, Kind::Double)
            / (4.0 * epsilon * epsilon); // [p, n, ..out]
        let h = h_flat.get_or_insert_with(|| {
            let mut shape = vec![nz * nz];
            shape.extend(&vals.size()[1..]);
            Tensor::zeros(shape.as_slice(), (Kind::Double, vals.device()))
        });
        let upper: Vec<i64> = group.iter().map(|&(i, j)| i * nz + j).collect();
        let lower: Vec<i64> = group.iter().map(|&(i, j)| j * nz + i).collect();
        let dev = vals.device();
        let _ = h.index_copy_(0, &Tensor::from_slice(&upper).to_device(dev), &vals);
        let _ = h.index_copy_(0, &Tensor::from_slice(&lower).to_device(dev), &vals);
    }
    let h = h_flat.expect("nz ≥ 1 gives at least one pair");
    // [nz·nz, n, ..out] -> [n, ..out, nz, nz]
    let dims = h.dim() as i64;
    let mut perm: Vec<i64> = (1..dims).collect();
    perm.push(0);
    let mut shape = h.size()[1..].to_vec();
    shape.extend([nz, nz]);
    Ok(h.permute(perm.as_slice())
        .contiguous()
        .reshape(shape.as_slice()))
}
