//! Checkpoints: the snapshot format (networks, Adam state, config and training state in one safetensors file),
//! run directories under `results/`, model references (files, runs, pretrained names) and the import of the
//! reference's TensorFlow pickles (docs/spec/progan_hp.md §1.7, §2.7, §2.8).
//!
//! May import: `config`, `metrics`, `data`, `core`, `io` (ARCHITECTURE.md).

pub mod coded;
pub mod frozen;
pub mod import;
pub mod infogan_cr;
pub mod reference;
pub mod rundir;

use crate::config::TrainConfig;
use crate::core::networks::{Discriminator, Generator};
use crate::core::optim::{Adam, FlatParams};
use crate::data::LoaderState;
use crate::io::safetensors;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

pub use rundir::{
    find_snapshot, newest_good_sibling, newest_snapshot, next_run_dir, run_dir_of,
    run_dirs_newest_first, snapshots_in,
};

/// Counters that, with the networks, optimisers and loader position, make a run resumable exactly.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainState {
    pub cur_nimg: u64,
    /// D+G iterations done (each seeds libtorch's generator as `seed ⊕ iteration`, so draws need no saved RNG).
    pub iteration: u64,
    /// floor/ceil of the lod at the last schedule update (Adam is reset when they change, docs/spec/progan_hp.md §2.3).
    pub lod_bounds: Option<(i64, i64)>,
    pub loader: LoaderState,
    /// Where the HP ramp starts after a fine-tune shift (docs/spec/progan_hp.md §2.6), in kimg.
    pub hp_start_kimg: f64,
    /// The CR phase H was last (re)started for (`TrainConfig::cr_phase`); absent in older snapshots.
    #[serde(default)]
    pub cr_phase: Option<u32>,
}

/// The networks, their flat parameter buffers and optimisers.
pub struct Models {
    pub g_vs: nn::VarStore,
    pub g: Generator,
    pub g_params: FlatParams,
    pub d_vs: nn::VarStore,
    pub d: Discriminator,
    pub d_params: FlatParams,
    pub gs_vs: nn::VarStore,
    pub gs: Generator,
    pub gs_params: FlatParams,
    pub opt_g: Adam,
    pub opt_d: Adam,
    /// The contrastive discriminator H when `cr_lambda > 0`.
    pub h: Option<CrJudgeNet>,
}

/// H of the contrastive regulariser on the ProGAN trainer: our D's architecture on two images stacked on the channel
/// axis, its Q head (one logit per code) as the output; D's score head is built but unused.
pub struct CrJudgeNet {
    pub vs: nn::VarStore,
    pub net: Discriminator,
    pub params: FlatParams,
    pub opt: Adam,
}

impl CrJudgeNet {
    pub fn new(cfg: &TrainConfig, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let net = Discriminator::new(&vs.root(), &cfg.cr_judge_net());
        let params = FlatParams::new(&vs);
        let opt = Adam::new(&params, cfg.learning_rate);
        CrJudgeNet {
            vs,
            net,
            params,
            opt,
        }
    }

    /// New weights from libtorch's generator and a fresh Adam state.
    pub fn restart(&mut self, cfg: &TrainConfig) {
        let fresh = CrJudgeNet::new(cfg, self.vs.device());
        let _guard = tch::no_grad_guard();
        self.params.flat.shallow_clone().copy_(&fresh.params.flat);
        self.opt.reset();
    }

    /// Logits `[N, codes]` of the pairs `(a[n], b[n])`.
    pub fn forward(&self, a: &Tensor, b: &Tensor, lod: f64, chunks: i64) -> Tensor {
        self.net
            .forward(&Tensor::cat(&[a, b], 1), lod, chunks)
            .1
            .expect("H has a code head")
    }
}

impl Models {
    /// Every tensor that data-parallel ranks must hold identically: the flat parameters of G, D and Gs (and H) and
    /// the Adam moments and step counts (shallow handles; writing into them writes the models).
    pub fn synchronised_state(&self) -> Vec<Tensor> {
        let adam = |o: &Adam| {
            [
                o.m.shallow_clone(),
                o.v.shallow_clone(),
                o.step.shallow_clone(),
            ]
        };
        let mut out = vec![
            self.g_params.flat.shallow_clone(),
            self.d_params.flat.shallow_clone(),
            self.gs_params.flat.shallow_clone(),
        ];
        out.extend(adam(&self.opt_g));
        out.extend(adam(&self.opt_d));
        if let Some(h) = &self.h {
            out.push(h.params.flat.shallow_clone());
            out.extend(adam(&h.opt));
        }
        out
    }
    /// Fresh networks (weights from libtorch's generator, which the caller seeds); Gs starts as a copy of G.
    pub fn new(cfg: &TrainConfig, device: Device) -> Result<Self> {
        let net = cfg.net();
        let g_vs = nn::VarStore::new(device);
        let g = Generator::new(&g_vs.root(), &net);
        let d_vs = nn::VarStore::new(device);
        let d = Discriminator::new(&d_vs.root(), &net);
        let gs_vs = nn::VarStore::new(device);
        let gs = Generator::new(&gs_vs.root(), &net);
        let g_params = FlatParams::new(&g_vs);
        let d_params = FlatParams::new(&d_vs);
        let gs_params = FlatParams::new(&gs_vs);
        gs_params.copy_from(&g_params)?;
        let opt_g = Adam::new(&g_params, cfg.learning_rate);
        let opt_d = Adam::new(&d_params, cfg.learning_rate);
        let h = (cfg.cr_lambda > 0.0).then(|| CrJudgeNet::new(cfg, device));
        Ok(Self {
            h,
            g_vs,
            g,
            g_params,
            d_vs,
            d,
            d_params,
            gs_vs,
            gs,
            gs_params,
            opt_g,
            opt_d,
        })
    }

    /// Every tensor of the snapshot, by name: `G/…`, `D/…`, `Gs/…`, and with `optimizer` also
    /// `opt_G/{m,v}/…`, `opt_G/{step,skipped}`, ….
    fn named_tensors(&self, optimizer: bool) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (prefix, p) in [
            ("G", &self.g_params),
            ("D", &self.d_params),
            ("Gs", &self.gs_params),
        ] {
            for (name, t) in p.names.iter().zip(&p.params) {
                out.push((format!("{prefix}/{name}"), t.shallow_clone()));
            }
        }
        if let Some(h) = &self.h {
            for (name, t) in h.params.names.iter().zip(&h.params.params) {
                out.push((format!("H/{name}"), t.shallow_clone()));
            }
        }
        if optimizer {
            out.extend(optimizer_tensors("opt_G", &self.opt_g, &self.g_params));
            out.extend(optimizer_tensors("opt_D", &self.opt_d, &self.d_params));
            if let Some(h) = &self.h {
                out.extend(optimizer_tensors("opt_H", &h.opt, &h.params));
            }
        }
        out
    }

    /// Loads weights (and optimiser state when present) from a snapshot's tensors.
    pub fn load(&mut self, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (prefix, p) in [
            ("G", &self.g_params),
            ("D", &self.d_params),
            ("Gs", &self.gs_params),
        ] {
            for (name, var) in p.names.iter().zip(&p.params) {
                let key = format!("{prefix}/{name}");
                let t = tensors.get(&key).with_context(|| {
                    format!(
                        "{}: missing {key}; it was written for a different network configuration",
                        path.display()
                    )
                })?;
                ensure!(
                    t.size() == var.size(),
                    "{}: {key} has shape {:?}, the network expects {:?} (different --nz, --resolution, fmap or \
                     --infogan-nz?)",
                    path.display(),
                    t.size(),
                    var.size()
                );
                var.detach().copy_(t);
            }
        }
        for (prefix, opt, p) in [
            ("opt_G", &mut self.opt_g, &self.g_params),
            ("opt_D", &mut self.opt_d, &self.d_params),
        ] {
            if tensors.contains_key(&format!("{prefix}/step")) {
                load_optimizer(prefix, opt, p, tensors, path)?;
            } // else an imported checkpoint: fresh optimiser state
        }
        // H, when this run has one and the snapshot too (a run that turns CR on starts H fresh).
        if let Some(h) = &mut self.h {
            if tensors.keys().any(|k| k.starts_with("H/")) {
                load_variables(&h.vs, tensors, "H", path)?;
                if tensors.contains_key("opt_H/step") {
                    load_optimizer("opt_H", &mut h.opt, &h.params, tensors, path)?;
                }
            }
        }
        Ok(())
    }
}

/// Copies the snapshot tensors `<prefix>/<name>` into every variable `<name>` of `vs`, checking each name and
/// shape: how every network of a snapshot is loaded.
pub fn load_variables(
    vs: &nn::VarStore,
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    path: &Path,
) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        let key = format!("{prefix}/{name}");
        let t = tensors.get(&key).with_context(|| {
            format!(
                "{}: missing {key}; it was written for a different network configuration",
                path.display()
            )
        })?;
        ensure!(
            t.size() == var.size(),
            "{}: {key} has shape {:?}, the network expects {:?}",
            path.display(),
            t.size(),
            var.size()
        );
        var.copy_(t);
    }
    Ok(())
}

/// An optimiser's state by name: `<prefix>/{m,v}/<param>`, `<prefix>/step`, `<prefix>/skipped`.
fn optimizer_tensors(prefix: &str, opt: &Adam, p: &FlatParams) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (name, t) in p.views(&opt.m) {
        out.push((format!("{prefix}/m/{name}"), t));
    }
    for (name, t) in p.views(&opt.v) {
        out.push((format!("{prefix}/v/{name}"), t));
    }
    out.push((format!("{prefix}/step"), opt.step.shallow_clone()));
    out.push((format!("{prefix}/skipped"), opt.skipped.shallow_clone()));
    out
}

/// Restores what [`optimizer_tensors`] saved.
fn load_optimizer(
    prefix: &str,
    opt: &mut Adam,
    p: &FlatParams,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for (which, buf) in [("m", &opt.m), ("v", &opt.v)] {
        for (name, view) in p.views(buf) {
            let key = format!("{prefix}/{which}/{name}");
            let t = tensors
                .get(&key)
                .with_context(|| format!("{}: missing {key}", path.display()))?;
            view.detach().copy_(t);
        }
    }
    let step = format!("{prefix}/step");
    opt.step.copy_(
        tensors
            .get(&step)
            .with_context(|| format!("{}: missing {step}", path.display()))?,
    );
    if let Some(s) = tensors.get(&format!("{prefix}/skipped")) {
        opt.skipped.copy_(s);
    }
    Ok(())
}

/// The tensors and metadata of a snapshot file, checksum verified; a damaged file's error names the newest good
/// snapshot of its run.
fn read_snapshot_file(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    safetensors::load(path).map_err(|e| {
        // Point at the snapshot to use instead, in the same one-line message.
        match rundir::newest_good_sibling(path) {
            Some(good) => anyhow::anyhow!(
                "{e:#}; the newest good snapshot of this run is {} (resume with --resume {0})",
                good.display()
            ),
            None => e,
        }
    })
}

/// Snapshot metadata keys.
const META_FORMAT: &str = "hessian-gan-snapshot";

/// Writes a snapshot of the models, config and state; `optimizer = false` leaves out the Adam state (an imported
/// checkpoint has none, and it would double the file).
pub fn save_snapshot(
    path: &Path,
    models: &Models,
    cfg: &TrainConfig,
    state: &TrainState,
    optimizer: bool,
) -> Result<()> {
    let metadata = HashMap::from([
        ("format".to_string(), META_FORMAT.to_string()),
        ("version".to_string(), "1".to_string()),
        ("config".to_string(), serde_json::to_string(cfg)?),
        ("state".to_string(), serde_json::to_string(state)?),
        (
            "kimg".to_string(),
            format!("{:.3}", state.cur_nimg as f64 / 1000.0),
        ),
    ]);
    safetensors::save(path, &models.named_tensors(optimizer), metadata)
}

/// A loaded snapshot: its tensors, training config and state.
pub struct LoadedSnapshot {
    pub path: PathBuf,
    pub tensors: HashMap<String, Tensor>,
    pub config: TrainConfig,
    pub state: TrainState,
}

pub fn load_snapshot(path: &Path) -> Result<LoadedSnapshot> {
    let (tensors, meta) = read_snapshot_file(path)?;
    ensure!(
        meta.get("format").map(String::as_str) != Some(infogan_cr::META_FORMAT),
        "{} is an InfoGAN-CR snapshot, not a ProGAN one; this command reads ProGAN models (`score` and `select` read both)",
        path.display()
    );
    ensure!(
        meta.get("format").map(String::as_str) == Some(META_FORMAT),
        "{} is not a hessian-gan snapshot (no format tag)",
        path.display()
    );
    let config: TrainConfig = serde_json::from_str(meta.get("config").map_or("", String::as_str))
        .with_context(|| {
        format!(
            "{}: unreadable config in the snapshot metadata",
            path.display()
        )
    })?;
    let state: TrainState = serde_json::from_str(meta.get("state").map_or("", String::as_str))
        .with_context(|| {
            format!(
                "{}: unreadable state in the snapshot metadata",
                path.display()
            )
        })?;
    Ok(LoadedSnapshot {
        path: path.to_path_buf(),
        tensors,
        config,
        state,
    })
}

/// The training configuration stored in a snapshot's header (without reading its tensors).
pub fn snapshot_config(path: &Path) -> Result<TrainConfig> {
    let meta = safetensors::read_metadata(path)?;
    let cfg = meta
        .get("config")
        .with_context(|| format!("{} holds no training configuration", path.display()))?;
    serde_json::from_str(cfg)
        .with_context(|| format!("{}: unreadable training configuration", path.display()))
}
