//! A frozen, pretrained generator behind one handle: the EMA generator of our snapshots (and of the reference's
//! converted pickles), or BigGAN 128 from a BigGAN-PyTorch `G_ema.pth`. `discover` learns directions in it and
//! `visualize --directions` walks them; both only need `z ↦ image`, deterministic and differentiable in z.

use super::reference::{load_gs, LoadedGenerator};
use anyhow::{ensure, Result};
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
}

/// A frozen generator on one device.
pub struct FrozenGenerator {
    pub path: PathBuf,
    /// `progan` or `biggan`.
    pub kind: &'static str,
    net: Net,
    pub class: ClassChoice,
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
        ensure!(
            !is_pytorch_checkpoint(path),
            "{}: BigGAN checkpoints are not supported yet",
            path.display()
        );
        let g = load_gs(path, device)?;
        Ok(Self {
            path: path.to_path_buf(),
            kind: "progan",
            net: Net::Progan(g),
            class,
        })
    }

    /// Wraps an already loaded ProGAN generator.
    pub fn from_progan(path: &Path, g: LoadedGenerator) -> Self {
        Self {
            path: path.to_path_buf(),
            kind: "progan",
            net: Net::Progan(g),
            class: ClassChoice::Random,
        }
    }

    /// Latent components.
    pub fn nz(&self) -> i64 {
        match &self.net {
            Net::Progan(g) => g.net.nz,
        }
    }

    pub fn resolution(&self) -> i64 {
        match &self.net {
            Net::Progan(g) => g.net.resolution,
        }
    }

    pub fn device(&self) -> Device {
        match &self.net {
            Net::Progan(g) => g.vs.device(),
        }
    }

    /// Whether G takes a class.
    pub fn conditional(&self) -> bool {
        false
    }

    /// The ProGAN generator, for tools that need its layers (PCA of the first layer, the metric tensor).
    pub fn progan(&self) -> Option<&LoadedGenerator> {
        match &self.net {
            Net::Progan(g) => Some(g),
        }
    }

    /// Classes for `n` samples under [`Self::class`] (an empty tensor for an unconditional G).
    pub fn classes(&self, n: i64) -> Tensor {
        let _ = n;
        Tensor::zeros([0], (Kind::Int64, self.device()))
    }

    /// Images `[N, C, H, W]` in about [−1, 1] of raw latents `z` `[N, nz]` (G normalises z itself where it does),
    /// with `classes` `[N]` for a conditional G; differentiable in z. The weights are frozen and nothing is
    /// updated, so the 2k + 1 passes of a Hessian Penalty estimate see one function (docs/spec/progan_hp.md §12).
    pub fn forward(&self, z: &Tensor, _classes: &Tensor) -> Tensor {
        match &self.net {
            Net::Progan(g) => g.g.forward(z, g.lod, true),
        }
    }
}
