//! The training configuration: defaults (the reference's train.py, docs/spec/progan_hp.md §4.1, §2.1), presets
//! (`--config configs/NAME.json`) and command-line flags, resolved in that order (the command line wins).

pub mod infogan_cr;

use crate::core::networks::NetConfig;
use crate::core::schedule::ScheduleConfig;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `base` overlaid with the preset file's settings (keys starting with `_` are comments) and then with `cli`'s: the
/// resolution order of every model's configuration. Unknown keys are errors naming the file or the setting; `what`
/// names the kind of settings in messages ("training", "InfoGAN-CR").
pub fn merge<T: Serialize + serde::de::DeserializeOwned>(
    base: &T,
    preset: Option<&Path>,
    cli: Map<String, Value>,
    what: &str,
) -> Result<T> {
    let mut merged = match serde_json::to_value(base)? {
        Value::Object(m) => m,
        _ => unreachable!("a struct serialises to an object"),
    };
    if let Some(path) = preset {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --config {}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("--config {} is not valid JSON", path.display()))?;
        let Value::Object(obj) = value else {
            bail!(
                "--config {} must hold a JSON object of {what} settings",
                path.display()
            );
        };
        for (k, v) in obj {
            if k.starts_with('_') {
                continue; // comments such as "_about"
            }
            ensure!(
                merged.contains_key(&k),
                "--config {}: unknown {what} setting '{k}' (valid: {})",
                path.display(),
                merged.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            merged.insert(k, v);
        }
    }
    for (k, v) in cli {
        ensure!(merged.contains_key(&k), "unknown {what} setting '{k}'");
        merged.insert(k, v);
    }
    serde_json::from_value(Value::Object(merged))
        .map_err(|e| anyhow::anyhow!("invalid {what} setting: {e}"))
}

/// Every setting of a training run. Saved as `config.json` in the run directory and inside every snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Dataset name under `datasets/` (known names are downloaded when missing) or a path to a dataset directory.
    pub dataset: String,
    pub resolution: i64,
    pub nz: i64,
    /// Image channels (3 RGB, 1 grey): set from the dataset when training starts, kept in the snapshots.
    pub num_channels: i64,
    pub total_kimg: f64,
    pub seed: u64,
    pub hp_lambda: f64,
    pub epsilon: f64,
    pub num_rademacher_samples: usize,
    pub layers_to_reg: Vec<usize>,
    pub warmup_kimg: f64,
    pub hp_start_kimg: f64,
    pub infogan_lambda: f64,
    pub infogan_nz: i64,
    pub num_gpus: i64,
    pub compute_interp_ticks: i64,
    pub compute_metrics_ticks: i64,
    /// Metrics computed at snapshot ticks (docs/spec/progan_hp.md §2.7, §4.1): `fid` (fid50k) and/or `ppl` (ppl_zend_v2); empty = none.
    pub metrics: Vec<String>,
    /// Sample counts, metric networks and cache of those metrics.
    pub metrics_options: crate::metrics::MetricsOptions,
    /// Ticks between encoder-free disentanglement scores (on snapshot ticks; 0 = never). Needs a dataset with
    /// factors; the factor predictor is cached in `metrics_options.cache_dir`.
    pub score_ticks: i64,
    /// InfoGAN-CR's contrastive regulariser on this trainer (docs/spec/geometry_infogancr.md §B.1): the weight of
    /// H's cross-entropy in G's loss from `cr_start_kimg` on (0 = off; no H is built). H, our D's architecture on
    /// image pairs stacked on the channel axis with a `cr_codes`-way head, trains every iteration and restarts
    /// (weights and Adam state) when the weight turns on and when the gap ends.
    pub cr_lambda: f64,
    pub cr_start_kimg: f64,
    /// The other codes of a pair are at least this far apart until `cr_gap_end_kimg` (0 = the gap never ends).
    pub cr_gap: f64,
    pub cr_gap_end_kimg: f64,
    /// Leading z components a pair can share (0 = infogan_nz when InfoGAN is on, else nz).
    pub cr_codes: i64,
    /// Both images of a pair share the components after the codes (the reference's code does).
    pub cr_share_noise: bool,
    /// (z, factor) pairs and FactorVAE groups of 100 of those scores.
    pub score_samples: usize,
    pub score_groups: usize,
    pub fmap_base: i64,
    pub fmap_max: i64,
    pub lod_initial_resolution: i64,
    pub lod_training_kimg: f64,
    pub lod_transition_kimg: f64,
    pub minibatch_scale: f64,
    /// Explicit total minibatch per resolution, e.g. {"32": 16}.
    pub minibatch: BTreeMap<i64, i64>,
    pub tick_kimg: Option<f64>,
    pub g_smoothing_kimg: f64,
    pub learning_rate: f64,
    pub network_snapshot_ticks: i64,
    /// Stop after this many consecutive skipped (non-finite) updates.
    pub max_consecutive_skips: i64,
    /// Arithmetic of the adversarial passes; the Hessian Penalty passes always stay float32 (src/core/precision.rs).
    pub precision: crate::core::precision::Precision,
    pub results_dir: PathBuf,
    pub datasets_dir: PathBuf,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dataset: "edges_and_shoes".into(),
            resolution: 128,
            nz: 12,
            num_channels: 3,
            total_kimg: 30000.0,
            seed: 1000,
            hp_lambda: 0.1,
            epsilon: 0.1,
            num_rademacher_samples: 2,
            layers_to_reg: (1..=10).collect(),
            // The reference's CLI default; from-scratch presets set 0 (docs/spec/progan_hp.md §2.6 quirk, §13.4).
            warmup_kimg: 10000.0,
            hp_start_kimg: 0.0,
            infogan_lambda: 0.0,
            infogan_nz: 0,
            num_gpus: 4,
            compute_interp_ticks: 5,
            compute_metrics_ticks: 5,
            metrics: Vec::new(),
            metrics_options: crate::metrics::MetricsOptions::default(),
            score_ticks: 0,
            cr_lambda: 0.0,
            cr_start_kimg: 0.0,
            cr_gap: 0.0,
            cr_gap_end_kimg: 0.0,
            cr_codes: 0,
            cr_share_noise: true,
            score_samples: 10_000,
            score_groups: 100,
            fmap_base: 8192,
            fmap_max: 512,
            lod_initial_resolution: 4,
            lod_training_kimg: 600.0,
            lod_transition_kimg: 600.0,
            minibatch_scale: 1.0,
            minibatch: BTreeMap::new(),
            tick_kimg: None,
            g_smoothing_kimg: 10.0,
            learning_rate: 0.001,
            network_snapshot_ticks: 5,
            max_consecutive_skips: 100,
            precision: crate::core::precision::Precision::Fp32,
            results_dir: "results".into(),
            datasets_dir: "datasets".into(),
        }
    }
}

impl TrainConfig {
    /// `base` (the defaults, or a resumed snapshot's config), then the preset file (if any), then the flags given on
    /// the command line (as a JSON object of the same field names). Unknown keys are errors naming the file or flag.
    pub fn resolve(base: Self, preset: Option<&Path>, cli: Map<String, Value>) -> Result<Self> {
        let cfg: Self = merge(&base, preset, cli, "training")?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn net(&self) -> NetConfig {
        NetConfig {
            resolution: self.resolution,
            nz: self.nz,
            num_channels: self.num_channels,
            fmap_base: self.fmap_base,
            fmap_max: self.fmap_max,
            infogan_nz: self.infogan_nz,
        }
    }

    pub fn schedule(&self) -> ScheduleConfig {
        ScheduleConfig {
            resolution: self.resolution,
            lod_initial_resolution: self.lod_initial_resolution,
            lod_training_kimg: self.lod_training_kimg,
            lod_transition_kimg: self.lod_transition_kimg,
            num_gpus: self.num_gpus,
            minibatch_scale: self.minibatch_scale,
            minibatch_overrides: self.minibatch.clone(),
            tick_kimg: self.tick_kimg,
            g_smoothing_kimg: self.g_smoothing_kimg,
        }
    }

    /// The reference's assertions (docs/spec/progan_hp.md §4.1) and ours, each naming the flag.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            matches!(self.num_channels, 1 | 3),
            "num_channels {} is not supported: images are grey (1) or RGB (3)",
            self.num_channels
        );
        ensure!(self.nz >= 1, "--nz must be at least 1, got {}", self.nz);
        ensure!(
            self.nz >= self.infogan_nz,
            "--infogan-nz {} exceeds --nz {}: InfoGAN regresses the first infogan_nz components of z",
            self.infogan_nz,
            self.nz
        );
        ensure!(self.infogan_nz >= 0, "--infogan-nz must not be negative");
        ensure!(
            self.infogan_nz == 0 || self.infogan_lambda > 0.0,
            "--infogan-nz {} needs --infogan-lambda > 0",
            self.infogan_nz
        );
        ensure!(
            self.infogan_lambda == 0.0 || self.infogan_nz > 0,
            "--infogan-lambda {} needs --infogan-nz ≥ 1",
            self.infogan_lambda
        );
        ensure!(
            self.hp_lambda >= 0.0,
            "--hp-lambda must not be negative, got {}",
            self.hp_lambda
        );
        ensure!(
            self.hp_lambda == 0.0 || (self.epsilon.is_finite() && self.epsilon > 0.0),
            "--epsilon must be positive when --hp-lambda > 0, got {}",
            self.epsilon
        );
        ensure!(
            self.hp_lambda == 0.0 || self.num_rademacher_samples >= 2,
            "--num-rademacher-samples must be at least 2 when --hp-lambda > 0, got {}",
            self.num_rademacher_samples
        );
        ensure!(self.total_kimg > 0.0, "--total-kimg must be positive");
        ensure!(
            self.warmup_kimg >= 0.0 && self.hp_start_kimg >= 0.0,
            "--warmup-kimg/--hp-start-kimg must be ≥ 0"
        );
        ensure!(self.learning_rate > 0.0, "learning_rate must be positive");
        ensure!(
            self.network_snapshot_ticks >= 1,
            "network_snapshot_ticks must be at least 1"
        );
        ensure!(
            self.max_consecutive_skips >= 1,
            "max_consecutive_skips must be at least 1"
        );
        if !crate::metrics::parse_names(&self.metrics)?.is_empty() {
            self.metrics_options.validate()?;
            ensure!(
                self.compute_metrics_ticks >= 1,
                "--compute-metrics-ticks must be at least 1 when --metrics is set, got {}",
                self.compute_metrics_ticks
            );
        }
        ensure!(
            self.cr_lambda >= 0.0 && self.cr_gap >= 0.0,
            "--cr-lambda and --cr-gap must not be negative"
        );
        ensure!(
            self.cr_start_kimg >= 0.0 && self.cr_gap_end_kimg >= 0.0,
            "--cr-start-kimg and --cr-gap-end-kimg must not be negative"
        );
        ensure!(
            self.cr_codes >= 0 && self.cr_codes <= self.nz,
            "--cr-codes {} must be between 0 (automatic) and --nz {}",
            self.cr_codes,
            self.nz
        );
        ensure!(
            self.cr_lambda == 0.0 || self.cr_code_count() >= 2,
            "--cr-lambda needs at least 2 codes for the pairs to tell apart (--cr-codes, --infogan-nz or --nz)"
        );
        ensure!(
            self.score_ticks >= 0,
            "--score-ticks must be 0 (never) or more, got {}",
            self.score_ticks
        );
        ensure!(
            self.score_ticks == 0 || (self.score_samples >= 10 && self.score_groups >= 1),
            "--score-samples must be at least 10 and --score-groups at least 1 with --score-ticks"
        );
        self.schedule().validate()?;
        let net = self.net();
        net.validate()?;
        for &l in &self.layers_to_reg {
            ensure!(l >= 1, "--layers-to-reg: layer indices start at 1, got {l}");
        }
        ensure!(
            self.hp_lambda == 0.0 || !self.hp_layers().is_empty(),
            "--layers-to-reg {:?}: none of these layers exists at {}² (layers 1..{}: 1 = dense, then the convs, \
             the last = RGB)",
            self.layers_to_reg,
            self.resolution,
            net.num_hp_layers()
        );
        ensure!(
            self.hp_lambda == 0.0 || !self.layers_to_reg.is_empty(),
            "--layers-to-reg is empty but --hp-lambda > 0"
        );
        Ok(())
    }

    /// The regularised layers that exist at this resolution (docs/spec/progan_hp.md §15.1: the default 1..10 keeps only the indices
    /// that exist, e.g. 1..9 at 32², where 9 is the RGB output), sorted and deduplicated.
    pub fn hp_layers(&self) -> Vec<usize> {
        let n = self.net().num_hp_layers();
        let mut layers: Vec<usize> = self
            .layers_to_reg
            .iter()
            .copied()
            .filter(|&l| l >= 1 && l <= n)
            .collect();
        layers.sort_unstable();
        layers.dedup();
        layers
    }

    /// The run description of the reference (docs/spec/progan_hp.md §2.7): `hessian_penalty_<dataset>_nz-<nz>_w-<λ>`, `infogan_…`, `progan_…`.
    pub fn run_description(&self) -> String {
        let name = self.dataset_name();
        let cr = if self.cr_lambda > 0.0 {
            format!("_cr-{}", self.cr_lambda)
        } else {
            String::new()
        };
        let base = self.base_description(&name);
        format!("{base}{cr}")
    }

    fn base_description(&self, name: &str) -> String {
        if self.hp_lambda > 0.0 {
            format!("hessian_penalty_{name}_nz-{}_w-{}", self.nz, self.hp_lambda)
        } else if self.infogan_lambda > 0.0 {
            format!("infogan_{name}_nz-{}_inz-{}", self.nz, self.infogan_nz)
        } else {
            format!("progan_{name}_nz-{}", self.nz)
        }
    }

    /// H's network: D's architecture on `2·C` channels with a `cr_code_count()`-way code head.
    pub fn cr_judge_net(&self) -> NetConfig {
        NetConfig {
            num_channels: 2 * self.num_channels,
            infogan_nz: self.cr_code_count(),
            ..self.net()
        }
    }

    /// The leading z components CR pairs fix one of.
    pub fn cr_code_count(&self) -> i64 {
        match (self.cr_codes, self.infogan_nz) {
            (0, 0) => self.nz,
            (0, k) => k,
            (c, _) => c,
        }
    }

    /// The CR weight and gap after `nimg` images.
    pub fn cr_weight_and_gap(&self, nimg: u64) -> (f64, f64) {
        let kimg = nimg as f64 / 1000.0;
        let weight = if kimg >= self.cr_start_kimg {
            self.cr_lambda
        } else {
            0.0
        };
        let gap = if self.cr_gap_end_kimg > 0.0 && kimg >= self.cr_gap_end_kimg {
            0.0
        } else {
            self.cr_gap
        };
        (weight, gap)
    }

    /// Which CR phase `nimg` is in (0 before the weight turns on, +1 once it is on, +1 once the gap ended): H
    /// restarts whenever it changes.
    pub fn cr_phase(&self, nimg: u64) -> u32 {
        let kimg = nimg as f64 / 1000.0;
        u32::from(kimg >= self.cr_start_kimg)
            + u32::from(self.cr_gap_end_kimg > 0.0 && kimg >= self.cr_gap_end_kimg)
    }

    /// The dataset's short name (the last path component when `dataset` is a path).
    pub fn dataset_name(&self) -> String {
        Path::new(&self.dataset)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dataset.clone())
    }
}
