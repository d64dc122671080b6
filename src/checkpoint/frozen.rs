//! A frozen, pretrained generator behind one handle: the EMA generator of our snapshots (and of the reference's
//! converted pickles), or BigGAN 128 from a BigGAN-PyTorch `G_ema.pth`. `discover` learns directions in it and
//! `visualize --directions` walks them; both only need `z ↦ image`, deterministic and differentiable in z.

use super::reference::{load_gs, LoadedGenerator};
use crate::core::networks::biggan::BigGan;
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The class-conditional generator's classes (ignored by unconditional ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ClassChoice {
    /// One class for every sample (the reference's discovery scripts fix 207, golden retriever, or 497, church).
    Fixed(i64),
    /// A uniformly random class per sample.
    Random,
}

enum Net {
    Progan(LoadedGenerator),
    BigGan(BigGan),
}

/// A frozen generator on one device.
pub struct FrozenGenerator {
    pub path: PathBuf,
    net: Net,
    pub class: ClassChoice,
    device: Device,
}

/// BigGAN checkpoints are PyTorch files; everything else is one of our snapshots.
pub fn is_pytorch_checkpoint(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("pth" | "pt")
    )
}

impl FrozenGenerator {
    /// Loads a snapshot (its Gs) or, for a `.pth`/`.pt` file, a BigGAN generator's state dict.
    pub fn load(path: &Path, class: ClassChoice, device: Device) -> Result<Self> {
        if is_pytorch_checkpoint(path) {
            let g = BigGan::load_inferring(path, device)
                .with_context(|| format!("cannot load BigGAN generator {}", path.display()))?;
            if let ClassChoice::Fixed(c) = class {
                let n = g.config().n_classes;
                ensure!(
                    (0..n).contains(&c),
                    "--class {c}: {} has classes 0–{}",
                    path.display(),
                    n - 1
                );
            }
            return Ok(Self {
                path: path.to_path_buf(),
                net: Net::BigGan(g),
                class,
                device,
            });
        }
        let g = load_gs(path, device)?;
        Ok(Self {
            path: path.to_path_buf(),
            net: Net::Progan(g),
            class,
            device,
        })
    }

    /// Latent components.
    pub fn nz(&self) -> i64 {
        match &self.net {
            Net::Progan(g) => g.net.nz,
            Net::BigGan(g) => g.config().dim_z,
        }
    }

    pub fn resolution(&self) -> i64 {
        match &self.net {
            Net::Progan(g) => g.net.resolution,
            Net::BigGan(g) => g.config().resolution,
        }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The ProGAN generator, for tools that need its layers (PCA of the first layer, the metric tensor).
    pub fn progan(&self) -> Option<&LoadedGenerator> {
        match &self.net {
            Net::Progan(g) => Some(g),
            Net::BigGan(_) => None,
        }
    }

    /// Classes for `n` samples under [`Self::class`] (an empty tensor for an unconditional G).
    pub fn classes(&self, n: i64) -> Tensor {
        let device = self.device;
        match (&self.net, self.class) {
            (Net::Progan(_), _) => Tensor::zeros([0], (Kind::Int64, device)),
            (Net::BigGan(_), ClassChoice::Fixed(c)) => Tensor::full([n], c, (Kind::Int64, device)),
            (Net::BigGan(g), ClassChoice::Random) => {
                Tensor::randint(g.config().n_classes, [n], (Kind::Int64, device))
            }
        }
    }

    /// Images `[N, C, H, W]` in about [−1, 1] of raw latents `z` `[N, nz]` (G normalises z itself where it does),
    /// with `classes` `[N]` for a conditional G; differentiable in z. The weights are frozen and nothing is
    /// updated, so the 2k + 1 passes of a Hessian Penalty estimate see one function (docs/spec/progan_hp.md §12).
    pub fn forward(&self, z: &Tensor, classes: &Tensor) -> Tensor {
        match &self.net {
            Net::Progan(g) => g.g.forward(z, g.lod, true),
            Net::BigGan(g) => g.forward(z, classes),
        }
    }
}
