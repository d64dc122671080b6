//! The on-disk dataset: `dataset.json` plus one `rXX.npy` per level and an optional `factors.npy` (docs/spec/progan_hp.md
//! §2.9, stored as NumPy files instead of TFRecords so that levels can be memory-mapped and read from Python).
//!
//! A directory is a dataset only when `dataset.json` exists (it is written last, and the whole directory is built
//! under a temporary name and renamed) and every file it declares has the declared shape and size.

use super::npy::{self, Dtype};
use anyhow::{bail, ensure, Context, Result};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The `format` tag of `dataset.json`.
pub const FORMAT_TAG: &str = "hessian-gan-dataset";
/// The newest `version` this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
pub const META_FILE: &str = "dataset.json";
pub const FACTORS_FILE: &str = "factors.npy";

/// The file holding level `log2` (`r02.npy` … `r08.npy`).
pub fn level_file(log2: u32) -> String {
    format!("r{log2:02}.npy")
}

/// One ground-truth factor of variation: its name and range; `num_values` is the number of equally spaced values
/// from `min` to `max` for a discrete factor (absent for a continuous one); `labels` name the values of a
/// categorical factor (its values are then 0, 1, …).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactorSpec {
    pub name: String,
    pub min: f32,
    pub max: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_values: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

impl FactorSpec {
    pub fn continuous(name: &str, min: f32, max: f32) -> Self {
        FactorSpec {
            name: name.to_string(),
            min,
            max,
            num_values: None,
            labels: None,
        }
    }
    pub fn discrete(name: &str, min: f32, max: f32, num_values: u32) -> Self {
        FactorSpec {
            num_values: Some(num_values),
            ..FactorSpec::continuous(name, min, max)
        }
    }
    pub fn categorical(name: &str, labels: &[&str]) -> Self {
        FactorSpec {
            labels: Some(labels.iter().map(|s| s.to_string()).collect()),
            ..FactorSpec::discrete(name, 0.0, (labels.len() - 1) as f32, labels.len() as u32)
        }
    }
}

/// The contents of `dataset.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// Always [`FORMAT_TAG`].
    pub format: String,
    pub version: u32,
    pub name: String,
    /// Number of images (the same in every level, in the same order).
    pub count: u64,
    /// Side of the largest level (a power of two).
    pub resolution: u32,
    /// 1 (grey) or 3 (RGB).
    pub channels: u32,
    /// log2 of every stored level, ascending (2 … log2(resolution)).
    pub levels: Vec<u32>,
    /// Ground-truth factors stored in `factors.npy` as float32 [count, factors.len()]; empty when there are none.
    #[serde(default)]
    pub factors: Vec<FactorSpec>,
    /// Where the images came from.
    pub source: String,
    /// The command line that created the dataset.
    pub command: String,
}

/// One level, memory-mapped: `count` images of `channels`×`size`×`size` uint8, CHW, back to back.
pub struct Level {
    log2: u32,
    count: usize,
    channels: usize,
    size: usize,
    offset: usize,
    map: Mmap,
}

impl std::fmt::Debug for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Level(r{:02}: {} × {}×{}×{})",
            self.log2, self.count, self.channels, self.size, self.size
        )
    }
}

impl Level {
    pub fn log2(&self) -> u32 {
        self.log2
    }
    pub fn count(&self) -> usize {
        self.count
    }
    pub fn channels(&self) -> usize {
        self.channels
    }
    /// Side in pixels (2^log2).
    pub fn size(&self) -> usize {
        self.size
    }
    /// Bytes per image.
    pub fn image_bytes(&self) -> usize {
        self.channels * self.size * self.size
    }
    /// Image `i` as CHW bytes. Panics when `i` ≥ count (an index bug, not bad input).
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(i < self.count, "image {i} of a {}-image level", self.count);
        let b = self.image_bytes();
        &self.map[self.offset + i * b..self.offset + (i + 1) * b]
    }
    /// Appends the images `indices` to `out` (CHW each).
    pub fn gather_into(&self, indices: &[u32], out: &mut Vec<u8>) {
        out.reserve(indices.len() * self.image_bytes());
        for &i in indices {
            out.extend_from_slice(self.image(i as usize));
        }
    }
    /// The images `indices` as a CPU uint8 tensor [B, C, size, size], copied straight from the map into the
    /// tensor's memory (one copy, no intermediate buffer and no ATen kernel, which keeps libtorch's thread pool
    /// out of the loader).
    pub fn tensor(&self, indices: &[u32]) -> Tensor {
        let (b, ib) = (indices.len(), self.image_bytes());
        let t = Tensor::empty(
            [
                b as i64,
                self.channels as i64,
                self.size as i64,
                self.size as i64,
            ],
            (Kind::Uint8, tch::Device::Cpu),
        );
        if b > 0 {
            // Safety: `t` is a fresh, contiguous CPU uint8 tensor of exactly b·ib bytes that nothing else
            // references yet.
            let dst = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, b * ib) };
            for (chunk, &i) in dst.chunks_exact_mut(ib).zip(indices) {
                chunk.copy_from_slice(self.image(i as usize));
            }
        }
        t
    }
}

/// An opened, validated dataset with all levels memory-mapped.
pub struct Dataset {
    dir: PathBuf,
    meta: DatasetMeta,
    levels: BTreeMap<u32, Level>,
    factors: Vec<f32>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("dir", &self.dir)
            .field("meta", &self.meta)
            .finish()
    }
}

fn incomplete(dir: &Path, what: String) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is not a complete dataset: {what}; remove the directory and create or download it again",
        dir.display()
    )
}

impl Dataset {
    /// Opens and validates the dataset in `dir`. Errors are one line naming the directory and what is wrong.
    pub fn open(dir: &Path) -> Result<Dataset> {
        ensure!(
            dir.is_dir(),
            "dataset directory {} does not exist (create one with `hessian-gan dataset create-from-images` or \
             `hessian-gan dataset synth`)",
            dir.display()
        );
        let meta_path = dir.join(META_FILE);
        if !meta_path.is_file() {
            return Err(incomplete(
                dir,
                format!("{META_FILE} is missing (an interrupted build or download?)"),
            ));
        }
        let text = std::fs::read_to_string(&meta_path)
            .with_context(|| format!("cannot read {}", meta_path.display()))?;
        let meta: DatasetMeta = serde_json::from_str(&text)
            .map_err(|e| incomplete(dir, format!("{META_FILE} is corrupt ({e})")))?;
        ensure!(
            meta.format == FORMAT_TAG,
            "{} is not a hessian-gan dataset description (format {:?}, expected {FORMAT_TAG:?})",
            meta_path.display(),
            meta.format
        );
        ensure!(
            meta.version <= FORMAT_VERSION,
            "{} has dataset format version {}, newer than this program's {FORMAT_VERSION}; update hessian-gan",
            meta_path.display(),
            meta.version
        );
        validate_meta(&meta).map_err(|e| incomplete(dir, format!("{META_FILE}: {e}")))?;
        let mut levels = BTreeMap::new();
        for &l in &meta.levels {
            let level = open_level(dir, &meta, l)?;
            levels.insert(l, level);
        }
        let factors = if meta.factors.is_empty() {
            Vec::new()
        } else {
            let path = dir.join(FACTORS_FILE);
            if !path.is_file() {
                return Err(incomplete(dir, format!("{FACTORS_FILE} is missing")));
            }
            let (shape, data) =
                npy::read_f32(&path).map_err(|e| incomplete(dir, format!("{e:#}")))?;
            let want = vec![meta.count, meta.factors.len() as u64];
            if shape != want {
                return Err(incomplete(
                    dir,
                    format!("{FACTORS_FILE} has shape {shape:?}, expected {want:?}"),
                ));
            }
            data
        };
        Ok(Dataset {
            dir: dir.to_path_buf(),
            meta,
            levels,
            factors,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn meta(&self) -> &DatasetMeta {
        &self.meta
    }
    pub fn count(&self) -> usize {
        self.meta.count as usize
    }
    pub fn channels(&self) -> usize {
        self.meta.channels as usize
    }
    /// log2 of the largest level.
    pub fn max_log2(&self) -> u32 {
        *self
            .meta
            .levels
            .last()
            .expect("validated: at least one level")
    }

    /// Level `log2` (memory-mapped).
    pub fn level(&self, log2: u32) -> Result<&Level> {
        self.levels.get(&log2).with_context(|| {
            format!(
                "dataset {} has levels {}×{} to {}×{}; {}×{} (level {log2}) is not there",
                self.dir.display(),
                1 << self.meta.levels[0],
                1 << self.meta.levels[0],
                self.meta.resolution,
                self.meta.resolution,
                1u64 << log2.min(63),
                1u64 << log2.min(63)
            )
        })
    }

    /// The first `n` images of level `log2` (fewer when the dataset is smaller) as a CPU uint8 tensor
    /// [n, C, 2^log2, 2^log2] — the trainer's grid of reals.
    pub fn first_images(&self, log2: u32, n: usize) -> Result<Tensor> {
        let level = self.level(log2)?;
        let idx: Vec<u32> = (0..n.min(level.count()) as u32).collect();
        Ok(level.tensor(&idx))
    }

    /// Ground-truth factors of image `i` (empty slice when the dataset has none).
    pub fn factors_of(&self, i: usize) -> &[f32] {
        let f = self.meta.factors.len();
        if f == 0 {
            return &[];
        }
        &self.factors[i * f..(i + 1) * f]
    }

    /// All factors as a row-major [count × F] slice.
    pub fn factors(&self) -> &[f32] {
        &self.factors
    }
}

/// Consistency of a description on its own (used by the reader and the writer).
pub fn validate_meta(meta: &DatasetMeta) -> Result<()> {
    ensure!(meta.count > 0, "count is 0");
    ensure!(
        meta.channels == 1 || meta.channels == 3,
        "channels is {}, expected 1 or 3",
        meta.channels
    );
    ensure!(
        meta.resolution.is_power_of_two() && meta.resolution >= 4,
        "resolution {} is not a power of two ≥ 4",
        meta.resolution
    );
    let top = meta.resolution.trailing_zeros();
    let want: Vec<u32> = (super::cascade::MIN_LOG2..=top).collect();
    ensure!(
        meta.levels == want,
        "levels {:?} do not match resolution {} (expected {want:?})",
        meta.levels,
        meta.resolution
    );
    for f in &meta.factors {
        ensure!(
            f.min.is_finite() && f.max.is_finite() && f.min <= f.max,
            "factor {} has a bad range [{}, {}]",
            f.name,
            f.min,
            f.max
        );
    }
    Ok(())
}

fn open_level(dir: &Path, meta: &DatasetMeta, log2: u32) -> Result<Level> {
    let name = level_file(log2);
    let path = dir.join(&name);
    if !path.is_file() {
        return Err(incomplete(dir, format!("{name} is missing")));
    }
    let header = npy::read_header(&path).map_err(|e| incomplete(dir, format!("{e:#}")))?;
    let size = 1u64 << log2;
    let want = vec![meta.count, meta.channels as u64, size, size];
    if header.dtype != Dtype::U8 || header.shape != want {
        return Err(incomplete(
            dir,
            format!(
                "{name} holds {} {:?}, expected uint8 {want:?}",
                header.dtype.name(),
                header.shape
            ),
        ));
    }
    let file =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata()?.len();
    let expect = header.data_offset as u64 + header.data_bytes();
    if len != expect {
        return Err(incomplete(
            dir,
            format!("{name} is {len} bytes, expected {expect} (truncated?)"),
        ));
    }
    // Safety: the dataset files are never modified in place (they are written once under a temporary directory
    // name); a concurrent external truncation would be a user error we cannot guard against.
    let map =
        unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
    Ok(Level {
        log2,
        count: meta.count as usize,
        channels: meta.channels as usize,
        size: size as usize,
        offset: header.data_offset,
        map,
    })
}

/// Reads just the description in `dir/dataset.json`, or says why the directory is not a complete dataset.
pub fn read_meta(dir: &Path) -> Result<DatasetMeta> {
    Ok(Dataset::open(dir)?.meta)
}

/// True when `dir` holds a complete, valid dataset (the check used before skipping a download or build).
pub fn is_complete(dir: &Path) -> bool {
    Dataset::open(dir).is_ok()
}

/// Fails unless `out` can be created as a new dataset directory.
pub fn check_new_output(out: &Path) -> Result<()> {
    if out.exists() {
        bail!(
            "{} already exists; remove it or choose another output directory",
            out.display()
        );
    }
    Ok(())
}
