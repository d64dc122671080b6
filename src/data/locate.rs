//! Datasets by name: found locally, or downloaded from the reference's server (or a mirror) as TFRecords and
//! imported into our format (docs/spec/progan_hp.md §2.9, §6).

use crate::data::{self, Dataset, DatasetWriter};
use crate::io::download;
use crate::io::fs;
use crate::io::resources;
use crate::io::tfrecord::{count_records, find_levels, TfRecordReader};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};

/// The directory of dataset `name`: a path to a dataset directory, or `<datasets_dir>/<name>`; a known reference
/// dataset that is missing is downloaded (from `base_url`, else $HESSIAN_GAN_BASE_URL, else the reference's
/// server) and imported first. Only complete datasets count as present.
pub fn locate(name: &str, datasets_dir: &Path, base_url: Option<&str>) -> Result<PathBuf> {
    let as_path = Path::new(name);
    if name.contains(std::path::MAIN_SEPARATOR)
        || (as_path.is_dir() && !datasets_dir.join(name).exists())
    {
        ensure!(as_path.is_dir(), "--dataset {name}: no such directory");
        ensure!(
            data::is_complete(as_path),
            "--dataset {name} is not a complete dataset (no valid dataset.json); create it with `hessian-gan \
             dataset create-from-images`, `dataset synth` or `dataset import-tfrecords`"
        );
        return Ok(as_path.to_path_buf());
    }
    let mapped = if resources::is_known_dataset(name) {
        resources::dataset(name)?.dataset.name
    } else {
        name
    };
    let dir = datasets_dir.join(mapped);
    if data::is_complete(&dir) {
        return Ok(dir);
    }
    ensure!(
        !dir.exists(),
        "{} exists but is not a complete dataset (no valid dataset.json); remove it and run again",
        dir.display()
    );
    if resources::is_known_dataset(name) {
        download_dataset(name, datasets_dir, false, base_url)?;
        return Ok(dir);
    }
    bail!(
        "dataset '{name}' not found in {}; known downloadable names: {}; or make one with `hessian-gan dataset \
         synth`, `dataset create-from-images` or `dataset import-tfrecords`",
        datasets_dir.display(),
        resources::dataset_names().join(", ")
    )
}

/// Downloads a known dataset's TFRecords into `<datasets_dir>/.downloads/<name>/` (resumable) and imports them as
/// `<datasets_dir>/<name>`. The TFRecords are removed after a successful import unless `keep` is set.
pub fn download_dataset(
    name: &str,
    datasets_dir: &Path,
    keep: bool,
    base_url: Option<&str>,
) -> Result<PathBuf> {
    let remote = resources::dataset(name)?;
    if let Some(note) = remote.note {
        log::info!("note: {note}");
    }
    let ds_name = remote.dataset.name;
    let out = datasets_dir.join(ds_name);
    if data::is_complete(&out) {
        return Ok(out);
    }
    let base = download::resolve_base_url(base_url)?;
    let staging = datasets_dir.join(".downloads").join(ds_name);
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    for (_, file) in &remote.levels {
        let opts = download::DownloadOptions {
            sha256: file.sha256.map(str::to_string),
            size: file.size,
            label: Some(file.file_name.clone()),
            ..Default::default()
        };
        download::ensure_file(&file.url(&base), &staging.join(&file.file_name), &opts)
            .map_err(|e| with_offline_hint(e, name, datasets_dir))?;
    }
    import_tfrecords(&staging, &out, None)?;
    if !keep {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    Ok(out)
}

/// A failed download of a known dataset, with the way to train without the network: the built-in synthetic
/// stand-in of the CLEVR datasets (or, for edges_and_shoes, the pix2pix folder it is made from).
fn with_offline_hint(err: anyhow::Error, name: &str, datasets_dir: &Path) -> anyhow::Error {
    let kind = match name {
        "clevr_simple" | "clevr_u" => Some("clevr-simple"),
        "clevr_complex" => Some("clevr-complex"),
        "clevr_1fov" => Some("clevr-1fov"),
        _ => None,
    };
    let hint = match kind {
        Some(kind) => {
            let stand_in = format!("synth_{}", kind.replace('-', "_"));
            format!(
                "without the network, `hessian-gan dataset synth --kind {kind} {}` makes a built-in stand-in with \
                 ground-truth factors; then pass --dataset {stand_in}",
                datasets_dir.join(&stand_in).display()
            )
        }
        None => "without the network, make it from the pix2pix edges2shoes folder with `hessian-gan dataset \
                 create-edges-and-shoes DIR OUT` and pass --dataset OUT"
            .to_string(),
    };
    anyhow::anyhow!("{err:#}; {hint}")
}

/// How many images of each imported dataset are checked level by level against the reference's own lower-level
/// files (which must equal our cascade bit for bit, docs/spec/progan_hp.md §2.9).
const CASCADE_CHECK_IMAGES: usize = 16;

/// Imports a reference dataset directory (`<name>-rXX.tfrecords`) as a dataset at `out`, streaming the top level
/// (`resolution`, default the largest) through the writer; the lower levels of the first images are compared with
/// the reference's files, and every level must hold the same number of records.
pub fn import_tfrecords(dir: &Path, out: &Path, resolution: Option<u32>) -> Result<()> {
    data::format::check_new_output(out)?;
    let levels = find_levels(dir)?;
    let (top_log2, top_path) = match resolution {
        None => levels.last().cloned().context("no levels")?,
        Some(r) => {
            ensure!(
                r.is_power_of_two(),
                "--resolution {r} is not a power of two"
            );
            levels
                .iter()
                .find(|(l, _)| 1u32 << l == r)
                .cloned()
                .with_context(|| format!("{} has no level for --resolution {r}", dir.display()))?
        }
    };
    let count = count_records(&top_path)?;
    for (l, p) in &levels {
        if *l <= top_log2 {
            let n = count_records(p)?;
            ensure!(
                n == count,
                "{} holds {n} records but {} holds {count}",
                p.display(),
                top_path.display()
            );
        }
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    let bar = crate::io::progress::bar(Some(count), "importing");
    fs::build_dir_atomic(out, |tmp| {
        let mut reader = TfRecordReader::open(&top_path)?;
        let first = reader.next().context("empty TFRecord file")??;
        let [c, h, w] = first.0;
        ensure!(
            h == w && h == 1 << top_log2,
            "{}: images are {h}×{w}, expected {}²",
            top_path.display(),
            1 << top_log2
        );
        ensure!(
            c == 1 || c == 3,
            "{}: images have {c} channels; expected 1 or 3",
            top_path.display()
        );
        let mut writer = DatasetWriter::create(tmp, &name, h as u32, c as u32, Vec::new())?;
        writer.push(&first.1, None)?;
        bar.inc(1);
        for record in reader {
            let (shape, data) = record?;
            ensure!(
                shape == first.0,
                "{}: image shape {shape:?} differs from {:?}",
                top_path.display(),
                first.0
            );
            writer.push(&data, None)?;
            bar.inc(1);
        }
        writer.finish(
            &format!("TFRecords in {}", dir.display()),
            &data::command_line(),
        )?;
        // The reference's lower levels must be our cascade, bit for bit.
        let ds = Dataset::open(tmp)?;
        for (l, p) in levels.iter().filter(|(l, _)| *l < top_log2) {
            let ours = ds.level(*l)?;
            for (i, record) in TfRecordReader::open(p)?
                .take(CASCADE_CHECK_IMAGES)
                .enumerate()
            {
                let (_, data) = record?;
                ensure!(
                    ours.image(i) == data.as_slice(),
                    "{}: image {i} differs from the 2×2 box-average cascade of the top level; the files do not \
                     belong together or are corrupt",
                    p.display()
                );
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(())
}
