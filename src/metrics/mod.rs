//! The paper's two image metrics (docs/spec/progan_hp.md §8): FID-50k and PPL v2 (z space, endpoint sampling), computed with
//! the TorchScript successors of NVIDIA's metric networks (docs/spec/metric_networks.md), plus what both share: the metric
//! names, their settings, the metric networks ("detectors"), seeded latents and the reference's uint8 conversion.
//!
//! [`suite::MetricSuite`] runs them for the `evaluate` command and for the trainer's metric ticks.

pub mod detector;
pub mod disentanglement;
pub mod encoder;
pub mod encoder_free;
pub mod fid;
pub mod forest;
pub mod ppl;
pub mod predictor;
pub mod selection;
pub mod suite;

use crate::core::rng::Rng;
use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::{Kind, Tensor};

pub use detector::{Detector, DetectorKind};
pub use suite::{EvalOutput, MetricSuite};

/// The reference's FID sample count (docs/spec/progan_hp.md §8.1).
pub const FID_DEFAULT_IMAGES: usize = 50_000;
/// The reference's PPL sample count (docs/spec/progan_hp.md §8.2).
pub const PPL_DEFAULT_SAMPLES: usize = 100_000;
/// The default number of images per generator / detector call.
pub const DEFAULT_BATCH: usize = 64;
/// Where the metric networks and the real-image statistics are cached (the reference's `config.cache_dir`).
pub const DEFAULT_CACHE_DIR: &str = "cache";

/// One of the two metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetricKind {
    /// Fréchet Inception Distance between reals and Gs's fakes (docs/spec/progan_hp.md §8.1).
    Fid,
    /// Perceptual path length v2, z space, endpoints, slerp (docs/spec/progan_hp.md §8.2).
    Ppl,
}

impl MetricKind {
    /// The name under which a result is reported, e.g. `fid50k` (the reference's name encodes the sample count, so
    /// a run with another count is never mistaken for FID-50k) and `ppl_zend_v2`.
    pub fn result_name(self, fid_images: usize) -> String {
        match self {
            MetricKind::Fid if fid_images.is_multiple_of(1000) => {
                format!("fid{}k", fid_images / 1000)
            }
            MetricKind::Fid => format!("fid{fid_images}"),
            MetricKind::Ppl => "ppl_zend_v2".to_string(),
        }
    }
}

/// Parses metric names: `fid`/`FID`/`fid50k` and `ppl`/`PPL`/`ppl_zend_v2` (the reference's `--metrics FID PPL` and
/// its metric names); each list entry may hold several names separated by commas. Duplicates collapse; the order
/// is FID, then PPL.
pub fn parse_names<S: AsRef<str>>(names: &[S]) -> Result<Vec<MetricKind>> {
    let mut out = Vec::new();
    for entry in names {
        for name in entry
            .as_ref()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let kind = match name.to_ascii_lowercase().as_str() {
                "fid" | "fid50k" => MetricKind::Fid,
                "ppl" | "ppl_zend_v2" | "ppl_v2" => MetricKind::Ppl,
                _ => bail!("unknown metric '{name}': use fid (fid50k) and/or ppl (ppl_zend_v2)"),
            };
            if !out.contains(&kind) {
                out.push(kind);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether the trainer computes metrics at this tick: the reference's rule (docs/spec/progan_hp.md §2.7), every `every` ticks, at tick 1
/// and at the end; it is only asked on ticks that also save a snapshot (quirk docs/spec/progan_hp.md §13.12). `every` ≤ 0 disables.
pub fn due(tick: i64, every: i64, done: bool) -> bool {
    every > 0 && (tick == 1 || tick % every == 0 || done)
}

/// How the metrics run: sample counts, batch, metric networks and cache. Part of the training configuration
/// (`metrics_options`), and filled from the flags of `evaluate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsOptions {
    /// Real and fake images for FID (the reference: 50,000 each).
    pub fid_num_images: usize,
    /// Latent pairs for PPL (the reference: 100,000).
    pub ppl_num_samples: usize,
    /// Images per generator and detector call (PPL: pairs of images, so half as many samples).
    pub batch_size: usize,
    /// The Inception network: a local TorchScript file or an http(s) URL; default: `inception-2015-12-05.pt` in
    /// `cache_dir`, downloaded from NVIDIA when missing.
    pub fid_detector: Option<String>,
    /// The LPIPS-VGG16 network: a local TorchScript file or an http(s) URL; default: `vgg16.pt` in `cache_dir`.
    pub ppl_detector: Option<String>,
    /// Downloaded metric networks and cached real-image statistics.
    pub cache_dir: PathBuf,
    /// Use (and write) the real-image statistics cache.
    pub use_cache: bool,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            fid_num_images: FID_DEFAULT_IMAGES,
            ppl_num_samples: PPL_DEFAULT_SAMPLES,
            batch_size: DEFAULT_BATCH,
            fid_detector: None,
            ppl_detector: None,
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
            use_cache: true,
        }
    }
}

impl MetricsOptions {
    /// One-line errors naming the setting.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.fid_num_images >= 2,
            "FID needs at least 2 images (a covariance), got fid_num_images = {}",
            self.fid_num_images
        );
        ensure!(
            self.ppl_num_samples >= 1,
            "PPL needs at least 1 sample, got ppl_num_samples = {}",
            self.ppl_num_samples
        );
        ensure!(
            self.batch_size >= 2,
            "the metrics' batch size must be at least 2 (PPL feeds pairs), got {}",
            self.batch_size
        );
        Ok(())
    }
}

/// `n` × `width` standard normal float32 values drawn on the host from the stream `parts` of `seed` (Box–Muller on
/// the project's SplitMix64), so the latents of a metric depend on the seed only, never on the device or on
/// libtorch's global generator (which the trainer reseeds every iteration).
pub fn normal_latents(seed: u64, parts: &[u64], n: usize, width: usize) -> Tensor {
    let mut rng = Rng::stream(seed, parts);
    let total = n * width;
    let mut v = Vec::with_capacity(total + 1);
    while v.len() < total {
        // 1 − U lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - rng.uniform();
        let u2 = rng.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f64::consts::TAU * u2;
        v.push((r * a.cos()) as f32);
        v.push((r * a.sin()) as f32);
    }
    v.truncate(total);
    Tensor::from_slice(&v).reshape([n as i64, width as i64])
}

/// Float images in [−1, 1] to uint8 as the reference's `convert_images_to_uint8` (docs/spec/progan_hp.md §8.1): `x·127.5 + 128`, then
/// a saturating cast (clamp to [0, 255], then truncation). NaN becomes 0. Any shape and device.
pub fn to_uint8_saturate(images: &Tensor) -> Tensor {
    (images.to_kind(Kind::Float) * 127.5 + 128.0)
        .clamp(0.0, 255.0)
        .nan_to_num(0.0, 0.0, 0.0)
        .to_kind(Kind::Uint8)
}

/// SHA-256 of a byte string, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_like_the_reference() {
        assert_eq!(
            parse_names(&["PPL,fid"]).unwrap(),
            vec![MetricKind::Fid, MetricKind::Ppl]
        );
        assert_eq!(
            parse_names(&["fid50k", "ppl_zend_v2", "FID"]).unwrap(),
            vec![MetricKind::Fid, MetricKind::Ppl]
        );
        assert!(parse_names::<&str>(&[]).unwrap().is_empty());
        let err = parse_names(&["fid,is"]).unwrap_err().to_string();
        assert!(err.contains("'is'") && err.contains("fid"), "{err}");
        assert_eq!(MetricKind::Fid.result_name(50_000), "fid50k");
        assert_eq!(MetricKind::Fid.result_name(2_500), "fid2500");
        assert_eq!(MetricKind::Ppl.result_name(7), "ppl_zend_v2");
    }

    #[test]
    fn metric_ticks_follow_the_reference() {
        let ticks: Vec<i64> = (1..=12).filter(|&t| due(t, 5, false)).collect();
        assert_eq!(ticks, vec![1, 5, 10]);
        assert!(due(7, 5, true));
        assert!(!due(1, 0, true), "0 disables");
    }

    #[test]
    fn latents_are_seeded_standard_normals() {
        let a = normal_latents(3, &[1], 20_000, 5);
        assert_eq!(a.size(), vec![20_000, 5]);
        assert!(a.equal(&normal_latents(3, &[1], 20_000, 5)));
        assert!(!a.equal(&normal_latents(3, &[2], 20_000, 5)));
        let mean = a.mean(Kind::Double).double_value(&[]);
        let var = a.var(true).double_value(&[]);
        // 100,000 draws: the standard errors are 0.0032 (mean) and 0.0045 (variance).
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "variance {var}");
        // An odd count uses half of the last Box–Muller pair.
        assert_eq!(normal_latents(1, &[], 3, 1).size(), vec![3, 1]);
    }

    #[test]
    fn uint8_conversion_saturates_and_truncates() {
        let x = Tensor::from_slice(&[-1.0f32, 1.0, 0.0, -1.5, 2.0, 0.5, -0.999, 0.99, f32::NAN]);
        let got = Vec::<u8>::try_from(to_uint8_saturate(&x)).unwrap();
        // −1 → 0.5 → 0; 1 → 255.5 → 255; 0 → 128; saturation both ways; 0.5 → 191.75 → 191 (truncated, not
        // rounded); −0.999 → 0.6275 → 0; 0.99 → 254.225 → 254; NaN → 0.
        assert_eq!(got, vec![0, 255, 128, 0, 255, 191, 0, 254, 0]);
    }
}
