//! The losses as trained (spec progan_hp §3.1, §3.2, §3.4). The Hessian Penalty itself is in `hessian`.

use crate::networks::Discriminator;
use tch::{Kind, Tensor};

/// WGAN-GP constants (§3.2): gradient-penalty weight, its target norm, and the drift weight on real scores.
pub const WGAN_LAMBDA: f64 = 10.0;
pub const WGAN_TARGET: f64 = 1.0;
pub const WGAN_EPSILON: f64 = 0.001;

/// The D loss and what the trainer logs from it.
pub struct DLoss {
    /// `mean_i [D(G(z_i)) − D(x_i) + λ/t²·(‖∇D(x̂_i)‖ − t)² + ε_drift·D(x_i)²]`.
    pub loss: Tensor,
    pub real_scores: Tensor,
    pub fake_scores: Tensor,
    pub mixed_norms: Tensor,
    /// Q(G(z)) from the fake pass when D has a Q head (for the InfoGAN term).
    pub fake_q: Option<Tensor>,
}

/// WGAN-GP (§3.2). Reals, fakes and the per-sample mixes go through D as three separate passes, so
/// minibatch-stddev groups never mix them; `chunks` keeps those groups within per-(virtual-)GPU chunks.
pub fn d_wgan_gp(
    d: &Discriminator,
    reals: &Tensor,
    fakes: &Tensor,
    lod: f64,
    chunks: i64,
) -> DLoss {
    let real_scores = d.score(reals, lod, chunks);
    let (fake_scores, fake_q) = d.forward(fakes, lod, chunks);
    let n = reals.size()[0];
    let u = Tensor::rand([n, 1, 1, 1], (Kind::Float, reals.device()));
    let mixed = (reals + (fakes.detach() - reals) * &u)
        .detach()
        .set_requires_grad(true);
    let mixed_scores = d.score(&mixed, lod, chunks);
    // ∇ of Σ_i D(x̂_i) with respect to the x̂ batch, kept in the graph (double backward).
    let grad =
        Tensor::run_backward(&[mixed_scores.sum(Kind::Float)], &[&mixed], true, true).remove(0);
    let mixed_norms = grad
        .square()
        .sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float)
        .sqrt();
    let gp = (&mixed_norms - WGAN_TARGET).square() * (WGAN_LAMBDA / (WGAN_TARGET * WGAN_TARGET));
    let real = real_scores.reshape([-1]);
    let fake = fake_scores.reshape([-1]);
    let per_sample = &fake - &real + gp + real.square() * WGAN_EPSILON;
    DLoss {
        loss: per_sample.mean(Kind::Float),
        real_scores,
        fake_scores,
        mixed_norms,
        fake_q,
    }
}

/// The InfoGAN term (§3.4): plain MSE between Q's prediction and the first `k` raw (un-normalised) z components.
pub fn infogan_mse(q: &Tensor, z: &Tensor, k: i64) -> Tensor {
    (q - z.narrow(1, 0, k)).square().mean(Kind::Float)
}
