//! Model references shared by visualize, evaluate and figures (docs/spec/progan_hp.md §4.2, §6): a snapshot file, a run
//! directory (its latest snapshot), a results run number with a snapshot kimg (`latest` or N), or one of the
//! reference's 20 pretrained names (downloaded into `pretrained_models/` and converted once); and loading Gs from a
//! snapshot.

use crate::checkpoint::{find_snapshot, load_snapshot, run_dir_of, LoadedSnapshot};
use crate::core::device::DeviceSpec;
use crate::core::networks::{Discriminator, Generator, NetConfig};
use crate::io::download;
use crate::io::fs;
use crate::io::resources;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

/// A model reference resolved to a snapshot file.
#[derive(Clone, Debug)]
pub struct ModelRef {
    /// The snapshot file.
    pub path: PathBuf,
    /// A short name for legends and file names (run directory + kimg, or the file stem).
    pub name: String,
    /// Output folder below `visuals/` (docs/spec/progan_hp.md §7.1): `<run dir name>/<snapshot stem>`.
    pub visuals_subdir: PathBuf,
}

/// Resolves a local `reference`: an existing file (a snapshot), an existing directory (a run directory: its
/// snapshot `snapshot`), or a run number under `results_dir` (then `snapshot` is `latest` or a kimg number).
/// Pretrained names need a download: use [`Resolver`].
pub fn resolve(reference: &str, snapshot: &str, results_dir: &Path) -> Result<ModelRef> {
    match resolve_local(reference, snapshot, results_dir)? {
        Some(path) => Ok(describe(&path)),
        None => anyhow::bail!(
            "model '{reference}' is not a snapshot file, a run directory or a run number in {}",
            results_dir.display()
        ),
    }
}

fn resolve_local(reference: &str, snapshot: &str, results_dir: &Path) -> Result<Option<PathBuf>> {
    let as_path = Path::new(reference);
    Ok(Some(if as_path.is_file() {
        as_path.to_path_buf()
    } else if as_path.is_dir() {
        find_snapshot(as_path, snapshot)?
    } else if let Ok(exp) = reference.parse::<u32>() {
        find_snapshot(&run_dir_of(results_dir, exp)?, snapshot)?
    } else {
        return Ok(None);
    }))
}

/// Where pretrained models are kept, relative to the working directory (the reference's folder, docs/spec/progan_hp.md §6).
pub const PRETRAINED_DIR: &str = "pretrained_models";

/// Converts a reference checkpoint (`.pkl`, first path) into a snapshot file (second path).
pub type ConvertFn<'a> = dyn Fn(&Path, &Path) -> Result<()> + 'a;

/// The converter used for downloaded pretrained models: the TF-pickle importer (docs/spec/progan_hp.md §1.7). A file named after a
/// pretrained model (`clevr_simple_ft.pkl`) records its dataset (`clevr_simple`) in the snapshot's config.
pub fn convert_reference_pkl(pkl: &Path, out: &Path, device: Device) -> Result<()> {
    let dataset = pkl
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| resources::is_pretrained_name(s))
        .and_then(|s| s.rsplit_once('_'))
        .map(|(d, _)| d.to_string());
    crate::checkpoint::import::import_pkl_with(
        pkl,
        out,
        &crate::checkpoint::import::ImportOptions {
            device,
            dataset,
            hp_lambda: None,
        },
    )
    .map(|_| ())
}

/// The snapshot of pretrained model `name` (`<dataset>_<ft|fs|info|bl>`, docs/spec/progan_hp.md §6): `<dir>/<name>.safetensors` if it
/// is there; otherwise the reference's `<dir>/<name>.pkl` is downloaded (resumable, kept afterwards) unless present,
/// and converted once with `convert` into the snapshot, which is written atomically. Unknown names are an error
/// listing the 20 valid ones.
pub fn pretrained_path(
    name: &str,
    dir: &Path,
    base_url: Option<&str>,
    convert: impl Fn(&Path, &Path) -> Result<()>,
) -> Result<PathBuf> {
    let res = resources::pretrained(name)?;
    let out = dir.join(format!("{name}.safetensors"));
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pkl = dir.join(&res.local_name);
    let base = download::resolve_base_url(base_url)?;
    let opts = download::DownloadOptions {
        sha256: res.file.sha256.map(str::to_string),
        size: res.file.size,
        label: Some(res.local_name.clone()),
        ..Default::default()
    };
    download::ensure_file(&res.file.url(&base), &pkl, &opts)?;
    log::info!("converting {} to {}", pkl.display(), out.display());
    fs::write_atomic(&out, |tmp| convert(&pkl, tmp))
        .with_context(|| format!("pretrained model {name}"))?;
    Ok(out)
}

/// The `--snapshot-kimgs` value of model `index` of `count`: one value applies to all, otherwise one per model.
/// Each value is `latest` or a kimg number.
pub fn snapshot_kimg_for(kimgs: &[String], index: usize, count: usize) -> Result<&str> {
    anyhow::ensure!(
        kimgs.len() == 1 || kimgs.len() == count,
        "--snapshot-kimgs has {} values for {count} models: give one value for all or one per model",
        kimgs.len()
    );
    for k in kimgs {
        anyhow::ensure!(
            k == "latest" || k.parse::<u64>().is_ok(),
            "--snapshot-kimgs '{k}' must be 'latest' or a kimg number"
        );
    }
    Ok(if kimgs.len() == 1 {
        &kimgs[0]
    } else {
        &kimgs[index]
    })
}

/// Resolves model references of every kind, downloading and converting pretrained models when needed.
pub struct Resolver<'a> {
    /// Mirror for pretrained downloads (else $HESSIAN_GAN_BASE_URL, else the reference's server).
    pub base_url: Option<String>,
    /// Where run numbers are looked up.
    pub results_dir: PathBuf,
    /// Where pretrained models are downloaded and converted ([`PRETRAINED_DIR`] by default).
    pub pretrained_dir: PathBuf,
    /// The `.pkl` converter ([`convert_reference_pkl`] on the `--device` by default).
    pub convert: Box<ConvertFn<'a>>,
}

impl<'a> Resolver<'a> {
    /// A resolver that looks up run numbers in `results_dir` and converts pretrained models on `device`.
    pub fn new(
        device: DeviceSpec,
        base_url: Option<String>,
        results_dir: impl Into<PathBuf>,
    ) -> Self {
        Resolver {
            base_url,
            results_dir: results_dir.into(),
            pretrained_dir: PathBuf::from(PRETRAINED_DIR),
            convert: Box::new(move |pkl: &Path, out: &Path| {
                convert_reference_pkl(pkl, out, device.resolve()?)
            }),
        }
    }

    /// Resolves one reference: a snapshot file, a run directory, a run number (with `snapshot` = `latest` or a
    /// kimg; ignored for the others), or a pretrained name.
    pub fn resolve(&self, reference: &str, snapshot: &str) -> Result<ModelRef> {
        if let Some(path) = resolve_local(reference, snapshot, &self.results_dir)? {
            return Ok(describe(&path));
        }
        if resources::is_pretrained_name(reference) {
            let path = pretrained_path(
                reference,
                &self.pretrained_dir,
                self.base_url.as_deref(),
                &*self.convert,
            )?;
            return Ok(ModelRef {
                path,
                name: reference.to_string(),
                visuals_subdir: Path::new(PRETRAINED_DIR).join(reference),
            });
        }
        anyhow::bail!(
            "model '{reference}' is not a snapshot file, a run directory, a run number in {} or a pretrained name \
             (valid names: {})",
            self.results_dir.display(),
            resources::pretrained_names().join(", ")
        )
    }

    /// Resolves `references` with `--snapshot-kimgs` values (one for all, or one per model).
    pub fn resolve_all(&self, references: &[String], kimgs: &[String]) -> Result<Vec<ModelRef>> {
        references
            .iter()
            .enumerate()
            .map(|(i, r)| self.resolve(r, snapshot_kimg_for(kimgs, i, references.len())?))
            .collect()
    }
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
    fill(&mut vs, &snap, "Gs", path)?;
    let lod = snap.config.schedule().at(snap.state.cur_nimg).lod;
    Ok(LoadedGenerator { vs, g, net, lod })
}

/// Copies the snapshot's `<prefix>/<name>` tensors into `vs` (frozen), checking every name and shape.
fn fill(vs: &mut nn::VarStore, snap: &LoadedSnapshot, prefix: &str, path: &Path) -> Result<()> {
    vs.freeze();
    super::load_variables(vs, &snap.tensors, prefix, path)
}

/// D of a snapshot whose networks have an InfoGAN Q head, ready to encode: `score` reads the codes of real
/// images through it (docs/spec/geometry_infogancr.md §B.3: the encoder of an InfoGAN is its Q head).
pub struct LoadedEncoder {
    pub vs: nn::VarStore,
    pub d: Discriminator,
    pub lod: f64,
}

impl LoadedEncoder {
    /// Q's codes `[N, infogan_nz]` of full-resolution float images in [−1, 1]. D's minibatch-stddev layer needs
    /// a batch that its group size (4) divides, so a batch of any other size above 4 is padded with its own first
    /// images, whose codes are dropped (each code still sees the statistics of a batch of real images).
    pub fn encode(&self, x: &Tensor) -> Tensor {
        let n = x.size()[0];
        let pad = if n > 4 { (4 - n % 4) % 4 } else { 0 };
        let input = if pad > 0 {
            Tensor::cat(&[x.shallow_clone(), x.narrow(0, 0, pad)], 0)
        } else {
            x.shallow_clone()
        };
        tch::no_grad(|| self.d.forward(&input, self.lod, 1).1)
            .map(|q| q.narrow(0, 0, n))
            .unwrap_or_else(|| Tensor::zeros([n, 0], (tch::Kind::Float, x.device())))
    }
}

/// The Q head (with the D trunk under it) of a snapshot, or None when its networks have none.
pub fn load_encoder(path: &Path, device: Device) -> Result<Option<LoadedEncoder>> {
    let snap = load_snapshot(path)?;
    let net = snap.config.net();
    if net.infogan_nz == 0 {
        return Ok(None);
    }
    let mut vs = nn::VarStore::new(device);
    let d = Discriminator::new(&vs.root(), &net);
    fill(&mut vs, &snap, "D", path)?;
    let lod = snap.config.schedule().at(snap.state.cur_nimg).lod;
    Ok(Some(LoadedEncoder { vs, d, lod }))
}
