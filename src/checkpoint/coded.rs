//! A trained model with codes: a generator whose first latent components are its regularised codes, and the encoder
//! that reads them back from images. ProGAN snapshots with an InfoGAN Q head (codes = the first `infogan_nz`
//! components of z ~ N(0, 1)) and InfoGAN-CR snapshots (codes = the `codes` uniform components, Q on D's trunk) look
//! the same through it, so model selection compares either kind.

use super::infogan_cr::{self as cr, is_cr_snapshot};
use super::load_variables;
use super::reference::{load_encoder, load_gs, LoadedEncoder, LoadedGenerator};
use crate::core::networks::infogan_cr::{CrDiscriminator, CrGenerator};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// The distribution of every latent component.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Prior {
    Normal,
    Uniform { low: f64, high: f64 },
}

impl Prior {
    pub fn sample(self, dims: &[i64], device: Device) -> Tensor {
        match self {
            Prior::Normal => Tensor::randn(dims, (Kind::Float, device)),
            Prior::Uniform { low, high } => {
                Tensor::rand(dims, (Kind::Float, device)) * (high - low) + low
            }
        }
    }
}

enum Nets {
    Progan {
        gen: LoadedGenerator,
        enc: LoadedEncoder,
    },
    InfoganCr {
        _vs: [nn::VarStore; 2],
        g: CrGenerator,
        d: CrDiscriminator,
    },
}

/// A generator with codes and its encoder, frozen, on one device.
pub struct CodedModel {
    pub path: PathBuf,
    /// `progan` or `infogan-cr`.
    pub kind: &'static str,
    /// Regularised codes (the leading latent components) and all latent components.
    pub codes: i64,
    pub nz: i64,
    pub resolution: i64,
    pub channels: i64,
    pub prior: Prior,
    nets: Nets,
}

impl CodedModel {
    /// Loads the snapshot at `path`; a model without an encoder is an error that says so.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        if is_cr_snapshot(path) {
            let snap = cr::load_snapshot(path)?;
            let cfg = &snap.config;
            let net = cfg.net();
            let (mut g_vs, mut d_vs) = (nn::VarStore::new(device), nn::VarStore::new(device));
            let g = CrGenerator::new(&g_vs.root(), &net);
            let d = CrDiscriminator::new(&d_vs.root(), &net);
            for (vs, prefix) in [(&mut g_vs, "G"), (&mut d_vs, "D")] {
                vs.freeze();
                load_variables(vs, &snap.tensors, prefix, path)?;
            }
            let latents = cfg.latents();
            return Ok(CodedModel {
                path: path.to_path_buf(),
                kind: "infogan-cr",
                codes: cfg.codes,
                nz: net.nz(),
                resolution: cfg.resolution,
                channels: cfg.channels,
                prior: Prior::Uniform {
                    low: latents.low,
                    high: latents.high,
                },
                nets: Nets::InfoganCr {
                    _vs: [g_vs, d_vs],
                    g,
                    d,
                },
            });
        }
        let gen = load_gs(path, device)?;
        let enc = load_encoder(path, device)?.with_context(|| {
            format!(
                "{} has no Q head (infogan_nz 0): model selection reads codes back from images, so it needs \
                 InfoGAN or InfoGAN-CR models",
                path.display()
            )
        })?;
        Ok(CodedModel {
            path: path.to_path_buf(),
            kind: "progan",
            codes: gen.net.infogan_nz,
            nz: gen.net.nz,
            resolution: gen.net.resolution,
            channels: gen.net.num_channels,
            prior: Prior::Normal,
            nets: Nets::Progan { gen, enc },
        })
    }

    /// `n` latents from the model's prior.
    pub fn sample(&self, n: i64, device: Device) -> Tensor {
        self.prior.sample(&[n, self.nz], device)
    }

    /// Images in [−1, 1] of latents `[N, nz]` (no gradient; G in evaluation mode).
    pub fn generate(&self, z: &Tensor) -> Tensor {
        tch::no_grad(|| match &self.nets {
            Nets::Progan { gen, .. } => gen.g.forward(z, gen.lod, true).clamp(-1.0, 1.0),
            Nets::InfoganCr { g, .. } => g.forward_t(z, false) * 2.0 - 1.0,
        })
    }

    /// Codes `[N, codes]` of images in [−1, 1].
    pub fn encode(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| match &self.nets {
            Nets::Progan { enc, .. } => enc.encode(x),
            Nets::InfoganCr { d, .. } => d.forward(&((x + 1.0) / 2.0)).1,
        })
    }
}

/// The dataset a snapshot was trained on (both models' configurations name it `dataset` under `datasets_dir`).
pub fn trained_dataset(path: &Path) -> Result<(String, PathBuf)> {
    let meta = crate::io::safetensors::read_metadata(path)?;
    let cfg: serde_json::Value =
        serde_json::from_str(meta.get("config").map_or("{}", String::as_str))
            .with_context(|| format!("{}: unreadable configuration", path.display()))?;
    let dataset = cfg["dataset"]
        .as_str()
        .with_context(|| format!("{} names no dataset; pass --dataset", path.display()))?;
    let dir = cfg["datasets_dir"].as_str().unwrap_or("datasets");
    Ok((dataset.to_string(), PathBuf::from(dir)))
}
