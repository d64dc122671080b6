//! Model references shared by visualize, evaluate and figures (spec progan_hp §4.2): a snapshot file, a run
//! directory (its latest snapshot), or a results run number with a snapshot kimg (`latest` or N); and loading Gs
//! from a snapshot.

use crate::networks::{Generator, NetConfig};
use crate::train::{find_snapshot, load_snapshot, run_dir_of};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::{nn, Device};

/// A model reference resolved to a snapshot file.
#[derive(Clone, Debug)]
pub struct ModelRef {
    /// The snapshot file.
    pub path: PathBuf,
    /// A short name for legends and file names (run directory + kimg, or the file stem).
    pub name: String,
    /// Output folder below `visuals/` (§7.1): `<run dir name>/<snapshot stem>`.
    pub visuals_subdir: PathBuf,
}

/// Resolves `reference`: an existing file (a snapshot), an existing directory (a run directory: its snapshot
/// `snapshot`), or a run number under `results_dir` (then `snapshot` is `latest` or a kimg number).
pub fn resolve(reference: &str, snapshot: &str, results_dir: &Path) -> Result<ModelRef> {
    let as_path = Path::new(reference);
    let path = if as_path.is_file() {
        as_path.to_path_buf()
    } else if as_path.is_dir() {
        find_snapshot(as_path, snapshot)?
    } else if let Ok(exp) = reference.parse::<u32>() {
        find_snapshot(&run_dir_of(results_dir, exp)?, snapshot)?
    } else {
        anyhow::bail!(
            "model '{reference}' is not a snapshot file, a run directory or a run number in {}",
            results_dir.display()
        );
    };
    Ok(describe(&path))
}

/// Name and visuals folder of a snapshot path.
pub fn describe(path: &Path) -> ModelRef {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "models".to_string());
    let short = stem
        .strip_prefix("network-snapshot-")
        .unwrap_or(&stem)
        .to_string();
    ModelRef {
        path: path.to_path_buf(),
        name: format!("{parent}/{short}"),
        visuals_subdir: [parent, short].iter().collect(),
    }
}

/// Gs of a snapshot, ready to generate.
pub struct LoadedGenerator {
    pub vs: nn::VarStore,
    pub g: Generator,
    pub net: NetConfig,
    /// The lod it was saved at (0 once training reached full resolution).
    pub lod: f64,
}

/// Loads the EMA generator Gs of a snapshot onto `device`.
pub fn load_gs(path: &Path, device: Device) -> Result<LoadedGenerator> {
    let snap = load_snapshot(path)?;
    let net = snap.config.net();
    let mut vs = nn::VarStore::new(device);
    let g = Generator::new(&vs.root(), &net);
    vs.freeze();
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        let key = format!("Gs/{name}");
        let t = snap
            .tensors
            .get(&key)
            .with_context(|| format!("{}: missing {key}", path.display()))?;
        anyhow::ensure!(
            t.size() == var.size(),
            "{}: {key} has shape {:?}, expected {:?}",
            path.display(),
            t.size(),
            var.size()
        );
        var.copy_(t);
    }
    let lod = snap.config.schedule().at(snap.state.cur_nimg).lod;
    Ok(LoadedGenerator { vs, g, net, lod })
}
