//! Streaming construction of a dataset directory (docs/spec/progan_hp.md §2.9): images are pushed one at a time, each level
//! of the cascade is appended to its `rXX.npy`, and `dataset.json` is written last by [`DatasetWriter::finish`].
//! Use it inside [`crate::io::fs::build_dir_atomic`] so that an interrupted build leaves nothing behind:
//!
//! ```no_run
//! # use hessian_gan::{io::fs, data::{DatasetWriter, FactorSpec}};
//! # fn images() -> Vec<Vec<u8>> { vec![] }
//! # fn main() -> anyhow::Result<()> {
//! fs::build_dir_atomic(std::path::Path::new("datasets/mine"), |tmp| {
//!     let mut w = DatasetWriter::create(tmp, "mine", 128, 3, vec![])?;
//!     for img in images() {
//!         w.push(&img, None)?; // CHW uint8, 128×128 or any larger power of two
//!     }
//!     w.finish("my source", &hessian_gan::data::command_line())?;
//!     Ok(())
//! })
//! # }
//! ```

use super::cascade::{self, MIN_LOG2};
use super::format::{
    level_file, validate_meta, DatasetMeta, FactorSpec, FACTORS_FILE, FORMAT_TAG, FORMAT_VERSION,
    META_FILE,
};
use super::npy::{Dtype, NpyWriter};
use crate::io::fs;
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};

/// The levels of one image, ready to append: element k is the level of size `resolution >> k`.
pub struct PreparedImage {
    levels: Vec<Vec<u8>>,
}

impl PreparedImage {
    /// Levels given as they are (top first, down to 4×4), e.g. read from files that already hold every level;
    /// [`DatasetWriter::push_prepared`] checks their sizes.
    pub fn from_levels(levels: Vec<Vec<u8>>) -> Self {
        PreparedImage { levels }
    }

    /// The levels, top first.
    pub fn levels(&self) -> &[Vec<u8>] {
        &self.levels
    }
}

/// Computes the stored levels of a CHW uint8 image. The image may be larger than `resolution` (any power of two
/// above it): the float cascade then starts at the image's own size and the levels above `resolution` are dropped,
/// which gives exactly the levels a full-size dataset would hold. Pure and thread-safe, so callers can prepare
/// images in parallel and push them in order.
pub fn prepare_image(image: &[u8], channels: usize, resolution: usize) -> Result<PreparedImage> {
    let pixels = image.len() / channels.max(1);
    let size = (pixels as f64).sqrt().round() as usize;
    ensure!(
        channels > 0 && size * size * channels == image.len() && size.is_power_of_two(),
        "image of {} bytes is not a square power-of-two {channels}-channel image",
        image.len()
    );
    ensure!(
        size >= resolution,
        "image is {size}×{size}, smaller than the dataset resolution {resolution}"
    );
    let mut levels = cascade::cascade(image, channels, size)?;
    let skip = (size / resolution).trailing_zeros() as usize;
    levels.drain(..skip);
    Ok(PreparedImage { levels })
}

/// Writes a dataset directory image by image.
pub struct DatasetWriter {
    dir: PathBuf,
    name: String,
    resolution: u32,
    channels: u32,
    factors: Vec<FactorSpec>,
    /// Top level first.
    levels: Vec<NpyWriter>,
    factor_file: Option<NpyWriter>,
    count: u64,
}

impl DatasetWriter {
    /// Starts a dataset of `resolution`² images with `channels` (1 or 3) in the existing directory `dir` (normally
    /// the temporary directory of [`fs::build_dir_atomic`]). `factors` lists the ground-truth factors every
    /// pushed image must carry (empty for none).
    pub fn create(
        dir: &Path,
        name: &str,
        resolution: u32,
        channels: u32,
        factors: Vec<FactorSpec>,
    ) -> Result<Self> {
        ensure!(!name.trim().is_empty(), "the dataset name is empty");
        ensure!(
            resolution.is_power_of_two() && resolution >= 1 << MIN_LOG2,
            "resolution {resolution} is not a power of two ≥ 4"
        );
        ensure!(
            channels == 1 || channels == 3,
            "{channels} channels: datasets hold grey (1) or RGB (3) images"
        );
        ensure!(
            dir.is_dir(),
            "dataset build directory {} does not exist",
            dir.display()
        );
        ensure!(
            !dir.join(META_FILE).exists(),
            "{} already holds a dataset",
            dir.display()
        );
        let top = resolution.trailing_zeros();
        let mut levels = Vec::new();
        for l in (MIN_LOG2..=top).rev() {
            let s = 1u64 << l;
            levels.push(NpyWriter::create(
                &dir.join(level_file(l)),
                Dtype::U8,
                &[channels as u64, s, s],
            )?);
        }
        let factor_file = if factors.is_empty() {
            None
        } else {
            Some(NpyWriter::create(
                &dir.join(FACTORS_FILE),
                Dtype::F32,
                &[factors.len() as u64],
            )?)
        };
        Ok(DatasetWriter {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            resolution,
            channels,
            factors,
            levels,
            factor_file,
            count: 0,
        })
    }

    pub fn resolution(&self) -> u32 {
        self.resolution
    }
    pub fn channels(&self) -> u32 {
        self.channels
    }
    /// Images pushed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Appends one CHW uint8 image (`resolution`² or any larger power of two, see [`prepare_image`]) with its
    /// factor values (`Some` exactly when the dataset declares factors).
    pub fn push(&mut self, image: &[u8], factors: Option<&[f32]>) -> Result<()> {
        let prepared = prepare_image(image, self.channels as usize, self.resolution as usize)?;
        self.push_prepared(&prepared, factors)
    }

    /// Appends an image prepared by [`prepare_image`] (with this writer's channels and resolution).
    pub fn push_prepared(&mut self, image: &PreparedImage, factors: Option<&[f32]>) -> Result<()> {
        let (c, r) = (self.channels as usize, self.resolution as usize);
        ensure!(
            image.levels.len() == self.levels.len()
                && image
                    .levels
                    .iter()
                    .enumerate()
                    .all(|(k, l)| l.len() == c * (r >> k) * (r >> k)),
            "image {} does not have the levels of a {c}×{r}×{r} dataset",
            self.count
        );
        match (&mut self.factor_file, factors) {
            (Some(file), Some(values)) => {
                ensure!(
                    values.len() == self.factors.len(),
                    "image {} has {} factor values, the dataset declares {}",
                    self.count,
                    values.len(),
                    self.factors.len()
                );
                for (v, spec) in values.iter().zip(&self.factors) {
                    // A small tolerance: ranges are float32 versions of the generators' f64 values.
                    let tol = 1e-5 * (1.0 + spec.max.abs().max(spec.min.abs()));
                    ensure!(
                        v.is_finite() && *v >= spec.min - tol && *v <= spec.max + tol,
                        "factor {} = {v} of image {} is outside its range [{}, {}]",
                        spec.name,
                        self.count,
                        spec.min,
                        spec.max
                    );
                }
                file.push_f32(values)?;
            }
            (None, None) => {}
            (Some(_), None) => anyhow::bail!(
                "image {} has no factor values; the dataset declares {}",
                self.count,
                self.factors.len()
            ),
            (None, Some(_)) => anyhow::bail!(
                "image {} has factor values but the dataset declares no factors",
                self.count
            ),
        }
        for (file, data) in self.levels.iter_mut().zip(&image.levels) {
            file.push_bytes(data)?;
        }
        self.count += 1;
        Ok(())
    }

    /// Completes the files and writes `dataset.json` (last). `source` says where the images came from, `command`
    /// is the creating command line ([`super::command_line`]).
    pub fn finish(self, source: &str, command: &str) -> Result<DatasetMeta> {
        ensure!(
            self.count > 0,
            "no images were written to dataset {}",
            self.name
        );
        for file in self.levels {
            file.finish()?;
        }
        if let Some(file) = self.factor_file {
            file.finish()?;
        }
        let meta = DatasetMeta {
            format: FORMAT_TAG.to_string(),
            version: FORMAT_VERSION,
            name: self.name,
            count: self.count,
            resolution: self.resolution,
            channels: self.channels,
            levels: (MIN_LOG2..=self.resolution.trailing_zeros()).collect(),
            factors: self.factors,
            source: source.to_string(),
            command: command.to_string(),
        };
        validate_meta(&meta)?;
        let json = serde_json::to_string_pretty(&meta)? + "\n";
        fs::write_bytes_atomic(&self.dir.join(META_FILE), json.as_bytes())
            .context("cannot write the dataset description")?;
        Ok(meta)
    }
}
