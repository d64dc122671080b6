//! The metric networks ("detectors", docs/spec/metric_networks.md): NVIDIA's TorchScript Inception-v3 port for FID and
//! LPIPS-VGG16 for PPL, found in the cache directory or downloaded there once, loaded with `tch::CModule`, and
//! called with the exact conventions of their authors' code.

use crate::io::download::{self, DownloadError, DownloadOptions};
use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::{CModule, Device, IValue, Kind, Tensor};

/// Which network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorKind {
    /// `inception-2015-12-05.pt`: uint8 NCHW [0, 255] images of any size in (it resizes to 299 itself),
    /// `forward(img, return_features=True)` gives the 2048-d pool features.
    Inception,
    /// `vgg16.pt`: float NCHW [0, 255] images, `forward(img, resize_images=False, return_lpips=True)` gives
    /// normalised feature vectors whose squared difference, summed, is the LPIPS distance.
    Lpips,
}

impl DetectorKind {
    /// The file name (in the cache directory).
    pub fn file_name(self) -> &'static str {
        match self {
            DetectorKind::Inception => "inception-2015-12-05.pt",
            DetectorKind::Lpips => "vgg16.pt",
        }
    }

    /// Where the authors publish it (metric_networks.md).
    pub fn default_url(self) -> &'static str {
        match self {
            DetectorKind::Inception => {
                "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
            }
            DetectorKind::Lpips => {
                "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt"
            }
        }
    }

    /// The flag that overrides it.
    pub fn flag(self) -> &'static str {
        match self {
            DetectorKind::Inception => "--fid-detector",
            DetectorKind::Lpips => "--ppl-detector",
        }
    }

    /// How it is called, recorded with every result.
    pub fn call(self) -> &'static str {
        match self {
            DetectorKind::Inception => "forward(uint8 NCHW [0,255], return_features=True)",
            DetectorKind::Lpips => {
                "forward(float NCHW [0,255] at 256x256, resize_images=False, return_lpips=True)"
            }
        }
    }

    fn purpose(self) -> &'static str {
        match self {
            DetectorKind::Inception => "FID's Inception network",
            DetectorKind::Lpips => "PPL's LPIPS-VGG16 network",
        }
    }
}

/// What a result records about the network it came from, so numbers are only compared within one pipeline.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DetectorInfo {
    /// File name.
    pub file: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// The URL it was downloaded from, or `local file`.
    pub source: String,
    pub call: String,
}

/// A loaded metric network.
pub struct Detector {
    pub kind: DetectorKind,
    pub info: DetectorInfo,
    module: CModule,
}

fn is_url(spec: &str) -> bool {
    let s = spec.to_ascii_lowercase();
    s.starts_with("http://") || s.starts_with("https://")
}

/// The local file of a detector and where it came from: `spec` is a local path or an http(s) URL (downloaded into
/// `cache_dir` under the URL's last path segment); without `spec`, `<cache_dir>/<file name>`, downloaded from the
/// authors' URL when missing. A file already in the cache is used as it is.
pub fn locate(
    kind: DetectorKind,
    spec: Option<&str>,
    cache_dir: &Path,
) -> Result<(PathBuf, String)> {
    let url = match spec {
        Some(s) if !is_url(s) => {
            let path = PathBuf::from(s);
            ensure!(
                path.is_file(),
                "{} {s}: no such file (give a TorchScript {} or leave the flag out to download {} into {})",
                kind.flag(),
                kind.file_name(),
                kind.default_url(),
                cache_dir.display()
            );
            return Ok((path, "local file".to_string()));
        }
        Some(s) => s.to_string(),
        None => kind.default_url().to_string(),
    };
    let name = reqwest::Url::parse(&url)
        .ok()
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next_back().map(str::to_string))
        })
        .filter(|n| !n.is_empty())
        .with_context(|| format!("{} {url}: the URL names no file", kind.flag()))?;
    let dest = cache_dir.join(name);
    let opts = DownloadOptions {
        label: Some(kind.file_name().to_string()),
        ..Default::default()
    };
    if let Err(e) = download::ensure_file(&url, &dest, &opts) {
        // The download module's own hint about --base-url concerns the reference's server, not these networks.
        if let Some(DownloadError::GaveUp {
            unreachable: true,
            last_error,
            ..
        }) = e.downcast_ref::<DownloadError>()
        {
            bail!(
                "{} is needed but {url} cannot be reached ({last_error}); download it elsewhere and place it at \
                 {}, or pass {} PATH",
                kind.purpose(),
                dest.display(),
                kind.flag()
            );
        }
        return Err(e.context(format!(
            "{} is needed; download it from {url} and place it at {}, or pass {} PATH",
            kind.purpose(),
            dest.display(),
            kind.flag()
        )));
    }
    Ok((dest, url))
}

impl Detector {
    /// Locates (see [`locate`]) and loads the network onto `device`, in eval mode.
    pub fn load(
        kind: DetectorKind,
        spec: Option<&str>,
        cache_dir: &Path,
        device: Device,
    ) -> Result<Detector> {
        let (path, source) = locate(kind, spec, cache_dir)?;
        Self::load_file(kind, &path, source, device)
    }

    /// Loads a TorchScript file onto `device`.
    pub fn load_file(
        kind: DetectorKind,
        path: &Path,
        source: String,
        device: Device,
    ) -> Result<Detector> {
        let sha256 = download::sha256_file(path)?;
        let size = std::fs::metadata(path)
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        let mut module = CModule::load_on_device(path, device).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a loadable TorchScript file ({}); {} expects {} ({})",
                path.display(),
                error_summary(&e.to_string()),
                kind.flag(),
                kind.file_name(),
                kind.default_url()
            )
        })?;
        module.set_eval();
        Ok(Detector {
            kind,
            info: DetectorInfo {
                file: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path: path.to_path_buf(),
                sha256,
                size,
                source,
                call: kind.call().to_string(),
            },
            module,
        })
    }

    /// Runs the module with autograd as the caller has it: the metric paths turn it off, `geometry` differentiates
    /// through LPIPS.
    fn call(&self, args: &[IValue], n: i64) -> Result<Tensor> {
        let out = self.module.forward_is(args).map_err(|e| {
            anyhow::anyhow!(
                "{}: {} failed: {}",
                self.info.path.display(),
                self.kind.call(),
                error_summary(&e.to_string())
            )
        })?;
        let t = match out {
            IValue::Tensor(t) => t,
            other => bail!(
                "{}: forward returned {}, expected a feature tensor; is this {}?",
                self.info.path.display(),
                ivalue_name(&other),
                self.kind.file_name()
            ),
        };
        ensure!(
            t.dim() >= 2 && t.size()[0] == n,
            "{}: forward returned shape {:?} for {n} images, expected [{n}, features]; is this {}?",
            self.info.path.display(),
            t.size(),
            self.kind.file_name()
        );
        Ok(t.flatten(1, -1).to_kind(Kind::Float))
    }

    /// FID features `[N, D]` (float32) of uint8 images `[N, C, H, W]` (C = 1 is repeated to RGB).
    pub fn inception_features(&self, images: &Tensor) -> Result<Tensor> {
        ensure!(
            self.kind == DetectorKind::Inception,
            "internal: Inception features from {:?}",
            self.kind
        );
        let x = rgb(images)?;
        ensure!(
            x.kind() == Kind::Uint8,
            "internal: Inception input must be uint8"
        );
        let n = x.size()[0];
        let _guard = tch::no_grad_guard();
        self.call(&[IValue::Tensor(x), IValue::Bool(true)], n)
    }

    /// LPIPS feature vectors `[N, F]` of float images in [0, 255] `[N, C, H, W]` (C = 1 is repeated to RGB); the
    /// distance of two images is the sum of the squared differences of their vectors.
    pub fn lpips_features(&self, images: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        self.lpips_features_differentiable(images)
    }

    /// [`Self::lpips_features`], differentiable in the images (the pulled-back LPIPS metric of `geometry`).
    pub fn lpips_features_differentiable(&self, images: &Tensor) -> Result<Tensor> {
        ensure!(
            self.kind == DetectorKind::Lpips,
            "internal: LPIPS features from {:?}",
            self.kind
        );
        let x = rgb(images)?.to_kind(Kind::Float);
        let n = x.size()[0];
        self.call(
            &[IValue::Tensor(x), IValue::Bool(false), IValue::Bool(true)],
            n,
        )
    }
}

fn rgb(images: &Tensor) -> Result<Tensor> {
    let s = images.size();
    ensure!(
        s.len() == 4 && (s[1] == 1 || s[1] == 3),
        "internal: metric images must be [N, 1|3, H, W], got {s:?}"
    );
    Ok(if s[1] == 1 {
        images.repeat([1, 3, 1, 1])
    } else {
        images.shallow_clone()
    })
}

/// One line out of a libtorch error: TorchScript tracebacks end with the actual exception (`RuntimeError: …`),
/// other errors start with it.
fn error_summary(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains("Error:"))
        .or(lines.first())
        .copied()
        .unwrap_or("");
    line.chars().take(300).collect()
}

fn ivalue_name(v: &IValue) -> &'static str {
    match v {
        IValue::None => "None",
        IValue::Tuple(_) => "a tuple",
        IValue::GenericList(_) | IValue::TensorList(_) => "a list",
        IValue::GenericDict(_) => "a dict",
        IValue::Double(_) | IValue::Int(_) | IValue::Bool(_) => "a number",
        IValue::String(_) => "a string",
        _ => "a non-tensor value",
    }
}
