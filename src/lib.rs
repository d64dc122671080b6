//! hessian-gan: ProGAN with the Hessian Penalty (Peebles et al., ECCV 2020) on libtorch.
//!
//! The crate is layered; each layer imports only from the layers below it (ARCHITECTURE.md, checked by
//! `tests/architecture.rs`):
//!
//! | layer | what |
//! |---|---|
//! | [`cli`] | clap types, flags → options, logger set-up, printing |
//! | [`commands`] | train, bench, evaluate, visualize, figures, info |
//! | [`training`] | the training loop, its steps, losses and reports |
//! | [`checkpoint`] | snapshot format, run directories, model references, TF-pickle import |
//! | [`config`] | the training configuration (defaults, presets, flags) |
//! | [`metrics`] | FID, PPL, the metric suite and its records |
//! | [`data`] | datasets: format, writer, loader, synthesis, image folders, download/import |
//! | [`core`] | networks, Hessian Penalty, optimiser, schedule, precision, latents, RNG, device |
//! | [`io`] | atomic files, images, video, pickle, TFRecord, TensorBoard, safetensors, HTTP, progress, logging |
//!
//! Citations such as `docs/spec/progan_hp.md §3.3` point into the reference's specification in `docs/spec/`.

pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod core;
pub mod data;
pub mod io;
pub mod metrics;
pub mod training;
