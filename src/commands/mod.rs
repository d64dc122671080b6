//! The commands: one module per subcommand that does more than call one library function. Each takes plain
//! option structs (the CLI converts its flags into them) and returns what it produced; the CLI prints.
//!
//! May import: `training`, `checkpoint`, `config`, `metrics`, `data`, `core`, `io` (ARCHITECTURE.md).

pub mod bench;
pub mod discover;
pub mod evaluate;
pub mod figures;
pub mod geometry;
pub mod info;
pub mod launch;
pub mod report;
pub mod score;
pub mod select;
pub mod sweep;
pub mod train;
pub mod visualize;

use crate::checkpoint::reference::Resolver;
use crate::core::device::DeviceSpec;
use std::path::PathBuf;

/// Options every subcommand receives (`--device`, `--seed`, `--base-url`).
#[derive(Clone, Debug, Default)]
pub struct Globals {
    pub device: DeviceSpec,
    /// `--seed` when given (commands fall back to their own default, e.g. a preset's or 1000).
    pub seed: Option<u64>,
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

    /// A model-reference resolver on `--device` and `--base-url`, looking up run numbers in `results_dir`.
    pub fn resolver(&self, results_dir: impl Into<PathBuf>) -> Resolver<'static> {
        Resolver::new(self.device, self.base_url.clone(), results_dir)
    }
}
