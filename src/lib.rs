//! hessian-gan: ProGAN with the Hessian Penalty (Peebles et al., ECCV 2020) on libtorch.
//!
//! The binary (`src/main.rs`) only parses arguments; everything it runs lives here, one module per job.

pub mod bench;
pub mod config;
pub mod cuda_info;
pub mod dataset;
pub mod device;
pub mod download;
pub mod evaluate;
pub mod fetch;
pub mod figures;
pub mod fsutil;
pub mod hessian;
pub mod imageio;
pub mod import;
pub mod info;
pub mod latents;
pub mod losses;
pub mod metrics;
pub mod models;
pub mod networks;
pub mod optim;
pub mod pickle;
pub mod precision;
pub mod progress;
pub mod resources;
pub mod schedule;
pub mod snapshot;
pub mod tensorboard;
pub mod tfrecord;
pub mod train;
pub mod traversal;
pub mod video;
pub mod visualize;

/// Options every subcommand receives (`--device`, `--seed`, `-v`, `-q`).
#[derive(Clone, Debug)]
pub struct Globals {
    pub device: device::DeviceSpec,
    /// `--seed` when given (commands fall back to their own default, e.g. a preset's or 1000).
    pub seed: Option<u64>,
    /// −1 quiet, 0 normal, 1+ verbose.
    pub verbosity: i8,
    /// `--base-url`: where reference datasets and checkpoints are downloaded from (else $HESSIAN_GAN_BASE_URL, else
    /// the reference's server).
    pub base_url: Option<String>,
}

impl Globals {
    /// The reference's default seed (train.py `--seed 1000`).
    pub const DEFAULT_SEED: u64 = 1000;

    /// `--seed`, or 1000 when it was not given.
    pub fn seed_or_default(&self) -> u64 {
        self.seed.unwrap_or(Self::DEFAULT_SEED)
    }
}
