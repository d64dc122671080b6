//! Disentanglement of a model with an encoder (an InfoGAN's Q head): real images of a dataset with ground-truth
//! factors are encoded, and the suite of `disentanglement` runs on the evaluation data that
//! docs/spec/geometry_infogancr.md §B.3 builds:
//! - **samples**: images drawn uniformly with replacement, with their factor values (the reference: 73,728);
//! - **std set**: a random fraction of the dataset without replacement (10 %), FactorVAE's per-code scale;
//! - **groups**: G groups of L images (500 × 100) where group g fixes factor g mod K to one random value and draws
//!   the others uniformly. Our datasets are samples, not complete grids, so the group images are *rendered* with the
//!   dataset's own synthetic renderer (`data::synth`); for dSprites this is the reference's grid lookup. A dataset
//!   that was not made by `dataset synth` has no renderer: FactorVAE and BetaVAE are then skipped, with a warning.

use crate::core::rng::Rng;
use crate::data::reals::to_float;
use crate::data::synth::{self, Kind as SynthKind};
use crate::data::Dataset;
use crate::metrics::disentanglement::{self, Groups, Scores};
use crate::metrics::encoder_free::to_array;
use crate::metrics::predictor::require_factors;
use anyhow::{Context, Result};
use ndarray::Array2;
use rayon::prelude::*;
use serde::Serialize;
use tch::{Device, Tensor};

/// Sample counts of the suite with an encoder (the reference's by default).
#[derive(Clone, Debug, Serialize)]
pub struct EncoderOptions {
    pub samples: usize,
    pub groups: usize,
    pub group_size: usize,
    /// Fraction of the dataset in FactorVAE's std set.
    pub std_fraction: f64,
    /// Images per encoder call.
    pub batch: usize,
    pub dhsic_rows: usize,
    pub seed: u64,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            samples: 73_728,
            groups: 500,
            group_size: 100,
            std_fraction: 0.1,
            batch: 100,
            dhsic_rows: 5000,
            seed: 0,
        }
    }
}

/// What the suite with an encoder measured.
#[derive(Clone, Debug, Serialize)]
pub struct EncoderScores {
    pub scores: Scores,
    pub factor_names: Vec<String>,
    pub samples: usize,
    pub std_images: usize,
    /// Groups scored (0 when the dataset has no renderer), and how their images were made.
    pub groups: usize,
    pub group_images: Option<String>,
    pub options: EncoderOptions,
}

/// Codes of dataset images `indices` at `2^log2`, encoded in batches on `device`.
fn encode_indices(
    encode: &dyn Fn(&Tensor) -> Tensor,
    dataset: &Dataset,
    log2: u32,
    indices: &[u32],
    opts: &EncoderOptions,
    device: Device,
    bar: &indicatif::ProgressBar,
) -> Result<Array2<f64>> {
    let level = dataset.level(log2)?;
    let mut codes = Vec::new();
    for chunk in indices.chunks(opts.batch.max(1)) {
        let x = to_float(&level.tensor(chunk).to_device(device));
        codes.push(encode(&x).to_device(Device::Cpu));
        bar.inc(1);
    }
    to_array(&Tensor::cat(&codes, 0))
}

/// The rendered groups: group g fixes factor g mod K at the value of a fresh draw; every image draws the others.
fn rendered_groups(
    encode: &dyn Fn(&Tensor) -> Tensor,
    kind: SynthKind,
    k: usize,
    resolution: usize,
    opts: &EncoderOptions,
    device: Device,
    bar: &indicatif::ProgressBar,
) -> Result<Groups> {
    // Fresh draws from the renderer's own factor streams, salted so that they are not the dataset's images.
    let seed = opts.seed ^ 0x6a09_e667_f3bc_c908;
    let channels = kind.channels() as i64;
    let mut codes = Vec::with_capacity(opts.groups);
    let mut labels = Vec::with_capacity(opts.groups);
    for g in 0..opts.groups {
        let j = g % k;
        let fixed = synth::sample_factors(kind, seed, u64::MAX - g as u64)[j];
        let pixels: Vec<u8> = (0..opts.group_size)
            .into_par_iter()
            .map(|m| {
                let mut f = synth::sample_factors(kind, seed, (g * opts.group_size + m) as u64);
                f[j] = fixed;
                synth::render(kind, &f, resolution)
            })
            .collect::<Result<Vec<_>>>()?
            .concat();
        let r = resolution as i64;
        let x = Tensor::from_slice(&pixels).view([opts.group_size as i64, channels, r, r]);
        let mut parts = Vec::new();
        for xb in x.split(opts.batch.max(1) as i64, 0) {
            parts.push(encode(&to_float(&xb.to_device(device))).to_device(Device::Cpu));
        }
        codes.push(to_array(&Tensor::cat(&parts, 0))?);
        labels.push(j);
        bar.inc(1);
    }
    Ok(Groups {
        codes,
        labels,
        std_codes: None,
    })
}

/// The suite for `encode` (float images in [−1, 1] at `2^log2` → codes `[N, D]`) on `dataset`'s images and
/// factors, with a progress bar.
pub fn score_encoder(
    encode: &dyn Fn(&Tensor) -> Tensor,
    dataset: &Dataset,
    log2: u32,
    opts: &EncoderOptions,
    device: Device,
) -> Result<EncoderScores> {
    let specs = require_factors(dataset)?;
    let k = specs.len();
    dataset.level(log2).with_context(|| {
        format!(
            "the encoder reads the dataset at {}², the model's resolution",
            1u32 << log2
        )
    })?;
    let n = dataset.count();
    let std_images = ((n as f64 * opts.std_fraction).round() as usize).clamp(2.min(n), n);
    let kind = SynthKind::of_dataset(dataset.meta())
        .filter(|kind| kind.channels() as usize == dataset.channels());
    if kind.is_none() && opts.groups > 0 {
        log::warn!(
            "{} was not made by `hessian-gan dataset synth`, so no groups with one fixed factor can be rendered: \
             FactorVAE and BetaVAE are skipped",
            dataset.dir().display()
        );
    }
    let groups_n = if kind.is_some() { opts.groups } else { 0 };
    let batches = |count: usize| count.div_ceil(opts.batch.max(1));
    let bar = crate::io::progress::bar(
        Some((batches(opts.samples) + batches(std_images) + groups_n) as u64),
        "scoring the encoder",
    );
    let mut rng = Rng::stream(opts.seed, &[0xe4c0]);

    // Samples with their factor values (with replacement), and the std set (without).
    let sample_idx: Vec<u32> = (0..opts.samples)
        .map(|_| rng.below(n as u64) as u32)
        .collect();
    let codes = encode_indices(encode, dataset, log2, &sample_idx, opts, device, &bar)?;
    let factors = Array2::from_shape_fn((opts.samples, k), |(r, j)| {
        dataset.factors_of(sample_idx[r] as usize)[j] as f64
    });
    let mut all: Vec<u32> = (0..n as u32).collect();
    for i in 0..std_images {
        let j = i + rng.below((n - i) as u64) as usize;
        all.swap(i, j);
    }
    let std_codes = encode_indices(
        encode,
        dataset,
        log2,
        &all[..std_images],
        opts,
        device,
        &bar,
    )?;

    let groups = match kind {
        Some(kind) if groups_n > 0 => {
            let mut g = rendered_groups(encode, kind, k, 1 << log2, opts, device, &bar)?;
            g.std_codes = Some(std_codes);
            Some(g)
        }
        _ => None,
    };
    let discrete: Vec<bool> = specs.iter().map(|s| s.labels.is_some()).collect();
    let scores = disentanglement::score(
        codes.view(),
        factors.view(),
        &discrete,
        groups.as_ref(),
        opts.dhsic_rows,
    )?;
    bar.finish_and_clear();
    Ok(EncoderScores {
        scores,
        factor_names: specs.iter().map(|s| s.name.clone()).collect(),
        samples: opts.samples,
        std_images,
        groups: groups_n,
        group_images: kind.map(|k| format!("rendered by the {} renderer", k.name())),
        options: opts.clone(),
    })
}
