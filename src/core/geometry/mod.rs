//! The generator's latent metric tensor (docs/spec/geometry_infogancr.md Part A): an image distance pulled back
//! through G, `H(z0) = ∂²d(G(z0), G(z))/∂z² at z = z0`, its Hessian-vector products (`hvp.rs`), a restarted
//! Lanczos eigensolver for them (`lanczos.rs`, there is no ARPACK in libtorch), and the analyses of many such
//! tensors: averaging, spectra, consistency, eigenbasis comparisons and axis alignment (`analysis.rs`).
//!
//! `hessian-gan geometry` (commands/geometry) drives them; the HVP operator trait and `lanczos` are meant for any
//! command that needs the top eigenpairs of a latent Hessian.

pub mod analysis;
pub mod hvp;
pub mod lanczos;

pub use hvp::{
    full_hessian, BackwardHvp, FeatureMap, ForwardHvp, HvpOperator, MatrixOperator, PulledMetric,
    Reduction,
};
pub use lanczos::{lanczos, symmetric_eigh, Eigenpairs, LanczosOptions};
