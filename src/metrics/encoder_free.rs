//! Disentanglement of a generator that has no encoder (HP and vanilla ProGANs): the codes are its z components
//! (z ~ N(0, I)), the factors are what the [`FactorPredictor`] reads off G(z). On these pairs the suite of
//! `disentanglement` runs unchanged; in addition:
//! - **FactorVAE on z groups**: a group fixes one z component and draws the others; the factor whose prediction
//!   (scaled by its std over all samples) varies least gets the vote; a majority classifier maps factors to
//!   components, and the score is its accuracy.
//! - **Effect matrix** `E[i][k]`: component i is traversed over [−extent, extent] with the others fixed (as
//!   `visualize` does) and factor k's prediction moves by E: its range over the sweep divided by the factor's
//!   declared range (for a categorical factor, the largest total-variation distance between the predicted class
//!   distributions of two points of the sweep; every entry is in [0, 1]). The
//!   DCI-style disentanglement per component and completeness per factor are computed on it.
//! - **Predictor Fréchet distance**: between real and generated images in the predictor's penultimate features,
//!   an offline quality number (not FID: the features are the predictor's, not Inception's).

use crate::data::Dataset;
use crate::metrics::disentanglement::{self, Scores};
use crate::metrics::fid::{feature_stats, frechet_distance};
use crate::metrics::predictor::{FactorPredictor, FactorQuality};
use anyhow::Result;
use ndarray::Array2;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// Sample counts of the encoder-free suite.
#[derive(Clone, Debug)]
pub struct EncoderFreeOptions {
    /// (z, predicted factors) pairs for the suite.
    pub samples: usize,
    /// FactorVAE groups, and latents per group.
    pub groups: usize,
    pub group_size: usize,
    /// Base latents and steps of each effect-matrix sweep, over [−extent, extent].
    pub effect_bases: usize,
    pub effect_steps: usize,
    pub extent: f64,
    /// Latents per generator call.
    pub batch: usize,
    pub dhsic_rows: usize,
    pub seed: u64,
}

impl Default for EncoderFreeOptions {
    fn default() -> Self {
        // The reference's counts (docs/spec/geometry_infogancr.md §B.3): 73,728 samples, 500 groups of 100.
        EncoderFreeOptions {
            samples: 73_728,
            groups: 500,
            group_size: 100,
            effect_bases: 32,
            effect_steps: 16,
            extent: 2.0,
            batch: 100,
            dhsic_rows: 5000,
            seed: 0,
        }
    }
}

/// A predicted factor whose std over the samples is under this fraction of its declared range counts as not
/// varied by G and is left out of FactorVAE's vote (with every factor collapsed, the score is 0).
pub const COLLAPSED_FACTOR: f64 = 1e-3;

/// What the encoder-free suite measured.
#[derive(Clone, Debug, Serialize)]
pub struct EncoderFreeScores {
    pub scores: Scores,
    pub factor_names: Vec<String>,
    pub factor_vae_z: f64,
    /// `votes[k][i]`: groups fixing component i whose least-varying factor was k (factors G does not vary take
    /// no part: [`COLLAPSED_FACTOR`]).
    pub factor_vae_z_votes: Vec<Vec<u64>>,
    /// `effect[i][k]`, components × factors.
    pub effect: Vec<Vec<f64>>,
    pub effect_disentanglement: f64,
    pub effect_completeness: f64,
    /// The largest entry of the effect matrix. Read the effect DCI with it: on a generator that ignores z every
    /// entry is near 0 and the DCI of such a matrix says nothing (a collapsed demo model: 0.01 and a DCI of 0.31).
    pub effect_max: f64,
    pub predictor_frechet_distance: f64,
    pub predictor_quality: Vec<FactorQuality>,
    pub samples: usize,
    pub seed: u64,
}

/// The factor with the least normalised std in a group (`std / scale`), among those G varies at all over the
/// samples (`scale` above [`COLLAPSED_FACTOR`] of `range`); None when G varies none.
fn least_varying(std: &[f64], scale: &[f64], range: &[f64]) -> Option<usize> {
    (0..std.len())
        .filter(|&a| scale[a] > COLLAPSED_FACTOR * range[a].max(1e-12))
        .min_by(|&a, &b| (std[a] / scale[a]).total_cmp(&(std[b] / scale[b])))
}

/// Runs `g` (latents `[n, nz]` → images in [−1, 1] at the predictor's resolution) in batches.
fn generate(g: &dyn Fn(&Tensor) -> Tensor, z: &Tensor, batch: usize) -> Vec<Tensor> {
    z.split(batch.max(1) as i64, 0)
        .iter()
        .map(|zb| tch::no_grad(|| g(zb)).clamp(-1.0, 1.0))
        .collect()
}

/// A `[rows, columns]` tensor as a float64 host matrix (also the codes of `metrics::encoder`).
pub(crate) fn to_array(t: &Tensor) -> Result<Array2<f64>> {
    let s = t.size();
    let v = Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().view([-1]))?;
    Ok(Array2::from_shape_vec((s[0] as usize, s[1] as usize), v)?)
}

/// The encoder-free suite for generator `g` with `nz` latent components; `reals` gives the real images of the
/// predictor's Fréchet distance. The progress bar advances per generator call.
pub fn score_generator(
    g: &dyn Fn(&Tensor) -> Tensor,
    nz: i64,
    predictor: &FactorPredictor,
    reals: &Dataset,
    opts: &EncoderFreeOptions,
    device: Device,
) -> Result<EncoderFreeScores> {
    let specs = &predictor.meta.factors;
    let k = specs.len();
    let discrete: Vec<bool> = specs.iter().map(|s| s.labels.is_some()).collect();
    let calls = opts.samples.div_ceil(opts.batch)
        + opts.groups * opts.group_size.div_ceil(opts.batch)
        + nz as usize * (opts.effect_bases * opts.effect_steps).div_ceil(opts.batch);
    let bar = crate::io::progress::bar(Some(calls as u64), "scoring");
    tch::manual_seed(opts.seed as i64);
    let mut clock = std::time::Instant::now();
    let mut lap = |what: &str| {
        log::debug!("scoring: {what} {:.1} s", clock.elapsed().as_secs_f64());
        clock = std::time::Instant::now();
    };

    // The (z, predicted factors) pairs and the generated features.
    let z = Tensor::randn([opts.samples as i64, nz], (Kind::Float, device));
    let (mut preds, mut feats) = (Vec::new(), Vec::new());
    for images in generate(g, &z, opts.batch) {
        preds.push(predictor.predict(&images).0);
        feats.push(tch::no_grad(|| predictor.features(&images)).to_device(Device::Cpu));
        bar.inc(1);
    }
    let predicted = Tensor::cat(&preds, 0);
    let codes = to_array(&z.to_device(Device::Cpu))?;
    let factors = to_array(&predicted)?;
    lap("samples through G and the predictor");
    let scores = disentanglement::score(
        codes.view(),
        factors.view(),
        &discrete,
        None,
        opts.dhsic_rows,
    )?;
    lap("the suite on (z, predicted factors)");

    // FactorVAE with z groups: the least-varying predicted factor votes for the fixed component. A factor that G
    // does not vary at all (std under COLLAPSED_FACTOR of its range over the samples) takes no part, as Kim & Mnih
    // prune collapsed code dimensions: it would be the least-varying factor of every group and win every vote.
    let scale: Vec<f64> = Vec::<f64>::try_from(predicted.std_dim(0, false, false))?;
    let range = &predictor.meta.range;
    let mut votes = vec![vec![0u64; nz as usize]; k];
    for group in 0..opts.groups {
        let i = (group % nz as usize) as i64;
        let zg = Tensor::randn([opts.group_size as i64, nz], (Kind::Float, device));
        let fixed = Tensor::randn([1], (Kind::Float, device));
        zg.narrow(1, i, 1)
            .copy_(&fixed.expand([opts.group_size as i64, 1], true));
        let p = Tensor::cat(
            &generate(g, &zg, opts.batch)
                .iter()
                .map(|x| {
                    bar.inc(1);
                    predictor.predict(x).0
                })
                .collect::<Vec<_>>(),
            0,
        );
        let std: Vec<f64> = Vec::try_from(p.std_dim(0, false, false))?;
        if let Some(best) = least_varying(&std, &scale, range) {
            votes[best][i as usize] += 1;
        }
    }
    let factor_vae_z = votes
        .iter()
        .map(|row| row.iter().copied().max().unwrap_or(0))
        .sum::<u64>() as f64
        / opts.groups.max(1) as f64;
    lap("FactorVAE on z groups");

    // The effect matrix.
    let bases = Tensor::randn([opts.effect_bases as i64, nz], (Kind::Float, device));
    let steps = opts.effect_steps as i64;
    let values = Tensor::linspace(-opts.extent, opts.extent, steps, (Kind::Float, device));
    let mut effect = vec![vec![0.0; k]; nz as usize];
    for i in 0..nz {
        // [bases, steps, nz] with component i swept.
        let zs = bases.unsqueeze(1).repeat([1, steps, 1]);
        zs.narrow(2, i, 1).copy_(
            &values
                .view([1, steps, 1])
                .expand([opts.effect_bases as i64, steps, 1], true),
        );
        let flat = zs.view([-1, nz]);
        let (mut pv, mut pp): (Vec<Tensor>, Vec<Vec<Option<Tensor>>>) = (Vec::new(), Vec::new());
        for x in generate(g, &flat, opts.batch) {
            let (v, p) = predictor.predict(&x);
            pv.push(v);
            pp.push(p);
            bar.inc(1);
        }
        let v = Tensor::cat(&pv, 0).view([opts.effect_bases as i64, steps, k as i64]);
        for (j, spec) in specs.iter().enumerate() {
            let moved = if spec.labels.is_some() {
                let probs: Vec<Tensor> = pp
                    .iter()
                    .map(|p| p[j].as_ref().expect("categorical").shallow_clone())
                    .collect();
                let probs = Tensor::cat(&probs, 0);
                let m = probs.size()[1];
                let probs = probs.view([opts.effect_bases as i64, steps, m]);
                // The largest total-variation distance between the class distributions of two points of the
                // sweep (≤ 1; a clean switch of class is 1).
                ((probs.unsqueeze(2) - probs.unsqueeze(1))
                    .abs()
                    .sum_dim_intlist(-1, false, Kind::Double)
                    * 0.5)
                    .amax([1, 2], false)
                    .mean(Kind::Double)
                    .double_value(&[])
            } else {
                // The declared range (predictions are clamped to it), so an entry is at most 1.
                let vj = v.select(2, j as i64);
                let declared = (spec.max - spec.min) as f64;
                let r = if declared > 0.0 {
                    declared
                } else if range[j] > 0.0 {
                    range[j]
                } else {
                    1.0
                };
                ((vj.amax(1, false) - vj.amin(1, false)) / r)
                    .mean(Kind::Double)
                    .double_value(&[])
            };
            effect[i as usize][j] = moved;
        }
    }
    let matrix = Array2::from_shape_fn((nz as usize, k), |(i, j)| effect[i][j]);
    let (effect_disentanglement, effect_completeness) =
        disentanglement::dci_from_importance(&matrix);
    let effect_max = effect.iter().flatten().copied().fold(0.0f64, f64::max);
    lap("the effect matrix");

    // The predictor's Fréchet distance between real and generated images.
    let level = reals.level(predictor.meta.resolution.trailing_zeros())?;
    let n_real = opts.samples.min(reals.count()) as u32;
    let mut real_feats = Vec::new();
    for chunk in (0..n_real).collect::<Vec<_>>().chunks(opts.batch.max(1)) {
        let x = crate::data::reals::to_float(&level.tensor(chunk));
        real_feats.push(tch::no_grad(|| predictor.features(&x)).to_device(Device::Cpu));
    }
    let fd = frechet_distance(
        &feature_stats(&Tensor::cat(&real_feats, 0))?,
        &feature_stats(&Tensor::cat(&feats, 0))?,
    )?;
    lap("the predictor's Fréchet distance");
    bar.finish_and_clear();
    Ok(EncoderFreeScores {
        scores,
        factor_names: specs.iter().map(|s| s.name.clone()).collect(),
        factor_vae_z,
        factor_vae_z_votes: votes,
        effect,
        effect_disentanglement,
        effect_completeness,
        effect_max,
        predictor_frechet_distance: fd,
        predictor_quality: predictor.meta.quality.clone(),
        samples: opts.samples,
        seed: opts.seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_factor_g_never_varies_takes_no_vote() {
        let range = [1.0, 2.0, 2.0];
        // Factor 2 is constant over the samples: without pruning it would win (0 / 1 < 0.1 / 0.5).
        let scale = [0.5, 1.0, 0.0];
        assert_eq!(least_varying(&[0.05, 0.5, 0.0], &scale, &range), Some(0));
        assert_eq!(least_varying(&[0.4, 0.1, 0.0], &scale, &range), Some(1));
        // A std of 1e-4 of a range of 2 is under COLLAPSED_FACTOR; 1e-2 is not.
        assert_eq!(
            least_varying(&[0.4, 0.9, 0.0], &[0.5, 1.0, 2e-4], &range),
            Some(0)
        );
        assert_eq!(
            least_varying(&[0.4, 0.9, 0.0], &[0.5, 1.0, 1e-2], &range),
            Some(2)
        );
        assert_eq!(least_varying(&[0.0, 0.0], &[0.0, 0.0], &[1.0, 1.0]), None);
    }
}
