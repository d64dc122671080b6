//! What a run reports (docs/spec/progan_hp.md §2.7, §7.2): the device-side tick statistics, the tick line, the
//! TensorBoard scalars, the reals/fakes grids, the traversal GIFs, the metric ticks, and the stop requests
//! (Ctrl-C, `abort.txt`).

use super::Trainer;
use crate::checkpoint::reference::describe;
use crate::core::schedule::Phase;
use crate::core::traversal;
use crate::io::imageio;
use crate::metrics::encoder_free::{score_generator, EncoderFreeOptions};
use crate::metrics::suite::{append_jsonl, beside, header, record, unix_time};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Kind, Tensor};

/// The collapse guard fires when the fakes vary less than this fraction of the reals' per-pixel std …
pub const COLLAPSE_RATIO: f64 = 0.1;
/// … for this many ticks in a row.
pub const COLLAPSE_TICKS: u32 = 2;

/// Mean over pixels and channels of the per-pixel standard deviation across a batch of images `[N, C, H, W]`: how
/// much the images differ from each other (0 for identical images).
pub fn diversity(images: &Tensor) -> f64 {
    if images.size()[0] < 2 {
        return 0.0;
    }
    images
        .to_kind(Kind::Float)
        .std_dim(0, false, false)
        .mean(Kind::Double)
        .double_value(&[])
}

/// Counts the ticks whose diversity ratio is under [`COLLAPSE_RATIO`]; warns once per run.
#[derive(Debug, Default)]
pub struct CollapseGuard {
    low_ticks: u32,
    warned: bool,
}

impl CollapseGuard {
    /// Records one tick's ratio; `Some(ticks)` when the warning is due (once).
    pub fn update(&mut self, ratio: f64) -> Option<u32> {
        if ratio < COLLAPSE_RATIO || !ratio.is_finite() {
            self.low_ticks += 1;
        } else {
            self.low_ticks = 0;
        }
        if self.low_ticks >= COLLAPSE_TICKS && !self.warned {
            self.warned = true;
            return Some(self.low_ticks);
        }
        None
    }
}

/// Set by Ctrl-C: stop at the next safe point after a snapshot.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler once per process: the first Ctrl-C asks the run to stop after its next snapshot,
/// a second one exits at once.
pub fn install_ctrlc() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            log::warn!("interrupted: stopping after the next snapshot (Ctrl-C again to stop now)");
        });
    });
}

/// Why the run should stop at this tick, if it should: `abort.txt` in the run directory (§2.7) or Ctrl-C.
pub fn stop_request(run_dir: &Path) -> Option<String> {
    if run_dir.join("abort.txt").exists() {
        Some("abort.txt found".into())
    } else if INTERRUPTED.load(Ordering::SeqCst) {
        Some("interrupted".into())
    } else {
        None
    }
}

/// Device-side running sums of the scalars logged per tick; read back only at ticks, so the inner loop never
/// waits for the device.
#[derive(Default)]
pub struct TickStats {
    sums: Vec<(String, Tensor)>,
    counts: HashMap<String, u64>,
}

impl TickStats {
    pub fn add(&mut self, key: &str, value: &Tensor) {
        let v = value.detach().to_kind(Kind::Float);
        match self.sums.iter_mut().find(|(k, _)| k == key) {
            Some((_, s)) => *s += v,
            None => self.sums.push((key.to_string(), v)),
        }
        *self.counts.entry(key.to_string()).or_default() += 1;
    }

    /// Means over the tick (one host read per key) and a reset.
    pub fn take(&mut self) -> Vec<(String, f64)> {
        let out = self
            .sums
            .iter()
            .map(|(k, s)| (k.clone(), s.double_value(&[]) / self.counts[k] as f64))
            .collect();
        self.sums.clear();
        self.counts.clear();
        out
    }
}

/// One tick's timing, as the tick line and TensorBoard report it.
pub(super) struct TickTiming {
    pub tick: i64,
    /// Seconds since the run (this process) started.
    pub total: f64,
    /// Seconds and kimg of this tick.
    pub seconds: f64,
    pub kimg: f64,
}

impl TickTiming {
    fn sec_per_kimg(&self) -> f64 {
        self.seconds / self.kimg.max(1e-9)
    }
}

impl Trainer {
    /// The tick line (§2.7) and the progress bar's message.
    pub(super) fn tick_line(
        &self,
        t: &TickTiming,
        phase: &Phase,
        hp_w: f64,
        stats: &[(String, f64)],
    ) -> (String, String) {
        let line = format!(
            "tick {:<5} kimg {:<8.1} lod {:<5.2} minibatch {:<4} hessian_weight {:<7.4} time {:<9} sec/tick {:<7.1} \
             sec/kimg {:<7.2} {}",
            t.tick,
            self.state.cur_nimg as f64 / 1000.0,
            phase.lod,
            phase.minibatch,
            hp_w,
            format_duration(t.total),
            t.seconds,
            t.sec_per_kimg(),
            stats
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let message = format!(
            "lod {:.2} batch {} {:.1} s/kimg hp_w {:.3}",
            phase.lod,
            phase.minibatch,
            t.sec_per_kimg(),
            hp_w
        );
        (line, message)
    }

    /// TensorBoard scalars for the tick under the reference's keys (§2.7), step = images shown.
    pub(super) fn log_tick_scalars(
        &mut self,
        stats: &[(String, f64)],
        phase: &Phase,
        hp_w: f64,
        t: &TickTiming,
    ) -> Result<()> {
        let mut values: Vec<(String, f64)> = stats.to_vec();
        let skipped_g = self.models.opt_g.skipped.double_value(&[]);
        let skipped_d = self.models.opt_d.skipped.double_value(&[]);
        let its = self.state.iteration.max(1) as f64;
        let lr = self.cfg.learning_rate;
        values.extend([
            ("Progress/lod".to_string(), phase.lod),
            ("Progress/minibatch".to_string(), phase.minibatch as f64),
            ("Progress/hessian_weight".to_string(), hp_w),
            (
                "Progress/kimg".to_string(),
                self.state.cur_nimg as f64 / 1000.0,
            ),
            ("Timing/sec_per_tick".to_string(), t.seconds),
            ("Timing/sec_per_kimg".to_string(), t.sec_per_kimg()),
            ("TrainG/learning_rate".to_string(), lr),
            ("TrainD/learning_rate".to_string(), lr),
            ("TrainG/overflow_frequency".to_string(), skipped_g / its),
            ("TrainD/overflow_frequency".to_string(), skipped_d / its),
        ]);
        if let Some(peak) = crate::core::device::peak_memory_gb(self.device) {
            values.push(("Resources/peak_gpu_mem_gb".to_string(), peak));
        }
        self.events
            .as_mut()
            .expect(super::WRITER_ONLY)
            .scalars(self.state.cur_nimg as i64, &values)?;
        self.events.as_mut().expect(super::WRITER_ONLY).flush()
    }

    /// FID / PPL of Gs with the run's seed (§2.7, §8): `Metrics/<name>` in TensorBoard, a line in the log, and the
    /// records next to the snapshot and in `<results>/metrics.jsonl`.
    pub(super) fn compute_metrics(&mut self, snapshot: &Path) -> Result<()> {
        let Some(suite) = &self.metrics else {
            return Ok(());
        };
        let lod = self.current_lod();
        let seed = self.cfg.seed;
        let out = suite.run(&self.models.gs, lod, Some(&self.dataset), seed, None)?;
        let name = describe(snapshot).name;
        let mut h = header(&name, snapshot, lod, &self.cfg.net(), self.device, seed);
        let kimg = self.state.cur_nimg as f64 / 1000.0;
        h.insert("kimg".into(), json!(kimg));
        record(snapshot, h, &out, &self.cfg.results_dir)?;
        let values: Vec<(String, f64)> = out
            .values()
            .into_iter()
            .map(|(k, v)| (format!("Metrics/{k}"), v))
            .collect();
        self.events
            .as_mut()
            .expect(super::WRITER_ONLY)
            .scalars(self.state.cur_nimg as i64, &values)?;
        self.events.as_mut().expect(super::WRITER_ONLY).flush()?;
        log::info!("metrics kimg {kimg:.1} {}", out.summary());
        Ok(())
    }

    /// The encoder-free disentanglement scores of Gs (`--score-ticks`, `metrics::encoder_free`) with the run's
    /// seed: `Scores/<name>` in TensorBoard, a line in the log, `scores` in the snapshot's metrics JSON and a line in
    /// `<results>/scores.jsonl`.
    pub(super) fn compute_scores(&mut self, snapshot: &Path) -> Result<()> {
        let Some(predictor) = &self.scorer else {
            return Ok(());
        };
        let lod = self.current_lod();
        let opts = EncoderFreeOptions {
            samples: self.cfg.score_samples,
            groups: self.cfg.score_groups,
            dhsic_rows: self.cfg.score_samples.min(1000),
            seed: self.cfg.seed,
            ..EncoderFreeOptions::default()
        };
        let gs = &self.models.gs;
        let g = |z: &Tensor| gs.forward(z, lod, true);
        let net = self.cfg.net();
        let t0 = std::time::Instant::now();
        let out = score_generator(&g, net.nz, predictor, &self.dataset, &opts, self.device)?;
        let kimg = self.state.cur_nimg as f64 / 1000.0;
        let s = &out.scores;
        let values = [
            ("factor_vae", out.factor_vae_z),
            ("mig", s.mig),
            ("sap", s.sap),
            ("modularity", s.modularity),
            ("explicitness", s.explicitness),
            ("dci_disentanglement", s.dci_lasso_disentanglement),
            ("dci_completeness", s.dci_lasso_completeness),
            ("effect_disentanglement", out.effect_disentanglement),
            ("effect_completeness", out.effect_completeness),
            ("effect_max", out.effect_max),
            ("predictor_frechet_distance", out.predictor_frechet_distance),
        ];
        let scalars: Vec<(String, f64)> = values
            .iter()
            .map(|(k, v)| (format!("Scores/{k}"), *v))
            .collect();
        self.events
            .as_mut()
            .expect(super::WRITER_ONLY)
            .scalars(self.state.cur_nimg as i64, &scalars)?;
        self.events.as_mut().expect(super::WRITER_ONLY).flush()?;
        log::info!(
            "scores kimg {kimg:.1} {} ({} samples, {:.1} s)",
            values
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect::<Vec<_>>()
                .join(" "),
            opts.samples,
            t0.elapsed().as_secs_f64()
        );
        let name = describe(snapshot).name;
        let mut h = header(&name, snapshot, lod, &net, self.device, self.cfg.seed);
        h.insert("kimg".into(), json!(kimg));
        h.insert("method".into(), json!("encoder-free"));
        h.insert("encoder_free".into(), serde_json::to_value(&out)?);
        let path = beside(snapshot, "metrics.json");
        let mut doc = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .unwrap_or_else(|| serde_json::Value::Object(h.clone()));
        doc["scores"] = serde_json::to_value(&out)?;
        // The collapse guard's reading of the same tick, so that a study can put quality, diversity and scores side
        // by side from one file.
        doc["diversity_ratio"] = json!(self.diversity_ratio);
        crate::io::fs::write_bytes_atomic(&path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
        h.insert("time".into(), json!(unix_time()));
        append_jsonl(
            &self.cfg.results_dir.join("scores.jsonl"),
            &serde_json::Value::Object(h),
        )
    }

    /// `reals.png`; returns the reals' [`diversity`], the yardstick of the collapse guard.
    pub(super) fn write_reals_grid(&mut self) -> Result<f64> {
        let (w, h) = grid_size(self.cfg.resolution);
        let n = (w * h).min(self.dataset.meta().count as i64);
        let level = self.cfg.resolution.trailing_zeros();
        let reals = self.dataset.first_images(level, n as usize)?;
        let reals = crate::data::reals::to_float(&reals);
        imageio::save_grid(&reals, w as usize, &self.run_dir.join("reals.png"))?;
        Ok(diversity(&reals))
    }

    /// `fakes<kimg>.png` from Gs on the fixed grid latents (§2.7), also as a TensorBoard image.
    /// Returns the fakes' [`diversity`].
    pub(super) fn write_fakes_grid(&mut self) -> Result<f64> {
        let (w, _) = grid_size(self.cfg.resolution);
        let lod = self.current_lod();
        let images = tch::no_grad(|| {
            let parts: Vec<Tensor> = self
                .grid_z
                .split(64, 0)
                .iter()
                .map(|z| self.models.gs.forward(z, lod, true))
                .collect();
            Tensor::cat(&parts, 0)
        });
        let kimg = self.state.cur_nimg / 1000;
        let path = self.run_dir.join(format!("fakes{kimg:06}.png"));
        imageio::save_grid(&images, w as usize, &path)?;
        let png =
            std::fs::read(&path).with_context(|| format!("cannot read back {}", path.display()))?;
        let img = image::load_from_memory(&png)?;
        self.events.as_mut().expect(super::WRITER_ONLY).image(
            self.state.cur_nimg as i64,
            "fakes",
            img.width(),
            img.height(),
            &png,
        )?;
        Ok(diversity(&images))
    }

    /// The collapse guard's tick: `Progress/diversity` (the fakes' per-pixel std over the grid latents) and
    /// `Progress/diversity_ratio` (relative to the reals') in TensorBoard, and one warning when the ratio stays
    /// under [`COLLAPSE_RATIO`] for [`COLLAPSE_TICKS`] ticks.
    pub(super) fn check_collapse(&mut self, fakes: f64) -> Result<()> {
        let ratio = fakes / self.real_diversity.max(1e-12);
        self.diversity_ratio = Some(ratio);
        self.events.as_mut().expect(super::WRITER_ONLY).scalars(
            self.state.cur_nimg as i64,
            &[
                ("Progress/diversity".to_string(), fakes),
                ("Progress/diversity_ratio".to_string(), ratio),
            ],
        )?;
        log::debug!(
            "diversity {fakes:.5} ({:.1} % of the reals')",
            100.0 * ratio
        );
        if let Some(ticks) = self.collapse.update(ratio) {
            log::warn!(
                "Gs's output barely depends on z: for {ticks} ticks its images vary {:.1} % as much as the reals \
                 (per-pixel std {fakes:.4} vs {:.4}); the generator is collapsing. With the Hessian Penalty the usual \
                 causes are a weight too large for the run's length (--hp-lambda), no ramp (--warmup-kimg), every \
                 layer regularised (--layers-to-reg; the paper leaves the last block and RGB free), or HP from \
                 scratch where fine-tuning a vanilla run works (train with --hp-lambda 0, then --resume-exp N \
                 --hp-lambda λ --warmup-kimg K)",
                100.0 * ratio,
                self.real_diversity
            );
        }
        Ok(())
    }

    /// Per-component traversal GIFs of Gs (§7.2: 24 steps, 8 samples, ±2, raw z with G's latent norm).
    pub(super) fn write_traversals(&mut self) -> Result<()> {
        let lod = self.current_lod();
        let kimg = self.state.cur_nimg / 1000;
        let dir = self.run_dir.join(format!("traversals{kimg:06}"));
        for i in 0..self.cfg.nz {
            let frames = traversal::sweep_frames(&self.interp_z, i, 24, 2.0, |z| {
                tch::no_grad(|| self.models.gs.forward(z, lod, true))
            });
            let path = dir.join(format!("z{i:03}.gif"));
            traversal::save_gif(&frames, 8, 24, &path)?;
            let gif = std::fs::read(&path)
                .with_context(|| format!("cannot read back {}", path.display()))?;
            let s = frames.size();
            let (w, h) = ((s[1] * s[4]) as u32, s[3] as u32);
            let tag = format!("z/z{i:03}");
            self.events.as_mut().expect(super::WRITER_ONLY).image(
                self.state.cur_nimg as i64,
                &tag,
                w,
                h,
                &gif,
            )?;
        }
        self.events.as_mut().expect(super::WRITER_ONLY).flush()
    }
}

/// The reference's '1080p' snapshot grid (§2.1): 1920×1080 worth of images, at least 7×4 and at most 32×32 —
/// capped here at 15×8 = 120 images so small-resolution runs stay quick.
pub fn grid_size(resolution: i64) -> (i64, i64) {
    let w = (1920 / resolution).clamp(7, 32).min(15);
    let h = (1080 / resolution).clamp(4, 32).min(8);
    (w, h)
}

/// `1h02m03s`, `4m05s` or `6s`.
pub fn format_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, (s / 60) % 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diversity_is_the_mean_per_pixel_std() {
        // Two images, 0 and 1 everywhere: per-pixel std (population) 0.5.
        let x = Tensor::cat(
            &[
                Tensor::zeros([1, 3, 4, 4], (Kind::Float, tch::Device::Cpu)),
                Tensor::ones([1, 3, 4, 4], (Kind::Float, tch::Device::Cpu)),
            ],
            0,
        );
        assert!((diversity(&x) - 0.5).abs() < 1e-7);
        assert_eq!(diversity(&x.narrow(0, 0, 1)), 0.0);
        assert_eq!(diversity(&x.narrow(0, 0, 1).repeat([5, 1, 1, 1])), 0.0);
    }

    #[test]
    fn the_guard_warns_once_after_two_low_ticks_in_a_row() {
        let mut g = CollapseGuard::default();
        assert_eq!(g.update(0.05), None, "one low tick is not enough");
        assert_eq!(g.update(0.5), None, "a healthy tick resets the count");
        assert_eq!(g.update(0.05), None);
        assert_eq!(g.update(0.01), Some(2));
        assert_eq!(g.update(0.01), None, "once per run");
        let mut healthy = CollapseGuard::default();
        for _ in 0..10 {
            assert_eq!(healthy.update(0.6), None);
        }
        let mut nan = CollapseGuard::default();
        nan.update(f64::NAN);
        assert_eq!(
            nan.update(f64::NAN),
            Some(2),
            "non-finite images count as collapsed"
        );
    }
}
