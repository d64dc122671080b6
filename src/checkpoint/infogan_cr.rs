//! InfoGAN-CR models and their snapshots: G, D/Q and H with their flat parameter buffers and Adam states, saved in
//! one safetensors file like the ProGAN snapshots but tagged `hessian-gan-infogan-cr-snapshot`.
//!
//! Tensors: `G/…`, `D/…`, `H/…` (every variable, including the batch-norm running averages and the spectral-norm
//! vectors `…sn_u`), `opt_{G,D,H}/{m,v}/…`, `opt_{G,D,H}/{step,skipped}`. Metadata: `format`, `version`, `config`
//! (the [`CrConfig`] JSON), `state` ([`CrState`]) and `iteration`. Snapshot files are named by completed iterations,
//! `network-snapshot-<iterations, 9 digits>.safetensors`.

use super::{load_optimizer, load_variables, optimizer_tensors, read_snapshot_file};
use crate::config::infogan_cr::CrConfig;
use crate::core::networks::infogan_cr::{CrDiscriminator, CrGenerator, CrJudge};
use crate::core::optim::{Adam, FlatParams};
use crate::data::LoaderState;
use crate::io::safetensors;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

pub const META_FORMAT: &str = "hessian-gan-infogan-cr-snapshot";

/// What makes a run resumable exactly, besides the networks and optimisers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CrState {
    /// Iterations completed (each seeds libtorch's generator from (seed, iteration), so draws need no saved RNG).
    pub iteration: u64,
    pub loader: LoaderState,
}

/// The snapshot file name after `iteration` completed iterations.
pub fn snapshot_name(iteration: u64) -> String {
    format!("network-snapshot-{iteration:09}.safetensors")
}

/// The three networks, their flat parameter buffers and optimisers.
pub struct CrModels {
    pub g_vs: nn::VarStore,
    pub g: CrGenerator,
    pub g_params: FlatParams,
    pub d_vs: nn::VarStore,
    pub d: CrDiscriminator,
    pub d_params: FlatParams,
    pub h_vs: nn::VarStore,
    pub h: CrJudge,
    pub h_params: FlatParams,
    pub opt_g: Adam,
    pub opt_d: Adam,
    pub opt_h: Adam,
}

fn adam(params: &FlatParams, lr: f64, cfg: &CrConfig) -> Adam {
    let mut opt = Adam::new(params, lr);
    opt.beta1 = cfg.beta1;
    opt.beta2 = cfg.beta2;
    opt
}

impl CrModels {
    /// Fresh networks, weights from libtorch's generator (which the caller seeds).
    pub fn new(cfg: &CrConfig, device: Device) -> Self {
        let net = cfg.net();
        let g_vs = nn::VarStore::new(device);
        let g = CrGenerator::new(&g_vs.root(), &net);
        let d_vs = nn::VarStore::new(device);
        let d = CrDiscriminator::new(&d_vs.root(), &net);
        let h_vs = nn::VarStore::new(device);
        let h = CrJudge::new(&h_vs.root(), &net);
        let (g_params, d_params, h_params) = (
            FlatParams::new(&g_vs),
            FlatParams::new(&d_vs),
            FlatParams::new(&h_vs),
        );
        CrModels {
            opt_g: adam(&g_params, cfg.lr_g, cfg),
            opt_d: adam(&d_params, cfg.lr_d, cfg),
            opt_h: adam(&h_params, cfg.lr_h, cfg),
            g_vs,
            g,
            g_params,
            d_vs,
            d,
            d_params,
            h_vs,
            h,
            h_params,
        }
    }

    /// New weights for H (drawn as at the start, from libtorch's generator) and a fresh Adam state for it: what the
    /// reference does at every change of the CR weight or the gap (docs/spec/geometry_infogancr.md §B.1).
    pub fn reinit_h(&mut self, cfg: &CrConfig) {
        let fresh_vs = nn::VarStore::new(self.h_vs.device());
        let _fresh = CrJudge::new(&fresh_vs.root(), &cfg.net());
        let fresh = fresh_vs.variables();
        let _guard = tch::no_grad_guard();
        for (name, mut var) in self.h_vs.variables() {
            var.copy_(&fresh[&name]);
        }
        self.opt_h.reset();
    }

    /// Every tensor of a snapshot, by name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (prefix, vs) in [("G", &self.g_vs), ("D", &self.d_vs), ("H", &self.h_vs)] {
            let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            out.extend(
                vars.into_iter()
                    .map(|(name, t)| (format!("{prefix}/{name}"), t)),
            );
        }
        out.extend(optimizer_tensors("opt_G", &self.opt_g, &self.g_params));
        out.extend(optimizer_tensors("opt_D", &self.opt_d, &self.d_params));
        out.extend(optimizer_tensors("opt_H", &self.opt_h, &self.h_params));
        out
    }

    /// Loads networks and optimiser states from a snapshot's tensors, checking every name and shape.
    pub fn load(&mut self, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        for (prefix, vs) in [("G", &self.g_vs), ("D", &self.d_vs), ("H", &self.h_vs)] {
            load_variables(vs, tensors, prefix, path)?;
        }
        load_optimizer("opt_G", &mut self.opt_g, &self.g_params, tensors, path)?;
        load_optimizer("opt_D", &mut self.opt_d, &self.d_params, tensors, path)?;
        load_optimizer("opt_H", &mut self.opt_h, &self.h_params, tensors, path)?;
        Ok(())
    }
}

/// Writes a snapshot (atomically, with its checksum).
pub fn save_snapshot(
    path: &Path,
    models: &CrModels,
    cfg: &CrConfig,
    state: &CrState,
) -> Result<()> {
    let metadata = HashMap::from([
        ("format".to_string(), META_FORMAT.to_string()),
        ("version".to_string(), "1".to_string()),
        ("config".to_string(), serde_json::to_string(cfg)?),
        ("state".to_string(), serde_json::to_string(state)?),
        ("iteration".to_string(), state.iteration.to_string()),
    ]);
    safetensors::save(path, &models.named_tensors(), metadata)
}

/// A loaded InfoGAN-CR snapshot.
pub struct LoadedCrSnapshot {
    pub path: PathBuf,
    pub tensors: HashMap<String, Tensor>,
    pub config: CrConfig,
    pub state: CrState,
}

/// Whether the snapshot file at `path` is an InfoGAN-CR one (reads the header only).
pub fn is_cr_snapshot(path: &Path) -> bool {
    safetensors::read_metadata(path)
        .ok()
        .and_then(|m| m.get("format").cloned())
        .is_some_and(|f| f == META_FORMAT)
}

pub fn load_snapshot(path: &Path) -> Result<LoadedCrSnapshot> {
    let (tensors, meta) = read_snapshot_file(path)?;
    ensure!(
        meta.get("format").map(String::as_str) == Some(META_FORMAT),
        "{} is not an InfoGAN-CR snapshot (format tag {:?})",
        path.display(),
        meta.get("format").map_or("none", String::as_str)
    );
    let parse = |key: &str| -> Result<&str> {
        meta.get(key)
            .map(String::as_str)
            .with_context(|| format!("{}: no {key} in the snapshot metadata", path.display()))
    };
    let config: CrConfig = serde_json::from_str(parse("config")?)
        .with_context(|| format!("{}: unreadable config in the snapshot", path.display()))?;
    let state: CrState = serde_json::from_str(parse("state")?)
        .with_context(|| format!("{}: unreadable state in the snapshot", path.display()))?;
    Ok(LoadedCrSnapshot {
        path: path.to_path_buf(),
        tensors,
        config,
        state,
    })
}
