//! PPL v2 as the paper reports it (`ppl_zend_v2`, docs/spec/progan_hp.md §8.2): z space, endpoint sampling (t = 0), slerp
//! with ε = 1e-4, images below 256² bilinearly upsampled to 256² (no crop), [−1, 1] mapped to [0, 255], LPIPS-VGG16
//! distances scaled by 1/ε², values outside the [1st ("lower"), 99th ("higher")] percentiles dropped, mean reported.

use super::detector::{Detector, DetectorInfo};
use super::{normal_latents, MetricsOptions};
use crate::core::networks::Generator;
use crate::io::progress;
use anyhow::{ensure, Context, Result};
use serde::Serialize;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The reference's ε (docs/spec/progan_hp.md §8.2).
pub const EPSILON: f64 = 1e-4;
/// The side the LPIPS network sees.
pub const VGG_SIZE: i64 = 256;
/// Latent stream of the PPL pairs (see [`normal_latents`]).
const PPL_STREAM: u64 = 0x991;

/// Rows scaled to unit length (`v / ‖v‖`, no epsilon, as the reference).
fn normalize(v: &Tensor) -> Tensor {
    v / v.square().sum_dim_intlist(-1, true, None).sqrt()
}

/// Spherical interpolation of the rows of `a` and `b` at `t`, exactly the reference's formula: both are normalised,
/// `â` is rotated by `t·acos(â·b̂)` toward the part of `b̂` orthogonal to `â`, and the result is renormalised.
pub fn slerp(a: &Tensor, b: &Tensor, t: f64) -> Tensor {
    let a = normalize(a);
    let b = normalize(b);
    let d = (&a * &b).sum_dim_intlist(-1, true, None);
    let p = d.acos() * t;
    let c = normalize(&(&b - &d * &a));
    normalize(&(&a * p.cos() + c * p.sin()))
}

/// The latent pairs `[n, 2, nz]` (z₀, z₁) of PPL drawn from `seed`.
pub fn latent_pairs(seed: u64, n: usize, nz: usize) -> Tensor {
    normal_latents(seed, &[PPL_STREAM, nz as u64], 2 * n, nz).reshape([n as i64, 2, nz as i64])
}

/// Checks a `--z` array for a model of latent width `nz`: `[N, 2, nz]` pairs are used as they are; `[N, nz]` start
/// latents get end latents drawn from `seed`. Returns the pairs (float32, CPU).
pub fn pairs_from_z(z: &Tensor, nz: i64, seed: u64, what: &str) -> Result<Tensor> {
    let s = z.size();
    let z = z.to_kind(Kind::Float).to_device(Device::Cpu);
    match s.as_slice() {
        [n, w] => {
            ensure!(
                *w == nz,
                "{what} holds latents of width {w}, but the model has nz = {nz}"
            );
            ensure!(*n >= 1, "{what} holds no latents");
            let ends = latent_pairs(seed, *n as usize, nz as usize).select(1, 1);
            Ok(Tensor::stack(&[z, ends], 1))
        }
        [n, 2, w] => {
            ensure!(
                *w == nz,
                "{what} holds latent pairs of width {w}, but the model has nz = {nz}"
            );
            ensure!(*n >= 1, "{what} holds no latents");
            Ok(z)
        }
        _ => anyhow::bail!(
            "{what} has shape {s:?}; PPL takes [N, nz] start latents or [N, 2, nz] (start, end) pairs"
        ),
    }
}

/// The endpoints fed to G: `e₀ = slerp(z₀, z₁, 0)` and `e₁ = slerp(z₀, z₁, ε)` (sampling "end"), computed in
/// float64 and returned as float32 `[n, nz]` each.
pub fn endpoints(pairs: &Tensor, epsilon: f64) -> (Tensor, Tensor) {
    let p = pairs.to_kind(Kind::Double);
    let (z0, z1) = (p.select(1, 0), p.select(1, 1));
    (
        slerp(&z0, &z1, 0.0).to_kind(Kind::Float),
        slerp(&z0, &z1, epsilon).to_kind(Kind::Float),
    )
}

/// Source coordinates of TensorFlow 1's `resize_bilinear` with `align_corners=False, half_pixel_centers=False`
/// (what the reference's `tf.compat.v1.image.resize` ran under TF 1.14): `x = i·in/out`, neighbours `floor(x)` and
/// `min(floor(x) + 1, in − 1)`, weight `x − floor(x)`.
fn tf1_taps(input: i64, output: i64) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
    let scale = input as f32 / output as f32;
    let mut lo = Vec::with_capacity(output as usize);
    let mut hi = Vec::with_capacity(output as usize);
    let mut w = Vec::with_capacity(output as usize);
    for i in 0..output {
        let x = i as f32 * scale;
        let f = x.floor();
        lo.push(f as i64);
        hi.push((f as i64 + 1).min(input - 1));
        w.push(x - f);
    }
    (lo, hi, w)
}

/// Bilinear resize of `[N, C, H, W]` float images to `size × size` as TensorFlow 1 does by default (see
/// [`tf1_taps`]). This differs from PyTorch's `align_corners=False` (half-pixel centres): the first output pixel
/// copies the first input pixel and the last rows and columns repeat the edge.
pub fn resize_bilinear_tf1(x: &Tensor, size: i64) -> Tensor {
    let s = x.size();
    let dev = x.device();
    let axis = |t: &Tensor, dim: i64, input: i64| {
        let (lo, hi, w) = tf1_taps(input, size);
        let lo = Tensor::from_slice(&lo).to_device(dev);
        let hi = Tensor::from_slice(&hi).to_device(dev);
        let mut shape = vec![1i64; 4];
        shape[dim as usize] = size;
        let w = Tensor::from_slice(&w)
            .to_device(dev)
            .to_kind(t.kind())
            .reshape(shape.as_slice());
        let a = t.index_select(dim, &lo);
        let b = t.index_select(dim, &hi);
        &a + (b - &a) * w
    };
    let y = axis(x, 3, s[3]);
    axis(&y, 2, s[2])
}

/// G's images `[N, C, R, R]` in [−1, 1] to the LPIPS network's input: below 256² bilinearly upsampled (TF1 style)
/// to 256², above 256² box-averaged by the integer factor R/256, then `(x + 1)·127.5` (float, not quantised).
pub fn to_vgg_input(images: &Tensor) -> Tensor {
    let s = images.size();
    let r = s[2];
    let x = if r < VGG_SIZE {
        resize_bilinear_tf1(images, VGG_SIZE)
    } else if r > VGG_SIZE {
        let f = r / VGG_SIZE;
        images
            .reshape([s[0], s[1], r / f, f, s[3] / f, f])
            .mean_dim(&[3i64, 5][..], false, Kind::Float)
    } else {
        images.shallow_clone()
    };
    (x + 1.0) * 127.5
}

/// How the resize is described in results.
pub fn resize_description(resolution: i64) -> String {
    if resolution < VGG_SIZE {
        format!(
            "bilinear {resolution}x{resolution} -> 256x256 (TF1 resize_bilinear: align_corners=False, \
             half_pixel_centers=False), no crop"
        )
    } else if resolution > VGG_SIZE {
        format!(
            "box average by {} to 256x256, no crop",
            resolution / VGG_SIZE
        )
    } else {
        "none (256x256), no crop".into()
    }
}

/// The reference's outlier rejection: `lo` = NumPy's 1st percentile with `interpolation='lower'` (sorted element
/// `floor(0.01·(n−1))`), `hi` = the 99th with `'higher'` (element `ceil(0.99·(n−1))`); values with `lo ≤ d ≤ hi`
/// are kept. Returns (mean of the kept values, lo, hi, number kept). NaN anywhere gives NaN, as NumPy would.
pub fn filtered_mean(distances: &[f64]) -> (f64, f64, f64, usize) {
    if distances.is_empty() || distances.iter().any(|d| d.is_nan()) {
        return (f64::NAN, f64::NAN, f64::NAN, 0);
    }
    let mut sorted = distances.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = (sorted.len() - 1) as f64;
    let lo = sorted[(0.01 * last).floor() as usize];
    let hi = sorted[(0.99 * last).ceil() as usize];
    let kept: Vec<f64> = distances
        .iter()
        .copied()
        .filter(|&d| lo <= d && d <= hi)
        .collect();
    let mean = kept.iter().sum::<f64>() / kept.len() as f64;
    (mean, lo, hi, kept.len())
}

/// One PPL result with its pipeline.
#[derive(Clone, Debug, Serialize)]
pub struct PplResult {
    pub name: String,
    pub value: f64,
    pub num_samples: usize,
    /// Samples inside the percentile range.
    pub kept: usize,
    pub percentile_1_lower: f64,
    pub percentile_99_higher: f64,
    pub epsilon: f64,
    pub space: String,
    pub sampling: String,
    pub lod: f64,
    pub latents: String,
    pub resize: String,
    pub pixel_range: String,
    pub detector: DetectorInfo,
    /// Images (two per sample) through G and LPIPS, per second.
    pub images_per_second: f64,
    pub seconds: f64,
}

/// PPL of `g` at `lod` over the latent `pairs` `[N, 2, nz]` (CPU). Nothing is read back to the host inside the
/// loop (the distances stay on the device until the end), so on CUDA generation and LPIPS of consecutive batches
/// are queued back to back.
#[allow(clippy::too_many_arguments)]
pub fn run(
    g: &Generator,
    lod: f64,
    pairs: &Tensor,
    latents: String,
    detector: &Detector,
    opts: &MetricsOptions,
    device: Device,
) -> Result<PplResult> {
    let t0 = Instant::now();
    let n = pairs.size()[0];
    let (e0, e1) = endpoints(pairs, EPSILON);
    let (e0, e1) = (e0.to_device(device), e1.to_device(device));
    let per_batch = (opts.batch_size as i64 / 2).max(1);
    let dists = Tensor::empty([n], (Kind::Double, device));
    let bar = progress::bar(Some(n as u64), "PPL");
    {
        let _guard = tch::no_grad_guard();
        let mut start = 0i64;
        while start < n {
            let b = per_batch.min(n - start);
            let z = Tensor::cat(&[e0.narrow(0, start, b), e1.narrow(0, start, b)], 0);
            let images = g.forward(&z, lod, true);
            let f = detector.lpips_features(&to_vgg_input(&images))?;
            let (f0, f1) = (f.narrow(0, 0, b), f.narrow(0, b, b));
            let d = (f0 - f1)
                .square()
                .sum_dim_intlist(1, false, Kind::Float)
                .to_kind(Kind::Double)
                / (EPSILON * EPSILON);
            dists.narrow(0, start, b).copy_(&d);
            start += b;
            bar.inc(b as u64);
        }
    }
    bar.finish_and_clear();
    let host: Vec<f64> = Vec::<f64>::try_from(dists.to_device(Device::Cpu))
        .context("cannot read the PPL distances")?;
    let (value, lo, hi, kept) = filtered_mean(&host);
    let secs = t0.elapsed().as_secs_f64();
    let r = g.config().resolution;
    Ok(PplResult {
        name: super::MetricKind::Ppl.result_name(0),
        value,
        num_samples: n as usize,
        kept,
        percentile_1_lower: lo,
        percentile_99_higher: hi,
        epsilon: EPSILON,
        space: "z".into(),
        sampling: "end".into(),
        lod,
        latents,
        resize: resize_description(r),
        pixel_range: "[-1, 1] -> [0, 255] as (x + 1) * 127.5, float, no clamp".into(),
        detector: detector.info.clone(),
        images_per_second: 2.0 * n as f64 / secs.max(1e-9),
        seconds: secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    #[test]
    fn tf1_taps_are_top_left_aligned() {
        // 2 → 4: x = 0, 0.5, 1, 1.5; the last two clamp to the edge.
        let (lo, hi, w) = tf1_taps(2, 4);
        assert_eq!(lo, vec![0, 0, 1, 1]);
        assert_eq!(hi, vec![1, 1, 1, 1]);
        assert_eq!(w, vec![0.0, 0.5, 0.0, 0.5]);
    }

    #[test]
    fn tf1_resize_differs_from_half_pixel_bilinear() {
        // Rows [a, b] = [0, 8] upsampled to 4: TF1 gives [0, 4, 8, 8]; PyTorch's half-pixel bilinear would give
        // [0, 2, 6, 8].
        let x = Tensor::from_slice(&[0.0f32, 8.0, 0.0, 8.0]).reshape([1, 1, 2, 2]);
        let y = resize_bilinear_tf1(&x, 4);
        assert_eq!(y.size(), vec![1, 1, 4, 4]);
        assert_eq!(v(&y.select(2, 0)), vec![0.0, 4.0, 8.0, 8.0]);
        // Columns constant → rows identical.
        assert!(y.select(2, 0).equal(&y.select(2, 3)));
        // A vertical ramp [0; 8] also follows the TF1 taps.
        let x = Tensor::from_slice(&[0.0f32, 0.0, 8.0, 8.0]).reshape([1, 1, 2, 2]);
        assert_eq!(
            v(&resize_bilinear_tf1(&x, 4).select(3, 1)),
            vec![0.0, 4.0, 8.0, 8.0]
        );
        // 8 → 256: every output pixel i reads x[i/32] and x[i/32 + 1] with weight (i mod 32)/32.
        let x = Tensor::arange(8, (Kind::Float, Device::Cpu))
            .reshape([1, 1, 1, 8])
            .repeat([1, 1, 8, 1]);
        let y = v(&resize_bilinear_tf1(&x, 256).select(2, 100));
        for (i, got) in y.iter().enumerate() {
            let want = ((i as f64) / 32.0).min(7.0);
            assert!((got - want).abs() < 1e-5, "pixel {i}: {got} vs {want}");
        }
    }

    #[test]
    fn vgg_input_maps_the_range_and_sizes() {
        let x = Tensor::from_slice(&[-1.0f32, 1.0, 0.0, 0.5]).reshape([1, 1, 2, 2]);
        let y = to_vgg_input(&x);
        assert_eq!(y.size(), vec![1, 1, 256, 256]);
        assert_eq!(v(&y.select(2, 0).narrow(2, 0, 1)), vec![0.0]);
        assert_eq!(v(&y.select(2, 255).narrow(2, 255, 1)), vec![191.25]);
        // 512² is box-averaged by 2.
        let big = Tensor::ones([1, 3, 512, 512], (Kind::Float, Device::Cpu));
        let _ = big.narrow(2, 0, 1).narrow(3, 0, 1).fill_(-1.0);
        let y = to_vgg_input(&big);
        assert_eq!(y.size(), vec![1, 3, 256, 256]);
        assert_eq!(
            v(&y.narrow(1, 0, 1).narrow(2, 0, 1).narrow(3, 0, 2)),
            vec![191.25, 255.0]
        );
    }
}
