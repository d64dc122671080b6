//! The training schedule as pure functions of the number of real images shown (docs/spec/progan_hp.md §2.2, §2.4, §2.6,
//! docs/spec/progan_hp.md §3.3 point 6): level of detail, resolution, minibatch, tick length, Gs EMA β, HP weight ramp, per-layer HP gates.

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The reference's total minibatch per resolution, written for 4 GPUs (docs/spec/progan_hp.md §2.1 `minibatch_dict`).
pub const MINIBATCH_4GPU: [(i64, i64); 8] = [
    (4, 2048),
    (8, 1024),
    (16, 512),
    (32, 256),
    (64, 128),
    (128, 96),
    (256, 32),
    (512, 16),
];
/// Total minibatch for resolutions missing from the table (`minibatch_base`).
pub const MINIBATCH_BASE: i64 = 32;
/// Tick length in kimg per resolution (`tick_kimg_dict`); 160 elsewhere (`tick_kimg_base`).
pub const TICK_KIMG: [(i64, f64); 6] = [
    (4, 160.0),
    (8, 140.0),
    (16, 120.0),
    (32, 100.0),
    (64, 80.0),
    (128, 60.0),
];
pub const TICK_KIMG_BASE: f64 = 160.0;

/// Everything the schedule depends on; part of the resolved training configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// Final resolution (power of two).
    pub resolution: i64,
    pub lod_initial_resolution: i64,
    pub lod_training_kimg: f64,
    pub lod_transition_kimg: f64,
    /// Number of (virtual) GPUs: the total batch is the 4-GPU table × num_gpus/4, processed as num_gpus chunks.
    pub num_gpus: i64,
    /// Scales the per-resolution totals (1 = the paper); for small CPU runs.
    pub minibatch_scale: f64,
    /// Explicit total minibatch per resolution; overrides the table where given.
    pub minibatch_overrides: BTreeMap<i64, i64>,
    /// Explicit tick length in kimg; overrides the per-resolution table.
    pub tick_kimg: Option<f64>,
    /// Gs EMA half-life in kimg (`G_smoothing_kimg`).
    pub g_smoothing_kimg: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            resolution: 128,
            lod_initial_resolution: 4,
            lod_training_kimg: 600.0,
            lod_transition_kimg: 600.0,
            num_gpus: 4,
            minibatch_scale: 1.0,
            minibatch_overrides: BTreeMap::new(),
            tick_kimg: None,
            g_smoothing_kimg: 10.0,
        }
    }
}

/// The schedule at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    pub kimg: f64,
    /// Level of detail λ ∈ [0, R − log2(initial)].
    pub lod: f64,
    /// Resolution of the data at this lod: 2^(R − floor λ).
    pub resolution: i64,
    /// Total minibatch (all chunks together).
    pub minibatch: i64,
    pub tick_kimg: f64,
}

fn log2(x: i64) -> i64 {
    63 - x.leading_zeros() as i64
}

impl ScheduleConfig {
    pub fn log2_resolution(&self) -> i64 {
        log2(self.resolution)
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.resolution >= 4 && self.resolution.count_ones() == 1,
            "--resolution {} must be a power of two ≥ 4",
            self.resolution
        );
        ensure!(
            self.lod_initial_resolution >= 4
                && self.lod_initial_resolution.count_ones() == 1
                && self.lod_initial_resolution <= self.resolution,
            "lod_initial_resolution {} must be a power of two between 4 and --resolution {}",
            self.lod_initial_resolution,
            self.resolution
        );
        ensure!(
            [1, 2, 4, 8].contains(&self.num_gpus),
            "--num-gpus {} must be 1, 2, 4 or 8 (docs/spec/progan_hp.md §4.1)",
            self.num_gpus
        );
        ensure!(
            self.lod_training_kimg > 0.0,
            "--lod-training-kimg must be positive"
        );
        ensure!(
            self.lod_transition_kimg >= 0.0,
            "--lod-transition-kimg must not be negative"
        );
        ensure!(
            self.minibatch_scale > 0.0,
            "--minibatch-scale must be positive"
        );
        ensure!(
            self.g_smoothing_kimg >= 0.0,
            "g_smoothing_kimg must not be negative"
        );
        if let Some(t) = self.tick_kimg {
            ensure!(t > 0.0, "--tick-kimg must be positive");
        }
        let mut res = self.lod_initial_resolution;
        while res <= self.resolution {
            let mb = self.minibatch(res);
            let chunk = mb / self.num_gpus;
            ensure!(
                mb >= self.num_gpus && mb % self.num_gpus == 0,
                "the minibatch at {res}² is {mb}, which does not split into --num-gpus {} equal chunks; \
                 adjust --minibatch-scale or --minibatch",
                self.num_gpus
            );
            let group = chunk.min(4);
            ensure!(
                chunk % group == 0,
                "the per-chunk minibatch at {res}² is {chunk}, not divisible by the minibatch-stddev group size \
                 {group}; adjust --minibatch-scale or --minibatch"
            );
            res *= 2;
        }
        Ok(())
    }

    /// Total minibatch at a data resolution (docs/spec/progan_hp.md §2.1): table × num_gpus/4 × scale, or an explicit override.
    pub fn minibatch(&self, resolution: i64) -> i64 {
        if let Some(&mb) = self.minibatch_overrides.get(&resolution) {
            return mb;
        }
        let base = MINIBATCH_4GPU
            .iter()
            .find(|(r, _)| *r == resolution)
            .map_or(MINIBATCH_BASE, |&(_, b)| b);
        ((base * self.num_gpus) as f64 / 4.0 * self.minibatch_scale)
            .round()
            .max(1.0) as i64
    }

    pub fn tick_kimg_at(&self, resolution: i64) -> f64 {
        self.tick_kimg.unwrap_or_else(|| {
            TICK_KIMG
                .iter()
                .find(|(r, _)| *r == resolution)
                .map_or(TICK_KIMG_BASE, |&(_, t)| t)
        })
    }

    /// The largest lod (the 4×4-only stage at the paper's settings: 5 at 128²).
    pub fn max_lod(&self) -> f64 {
        (self.log2_resolution() - log2(self.lod_initial_resolution)) as f64
    }

    /// λ at `kimg` (docs/spec/progan_hp.md §2.2): phases of training + transition kimg, each fading in one resolution.
    pub fn lod(&self, kimg: f64) -> f64 {
        let phase_len = self.lod_training_kimg + self.lod_transition_kimg;
        let phase = (kimg / phase_len).floor();
        let pk = kimg - phase * phase_len;
        let mut lod = self.max_lod() - phase;
        if self.lod_transition_kimg > 0.0 {
            lod -= (pk - self.lod_training_kimg).max(0.0) / self.lod_transition_kimg;
        }
        lod.max(0.0)
    }

    pub fn at(&self, cur_nimg: u64) -> Phase {
        let kimg = cur_nimg as f64 / 1000.0;
        let lod = self.lod(kimg);
        let resolution = 1i64 << (self.log2_resolution() - lod.floor() as i64);
        Phase {
            kimg,
            lod,
            resolution,
            minibatch: self.minibatch(resolution),
            tick_kimg: self.tick_kimg_at(resolution),
        }
    }

    /// Gs EMA coefficient β = 0.5^(minibatch / (G_smoothing_kimg·1000)) (docs/spec/progan_hp.md §2.4); 0 when smoothing is off.
    pub fn ema_beta(&self, minibatch: i64) -> f64 {
        if self.g_smoothing_kimg <= 0.0 {
            0.0
        } else {
            0.5f64.powf(minibatch as f64 / (self.g_smoothing_kimg * 1000.0))
        }
    }
}

/// HP weight λ_t at `cur_nimg` images (docs/spec/progan_hp.md §2.6): 0 until hp_start, then a linear ramp over warmup (or the full weight
/// at once when warmup is 0).
pub fn hp_weight(hp_lambda: f64, hp_start_kimg: f64, warmup_kimg: f64, cur_nimg: u64) -> f64 {
    let t = cur_nimg as f64;
    let s = hp_start_kimg * 1000.0;
    if hp_lambda <= 0.0 || t <= s {
        return 0.0;
    }
    let warm = warmup_kimg * 1000.0;
    if warm > 0.0 {
        hp_lambda * ((t - s) / warm).min(1.0)
    } else {
        hp_lambda
    }
}

/// The lod gate of one HP layer (docs/spec/progan_hp.md §3.3 point 6, §15.2): a layer at resolution `res` (the RGB output counts as the
/// final resolution) gets weight `min(req − λ, 1)` while `λ < req`, with `req = R − log2(res) + 1`; else 0.
pub fn hp_layer_gate(log2_final: i64, layer_resolution: i64, lod: f64) -> f64 {
    let req = (log2_final - log2(layer_resolution) + 1) as f64;
    if lod < req {
        (req - lod).min(1.0)
    } else {
        0.0
    }
}
