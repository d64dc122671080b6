//! The settings of an InfoGAN-CR run (`train --model infogan-cr`, docs/spec/geometry_infogancr.md §B.1): the
//! reference's dSprites recipe by default, resolved like every configuration (defaults < resumed snapshot < preset <
//! flags, [`super::merge`]).

use crate::core::cr::{CrLatents, CrSchedule};
use crate::core::networks::infogan_cr::CrNetConfig;
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The value of `model` that marks an InfoGAN-CR configuration.
pub const MODEL: &str = "infogan-cr";

/// Every setting of an InfoGAN-CR run. Saved as `config.json` in the run directory and inside every snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrConfig {
    /// Always `infogan-cr`.
    pub model: String,
    /// Dataset name under `datasets_dir` or a dataset directory (the reference: the full dSprites grid).
    pub dataset: String,
    pub datasets_dir: PathBuf,
    pub results_dir: PathBuf,
    /// 64 (the reference's networks) or 32 (the same design one level shorter, for quick runs).
    pub resolution: i64,
    /// Image channels: set from the dataset when training starts.
    pub channels: i64,
    /// Regularised uniform codes and nuisance dimensions (the reference: 5 and 5, all U(−1, 1)).
    pub codes: i64,
    pub noise: i64,
    /// Both images of a CR pair share the nuisance noise (the reference's code; the paper's figure draws it anew).
    pub share_noise: bool,
    /// Real and fake images per D/Q and G step, and CR pairs per H step and per G step's CR term.
    pub batch: i64,
    pub cr_batch: i64,
    /// Training length in iterations (one H step, one D/Q step, `g_steps` G steps).
    pub iterations: u64,
    pub g_steps: u64,
    /// Weight of Q's Gaussian log-likelihood in G's loss (`info_coe_de`) and in D/Q's (`info_coe_infod`).
    pub info_coe_de: f64,
    pub info_coe_infod: f64,
    /// The CR weight and gap schedules (`core::cr::CrSchedule`).
    pub cr_coe_start: f64,
    pub cr_coe_increase: f64,
    pub cr_coe_increase_batch: u64,
    pub cr_coe_increase_times: u64,
    pub gap_start: f64,
    pub gap_decrease: f64,
    pub gap_decrease_batch: u64,
    pub gap_decrease_times: u64,
    /// Adam learning rates of G, D/Q and H, and the moments' decay (TF's defaults but β1 = 0.5).
    pub lr_g: f64,
    pub lr_d: f64,
    pub lr_h: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub seed: u64,
    /// Iterations between the log line and TensorBoard scalars.
    pub log_every: u64,
    /// Iterations between traversal grids (the reference: 200).
    pub image_every: u64,
    /// Iterations between snapshots; the last iteration and the iteration before the first CR increase (the
    /// "InfoGAN (modified)" baseline) always get one.
    pub snapshot_every: u64,
    /// Snapshots between disentanglement scores of Q on the dataset (0 = never; needs a dataset with factors).
    pub score_ticks: u64,
    /// Samples and FactorVAE groups (of 100 images) of those scores.
    pub score_samples: usize,
    pub score_groups: usize,
    /// Stop after this many consecutive skipped (non-finite) updates of any network.
    pub max_consecutive_skips: u64,
}

impl Default for CrConfig {
    fn default() -> Self {
        CrConfig {
            model: MODEL.into(),
            dataset: "dsprites".into(),
            datasets_dir: "datasets".into(),
            results_dir: "results".into(),
            resolution: 64,
            channels: 1,
            codes: 5,
            noise: 5,
            share_noise: true,
            batch: 64,
            cr_batch: 64,
            iterations: 322_560,
            g_steps: 2,
            info_coe_de: 0.05,
            info_coe_infod: 0.05,
            cr_coe_start: 0.0,
            cr_coe_increase: 2.0,
            cr_coe_increase_batch: 288_000,
            cr_coe_increase_times: 1,
            gap_start: 0.0,
            gap_decrease: 0.0,
            gap_decrease_batch: 0,
            gap_decrease_times: 0,
            lr_g: 1e-3,
            lr_d: 2e-3,
            lr_h: 2e-3,
            beta1: 0.5,
            beta2: 0.999,
            seed: 1000,
            log_every: 500,
            image_every: 5000,
            snapshot_every: 16_128,
            score_ticks: 0,
            score_samples: 10_000,
            score_groups: 500,
            max_consecutive_skips: 100,
        }
    }
}

impl CrConfig {
    /// `base`, then the preset, then the flags (JSON fields named like this struct's); validated.
    pub fn resolve(base: Self, preset: Option<&Path>, cli: Map<String, Value>) -> Result<Self> {
        let cfg: Self = super::merge(&base, preset, cli, "InfoGAN-CR")?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn net(&self) -> CrNetConfig {
        CrNetConfig {
            codes: self.codes,
            noise: self.noise,
            channels: self.channels,
            resolution: self.resolution,
        }
    }

    pub fn latents(&self) -> CrLatents {
        CrLatents {
            codes: self.codes,
            noise: self.noise,
            low: -1.0,
            high: 1.0,
            share_noise: self.share_noise,
        }
    }

    pub fn schedule(&self) -> CrSchedule {
        CrSchedule {
            cr_coe_start: self.cr_coe_start,
            cr_coe_increase: self.cr_coe_increase,
            cr_coe_increase_batch: self.cr_coe_increase_batch,
            cr_coe_increase_times: self.cr_coe_increase_times,
            gap_start: self.gap_start,
            gap_decrease: self.gap_decrease,
            gap_decrease_batch: self.gap_decrease_batch,
            gap_decrease_times: self.gap_decrease_times,
        }
    }

    /// The run directory's description: `infogan-cr_<dataset>_cr-<final cr_coe>_info-<info_coe_de>`.
    pub fn description(&self) -> String {
        let name = Path::new(&self.dataset)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dataset.clone());
        let last = self.schedule().cr_coe(self.iterations.saturating_sub(1));
        format!("{MODEL}_{name}_cr-{last}_info-{}", self.info_coe_de)
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.model == MODEL,
            "model '{}' is not {MODEL}; this configuration is for --model {MODEL}",
            self.model
        );
        self.net().validate()?;
        self.schedule().validate(2.0)?;
        ensure!(
            self.batch >= 2 && self.cr_batch >= 2,
            "batch {} and cr_batch {} must be at least 2 (batch norm)",
            self.batch,
            self.cr_batch
        );
        ensure!(self.iterations >= 1, "iterations must be at least 1");
        ensure!(self.g_steps >= 1, "g_steps must be at least 1");
        for (name, v) in [
            ("lr_g", self.lr_g),
            ("lr_d", self.lr_d),
            ("lr_h", self.lr_h),
        ] {
            ensure!(v > 0.0 && v.is_finite(), "{name} must be positive, not {v}");
        }
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            ensure!((0.0..1.0).contains(&v), "{name} must be in [0, 1), not {v}");
        }
        ensure!(
            self.info_coe_de >= 0.0 && self.info_coe_infod >= 0.0,
            "info_coe_de and info_coe_infod must not be negative"
        );
        ensure!(
            self.log_every >= 1 && self.snapshot_every >= 1,
            "log_every and snapshot_every must be at least 1"
        );
        ensure!(
            self.score_ticks == 0 || (self.score_samples >= 10 && self.score_groups >= 1),
            "score_ticks needs score_samples ≥ 10 and score_groups ≥ 1"
        );
        Ok(())
    }
}

/// Whether a JSON configuration (a preset, `config.json`, a snapshot's) is an InfoGAN-CR one.
pub fn is_cr_config(value: &Value) -> bool {
    value.get("model").and_then(Value::as_str) == Some(MODEL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_the_dsprites_recipe() {
        let c = CrConfig::default();
        c.validate().unwrap();
        // §B.1: 5 + 5 latents, batch 64, 28 epochs of 11,520 iterations, info 0.05, CR 0 → 2 at 288,000, lrs
        // 1e-3 / 2e-3 / 2e-3 with β1 0.5, two G steps.
        assert_eq!((c.codes, c.noise, c.batch, c.cr_batch), (5, 5, 64, 64));
        assert_eq!(c.iterations, 28 * 11_520);
        assert_eq!(
            737_280 / c.batch as u64,
            11_520,
            "one epoch of the full grid"
        );
        assert_eq!((c.info_coe_de, c.info_coe_infod), (0.05, 0.05));
        assert_eq!(c.schedule().cr_coe(287_999), 0.0);
        assert_eq!(c.schedule().cr_coe(288_000), 2.0);
        assert_eq!((c.lr_g, c.lr_d, c.lr_h, c.beta1), (1e-3, 2e-3, 2e-3, 0.5));
        assert_eq!(c.g_steps, 2);
        assert_eq!(c.description(), "infogan-cr_dsprites_cr-2_info-0.05");
    }

    #[test]
    fn flags_override_and_bad_values_are_named() {
        let mut cli = Map::new();
        cli.insert("iterations".into(), json!(100));
        cli.insert("resolution".into(), json!(32));
        let c = CrConfig::resolve(CrConfig::default(), None, cli).unwrap();
        assert_eq!((c.iterations, c.resolution), (100, 32));
        let bad = |k: &str, v: Value| {
            let mut cli = Map::new();
            cli.insert(k.into(), v);
            format!(
                "{:#}",
                CrConfig::resolve(CrConfig::default(), None, cli).unwrap_err()
            )
        };
        assert!(bad("hp_lambda", json!(0.1)).contains("unknown InfoGAN-CR setting 'hp_lambda'"));
        assert!(bad("resolution", json!(128)).contains("32² or 64²"));
        assert!(bad("codes", json!(1)).contains("at least 2 codes"));
        assert!(bad("gap_start", json!(2.5)).contains("gap_start"));
        assert!(bad("lr_h", json!(0)).contains("lr_h must be positive"));
        assert!(is_cr_config(&json!({"model": "infogan-cr"})));
        assert!(!is_cr_config(&json!({"hp_lambda": 0.1})));
    }
}
