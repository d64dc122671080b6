//! Hessian-Penalty direction discovery in a frozen generator (docs/spec/progan_hp.md §11): a matrix A whose rows are
//! directions in z, learned so that `G(z + w·A)` is disentangled in the coefficients w. The loss is the Hessian
//! Penalty of G's output image with respect to w; only A is trained, and Gram–Schmidt keeps its rows orthonormal.
//!
//! Everything here works on any generator closure `z ↦ image`; the command (`commands::discover`) supplies ProGAN
//! snapshots, imported reference models and BigGAN.

use crate::core::hessian::{HessianPenalty, Reduction, Variance};
use crate::core::optim::{Adam, FlatParams};
use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use tch::{nn, Device, Kind, Tensor};

/// Which components of z the directions live in (docs/spec/progan_hp.md §11: for BigGAN's hierarchical z, 0–39 feed
/// the coarse blocks, 40–79 the middle ones, 80–119 the fine ones). For another nz the three are its thirds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchSpace {
    #[default]
    All,
    Coarse,
    Mid,
    Fine,
}

impl SearchSpace {
    /// The components of a z of `nz` this space covers.
    pub fn range(self, nz: i64) -> Result<Range<i64>> {
        let third = nz / 3;
        if self != SearchSpace::All {
            ensure!(
                third >= 1 && nz % 3 == 0,
                "--search-space {}: z has {nz} components, which do not split into three equal parts; use all",
                self.name()
            );
        }
        Ok(match self {
            SearchSpace::All => 0..nz,
            SearchSpace::Coarse => 0..third,
            SearchSpace::Mid => third..2 * third,
            SearchSpace::Fine => 2 * third..nz,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SearchSpace::All => "all",
            SearchSpace::Coarse => "coarse",
            SearchSpace::Mid => "mid",
            SearchSpace::Fine => "fine",
        }
    }
}

/// How A starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectionInit {
    /// Kaiming-normal rows (std √(2/d)), orthonormalised unless `--no-ortho`.
    #[default]
    Random,
    /// The first `ndirs` coordinate axes of the search space.
    Coords,
}

/// Sequential row-wise Gram–Schmidt: each row loses its projections on the rows before it, then every row is
/// scaled to unit length (docs/spec/progan_hp.md §11). Classical Gram–Schmidt applied twice per row, in float64, so
/// the result is orthonormal to rounding even for nearly dependent rows. A zero (or dependent) row is an error.
pub fn gram_schmidt(a: &Tensor) -> Result<Tensor> {
    let size = a.size();
    ensure!(
        size.len() == 2,
        "Gram–Schmidt needs a matrix, got shape {size:?}"
    );
    ensure!(
        size[0] <= size[1],
        "{} directions cannot be orthonormal in {} dimensions",
        size[0],
        size[1]
    );
    let x = a.detach().to_kind(Kind::Double);
    let mut rows: Vec<Tensor> = Vec::with_capacity(size[0] as usize);
    for i in 0..size[0] {
        let mut r = x.get(i);
        let norm0 = r.norm().double_value(&[]);
        for _ in 0..2 {
            for q in &rows {
                r = &r - q * r.dot(q);
            }
        }
        let norm = r.norm().double_value(&[]);
        if norm.is_nan() || norm <= 1e-10 * norm0.max(1e-300) || !norm.is_finite() {
            bail!("direction {i} is zero or a combination of the directions before it: cannot orthonormalise");
        }
        rows.push(r / norm);
    }
    Ok(Tensor::stack(&rows, 0).to_kind(a.kind()))
}

/// The largest |QQᵀ − I| entry: 0 for orthonormal rows.
pub fn orthonormality_error(q: &Tensor) -> f64 {
    let n = q.size()[0];
    let q = q.to_kind(Kind::Double);
    (q.matmul(&q.tr()) - Tensor::eye(n, (Kind::Double, q.device())))
        .abs()
        .max()
        .double_value(&[])
}

/// The first A: `ndirs` rows in a space of `dim` components.
pub fn init_directions(init: DirectionInit, ndirs: i64, dim: i64, ortho: bool) -> Result<Tensor> {
    ensure!(ndirs >= 1, "--ndirs must be at least 1");
    ensure!(
        ndirs <= dim,
        "--ndirs {ndirs}: the search space has only {dim} components"
    );
    Ok(match init {
        DirectionInit::Coords => {
            Tensor::eye(dim, (Kind::Float, tch::Device::Cpu)).narrow(0, 0, ndirs)
        }
        DirectionInit::Random => {
            let a = Tensor::randn([ndirs, dim], (Kind::Float, tch::Device::Cpu))
                * (2.0 / dim as f64).sqrt();
            if ortho {
                gram_schmidt(&a)?
            } else {
                a
            }
        }
    })
}

/// A's rows placed in z's full width: zero outside the search space (`[ndirs, nz]`).
pub fn embed(a: &Tensor, space: &Range<i64>, nz: i64) -> Tensor {
    let ndirs = a.size()[0];
    let full = Tensor::zeros([ndirs, nz], (a.kind(), a.device()));
    if space.start == 0 && space.end == nz {
        return a.shallow_clone();
    }
    Tensor::cat(
        &[
            full.narrow(1, 0, space.start),
            a.shallow_clone(),
            full.narrow(1, space.end, nz - space.end),
        ],
        1,
    )
}

/// Completes orthonormal rows `q` (`[k, n]`) to an orthonormal basis of Rⁿ (`[n, n]`, the first k rows are q): the
/// coordinate axes, in order, orthogonalised against everything before them and kept when something is left.
/// With it a direction set becomes a rotation of z, so tools that sweep or score z's components (`visualize`,
/// `score`'s effect matrix) sweep and score the directions: `z = c·B`, and c ~ N(0, I) when z is.
pub fn complete_basis(q: &Tensor) -> Result<Tensor> {
    let (k, n) = (q.size()[0], q.size()[1]);
    let mut rows: Vec<Tensor> = (0..k).map(|i| q.get(i).to_kind(Kind::Double)).collect();
    for axis in 0..n {
        if rows.len() as i64 == n {
            break;
        }
        let mut r = Tensor::zeros([n], (Kind::Double, q.device()));
        let _ = r.get(axis).fill_(1.0);
        for _ in 0..2 {
            for b in &rows {
                r = &r - b * r.dot(b);
            }
        }
        let norm = r.norm().double_value(&[]);
        if norm > 1e-6 {
            rows.push(r / norm);
        }
    }
    ensure!(
        rows.len() as i64 == n,
        "cannot complete {k} directions to a basis of {n} dimensions"
    );
    Ok(Tensor::stack(&rows, 0).to_kind(q.kind()))
}

/// The Hessian Penalty of the discovery loss: k 2, ε 0.1, the unbiased variance over the k second differences and
/// the mean over the batch and every pixel (docs/spec/progan_hp.md §11 step 5; §13 items 1–2 on how this differs from
/// the trainer's estimator).
pub fn discovery_penalty() -> HessianPenalty {
    HessianPenalty::new(2, 0.1)
        .expect("valid settings")
        .with_variance(Variance::Unbiased)
        .with_reduction(Reduction::Mean)
}

/// One sample's coefficients: direction `j[i]` at distance `d[i]`, the others 0 (`[n, ndirs]`).
pub fn coefficients(j: &Tensor, d: &Tensor, ndirs: i64) -> Tensor {
    j.one_hot(ndirs).to_kind(d.kind()) * d.unsqueeze(1)
}

/// Draws each sample's direction uniformly and its distance from U[−η, η] (step 2), on `device`.
pub fn draw_coefficients(n: i64, ndirs: i64, path_size: f64, device: tch::Device) -> Tensor {
    let j = Tensor::randint(ndirs, [n], (Kind::Int64, device));
    let d = (Tensor::rand([n], (Kind::Float, device)) * 2.0 - 1.0) * path_size;
    coefficients(&j, &d, ndirs)
}

/// The discovery loss for base latents `z` (`[n, nz]`), coefficients `w` (`[n, ndirs]`), directions `q`
/// (`[ndirs, nz]`, differentiable: the gradient reaches A through it) and Rademacher `signs` (`[2, n, ndirs]`, or
/// drawn): the HP of `g(z + w·q)` with respect to w. `g` maps `[m, nz]` latents to images; it sees the 2k·n
/// perturbed latents as one batch, in the estimator's order, with the base z repeated to match.
pub fn discovery_loss(
    g: &dyn Fn(&Tensor) -> Tensor,
    z: &Tensor,
    w: &Tensor,
    q: &Tensor,
    signs: Option<&Tensor>,
) -> Result<Tensor> {
    let hp = discovery_penalty();
    let reps = 2 * hp.k as i64;
    let z_rep = z.repeat([reps, 1]);
    let out = hp.penalties(|wp| vec![g(&(&z_rep + wp.matmul(q)))], w, signs)?;
    Ok(out.into_iter().next().expect("one activation"))
}

/// The learned matrix and its optimiser: one discovery step at a time (docs/spec/progan_hp.md §11 steps 2–7).
pub struct Discovery {
    _vs: nn::VarStore,
    /// A `[ndirs, |space|]`, trainable, a view of `params.flat`.
    pub a: Tensor,
    pub params: FlatParams,
    /// The project's flat-buffer Adam with PyTorch's defaults (β 0.9 / 0.999, ε 1e-8).
    pub adam: Adam,
    pub space: Range<i64>,
    pub nz: i64,
    pub ortho: bool,
    pub path_size: f64,
}

impl Discovery {
    /// Starts from `a0` (`[ndirs, |space|]`) for a generator with `nz` latent components.
    pub fn new(
        a0: &Tensor,
        space: Range<i64>,
        nz: i64,
        lr: f64,
        path_size: f64,
        ortho: bool,
        device: Device,
    ) -> Result<Self> {
        let s = a0.size();
        ensure!(
            s.len() == 2 && s[1] == space.end - space.start && space.end <= nz,
            "directions of shape {s:?} do not fit the search space {space:?} of {nz} components"
        );
        let vs = nn::VarStore::new(device);
        let _ = vs.root().zeros("A", &s);
        let params = FlatParams::new(&vs);
        let a = params.params[0].shallow_clone();
        tch::no_grad(|| a.shallow_clone().copy_(&a0.to_device(device)));
        let mut adam = Adam::new(&params, lr);
        adam.beta1 = 0.9;
        adam.beta2 = 0.999;
        Ok(Self {
            _vs: vs,
            a,
            params,
            adam,
            space,
            nz,
            ortho,
            path_size,
        })
    }

    /// The directions in z's full width (`[ndirs, nz]`), differentiable in A.
    pub fn directions(&self) -> Tensor {
        embed(&self.a, &self.space, self.nz)
    }

    /// One step on base latents `z` (`[n, nz]`): draw each sample's direction and distance, the penalty of `g`
    /// (which sees 2k·n latents in the estimator's order, see [`discovery_loss`]) with respect to the
    /// coefficients, Adam on A, Gram–Schmidt. Returns the penalty (a device scalar: no host read).
    pub fn step(&mut self, g: &dyn Fn(&Tensor) -> Tensor, z: &Tensor) -> Result<Tensor> {
        let ndirs = self.a.size()[0];
        let w = draw_coefficients(z.size()[0], ndirs, self.path_size, z.device());
        let loss = discovery_loss(g, z, &w, &self.directions(), None)?;
        let grads = Tensor::run_backward(&[&loss], &[&self.a], false, false);
        self.adam
            .step(&self.params, &self.params.flatten_grads(&grads));
        if self.ortho {
            tch::no_grad(|| -> Result<()> {
                self.a.shallow_clone().copy_(&gram_schmidt(&self.a)?);
                Ok(())
            })?;
        }
        Ok(loss.detach())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_schmidt_is_orthonormal_and_keeps_the_first_row_direction() {
        tch::manual_seed(0);
        let a = Tensor::randn([7, 9], (Kind::Float, tch::Device::Cpu));
        let q = gram_schmidt(&a).unwrap();
        assert!(orthonormality_error(&q) < 1e-6);
        let cos = q.get(0).dot(&a.get(0)).double_value(&[]) / a.get(0).norm().double_value(&[]);
        assert!((cos - 1.0).abs() < 1e-6);
        // Row 1 lies in the span of rows 0 and 1 of A.
        let r = q.get(1) - q.get(0) * q.get(1).dot(&q.get(0));
        assert!((r.norm().double_value(&[]) - 1.0).abs() < 1e-5);
        let dependent = Tensor::stack(&[a.get(0), a.get(0) * 2.0], 0);
        assert!(gram_schmidt(&dependent).is_err());
    }

    #[test]
    fn search_spaces_are_thirds() {
        assert_eq!(SearchSpace::Mid.range(120).unwrap(), 40..80);
        assert_eq!(SearchSpace::Fine.range(120).unwrap(), 80..120);
        assert_eq!(SearchSpace::All.range(13).unwrap(), 0..13);
        assert!(SearchSpace::Coarse.range(13).is_err());
    }

    #[test]
    fn complete_basis_keeps_the_directions_first() {
        tch::manual_seed(1);
        let q = gram_schmidt(&Tensor::randn([3, 6], (Kind::Float, tch::Device::Cpu))).unwrap();
        let b = complete_basis(&q).unwrap();
        assert_eq!(b.size(), vec![6, 6]);
        assert!(orthonormality_error(&b) < 1e-6);
        assert!((b.narrow(0, 0, 3) - &q).abs().max().double_value(&[]) < 1e-7);
    }
}
