//! Datasets from image files and back (docs/spec/progan_hp.md §4.5): `create-from-images`, `create-edges-and-shoes`,
//! `info` and `extract`.

use super::format::{Dataset, DatasetMeta};
use super::writer::{prepare_image, DatasetWriter, PreparedImage};
use crate::core::rng;
use crate::io::fs;
use crate::io::imageio;
use crate::io::progress;
use anyhow::{bail, ensure, Context, Result};
use image::{imageops::FilterType, DynamicImage, RgbImage};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// File extensions read as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "webp", "bmp"];

/// Images decoded in parallel per step (bounded memory, ordered output).
const CHUNK: usize = 256;

/// Every image file under `dir`, recursively, sorted by path (the order is deterministic).
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    ensure!(
        dir.is_dir(),
        "image directory {} does not exist",
        dir.display()
    );
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?;
        for e in entries {
            let path = e
                .with_context(|| format!("cannot list {}", d.display()))?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Decodes a file to 8-bit RGB (grey is replicated; alpha is dropped, as PIL's `convert('RGB')` does).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?
        .decode()
        .with_context(|| format!("{} is not a readable image", path.display()))?;
    Ok(match img {
        DynamicImage::ImageRgb8(i) => i,
        other => other.to_rgb8(),
    })
}

/// Centre crop to a square, then a Lanczos3 resize to `res`×`res` (no resampling when already that size).
pub fn crop_resize(img: &RgbImage, res: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let s = w.min(h);
    let cropped = if w == h {
        img.clone()
    } else {
        image::imageops::crop_imm(img, (w - s) / 2, (h - s) / 2, s, s).to_image()
    };
    if s == res {
        cropped
    } else {
        image::imageops::resize(&cropped, res, res, FilterType::Lanczos3)
    }
}

/// HWC RGB → CHW bytes.
pub fn rgb_to_chw(img: &RgbImage) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let n = (w * h) as usize;
    let mut out = vec![0u8; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        out[i] = p[0];
        out[n + i] = p[1];
        out[2 * n + i] = p[2];
    }
    out
}

/// Options of `dataset create-from-images`.
#[derive(Clone, Debug, Default)]
pub struct FromImagesOptions {
    /// Centre crop and resize every image to this size; without it all images must be the same square power of two.
    pub resolution: Option<u32>,
    /// Store the images in a seeded random order instead of path order.
    pub shuffle: bool,
    /// Skip (and count) unreadable files instead of failing.
    pub skip_bad: bool,
    /// Dataset name (default: the output directory's name).
    pub name: Option<String>,
    pub seed: u64,
}

/// What a creation command did.
#[derive(Clone, Debug, Serialize)]
pub struct CreateReport {
    pub out: PathBuf,
    pub count: u64,
    pub skipped: Vec<PathBuf>,
    pub resolution: u32,
    pub seconds: f64,
}

fn default_name(out: &Path) -> String {
    out.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into())
}

fn square_pow2(path: &Path, w: u32, h: u32) -> Result<u32> {
    if w != h || !w.is_power_of_two() || w < 4 {
        bail!(
            "{} is {w}×{h}; without --resolution every image must be square with a power-of-two side ≥ 4 \
             (pass --resolution R to centre-crop and resize)",
            path.display()
        );
    }
    Ok(w)
}

/// `dataset create-from-images DIR OUT`.
pub fn create_from_images(
    dir: &Path,
    out: &Path,
    opts: &FromImagesOptions,
) -> Result<CreateReport> {
    super::format::check_new_output(out)?;
    if let Some(r) = opts.resolution {
        ensure!(
            r.is_power_of_two() && r >= 4,
            "--resolution {r} is not a power of two ≥ 4"
        );
    }
    let mut files = list_images(dir)?;
    ensure!(
        !files.is_empty(),
        "no PNG/JPEG/WebP/BMP images under {}",
        dir.display()
    );
    if opts.shuffle {
        let perm = rng::permutation(files.len(), rng::derive_seed(opts.seed, &[0x5407]));
        files = perm.iter().map(|&i| files[i as usize].clone()).collect();
    }
    let t0 = std::time::Instant::now();
    let name = opts.name.clone().unwrap_or_else(|| default_name(out));
    let mut skipped = Vec::new();
    let mut count = 0;
    let mut resolution = opts.resolution.unwrap_or(0);
    fs::build_dir_atomic(out, |tmp| {
        let pb = progress::bar(Some(files.len() as u64), "reading images");
        let mut writer: Option<DatasetWriter> = None;
        for chunk in files.chunks(CHUNK) {
            // Decode (and crop/resize) in parallel; sizes are checked in order below.
            let decoded: Vec<Result<RgbImage>> = chunk
                .par_iter()
                .map(|p| {
                    let img = load_rgb(p)?;
                    Ok(match opts.resolution {
                        Some(r) => crop_resize(&img, r),
                        None => img,
                    })
                })
                .collect();
            for (path, img) in chunk.iter().zip(decoded) {
                pb.inc(1);
                let img = match img {
                    Ok(i) => i,
                    Err(e) if opts.skip_bad => {
                        log::warn!("skipping {}: {e:#}", path.display());
                        skipped.push(path.clone());
                        continue;
                    }
                    Err(e) => {
                        return Err(e.context("use --skip-bad to skip unreadable files"));
                    }
                };
                let (w, h) = img.dimensions();
                if resolution == 0 {
                    resolution = square_pow2(path, w, h)?;
                }
                if w != resolution || h != resolution {
                    square_pow2(path, w, h)?;
                    bail!(
                        "{} is {w}×{h} but the images before it are {resolution}×{resolution}; all images must have \
                         the same size (or pass --resolution R)",
                        path.display()
                    );
                }
                if writer.is_none() {
                    writer = Some(DatasetWriter::create(tmp, &name, resolution, 3, vec![])?);
                }
                let w = writer.as_mut().expect("just created");
                w.push(&rgb_to_chw(&img), None)?;
            }
        }
        pb.finish_and_clear();
        let w = writer.with_context(|| {
            format!(
                "no readable images under {} ({} skipped)",
                dir.display(),
                skipped.len()
            )
        })?;
        let source = format!(
            "images from {}{}",
            dir.display(),
            if opts.shuffle {
                format!(", shuffled with seed {}", opts.seed)
            } else {
                String::new()
            }
        );
        count = w.finish(&source, &super::command_line())?.count;
        Ok(())
    })?;
    Ok(CreateReport {
        out: out.to_path_buf(),
        count,
        skipped,
        resolution,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Options of `dataset create-edges-and-shoes`.
#[derive(Clone, Debug)]
pub struct EdgesShoesOptions {
    /// Stored resolution (≤ the half-image side; lower levels of the native 256² cascade, bit-exact).
    pub resolution: u32,
    pub name: Option<String>,
    pub seed: u64,
    /// Store the 2N entries in the seeded random order (the default, as the reference's `--shuffle 1`); without it
    /// the photos come first in file order, then the edge maps.
    pub shuffle: bool,
}

/// `dataset create-edges-and-shoes DIR OUT` (docs/spec/progan_hp.md §4.5): each pix2pix pair in `DIR/train` (edge map on the
/// left half, photo on the right, 512×256) gives two images. The 2N entries are stored in a seeded random order;
/// entry k ≥ N is the left half (edge map) of file k − N, entry k < N the right half (photo) of file k. The
/// reference drew the order from NumPy's `RandomState(123)`; reproducing NumPy's Mersenne Twister stream is not
/// worth it for a shuffle, so this uses the project's own seeded permutation (`--seed`): same split and mix, a
/// different order.
pub fn create_edges_and_shoes(
    dir: &Path,
    out: &Path,
    opts: &EdgesShoesOptions,
) -> Result<CreateReport> {
    super::format::check_new_output(out)?;
    let train = dir.join("train");
    ensure!(
        train.is_dir(),
        "{} has no train/ directory (expected the pix2pix edges2shoes layout DIR/train/*.jpg)",
        dir.display()
    );
    let res = opts.resolution;
    ensure!(
        res.is_power_of_two() && res >= 4,
        "--resolution {res} is not a power of two ≥ 4"
    );
    let files = list_images(&train)?;
    ensure!(!files.is_empty(), "no images under {}", train.display());
    let n = files.len();
    let order: Vec<u32> = if opts.shuffle {
        rng::permutation(2 * n, rng::derive_seed(opts.seed, &[0xe25]))
    } else {
        (0..2 * n as u32).collect()
    };
    let t0 = std::time::Instant::now();
    let name = opts.name.clone().unwrap_or_else(|| default_name(out));
    let mut count = 0;
    fs::build_dir_atomic(out, |tmp| {
        let mut w = DatasetWriter::create(tmp, &name, res, 3, vec![])?;
        let pb = progress::bar(Some(2 * n as u64), "splitting pairs");
        for chunk in order.chunks(CHUNK) {
            let prepared: Vec<PreparedImage> = chunk
                .par_iter()
                .map(|&k| {
                    let (file, left) = if (k as usize) >= n {
                        (&files[k as usize - n], true)
                    } else {
                        (&files[k as usize], false)
                    };
                    let img = load_rgb(file)?;
                    let (iw, ih) = img.dimensions();
                    ensure!(
                        iw == 2 * ih && ih.is_power_of_two() && ih >= res,
                        "{} is {iw}×{ih}; expected a pix2pix pair of two square power-of-two halves (512×256) \
                         at least {res} high",
                        file.display()
                    );
                    let x0 = if left { 0 } else { ih };
                    let half = image::imageops::crop_imm(&img, x0, 0, ih, ih).to_image();
                    prepare_image(&rgb_to_chw(&half), 3, res as usize)
                })
                .collect::<Result<_>>()?;
            for p in &prepared {
                w.push_prepared(p, None)?;
            }
            pb.inc(chunk.len() as u64);
        }
        pb.finish_and_clear();
        let source = format!(
            "edges2shoes pairs from {} split into edge maps and photos, order seed {}",
            train.display(),
            opts.seed
        );
        count = w.finish(&source, &super::command_line())?.count;
        Ok(())
    })?;
    Ok(CreateReport {
        out: out.to_path_buf(),
        count,
        skipped: vec![],
        resolution: res,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Summary of one factor over the whole dataset.
#[derive(Clone, Debug, Serialize)]
pub struct FactorSummary {
    pub name: String,
    pub declared_min: f32,
    pub declared_max: f32,
    pub num_values: Option<u32>,
    pub min: f32,
    pub max: f32,
    pub mean: f64,
}

/// `dataset info`: the description plus factor statistics.
#[derive(Clone, Debug, Serialize)]
pub struct Info {
    pub dir: PathBuf,
    pub meta: DatasetMeta,
    pub factors: Vec<FactorSummary>,
    pub bytes_on_disk: u64,
}

impl std::fmt::Display for Info {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.meta;
        writeln!(f, "dataset     {} ({})", m.name, self.dir.display())?;
        writeln!(
            f,
            "images      {} × {} channel{} at {}×{}",
            m.count,
            m.channels,
            if m.channels == 1 { "" } else { "s" },
            m.resolution,
            m.resolution
        )?;
        let levels: Vec<String> = m.levels.iter().map(|l| format!("r{l:02}")).collect();
        writeln!(f, "levels      {}", levels.join(" "))?;
        writeln!(f, "size        {:.1} MB", self.bytes_on_disk as f64 / 1e6)?;
        writeln!(f, "source      {}", m.source)?;
        writeln!(f, "created by  {}", m.command)?;
        if self.factors.is_empty() {
            writeln!(f, "factors     none")?;
        }
        for s in &self.factors {
            writeln!(
                f,
                "factor      {:<14} range [{}, {}]{}  observed [{}, {}] mean {:.4}",
                s.name,
                s.declared_min,
                s.declared_max,
                s.num_values
                    .map(|v| format!(" ({v} values)"))
                    .unwrap_or_default(),
                s.min,
                s.max,
                s.mean
            )?;
        }
        Ok(())
    }
}

/// `dataset info DIR`.
pub fn info(dataset: &Dataset) -> Result<Info> {
    let meta = dataset.meta().clone();
    let nf = meta.factors.len();
    let mut factors = Vec::new();
    for (j, spec) in meta.factors.iter().enumerate() {
        let col = dataset.factors().iter().skip(j).step_by(nf);
        let (mut lo, mut hi, mut sum) = (f32::MAX, f32::MIN, 0f64);
        for &v in col {
            lo = lo.min(v);
            hi = hi.max(v);
            sum += v as f64;
        }
        factors.push(FactorSummary {
            name: spec.name.clone(),
            declared_min: spec.min,
            declared_max: spec.max,
            num_values: spec.num_values,
            min: lo,
            max: hi,
            mean: sum / meta.count as f64,
        });
    }
    let mut bytes = 0;
    for e in std::fs::read_dir(dataset.dir())? {
        bytes += e?.metadata()?.len();
    }
    Ok(Info {
        dir: dataset.dir().to_path_buf(),
        meta,
        factors,
        bytes_on_disk: bytes,
    })
}

/// Writes a grid of the first `n` images of level `log2` (default: the top level) to `path` as PNG.
pub fn save_sample_grid(
    dataset: &Dataset,
    log2: Option<u32>,
    n: usize,
    cols: usize,
    path: &Path,
) -> Result<()> {
    let l = log2.unwrap_or(dataset.max_log2());
    let images = dataset.first_images(l, n)?;
    imageio::save_png(&imageio::grid(&images, cols, 2, 255)?, path)
}

/// `dataset extract DIR OUT`: the images of one level as PNGs `000000.png`, … in a new directory.
pub fn extract(
    dataset: &Dataset,
    out: &Path,
    log2: Option<u32>,
    max: Option<usize>,
) -> Result<u64> {
    super::format::check_new_output(out)?;
    let level = dataset.level(log2.unwrap_or(dataset.max_log2()))?;
    let n = max.unwrap_or(usize::MAX).min(level.count());
    let (c, s) = (level.channels(), level.size() as u32);
    let pb = progress::bar(Some(n as u64), "writing PNGs");
    fs::build_dir_atomic(out, |tmp| {
        (0..n).into_par_iter().try_for_each(|i| -> Result<()> {
            let chw = level.image(i);
            let path = tmp.join(format!("{i:06}.png"));
            let plane = (s * s) as usize;
            let res = if c == 1 {
                image::GrayImage::from_raw(s, s, chw.to_vec())
                    .expect("size matches")
                    .save(&path)
            } else {
                let mut hwc = vec![0u8; 3 * plane];
                for p in 0..plane {
                    for ch in 0..3 {
                        hwc[3 * p + ch] = chw[ch * plane + p];
                    }
                }
                RgbImage::from_raw(s, s, hwc)
                    .expect("size matches")
                    .save(&path)
            };
            res.with_context(|| format!("cannot write {}", path.display()))?;
            pb.inc(1);
            Ok(())
        })
    })?;
    pb.finish_and_clear();
    Ok(n as u64)
}
