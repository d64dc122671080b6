//! The losses of one iteration as the reference trained them (docs/spec/progan_hp.md §3): WGAN-GP with the drift
//! term for D (§3.2), the WGAN term for G (§3.1), the InfoGAN MSE on both sides (§3.4) and the multi-layer Hessian
//! Penalty with its per-layer lod gates (§3.3), including where each part runs under `--precision`. The estimator
//! itself is `core::hessian`; the steps (`steps.rs`) only apply the gradients this module returns.

use crate::checkpoint::CrJudgeNet;
use crate::checkpoint::Models;
use crate::config::TrainConfig;
use crate::core::cr::CrPairs;
use crate::core::distributed::Shard;
use crate::core::hessian::{self, HessianPenalty};
use crate::core::networks::Discriminator;
use crate::core::precision::Precision;
use anyhow::Result;
use tch::{Device, Kind, Reduction, Tensor};

/// WGAN-GP constants (docs/spec/progan_hp.md §3.2): gradient-penalty weight, its target norm, and the drift weight
/// on real scores.
pub const WGAN_LAMBDA: f64 = 10.0;
pub const WGAN_TARGET: f64 = 1.0;
pub const WGAN_EPSILON: f64 = 0.001;

/// The D loss and what the trainer logs from it.
pub struct DLoss {
    /// `mean_i [D(G(z_i)) − D(x_i) + λ/t²·(‖∇D(x̂_i)‖ − t)² + ε_drift·D(x_i)²]`.
    pub loss: Tensor,
    pub real_scores: Tensor,
    pub fake_scores: Tensor,
    pub mixed_scores: Tensor,
    pub mixed_norms: Tensor,
    /// Q(G(z)) from the fake pass when D has a Q head (for the InfoGAN term).
    pub fake_q: Option<Tensor>,
}

/// WGAN-GP (docs/spec/progan_hp.md §3.2). Reals, fakes and the per-sample mixes go through D as three separate
/// passes, so minibatch-stddev groups never mix them; `chunks` keeps those groups within per-(virtual-)GPU chunks.
/// `shard`: the batch is this rank's part of the global one; the mixing factors are drawn for the global batch and
/// this part kept, as every random draw of a data-parallel rank (`core::distributed::Shard`).
pub fn d_wgan_gp(
    d: &Discriminator,
    reals: &Tensor,
    fakes: &Tensor,
    lod: f64,
    chunks: i64,
    shard: Shard,
) -> DLoss {
    let real_scores = d.score(reals, lod, chunks);
    let (fake_scores, fake_q) = d.forward(fakes, lod, chunks);
    let n = reals.size()[0];
    let u = shard.take(
        Tensor::rand([n * shard.world, 1, 1, 1], (Kind::Float, reals.device())),
        0,
    );
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
        mixed_scores,
        mixed_norms,
        fake_q,
    }
}

/// The InfoGAN term (docs/spec/progan_hp.md §3.4): plain MSE between Q's prediction and the first `k` raw
/// (un-normalised) z components.
pub fn infogan_mse(q: &Tensor, z: &Tensor, k: i64) -> Tensor {
    (q - z.narrow(1, 0, k)).square().mean(Kind::Float)
}

/// The contrastive regulariser's loss (docs/spec/geometry_infogancr.md §B.1): H's softmax cross-entropy of which
/// code a pair shares, and H's accuracy (argmax = the shared code).
pub fn judge_loss(logits: &Tensor, shared: &Tensor) -> (Tensor, Tensor) {
    let loss = logits.cross_entropy_loss::<Tensor>(shared, None, Reduction::Mean, -100, 0.0);
    let accuracy = logits
        .argmax(1, false)
        .eq_tensor(shared)
        .to_kind(Kind::Float)
        .mean(Kind::Float);
    (loss, accuracy)
}

/// The CR term of one G step: pairs, H and the weight.
pub struct CrTerm<'a> {
    pub pairs: &'a CrPairs,
    pub judge: &'a CrJudgeNet,
    pub weight: f64,
}

/// The Hessian Penalty of one G step: the layers it reaches at this lod, each with its gate, and λ_t.
pub struct HpTerm<'a> {
    /// `(layer, gate)` for the regularised layers whose gate is positive at this lod.
    pub gates: &'a [(usize, f64)],
    /// λ_t, the ramped weight (docs/spec/progan_hp.md §2.6).
    pub weight: f64,
}

/// The D side of an iteration: the loss terms and D's gradients.
pub struct DOutput {
    pub wgan: DLoss,
    /// The full D loss (WGAN-GP + λ_info·MSE).
    pub loss: Tensor,
    pub infogan: Option<Tensor>,
    /// Flat gradient of `loss` with respect to D's parameters.
    pub grads: Tensor,
}

/// The G side of an iteration: what is logged and G's gradients.
pub struct GOutput {
    /// `mean(−D(G(z)))`, logged as `Loss/G`.
    pub score_loss: Tensor,
    /// The penalty of each gated layer (unweighted), in the order of [`HpTerm::gates`].
    pub hp_per_layer: Vec<Tensor>,
    /// Σ gate·penalty (before λ_t), logged as `Loss/hessian_penalty`.
    pub hp_total: Option<Tensor>,
    /// H's cross-entropy on G's pairs (before its weight), logged as `Loss/CR`.
    pub cr: Option<Tensor>,
    /// Flat gradient of the full G loss with respect to G's parameters.
    pub grads: Tensor,
}

/// Builds the G and D losses of a run and their gradients.
pub struct Loss {
    /// Per-(virtual-)GPU chunks of the batch: minibatch-stddev groups and HP maxima stay inside one.
    pub chunks: i64,
    /// Leading z components regularised by InfoGAN (0: no Q head).
    pub infogan_nz: i64,
    pub infogan_lambda: f64,
    /// Arithmetic of the adversarial passes; the HP always runs in float32.
    pub precision: Precision,
    pub device: Device,
    pub hp: HessianPenalty,
    /// This rank's part of the global batch (the whole batch in a one-process run).
    pub shard: Shard,
}

impl Loss {
    /// The losses of a run configured by `cfg` on `device`.
    pub fn new(cfg: &TrainConfig, device: Device) -> Result<Self> {
        let hp = HessianPenalty::new(
            cfg.num_rademacher_samples.max(2),
            cfg.epsilon.max(f64::MIN_POSITIVE),
        )?
        .with_chunks(cfg.num_gpus as usize)?;
        Ok(Loss {
            chunks: cfg.num_gpus,
            infogan_nz: cfg.infogan_nz,
            infogan_lambda: cfg.infogan_lambda,
            precision: cfg.precision,
            device,
            hp,
            shard: Shard::WHOLE,
        })
    }

    /// The losses of rank `shard.rank` of `shard.world` data-parallel processes: each takes `num_gpus / world` of
    /// the run's chunks (docs/spec/progan_hp.md §15.3: per-GPU minibatch-stddev groups and HP maxima).
    pub fn with_shard(mut self, shard: Shard) -> Result<Self> {
        anyhow::ensure!(
            self.chunks % shard.world == 0,
            "--num-gpus {} does not split evenly between {} processes: use a multiple of the process count",
            self.chunks,
            shard.world
        );
        self.chunks /= shard.world;
        self.hp = self.hp.with_chunks(self.chunks as usize)?;
        self.shard = shard;
        Ok(self)
    }

    /// D's loss on `reals` and on fakes of G from `z` (no gradient into G), and its gradient, all inside the
    /// precision region.
    pub fn d_loss(&self, models: &Models, reals: &Tensor, z: &Tensor, lod: f64) -> DOutput {
        let params: Vec<&Tensor> = models.d_params.params.iter().collect();
        let (wgan, loss, infogan, grads) = self.precision.run(self.device, || {
            let fakes = tch::no_grad(|| models.g.forward(z, lod, true));
            let wgan = d_wgan_gp(&models.d, reals, &fakes, lod, self.chunks, self.shard);
            let infogan = (self.infogan_nz > 0).then(|| {
                let q = wgan
                    .fake_q
                    .as_ref()
                    .expect("Q head exists when infogan_nz > 0");
                infogan_mse(q, z, self.infogan_nz)
            });
            let loss = match &infogan {
                Some(mi) => &wgan.loss + mi * self.infogan_lambda,
                None => wgan.loss.shallow_clone(),
            };
            let grads = Tensor::run_backward(&[&loss], &params, false, false);
            (wgan, loss, infogan, grads)
        });
        DOutput {
            grads: models.d_params.flatten_grads(&grads),
            wgan,
            loss,
            infogan,
        }
    }

    /// G's loss on a fresh `z`: WGAN (+ InfoGAN MSE) + λ_t·Σ gate·HP when `hp` is given, and its gradient.
    ///
    /// In float32 one backward serves both terms. In a reduced precision the adversarial backward runs inside the
    /// precision region, and the HP passes run apart, in float32, with their own backward (`core::precision`). The
    /// HP evaluates only the 2k perturbed copies of z (`HessianPenalty::from_activations`).
    pub fn g_loss(
        &self,
        models: &Models,
        z: &Tensor,
        lod: f64,
        hp: Option<HpTerm>,
        cr: Option<CrTerm>,
    ) -> Result<GOutput> {
        let separate = self.precision.is_reduced_on(self.device);
        let params: Vec<&Tensor> = models.g_params.params.iter().collect();
        let (adv_loss, score_loss, cr_loss, adv_grads) = self.precision.run(self.device, || {
            let images = models.g.forward(z, lod, true);
            let (scores, q) = models.d.forward(&images, lod, self.chunks);
            let score_loss = (-scores).mean(Kind::Float);
            let mut loss = score_loss.shallow_clone();
            if self.infogan_nz > 0 {
                let q = q.as_ref().expect("Q head exists when infogan_nz > 0");
                loss = &loss + infogan_mse(q, z, self.infogan_nz) * self.infogan_lambda;
            }
            let cr_loss = cr.as_ref().map(|term| {
                let a = models.g.forward(&term.pairs.first, lod, true);
                let b = models.g.forward(&term.pairs.second, lod, true);
                judge_loss(
                    &term.judge.forward(&a, &b, lod, self.chunks),
                    &term.pairs.shared,
                )
                .0
            });
            if let (Some(c), Some(term)) = (&cr_loss, &cr) {
                loss = &loss + c * term.weight;
            }
            let grads = separate.then(|| Tensor::run_backward(&[&loss], &params, false, false));
            (loss, score_loss, cr_loss, grads)
        });
        let (mut hp_per_layer, mut hp_total, mut hp_loss) = (Vec::new(), None, None);
        if let Some(term) = &hp {
            let g = &models.g;
            let layers: Vec<usize> = term.gates.iter().map(|&(l, _)| l).collect();
            // A rank draws the directions of the global batch and keeps its rows (`Shard`).
            let directions = (!self.shard.is_whole()).then(|| {
                let mut global = z.size();
                global[0] *= self.shard.world;
                let like = Tensor::empty(global.as_slice(), (z.kind(), z.device()));
                self.shard.take(self.hp.rademacher(&like), 1)
            });
            hp_per_layer = self.hp.penalties(
                |x| g.hp_layers(x, lod, &layers, true),
                z,
                directions.as_ref(),
            )?;
            let gates: Vec<f64> = term.gates.iter().map(|&(_, w)| w).collect();
            let total = hessian::weighted_sum(&hp_per_layer, Some(&gates))?;
            hp_loss = Some(&total * term.weight);
            hp_total = Some(total);
        }
        let flat = |grads: &[Tensor]| models.g_params.flatten_grads(grads);
        let grads = match (adv_grads, hp_loss) {
            (Some(adv), Some(hp)) => {
                flat(&adv) + flat(&Tensor::run_backward(&[&hp], &params, false, false))
            }
            (Some(adv), None) => flat(&adv),
            (None, hp) => {
                let loss = match hp {
                    Some(hp) => adv_loss + hp,
                    None => adv_loss,
                };
                flat(&Tensor::run_backward(&[&loss], &params, false, false))
            }
        };
        Ok(GOutput {
            score_loss,
            hp_per_layer,
            hp_total,
            cr: cr_loss,
            grads,
        })
    }
}
