//! The numbers behind the figures (docs/spec/progan_hp.md §9.1–§9.5), for any generator closure `Fn(&Tensor) -> Tensor`
//! mapping latents `[n, nz]` to outputs `[n, ..]` (an RGB image `[n, C, H, W]` for a ProGAN G).
//!
//! Everything stays on the closure's device and is reduced in libtorch; only a few scalars per chunk of samples come
//! back to the host. The samples are processed in chunks sized so that the intermediate tensors stay near
//! [`CHUNK_BYTES`] (the full Hessian of a 128² RGB image at nz 12 is 57 MB per sample in float64), and G itself is
//! called on at most `max_batch` rows at a time.

use crate::core::hessian::{full_hessian, HessianPenalty, Reduction, Variance};
use anyhow::{ensure, Result};
use indicatif::ProgressBar;
use tch::{Kind, Tensor};

/// Target size of the intermediate tensors of one chunk of samples.
pub const CHUNK_BYTES: usize = 1 << 30;

/// `g` on `x` in calls of at most `max_batch` rows, concatenated; no gradient is recorded.
pub fn batched<F>(g: &F, x: &Tensor, max_batch: usize) -> Tensor
where
    F: Fn(&Tensor) -> Tensor + ?Sized,
{
    let _guard = tch::no_grad_guard();
    let n = x.size()[0];
    let step = max_batch.max(1) as i64;
    if n <= step {
        return g(x);
    }
    let parts: Vec<Tensor> = (0..n)
        .step_by(step as usize)
        .map(|start| g(&x.narrow(0, start, step.min(n - start))))
        .collect();
    Tensor::cat(&parts, 0)
}

/// Number of output values per sample (one forward pass on the first latent).
fn output_elements<F>(g: &F, z: &Tensor) -> Result<i64>
where
    F: Fn(&Tensor) -> Tensor + ?Sized,
{
    let _guard = tch::no_grad_guard();
    let out = g(&z.narrow(0, 0, 1));
    ensure!(
        out.dim() >= 1 && out.size()[0] == 1,
        "the generator returned shape {:?} for one latent; it must keep the batch dimension first",
        out.size()
    );
    Ok(out.numel() as i64)
}

/// Samples per chunk when one sample needs `bytes_per_sample` of intermediates.
fn chunk_samples(bytes_per_sample: usize) -> i64 {
    (CHUNK_BYTES / bytes_per_sample.max(1)).max(1) as i64
}

fn check_latents(z: &Tensor) -> Result<(i64, i64)> {
    let s = z.size();
    ensure!(
        s.len() == 2 && s[0] >= 1 && s[1] >= 1,
        "latents must be [samples, nz] with at least one sample, got shape {s:?}"
    );
    Ok((s[0], s[1]))
}

/// The per-element Hessian Penalty of `g`'s output (docs/spec/progan_hp.md §9.2, §9.4): the NumPy estimator with `k` Rademacher
/// directions, step `epsilon`, **unbiased** variance (÷(k−1)) and no reduction. Returns float32 `[n, ..out]`.
///
/// The Rademacher directions come from libtorch's generator of z's device; seed it (`tch::manual_seed`) for
/// repeatable maps.
pub fn per_element_hp<F>(
    g: &F,
    z: &Tensor,
    k: usize,
    epsilon: f64,
    max_batch: usize,
    progress: Option<&ProgressBar>,
) -> Result<Tensor>
where
    F: Fn(&Tensor) -> Tensor + ?Sized,
{
    let (n, _) = check_latents(z)?;
    let hp = HessianPenalty::new(k, epsilon)?
        .with_variance(Variance::Unbiased)
        .with_reduction(Reduction::None);
    // 2k perturbed outputs plus the second differences and their deviations, float32.
    let per_sample = 2 * k * output_elements(g, z)? as usize * 4 * 3;
    let chunk = chunk_samples(per_sample);
    let _guard = tch::no_grad_guard();
    let mut maps = Vec::new();
    for start in (0..n).step_by(chunk as usize) {
        let zc = z.narrow(0, start, chunk.min(n - start));
        let f = |x: &Tensor| vec![batched(g, x, max_batch)];
        let mut var = hp.penalties(f, &zc, None)?;
        maps.push(var.remove(0));
        if let Some(p) = progress {
            p.inc(zc.size()[0] as u64);
        }
    }
    Ok(Tensor::cat(&maps, 0))
}

/// The per-pixel HP heatmap of docs/spec/progan_hp.md §9.4: [`per_element_hp`] with `k` (2 in the reference) reduced by a max over the
/// channel axis (dim 1), giving `[n, H, W]`.
pub fn hp_heatmap<F>(
    g: &F,
    z: &Tensor,
    k: usize,
    epsilon: f64,
    max_batch: usize,
    progress: Option<&ProgressBar>,
) -> Result<Tensor>
where
    F: Fn(&Tensor) -> Tensor + ?Sized,
{
    let map = per_element_hp(g, z, k, epsilon, max_batch, progress)?;
    ensure!(
        map.dim() == 4,
        "the HP heatmap needs images [n, C, H, W]; the generator returned per-sample shape {:?}",
        &map.size()[1..]
    );
    Ok(map.amax(1, false))
}

/// The Hessian of docs/spec/progan_hp.md §9.2 for each sample: at the output element with the largest per-element HP.
#[derive(Debug)]
pub struct LargestHpHessian {
    /// `[n, nz, nz]` float64, signed (plot `|H|`).
    pub hessians: Tensor,
    /// For each sample, the chosen element as an index into the per-sample output shape (`[c, y, x]` for images).
    pub elements: Vec<Vec<i64>>,
    /// For each sample, the HP value at that element.
    pub hp: Vec<f64>,
}

/// For each sample, the output element with the largest per-element HP (`k`, ε, unbiased; 200 and 0.1 in the
/// reference) and the full finite-difference Hessian there (docs/spec/progan_hp.md §9.1, §9.2).
///
/// Only the chosen element's Hessian is kept: the 4·nz(nz+1)/2 corner evaluations of every sample are reduced to
/// that one output value as they come out of G, so memory does not grow with the image size.
pub fn hessian_at_largest_hp<F>(
    g: &F,
    z: &Tensor,
    k: usize,
    epsilon: f64,
    max_batch: usize,
    progress: Option<&ProgressBar>,
) -> Result<LargestHpHessian>
where
    F: Fn(&Tensor) -> Tensor + ?Sized,
{
    let (n, _) = check_latents(z)?;
    // The HP map dominates memory (2k outputs per sample); the Hessian keeps one value per corner and sample.
    let per_sample = 2 * k * output_elements(g, z)? as usize * 4 * 3;
    let chunk = chunk_samples(per_sample);
    let mut hessians = Vec::new();
    let mut elements = Vec::new();
    let mut hp = Vec::new();
    for start in (0..n).step_by(chunk as usize) {
        let zc = z.narrow(0, start, chunk.min(n - start));
        let m = zc.size()[0];
        let hp_map = per_element_hp(g, &zc, k, epsilon, max_batch, None)?;
        let out_shape = hp_map.size()[1..].to_vec();
        let (hp_max, idx) = hp_map.reshape([m, -1]).max_dim(1, false);
        let select = |x: &Tensor| {
            // full_hessian evaluates corners of the whole chunk at once, so its rows cycle through the m samples.
            let out = batched(g, x, max_batch);
            let rows = out.size()[0];
            let per = out.reshape([rows / m, m, -1]);
            let index = idx.view([1, m, 1]).expand([rows / m, m, 1], false);
            per.gather(2, &index, false).reshape([rows, 1])
        };
        let h = full_hessian(select, &zc, epsilon, max_batch)?; // [m, 1, nz, nz]
        hessians.push(h.squeeze_dim(1));
        let flat_idx = Vec::<i64>::try_from(&idx.to_device(tch::Device::Cpu))?;
        elements.extend(flat_idx.iter().map(|&f| unravel(f, &out_shape)));
        hp.extend(Vec::<f64>::try_from(
            &hp_max.to_kind(Kind::Double).to_device(tch::Device::Cpu),
        )?);
        if let Some(p) = progress {
            p.inc(m as u64);
        }
    }
    Ok(LargestHpHessian {
        hessians: Tensor::cat(&hessians, 0),
        elements,
        hp,
    })
}

/// Row-major multi-index of a flat index.
fn unravel(mut flat: i64, shape: &[i64]) -> Vec<i64> {
    let mut out = vec![0; shape.len()];
    for (o, &s) in out.iter_mut().zip(shape).rev() {
        *o = flat % s;
        flat /= s;
    }
    out
}

pub use crate::core::geometry::analysis::{Diagonalness, DiagonalnessAccumulator};

/// Table 2's numbers for `g` at the latents `z`: the full Hessian (docs/spec/progan_hp.md §9.1, step `epsilon`) of every output element of
/// every sample, processed a chunk of samples at a time (never all of them at once).
pub fn diagonalness<F>(
    g: &F,
    z: &Tensor,
    epsilon: f64,
    max_batch: usize,
    progress: Option<&ProgressBar>,
) -> Result<Diagonalness>
where
    F: Fn(&Tensor) -> Tensor + ?Sized,
{
    let (n, nz) = check_latents(z)?;
    ensure!(
        nz >= 2,
        "diagonal-ness needs nz ≥ 2 (a 1×1 Hessian has no off-diagonal entries)"
    );
    // The Hessian, its permuted copy, |H| and the reductions: about five float64 copies per sample.
    let per_sample = output_elements(g, z)? as usize * (nz * nz) as usize * 8 * 5;
    let chunk = chunk_samples(per_sample);
    let mut acc = DiagonalnessAccumulator::default();
    for start in (0..n).step_by(chunk as usize) {
        let zc = z.narrow(0, start, chunk.min(n - start));
        let h = full_hessian(|x| batched(g, x, max_batch), &zc, epsilon, max_batch)?;
        acc.add(&h)?;
        if let Some(p) = progress {
            p.inc(zc.size()[0] as u64);
        }
    }
    acc.finish()
}

/// Activeness of every component (docs/spec/progan_hp.md §9.5): for each base latent, three copies with component i set to
/// −extent, 0 and +extent; the unbiased (ddof 1) variance of the three outputs per element, averaged over the
/// output elements and the samples. Returns float64 `[nz]`.
///
/// `z` is what G receives (already in the figure's latent convention): the edit happens on it directly.
pub fn activeness<F>(
    g: &F,
    z: &Tensor,
    extent: f64,
    max_batch: usize,
    progress: Option<&ProgressBar>,
) -> Result<Tensor>
where
    F: Fn(&Tensor) -> Tensor + ?Sized,
{
    let (n, nz) = check_latents(z)?;
    ensure!(
        extent.is_finite(),
        "activeness: extent must be finite, got {extent}"
    );
    let out_elems = output_elements(g, z)?;
    // nz·3 outputs per sample: float32 from G, its float64 copy, and the variance's mean and deviations.
    let chunk = chunk_samples((nz * 3 * out_elems) as usize * (4 + 8 * 3));
    let _guard = tch::no_grad_guard();
    let device = z.device();
    let values = Tensor::from_slice(&[-extent, 0.0, extent])
        .to_kind(z.kind())
        .to_device(device);
    let eye = Tensor::eye(nz, (z.kind(), device)); // eye[i] selects component i
    let keep = (eye.ones_like() - &eye).view([nz, 1, 1, nz]);
    let set = eye.view([nz, 1, 1, nz]) * values.view([1, 3, 1, 1]);
    let mut total = Tensor::zeros([nz], (Kind::Double, device));
    for start in (0..n).step_by(chunk as usize) {
        let zc = z.narrow(0, start, chunk.min(n - start));
        let m = zc.size()[0];
        // [nz(i), 3(v), m, nz]: zc with column i replaced by value v.
        let edited = zc.view([1, 1, m, nz]) * &keep + &set;
        let out = batched(g, &edited.reshape([-1, nz]), max_batch).to_kind(Kind::Double);
        let out = out.reshape([nz, 3, m, -1]);
        let var = out.var_dim(1, true, false); // [nz, m, E]
        total += var.sum_dim_intlist([1, 2].as_slice(), false, Kind::Double);
        if let Some(p) = progress {
            p.inc(m as u64);
        }
    }
    Ok(total / (n * out_elems) as f64)
}
