//! The InfoGAN-CR trainer (docs/spec/geometry_infogancr.md §B.1), with exact resume.
//!
//! `CrTrainer::train` reads top to bottom: set-up → the loop of iterations → every `log_every` the log line and
//! TensorBoard scalars, every `image_every` the traversal grid, every `snapshot_every` (and at the end, and just
//! before the first CR increase) a snapshot. One iteration, in the reference's order:
//! 1. the schedule: at a CR weight increase or a gap decrease, H is re-initialised (weights and Adam state);
//! 2. one H step: softmax cross-entropy of "which code do the two images of a pair share";
//! 3. one D/Q step: non-saturating GAN loss on reals and fakes, plus `info_coe_infod` × Q's Gaussian negative
//!    log-likelihood of the fakes' codes (Q learns from fakes only);
//! 4. `g_steps` G steps: non-saturating loss + `info_coe_de` × Q's NLL + `cr_coe` × H's cross-entropy on pairs;
//! 5. one power iteration of every spectral norm of D/Q and H.
//!
//! Every iteration seeds libtorch's generator from (seed, iteration), and the loader's position is saved, so a run
//! resumed from a snapshot draws exactly what the uninterrupted run drew.
//!
//! Where we differ from the reference on purpose: the GAN losses are computed from D's logits
//! (`softplus(−l) = −log σ(l)`), not as `log(σ(l) + 1e-8)` — the same loss without the floor, and without its
//! saturation; the traversal grids are not min-max normalised per grid (G's sigmoid images are shown as they are).

use super::loss::judge_loss;
use super::report::{self, format_duration, TickStats};
use super::steps::iteration_seed;
use crate::checkpoint::infogan_cr::{
    save_snapshot, snapshot_name, CrModels, CrState, LoadedCrSnapshot,
};
use crate::checkpoint::snapshots_in;
use crate::config::infogan_cr::CrConfig;
use crate::core::cr::{CrLatents, CrSchedule};
use crate::core::device::{device_name, short_description};
use crate::data::{Dataset, Loader};
use crate::io::imageio;
use crate::io::tensorboard::EventWriter;
use crate::metrics::encoder::{score_encoder, EncoderOptions};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// How often (in iterations) the consecutive-skip counters are read back from the device.
const SKIP_CHECK_ITERATIONS: u64 = 64;
/// Values per code and random bases (rows) of a traversal grid (§B.1 "Traversal grids").
const TRAVERSAL_STEPS: i64 = 10;
const TRAVERSAL_BASES: i64 = 10;

/// Q's negative log-likelihood of `codes` under unit-variance Gaussians centred on `q`: summed over the codes,
/// averaged over the batch (§B.1 "Losses"), with the constant ½·ln 2π per code.
pub fn gaussian_nll(q: &Tensor, codes: &Tensor) -> Tensor {
    let per_code = (q - codes).square() * 0.5 + 0.5 * (2.0 * std::f64::consts::PI).ln();
    per_code
        .sum_dim_intlist(1, false, Kind::Float)
        .mean(Kind::Float)
}

/// An InfoGAN-CR run in progress.
pub struct CrTrainer {
    cfg: CrConfig,
    device: Device,
    dataset: Arc<Dataset>,
    loader: Loader,
    models: CrModels,
    state: CrState,
    run_dir: PathBuf,
    latents: CrLatents,
    schedule: CrSchedule,
    /// Base latents of the traversal grids, drawn once from the run seed.
    traversal_bases: Tensor,
    stats: TickStats,
    events: EventWriter,
    resumed_from: Option<PathBuf>,
    _log: crate::io::log::Tee,
}

impl CrTrainer {
    /// Networks (fresh from `cfg.seed`, or `resumed`), optimisers and loader for a run in `run_dir` (which must
    /// exist).
    pub fn new(
        cfg: CrConfig,
        device: Device,
        dataset: Arc<Dataset>,
        run_dir: PathBuf,
        resumed: Option<LoadedCrSnapshot>,
    ) -> Result<Self> {
        crate::core::precision::set_strict_fp32();
        let log = crate::io::log::tee_to(&run_dir.join("log.txt"))?;
        tch::manual_seed(iteration_seed(cfg.seed, u64::MAX));
        let mut models = CrModels::new(&cfg, device);
        let latents = cfg.latents();
        let traversal_bases = latents.sample(TRAVERSAL_BASES, device);
        let (state, loader) = match &resumed {
            Some(snap) => {
                models.load(&snap.tensors, &snap.path)?;
                log::info!(
                    "resumed from {} after {} iterations",
                    snap.path.display(),
                    snap.state.iteration
                );
                let loader =
                    Loader::with_state(dataset.clone(), cfg.seed, snap.state.loader.clone())?;
                (snap.state.clone(), loader)
            }
            None => (CrState::default(), Loader::new(dataset.clone(), cfg.seed)),
        };
        log::info!(
            "InfoGAN-CR run {} on {} ({}), dataset {} ({} images), {} codes + {} noise at {}²",
            run_dir.display(),
            device_name(device),
            short_description(device),
            cfg.dataset,
            dataset.count(),
            cfg.codes,
            cfg.noise,
            cfg.resolution
        );
        for e in cfg.schedule().events(cfg.iterations) {
            log::info!(
                "schedule: at iteration {} cr_coe {} gap {} ({})",
                e.iteration,
                e.cr_coe,
                e.gap,
                e.what
            );
        }
        Ok(CrTrainer {
            schedule: cfg.schedule(),
            events: EventWriter::create(&run_dir)?,
            latents,
            traversal_bases,
            cfg,
            device,
            dataset,
            loader,
            models,
            state,
            run_dir,
            stats: TickStats::default(),
            resumed_from: resumed.map(|s| s.path),
            _log: log,
        })
    }

    pub fn models(&self) -> &CrModels {
        &self.models
    }

    pub fn state(&self) -> &CrState {
        &self.state
    }

    /// The whole run, until `iterations`, `abort.txt` or Ctrl-C (which stop after a snapshot).
    pub fn train(&mut self) -> Result<()> {
        report::install_ctrlc();
        anyhow::ensure!(
            self.state.iteration < self.cfg.iterations,
            "iterations {} is not beyond the resumed snapshot's {}; raise --set iterations=N",
            self.cfg.iterations,
            self.state.iteration
        );
        self.write_reals_grid()?;
        self.write_traversals()?;
        let bar = crate::io::progress::bar(Some(self.cfg.iterations), "iterations");
        bar.set_position(self.state.iteration);
        let start = Instant::now();
        let mut window = (self.state.iteration, Instant::now());
        let mut since_score = 0u64;
        while self.state.iteration < self.cfg.iterations {
            let t = self.state.iteration;
            let baseline = self.run_dir.join(snapshot_name(t));
            if self.schedule.first_increase() == Some(t) && t > 0 && !baseline.exists() {
                // The "InfoGAN (modified)" baseline: the run just before CR starts (unless a regular snapshot of
                // this iteration is already there).
                self.save()?;
            }
            self.iteration()?;
            bar.set_position(self.state.iteration);
            let t = self.state.iteration;
            if t.is_multiple_of(SKIP_CHECK_ITERATIONS) {
                self.check_skips()?;
            }
            let done = t >= self.cfg.iterations;
            let stop = report::stop_request(&self.run_dir);
            if t.is_multiple_of(self.cfg.log_every) || done || stop.is_some() {
                let seconds = window.1.elapsed().as_secs_f64();
                let rate = (t - window.0) as f64 / seconds.max(1e-9);
                window = (t, Instant::now());
                let line = self.log_line(rate)?;
                log::info!("{line}");
                bar.set_message(line);
            }
            if self.cfg.image_every > 0 && t.is_multiple_of(self.cfg.image_every) {
                self.write_traversals()?;
            }
            if t.is_multiple_of(self.cfg.snapshot_every) || done || stop.is_some() {
                let snapshot = self.save()?;
                since_score += 1;
                if self.cfg.score_ticks > 0
                    && (since_score >= self.cfg.score_ticks || done)
                    && stop.is_none()
                {
                    since_score = 0;
                    if let Err(e) = self.compute_scores(&snapshot) {
                        log::warn!(
                            "the scores of {} failed, training goes on: {e:#}",
                            snapshot.display()
                        );
                    }
                }
            }
            if let Some(reason) = stop {
                bar.abandon();
                log::info!("stopped ({reason}) after {t} iterations; resume with --resume-exp");
                return Ok(());
            }
        }
        bar.finish();
        if self.cfg.image_every == 0 || !self.cfg.iterations.is_multiple_of(self.cfg.image_every) {
            // The loop wrote this grid already when the last iteration was an image iteration.
            self.write_traversals()?;
        }
        crate::io::fs::write_bytes_atomic(&self.run_dir.join("_finished.txt"), b"")?;
        log::info!(
            "done: {} in {}",
            self.run_dir.display(),
            format_duration(start.elapsed().as_secs_f64())
        );
        Ok(())
    }

    /// One iteration: schedule, H step, D/Q step, G steps, spectral-norm updates.
    pub fn iteration(&mut self) -> Result<()> {
        let t = self.state.iteration;
        tch::manual_seed(iteration_seed(self.cfg.seed, t));
        if self.schedule.resets_h(t) {
            self.models.reinit_h(&self.cfg);
            log::info!(
                "iteration {t}: cr_coe {} gap {}; H re-initialised",
                self.schedule.cr_coe(t),
                self.schedule.gap(t)
            );
        }
        let (cr_coe, gap) = (self.schedule.cr_coe(t), self.schedule.gap(t));
        self.h_step(cr_coe, gap);
        self.d_step()?;
        for _ in 0..self.cfg.g_steps {
            self.g_step(cr_coe, gap);
        }
        // §B.1 step 4, §B.6: once per iteration, after the optimiser steps.
        self.models.d.update_spectral_norms();
        self.models.h.update_spectral_norms();
        self.state.iteration += 1;
        Ok(())
    }

    /// Images of both halves of `n` CR pairs; G's batch norm uses batch statistics only while CR is on (§B.1).
    fn pair_images(&self, n: i64, gap: f64, cr_coe: f64) -> (Tensor, Tensor, Tensor) {
        let pairs = self.latents.sample_pairs(n, gap, self.device);
        let train = cr_coe > 0.0;
        let a = self.models.g.forward_t(&pairs.first, train);
        let b = self.models.g.forward_t(&pairs.second, train);
        (a, b, pairs.shared)
    }

    fn h_step(&mut self, cr_coe: f64, gap: f64) {
        let (a, b, shared) = tch::no_grad(|| self.pair_images(self.cfg.cr_batch, gap, cr_coe));
        let (loss, accuracy) = judge_loss(&self.models.h.forward(&a, &b), &shared);
        let grads = Tensor::run_backward(&[&loss], &self.models.h_params.params, false, false);
        let flat = self.models.h_params.flatten_grads(&grads);
        self.models.opt_h.step(&self.models.h_params, &flat);
        self.stats.add("Loss/H", &loss);
        self.stats.add("Accuracy/H", &accuracy);
    }

    fn d_step(&mut self) -> Result<()> {
        let log2 = self.cfg.resolution.trailing_zeros();
        let reals = self.loader.next_batch(log2, self.cfg.batch as usize)?;
        let reals = reals.to_device(self.device).to_kind(Kind::Float) / 255.0;
        let latents = self.latents.sample(self.cfg.batch, self.device);
        let fakes = tch::no_grad(|| self.models.g.forward_t(&latents, true));
        let (real_logit, _) = self.models.d.forward(&reals);
        let (fake_logit, q) = self.models.d.forward(&fakes);
        let gan =
            (-&real_logit).softplus().mean(Kind::Float) + fake_logit.softplus().mean(Kind::Float);
        let info = gaussian_nll(&q, &latents.narrow(1, 0, self.cfg.codes));
        let loss = &gan + &info * self.cfg.info_coe_infod;
        let grads = Tensor::run_backward(&[&loss], &self.models.d_params.params, false, false);
        let flat = self.models.d_params.flatten_grads(&grads);
        self.models.opt_d.step(&self.models.d_params, &flat);
        self.stats.add("Loss/D", &gan);
        self.stats.add("Loss/info_D", &info);
        self.stats
            .add("D/real", &real_logit.sigmoid().mean(Kind::Float));
        self.stats
            .add("D/fake", &fake_logit.sigmoid().mean(Kind::Float));
        Ok(())
    }

    fn g_step(&mut self, cr_coe: f64, gap: f64) {
        let latents = self.latents.sample(self.cfg.batch, self.device);
        let fakes = self.models.g.forward_t(&latents, true);
        let (fake_logit, q) = self.models.d.forward(&fakes);
        let gan = (-&fake_logit).softplus().mean(Kind::Float);
        let info = gaussian_nll(&q, &latents.narrow(1, 0, self.cfg.codes));
        let mut loss = &gan + &info * self.cfg.info_coe_de;
        if cr_coe > 0.0 {
            // With weight 0 the term adds nothing to G's gradient; the reference computes it anyway.
            let (a, b, shared) = self.pair_images(self.cfg.cr_batch, gap, cr_coe);
            let (cr, _) = judge_loss(&self.models.h.forward(&a, &b), &shared);
            loss += &cr * cr_coe;
            self.stats.add("Loss/CR", &cr);
        }
        let grads = Tensor::run_backward(&[&loss], &self.models.g_params.params, false, false);
        let flat = self.models.g_params.flatten_grads(&grads);
        self.models.opt_g.step(&self.models.g_params, &flat);
        self.stats.add("Loss/G", &gan);
        self.stats.add("Loss/info_G", &info);
    }

    /// The log line of the scalars since the last one, also written to TensorBoard.
    fn log_line(&mut self, rate: f64) -> Result<String> {
        let t = self.state.iteration;
        let mut stats = self.stats.take();
        stats.push((
            "Schedule/cr_coe".into(),
            self.schedule.cr_coe(t.saturating_sub(1)),
        ));
        stats.push((
            "Schedule/gap".into(),
            self.schedule.gap(t.saturating_sub(1)),
        ));
        stats.push(("Timing/iterations_per_second".into(), rate));
        self.events.scalars(t as i64, &stats)?;
        self.events.flush()?;
        let get = |k: &str| stats.iter().find(|(n, _)| n == k).map_or(f64::NAN, |v| v.1);
        Ok(format!(
            "it {t}/{} | D {:.3} G {:.3} info {:.3} | H {:.3} acc {:.2} | cr_coe {} gap {} | {rate:.1} it/s",
            self.cfg.iterations,
            get("Loss/D"),
            get("Loss/G"),
            get("Loss/info_G"),
            get("Loss/H"),
            get("Accuracy/H"),
            get("Schedule/cr_coe"),
            get("Schedule/gap"),
        ))
    }

    /// 64 real images, once per run.
    fn write_reals_grid(&mut self) -> Result<()> {
        let path = self.run_dir.join("reals.png");
        if path.exists() {
            return Ok(());
        }
        let log2 = self.cfg.resolution.trailing_zeros();
        let n = self.dataset.count().min(64) as u32;
        let indices: Vec<u32> = (0..n).collect();
        let x = self.dataset.level(log2)?.tensor(&indices);
        imageio::save_png(&imageio::grid(&x, 8, 1, 0)?, &path)
    }

    /// `traversal-<iterations>.png`: per code a 10 × 10 grid, rows = the run's fixed random bases, columns = the code
    /// at 10 values from −1 to 1 (§B.1), the codes side by side.
    fn write_traversals(&self) -> Result<()> {
        let path = self
            .run_dir
            .join(format!("traversal-{:09}.png", self.state.iteration));
        let k = self.cfg.codes;
        let values = Tensor::linspace(-1.0, 1.0, TRAVERSAL_STEPS, (Kind::Float, self.device));
        let mut panels = Vec::new();
        for code in 0..k {
            // Row-major: base b, value v.
            let z = self
                .traversal_bases
                .unsqueeze(1)
                .repeat([1, TRAVERSAL_STEPS, 1]);
            z.select(2, code)
                .copy_(&values.unsqueeze(0).expand([TRAVERSAL_BASES, -1], false));
            let images = tch::no_grad(|| {
                self.models
                    .g
                    .forward_t(&z.view([-1, k + self.cfg.noise]), false)
            });
            let u8s = imageio::float_to_u8(&(images * 2.0 - 1.0));
            panels.push(imageio::grid(&u8s, TRAVERSAL_STEPS as usize, 1, 0)?);
        }
        imageio::save_png(&imageio::hstack(&panels, 6, 255), &path)
    }

    /// `network-snapshot-<iterations>.safetensors` with the optimiser states and the loader position.
    fn save(&mut self) -> Result<PathBuf> {
        self.state.loader = self.loader.state();
        let path = self.run_dir.join(snapshot_name(self.state.iteration));
        save_snapshot(&path, &self.models, &self.cfg, &self.state)?;
        log::info!("snapshot {}", path.display());
        Ok(path)
    }

    /// Q's disentanglement scores on the dataset (the reference's metric log every 400 batches, §B.1), into the log,
    /// TensorBoard `Scores/*` and `<snapshot stem>-scores.json`.
    fn compute_scores(&mut self, snapshot: &std::path::Path) -> Result<()> {
        let opts = EncoderOptions {
            samples: self.cfg.score_samples,
            groups: self.cfg.score_groups,
            seed: self.cfg.seed,
            ..EncoderOptions::default()
        };
        let log2 = self.cfg.resolution.trailing_zeros();
        let d = &self.models.d;
        let encode = |x: &Tensor| tch::no_grad(|| d.forward(&((x + 1.0) / 2.0)).1);
        let result = score_encoder(&encode, &self.dataset, log2, &opts, self.device)?;
        let s = &result.scores;
        let mut scalars = vec![
            ("Scores/MIG".to_string(), s.mig),
            ("Scores/SAP".to_string(), s.sap),
            (
                "Scores/DCI_disentanglement".to_string(),
                s.dci_lasso_disentanglement,
            ),
            ("Scores/modularity".to_string(), s.modularity),
            ("Scores/explicitness".to_string(), s.explicitness),
        ];
        if let Some(f) = s.factor_vae {
            scalars.push(("Scores/FactorVAE".to_string(), f));
        }
        self.events.scalars(self.state.iteration as i64, &scalars)?;
        self.events.flush()?;
        let line: Vec<String> = scalars
            .iter()
            .map(|(k, v)| format!("{} {v:.3}", k.trim_start_matches("Scores/")))
            .collect();
        log::info!(
            "scores after {} iterations: {}",
            self.state.iteration,
            line.join(", ")
        );
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "snapshot": snapshot,
            "iteration": self.state.iteration,
            "encoder": "Q head on real images",
            "scores": result,
        }))?;
        crate::io::fs::write_bytes_atomic(
            &crate::metrics::suite::beside(snapshot, "scores.json"),
            json.as_bytes(),
        )
    }

    /// Logs skipped updates, and stops when one network's updates keep being skipped; names the last good
    /// snapshot.
    fn check_skips(&mut self) -> Result<()> {
        let runs = [
            ("G", &self.models.opt_g),
            ("D/Q", &self.models.opt_d),
            ("H", &self.models.opt_h),
        ]
        .map(|(n, o)| {
            (
                n,
                o.consecutive_skips.double_value(&[]),
                o.skipped.double_value(&[]),
            )
        });
        if runs.iter().any(|r| r.1 > 0.0) {
            let parts: Vec<String> = runs
                .iter()
                .map(|(n, row, total)| format!("{n} {row} in a row ({total} in total)"))
                .collect();
            log::warn!(
                "updates skipped for non-finite gradients after {} iterations: {}",
                self.state.iteration,
                parts.join(", ")
            );
        }
        let (name, worst, _) = runs
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("three networks");
        if worst as u64 >= self.cfg.max_consecutive_skips {
            let last = snapshots_in(&self.run_dir)?
                .pop()
                .or_else(|| self.resumed_from.clone());
            let message = format!(
                "{worst} consecutive updates of {name} had non-finite gradients after {} iterations; stopping. \
                 The last good snapshot is {}. Try smaller learning rates or CR weight",
                self.state.iteration,
                last.map_or("(none yet)".to_string(), |p| p.display().to_string())
            );
            log::error!("{message}");
            bail!(message);
        }
        Ok(())
    }
}
