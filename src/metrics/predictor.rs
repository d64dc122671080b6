//! The factor predictor: a small CNN from images to a dataset's ground-truth factors (regression for continuous
//! and grid factors, classification for categorical ones), trained once per dataset and resolution on the
//! dataset's own images with a held-out split, and cached. It is what makes a generator without an encoder
//! measurable: `score` reads the factors of G(z) through it. Its held-out R² and accuracy are recorded with every
//! score, because they measure the measuring instrument.

use crate::core::rng::{self, Rng};
use crate::data::{Dataset, FactorSpec};
use crate::io::safetensors;
use crate::metrics::fid::dataset_fingerprint;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Width of the penultimate layer (the features of the predictor's Fréchet distance).
pub const FEATURES: i64 = 128;

/// How the predictor is trained.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PredictorOptions {
    pub steps: usize,
    pub batch: usize,
    pub learning_rate: f64,
    /// Fraction of the images held out for the quality numbers (at most 2000 images).
    pub holdout: f64,
    pub seed: u64,
}

impl Default for PredictorOptions {
    fn default() -> Self {
        PredictorOptions {
            steps: 3000,
            batch: 64,
            learning_rate: 1e-3,
            holdout: 0.1,
            seed: 1,
        }
    }
}

/// How well one factor is predicted on the held-out images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FactorQuality {
    pub name: String,
    /// R² (continuous and grid factors) or accuracy (categorical ones).
    pub metric: String,
    pub value: f64,
    /// Below the bar a score that uses this factor deserves caution (R² < 0.6, accuracy < 0.8).
    pub poor: bool,
}

/// What is cached beside the weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PredictorMeta {
    pub dataset: String,
    pub fingerprint: String,
    pub resolution: i64,
    pub channels: i64,
    pub factors: Vec<FactorSpec>,
    /// Mean and std of each factor over the training images (continuous targets are standardised).
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Per factor: the range of its values over the dataset (the effect matrix's normaliser).
    pub range: Vec<f64>,
    pub quality: Vec<FactorQuality>,
    pub options: PredictorOptions,
    pub holdout_images: usize,
}

/// A trained predictor.
pub struct FactorPredictor {
    _vs: nn::VarStore,
    trunk: nn::Sequential,
    fc: nn::Linear,
    head: nn::Linear,
    pub meta: PredictorMeta,
    device: Device,
}

/// The dataset's ground-truth factors, or an error saying that scoring needs them.
pub fn require_factors(dataset: &Dataset) -> Result<&[FactorSpec]> {
    let specs = &dataset.meta().factors;
    ensure!(
        !specs.is_empty(),
        "dataset {} has no ground-truth factors (factors.npy); scoring needs a dataset made by `hessian-gan \
         dataset synth` or another dataset with factors",
        dataset.dir().display()
    );
    Ok(specs)
}

/// Classes of a categorical factor (None for continuous and grid factors).
fn classes(spec: &FactorSpec) -> Option<i64> {
    spec.labels.as_ref().map(|l| l.len() as i64)
}

fn outputs(specs: &[FactorSpec]) -> i64 {
    specs.iter().map(|s| classes(s).unwrap_or(1)).sum()
}

impl FactorPredictor {
    fn build(meta: PredictorMeta, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let mut trunk = nn::seq();
        let (mut c_in, mut c_out, mut res) = (meta.channels, 32, meta.resolution);
        let mut i = 0;
        while res > 4 {
            let cfg = nn::ConvConfig {
                stride: 2,
                padding: 1,
                ..Default::default()
            };
            trunk = trunk
                .add(nn::conv2d(&root / format!("conv{i}"), c_in, c_out, 4, cfg))
                .add_fn(|x| x.leaky_relu());
            c_in = c_out;
            c_out = (c_out * 2).min(128);
            res /= 2;
            i += 1;
        }
        let fc = nn::linear(&root / "fc", c_in * 16, FEATURES, Default::default());
        let head = nn::linear(
            &root / "head",
            FEATURES,
            outputs(&meta.factors),
            Default::default(),
        );
        FactorPredictor {
            _vs: vs,
            trunk,
            fc,
            head,
            meta,
            device,
        }
    }

    /// Penultimate features `[N, 128]` of float images in [−1, 1].
    pub fn features(&self, x: &Tensor) -> Tensor {
        let h = self.trunk.forward(&x.to_device(self.device)).flatten(1, -1);
        self.fc.forward(&h).leaky_relu()
    }

    fn raw(&self, x: &Tensor) -> Tensor {
        self.head.forward(&self.features(x))
    }

    /// The predicted factor values `[N, K]` (CPU, float64): continuous factors in their own units, clamped to the
    /// factor's declared range (a regressor extrapolates on images unlike the dataset's; a factor's value cannot
    /// leave its range), categorical ones as the class index; and per categorical factor its class probabilities
    /// `[N, m]`.
    pub fn predict(&self, x: &Tensor) -> (Tensor, Vec<Option<Tensor>>) {
        let out = tch::no_grad(|| self.raw(x))
            .to_device(Device::Cpu)
            .to_kind(Kind::Double);
        let mut cols = Vec::new();
        let mut probs = Vec::new();
        let mut at = 0;
        for (j, spec) in self.meta.factors.iter().enumerate() {
            match classes(spec) {
                Some(m) => {
                    let logits = out.narrow(1, at, m);
                    cols.push(logits.argmax(1, false).to_kind(Kind::Double));
                    probs.push(Some(logits.softmax(1, Kind::Double)));
                    at += m;
                }
                None => {
                    cols.push(
                        (out.select(1, at) * self.meta.std[j] + self.meta.mean[j])
                            .clamp(spec.min as f64, spec.max as f64),
                    );
                    probs.push(None);
                    at += 1;
                }
            }
        }
        (Tensor::stack(&cols, 1), probs)
    }

    /// The cached predictor of `dataset` at `2^log2`, or a new one trained (with a progress bar) and cached.
    pub fn load_or_train(
        dataset: &Dataset,
        log2: u32,
        cache_dir: &Path,
        opts: &PredictorOptions,
        device: Device,
    ) -> Result<Self> {
        let fingerprint = dataset_fingerprint(dataset, log2)?;
        let path = cache_path(cache_dir, &fingerprint, log2);
        if path.is_file() {
            if let Ok(p) = Self::load(&path, device) {
                log::info!("factor predictor from {}", path.display());
                p.warn_poor();
                return Ok(p);
            }
            log::warn!(
                "{} is unreadable; training the factor predictor again",
                path.display()
            );
        }
        let p = Self::train(dataset, log2, opts, fingerprint, device)?;
        p.warn_poor();
        if let Err(e) = p.save(&path) {
            // Trained already: a cache that cannot be written costs the next run the training, not this one its
            // scores.
            log::warn!(
                "the factor predictor was not cached: {}",
                crate::io::log::error_line(e.as_ref())
            );
        }
        Ok(p)
    }

    /// Writes the weights, with the metadata in the file's header (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let named: Vec<(String, Tensor)> = self
            ._vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k, v.to_device(Device::Cpu)))
            .collect();
        let meta = std::collections::HashMap::from([(
            META_KEY.to_string(),
            serde_json::to_string(&self.meta)?,
        )]);
        safetensors::save(path, &named, meta)
    }

    /// A predictor written by [`FactorPredictor::save`].
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let (tensors, meta) = safetensors::load(path)?;
        let text = meta
            .get(META_KEY)
            .with_context(|| format!("{} is not a factor predictor", path.display()))?;
        let meta: PredictorMeta = serde_json::from_str(text)
            .with_context(|| format!("{}: unreadable predictor metadata", path.display()))?;
        let p = Self::build(meta, device);
        tch::no_grad(|| -> Result<()> {
            for (name, mut var) in p._vs.variables() {
                let t = tensors
                    .get(&name)
                    .with_context(|| format!("{}: missing {name}", path.display()))?;
                ensure!(
                    t.size() == var.size(),
                    "{}: {name} has shape {:?}, expected {:?}",
                    path.display(),
                    t.size(),
                    var.size()
                );
                var.copy_(t);
            }
            Ok(())
        })?;
        Ok(p)
    }

    /// Trains a predictor on `dataset` at `2^log2`.
    pub fn train(
        dataset: &Dataset,
        log2: u32,
        opts: &PredictorOptions,
        fingerprint: String,
        device: Device,
    ) -> Result<Self> {
        let specs = require_factors(dataset)?.to_vec();
        let level = dataset.level(log2).with_context(|| {
            format!(
                "the factor predictor reads the dataset at {}², the model's resolution",
                1u32 << log2
            )
        })?;
        let n = dataset.count();
        let k = specs.len();
        let factors = Tensor::from_slice(dataset.factors())
            .view([n as i64, k as i64])
            .to_kind(Kind::Double);
        let mean: Vec<f64> = Vec::try_from(factors.mean_dim(0, false, Kind::Double))?;
        let std: Vec<f64> = Vec::<f64>::try_from(factors.std_dim(0, false, false))?
            .into_iter()
            .map(|s| if s > 0.0 { s } else { 1.0 })
            .collect();
        let range: Vec<f64> =
            Vec::<f64>::try_from(factors.amax(0, false) - factors.amin(0, false))?;
        let order = rng::permutation(n, rng::derive_seed(opts.seed, &[0xfac7]));
        let holdout = ((n as f64 * opts.holdout) as usize)
            .clamp(1, 2000)
            .min(n - 1);
        let (test_idx, train_idx) = order.split_at(holdout);
        let meta = PredictorMeta {
            dataset: dataset.meta().name.clone(),
            fingerprint,
            resolution: 1 << log2,
            channels: dataset.channels() as i64,
            factors: specs.clone(),
            mean,
            std,
            range,
            quality: Vec::new(),
            options: opts.clone(),
            holdout_images: holdout,
        };
        let mut p = Self::build(meta, device);
        let targets = |idx: &[u32]| {
            let i = Tensor::from_slice(&idx.iter().map(|&v| v as i64).collect::<Vec<_>>());
            factors.index_select(0, &i)
        };
        let mut opt = nn::Adam::default().build(&p._vs, opts.learning_rate)?;
        let mut draw = Rng::new(rng::derive_seed(opts.seed, &[0x7a1]));
        let bar =
            crate::io::progress::bar(Some(opts.steps as u64), "training the factor predictor");
        tch::manual_seed(opts.seed as i64);
        for _ in 0..opts.steps {
            let idx: Vec<u32> = (0..opts.batch)
                .map(|_| train_idx[draw.below(train_idx.len() as u64) as usize])
                .collect();
            let x = crate::data::reals::to_float(&level.tensor(&idx)).to_device(device);
            let y = targets(&idx).to_device(device);
            let loss = p.loss(&x, &y);
            opt.backward_step(&loss);
            bar.inc(1);
        }
        bar.finish_and_clear();
        p.meta.quality = p.evaluate(level, test_idx, &targets)?;
        Ok(p)
    }

    /// A warning per factor the predictor reads poorly (each time it is used, cached or not).
    pub fn warn_poor(&self) {
        for q in self.meta.quality.iter().filter(|q| q.poor) {
            log::warn!(
                "the factor predictor reads {} poorly ({} {:.3} on {} held-out images): scores that involve it \
                 measure the predictor as much as the model",
                q.name,
                q.metric,
                q.value,
                self.meta.holdout_images
            );
        }
    }

    fn loss(&self, x: &Tensor, y: &Tensor) -> Tensor {
        let out = self.raw(x);
        let mut at = 0;
        let mut total = Tensor::zeros([], (Kind::Float, self.device));
        for (j, spec) in self.meta.factors.iter().enumerate() {
            let target = y.select(1, j as i64);
            match classes(spec) {
                Some(m) => {
                    let class = target
                        .round()
                        .clamp(0.0, (m - 1) as f64)
                        .to_kind(Kind::Int64);
                    total += out.narrow(1, at, m).cross_entropy_for_logits(&class);
                    at += m;
                }
                None => {
                    let z = ((target - self.meta.mean[j]) / self.meta.std[j]).to_kind(Kind::Float);
                    total += (out.select(1, at) - z).square().mean(Kind::Float);
                    at += 1;
                }
            }
        }
        total
    }

    /// Held-out R² (continuous) and accuracy (categorical) per factor.
    fn evaluate(
        &self,
        level: &crate::data::Level,
        test_idx: &[u32],
        targets: &dyn Fn(&[u32]) -> Tensor,
    ) -> Result<Vec<FactorQuality>> {
        let mut preds = Vec::new();
        for chunk in test_idx.chunks(256) {
            let x = crate::data::reals::to_float(&level.tensor(chunk));
            preds.push(self.predict(&x).0);
        }
        let pred = Tensor::cat(&preds, 0);
        let truth = targets(test_idx);
        let mut out = Vec::new();
        for (j, spec) in self.meta.factors.iter().enumerate() {
            let (p, t) = (pred.select(1, j as i64), truth.select(1, j as i64));
            let q = match classes(spec) {
                Some(_) => {
                    let acc = p
                        .eq_tensor(&t.round())
                        .to_kind(Kind::Double)
                        .mean(Kind::Double);
                    let value = acc.double_value(&[]);
                    FactorQuality {
                        name: spec.name.clone(),
                        metric: "accuracy".into(),
                        value,
                        poor: value < 0.8,
                    }
                }
                None => {
                    let ss_res = (&p - &t).square().sum(Kind::Double).double_value(&[]);
                    let ss_tot = (&t - t.mean(Kind::Double))
                        .square()
                        .sum(Kind::Double)
                        .double_value(&[]);
                    let value = if ss_tot > 0.0 {
                        1.0 - ss_res / ss_tot
                    } else {
                        0.0
                    };
                    FactorQuality {
                        name: spec.name.clone(),
                        metric: "R²".into(),
                        value,
                        poor: value < 0.6,
                    }
                }
            };
            out.push(q);
        }
        Ok(out)
    }
}

/// The metadata key of a predictor file.
const META_KEY: &str = "hessian-gan-factor-predictor";

/// `<cache>/predictors/<fingerprint>-r<res>.safetensors`.
fn cache_path(cache_dir: &Path, fingerprint: &str, log2: u32) -> PathBuf {
    let stem = format!(
        "{}-r{}",
        &fingerprint[..16.min(fingerprint.len())],
        1u32 << log2
    );
    cache_dir
        .join("predictors")
        .join(format!("{stem}.safetensors"))
}
