//! The numerical core: the networks, the Hessian Penalty, the optimiser, the training schedule, arithmetic
//! precision, latents and their traversals, the latent metric tensor and its eigensolver, the project's seeded RNG,
//! and the compute device.
//!
//! May import: `io` (ARCHITECTURE.md).

pub mod cr;
pub mod device;
pub mod discover;
pub mod distributed;
pub mod geometry;
pub mod hessian;
pub mod latents;
pub mod native;
pub mod networks;
pub mod optim;
pub mod precision;
pub mod rng;
pub mod schedule;
pub mod traversal;
