//! One training iteration (docs/spec/progan_hp.md §2.3): with `--cr-lambda`, first the H step of the contrastive
//! regulariser (docs/spec/geometry_infogancr.md §B.1); the D step with the Gs EMA update, then the G step. The
//! losses and their gradients come from [`super::loss::Loss`]; a step draws its inputs, applies the optimiser and
//! adds what is logged to the tick's statistics.

use super::loss::{judge_loss, CrTerm, HpTerm};
use super::Trainer;
use crate::checkpoint::snapshots_in;
use crate::core::cr::{gaussian_pairs, CrPairs};
use crate::core::rng::mix64;
use crate::core::schedule::hp_layer_gate;
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Per-iteration seed of libtorch's generator: the run seed mixed with the iteration (SplitMix64's output
/// function), so every draw is reproducible after a resume without saving the generator's state.
pub(super) fn iteration_seed(seed: u64, iteration: u64) -> i64 {
    (mix64(seed ^ iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 1) as i64
}

impl Trainer {
    /// One D step (with the Gs EMA update) and one G step (docs/spec/progan_hp.md §2.3).
    pub fn iteration(&mut self, lod: f64, data_res: i64, minibatch: i64) -> Result<()> {
        tch::manual_seed(iteration_seed(self.cfg.seed, self.state.iteration));
        if self.models.h.is_some() {
            self.h_step(lod, minibatch)?;
        }
        self.d_step(lod, data_res, minibatch)?;
        self.g_step(lod, minibatch, true)?;
        self.state.iteration += 1;
        Ok(())
    }

    /// CR pairs of `n` rows at the current gap (docs/spec/geometry_infogancr.md §B.1, `core::cr::gaussian_pairs`).
    /// `n` is the global minibatch; a data-parallel rank keeps its rows.
    fn cr_pairs(&self, n: i64, gap: f64) -> CrPairs {
        let pairs = gaussian_pairs(
            n,
            self.cfg.nz,
            self.cfg.cr_code_count(),
            gap,
            self.cfg.cr_share_noise,
            self.device,
        );
        let shard = self.loss.shard;
        CrPairs {
            first: shard.take(pairs.first, 0),
            second: shard.take(pairs.second, 0),
            shared: shard.take(pairs.shared, 0),
        }
    }

    /// `[minibatch, nz]` standard-normal latents of the global batch; this rank's rows of them.
    fn latents(&self, minibatch: i64) -> Tensor {
        let z = Tensor::randn([minibatch, self.cfg.nz], (Kind::Float, self.device));
        self.loss.shard.take(z, 0)
    }

    /// Averages a flat gradient over the data-parallel ranks, in place (nothing in a one-process run): the
    /// reference summed the per-GPU gradients and scaled them by 1/num_gpus (docs/spec/progan_hp.md §2.3).
    fn average_grads(&self, grads: &Tensor) -> Result<()> {
        match &self.group {
            Some(group) => group.all_reduce_mean_(grads),
            None => Ok(()),
        }
    }

    /// The H step of the contrastive regulariser: H learns which code G's pairs share (G is not updated). H is
    /// restarted (weights and Adam state) whenever the CR phase changes: the weight turns on, the gap ends.
    pub fn h_step(&mut self, lod: f64, minibatch: i64) -> Result<()> {
        let phase = self.cfg.cr_phase(self.state.cur_nimg);
        let (_, gap) = self.cfg.cr_weight_and_gap(self.state.cur_nimg);
        let h = self.models.h.as_mut().expect("CR is on");
        if self.state.cr_phase != Some(phase) {
            if self.state.cr_phase.is_some() {
                h.restart(&self.cfg);
                log::info!(
                    "CR phase {phase} at {:.1} kimg: H re-initialised",
                    self.state.cur_nimg as f64 / 1000.0
                );
            }
            self.state.cr_phase = Some(phase);
        }
        let pairs = self.cr_pairs(minibatch, gap);
        let g = &self.models.g;
        let (a, b) = tch::no_grad(|| {
            (
                g.forward(&pairs.first, lod, true),
                g.forward(&pairs.second, lod, true),
            )
        });
        let h = self.models.h.as_mut().expect("CR is on");
        let (loss, accuracy) = judge_loss(&h.forward(&a, &b, lod, self.loss.chunks), &pairs.shared);
        let grads = Tensor::run_backward(&[&loss], &h.params.params, false, false);
        let flat = h.params.flatten_grads(&grads);
        self.average_grads(&flat)?;
        let h = self.models.h.as_mut().expect("CR is on");
        h.opt.step(&h.params, &flat);
        self.stats.add("Loss/H", &loss);
        self.stats.add("Accuracy/H", &accuracy);
        Ok(())
    }

    /// The D step: WGAN-GP on reals and fakes from G (+ InfoGAN MSE), docs/spec/progan_hp.md §3.2, §3.4; then
    /// the Gs EMA update (§2.4).
    pub fn d_step(&mut self, lod: f64, data_res: i64, minibatch: i64) -> Result<()> {
        let level = data_res.trailing_zeros();
        debug_assert_eq!(
            level,
            crate::data::reals::level_for_lod(lod, self.sched.log2_resolution() as u32)
        );
        let reals = self.loader.next_batch(level, minibatch as usize)?;
        let reals = if self.device.is_cuda() {
            // Page-locked staging and an asynchronous copy: the host does not wait for the GPU here.
            reals
                .pin_memory(self.device)
                .to_device_(self.device, reals.kind(), true, false)
        } else {
            reals
        };
        let reals = crate::data::reals::process_reals(&reals, lod);
        let z = self.latents(minibatch);
        let out = self.loss.d_loss(&self.models, &reals, &z, lod);
        self.average_grads(&out.grads)?;
        self.models.opt_d.step(&self.models.d_params, &out.grads);
        self.models
            .gs_params
            .ema_from(&self.models.g_params, self.sched.ema_beta(minibatch));

        let stats = &mut self.stats;
        if let Some(mi) = &out.infogan {
            stats.add("Loss/InfoGAN", mi);
        }
        stats.add("Loss/D", &out.loss);
        let w = &out.wgan;
        stats.add("Loss/scores/real", &w.real_scores.mean(Kind::Float));
        stats.add("Loss/scores/fake", &w.fake_scores.mean(Kind::Float));
        stats.add("Loss/scores/mixed", &w.mixed_scores.mean(Kind::Float));
        stats.add("Loss/mixed_norms", &w.mixed_norms.mean(Kind::Float));
        // The drift term before its weight, as the reference logs it (§2.7, §3.2).
        stats.add(
            "Loss/epsilon_penalty",
            &w.real_scores.square().mean(Kind::Float),
        );
        self.state.cur_nimg += minibatch as u64;
        Ok(())
    }

    /// The G step: WGAN + λ_t·HP (+ InfoGAN MSE) on a fresh z, docs/spec/progan_hp.md §3.1, §3.3. `with_hp =
    /// false` leaves the penalty out whatever its weight (the benchmark's "without HP" variant).
    pub fn g_step(&mut self, lod: f64, minibatch: i64, with_hp: bool) -> Result<()> {
        let hp_w = self.hp_weight_now();
        let z = self.latents(minibatch);
        let net = self.cfg.net();
        let gates: Vec<(usize, f64)> = self
            .hp_layers
            .iter()
            .map(|&l| {
                let res = net.hp_layer_resolution(l);
                (l, hp_layer_gate(self.sched.log2_resolution(), res, lod))
            })
            .filter(|&(_, w)| w > 0.0)
            .collect();
        let hp = (with_hp && hp_w > 0.0 && !gates.is_empty()).then_some(HpTerm {
            gates: &gates,
            weight: hp_w,
        });
        let (cr_weight, gap) = self.cfg.cr_weight_and_gap(self.state.cur_nimg);
        let pairs =
            (cr_weight > 0.0 && self.models.h.is_some()).then(|| self.cr_pairs(minibatch, gap));
        let cr = pairs.as_ref().map(|pairs| CrTerm {
            pairs,
            judge: self.models.h.as_ref().expect("CR is on"),
            weight: cr_weight,
        });
        let out = self.loss.g_loss(&self.models, &z, lod, hp, cr)?;
        if let Some(c) = &out.cr {
            self.stats.add("Loss/CR", c);
        }
        self.average_grads(&out.grads)?;
        self.models.opt_g.step(&self.models.g_params, &out.grads);

        for (&(l, _), p) in gates.iter().zip(&out.hp_per_layer) {
            let key = format!("HessianPenalties/{}", net.hp_layer_name(l));
            self.stats.add(&key, p);
        }
        if let Some(total) = &out.hp_total {
            self.stats.add("Loss/hessian_penalty", total);
        }
        self.stats.add("Loss/G", &out.score_loss);
        Ok(())
    }

    /// Logs skipped updates, and stops with a clear message when they keep being skipped for non-finite gradients
    /// (§2.3): the message names the last good snapshot, from which `--resume` continues.
    pub(super) fn check_skips(&mut self) -> Result<()> {
        let g = self.models.opt_g.consecutive_skips.double_value(&[]);
        let d = self.models.opt_d.consecutive_skips.double_value(&[]);
        if g > 0.0 || d > 0.0 {
            log::warn!(
                "updates skipped for non-finite gradients at {:.1} kimg: G {g} in a row ({} in total), D {d} in a \
                 row ({} in total)",
                self.state.cur_nimg as f64 / 1000.0,
                self.models.opt_g.skipped.double_value(&[]),
                self.models.opt_d.skipped.double_value(&[])
            );
        }
        let worst = g.max(d) as i64;
        if worst >= self.cfg.max_consecutive_skips {
            let last = snapshots_in(&self.run_dir)?
                .pop()
                .or_else(|| self.resumed_from.clone());
            let message = format!(
                "{worst} consecutive updates of {} had non-finite gradients at {:.1} kimg; stopping. The last good \
                 snapshot is {}. Try a smaller --hp-lambda or a larger --epsilon",
                if g >= d { "G" } else { "D" },
                self.state.cur_nimg as f64 / 1000.0,
                last.map_or("(none yet)".to_string(), |p| p.display().to_string())
            );
            log::error!("{message}");
            bail!(message);
        }
        Ok(())
    }
}
