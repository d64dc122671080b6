//! hessian-gan: ProGAN with the Hessian Penalty (Peebles et al., ECCV 2020) on libtorch.
//!
//! The binary (`src/main.rs`) only parses arguments; everything it runs lives here, one module per job.

pub mod cuda_info;
pub mod dataset;
pub mod device;
pub mod fsutil;
pub mod hessian;
pub mod imageio;
pub mod info;

/// Options every subcommand receives (`--device`, `--seed`, `-v`, `-q`).
#[derive(Clone, Debug)]
pub struct Globals {
    pub device: device::DeviceSpec,
    pub seed: u64,
    /// −1 quiet, 0 normal, 1+ verbose.
    pub verbosity: i8,
}
