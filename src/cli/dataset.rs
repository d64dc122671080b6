//! `dataset`'s subcommands (docs/spec/progan_hp.md §4.5): their flags, the calls into the data layer, and what
//! they print.

use crate::cli::values::SynthKindArg;
use crate::commands::Globals;
use crate::data::{self, images, loader, locate, synth};
use anyhow::{ensure, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::sync::Arc;

/// `created OUT: N images at R×R [(S skipped)] in T s`.
fn created(r: &images::CreateReport, with_skipped: bool) -> String {
    let skipped = if with_skipped {
        format!(" ({} skipped)", r.skipped.len())
    } else {
        String::new()
    };
    format!(
        "created {}: {} images at {}×{}{skipped} in {:.1} s",
        r.out.display(),
        r.count,
        r.resolution,
        r.resolution,
        r.seconds
    )
}

#[derive(Subcommand, Debug, PartialEq)]
pub enum DatasetCommand {
    /// A dataset from a folder of PNG/JPEG/WebP/BMP images (searched recursively).
    CreateFromImages {
        /// Folder with the images.
        dir: PathBuf,
        /// New dataset directory.
        out: PathBuf,
        /// Centre-crop and resize (Lanczos3) every image to R×R; without it the images must all be the same
        /// square power-of-two size.
        #[arg(long)]
        resolution: Option<u32>,
        /// Store the images in a random order drawn from --seed (default: sorted by path).
        #[arg(long)]
        shuffle: bool,
        /// Skip unreadable or corrupt files (they are counted and listed) instead of stopping.
        #[arg(long)]
        skip_bad: bool,
        /// Dataset name (default: OUT's directory name).
        #[arg(long)]
        name: Option<String>,
    },
    /// The reference's edges2shoes dataset: each 512×256 pix2pix pair in DIR/train gives an edge map and a photo.
    CreateEdgesAndShoes {
        /// pix2pix edges2shoes folder (containing train/).
        dir: PathBuf,
        /// New dataset directory.
        out: PathBuf,
        /// Largest stored level (the reference's downloadable dataset stops at 128).
        #[arg(long, default_value_t = 128)]
        resolution: u32,
        /// Dataset name (default: OUT's directory name).
        #[arg(long)]
        name: Option<String>,
        /// Store the photos (in file order), then the edge maps, instead of a seeded random mix.
        #[arg(long)]
        no_shuffle: bool,
    },
    /// dataset_tool.py's `create_from_images TFRECORD_DIR IMAGE_DIR [--shuffle 0|1]`: the reference's argument
    /// order (the output first) and default (shuffled), as `create-from-images IMAGE_DIR TFRECORD_DIR [--shuffle]`.
    #[command(name = "create_from_images", hide = true)]
    ReferenceCreateFromImages {
        out: PathBuf,
        dir: PathBuf,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
        shuffle: u8,
    },
    /// dataset_tool.py's `create_edges_and_shoes TFRECORD_DIR IMAGE_DIR [--shuffle 0|1]`: the output first, all of
    /// the pairs' 256² halves, shuffled unless `--shuffle 0`.
    #[command(name = "create_edges_and_shoes", hide = true)]
    ReferenceCreateEdgesAndShoes {
        out: PathBuf,
        dir: PathBuf,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
        shuffle: u8,
    },
    /// A synthetic dataset with ground-truth factors (CLEVR-like scenes or dSprites).
    Synth {
        /// Which dataset.
        #[arg(long, value_enum)]
        kind: SynthKindArg,
        /// Number of images (dsprites: 0 = the full 737,280-image grid).
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// The full dSprites grid (same as --count 0).
        #[arg(long)]
        full: bool,
        /// Image size (default 128 for CLEVR kinds, 64 for dsprites).
        #[arg(long)]
        resolution: Option<u32>,
        /// Dataset name (default: the kind with underscores).
        #[arg(long)]
        name: Option<String>,
        /// New dataset directory.
        out: PathBuf,
    },
    /// Count, levels and factors of a dataset; optionally a grid of its first images.
    Info {
        dir: PathBuf,
        /// Write a PNG grid of the first 64 images here.
        #[arg(long)]
        grid: Option<PathBuf>,
        /// Level of the grid (log2 of its resolution; default the largest).
        #[arg(long)]
        level: Option<u32>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the images of one level as PNG files into a new directory.
    Extract {
        dir: PathBuf,
        out: PathBuf,
        /// log2 of the level's resolution (default the largest).
        #[arg(long)]
        level: Option<u32>,
        /// At most this many images.
        #[arg(long)]
        max: Option<usize>,
    },
    /// Download a reference dataset (clevr_simple, clevr_complex, clevr_1fov, edges_and_shoes) and import it.
    Download {
        name: String,
        /// Where datasets live.
        #[arg(long, default_value = "datasets")]
        datasets_dir: PathBuf,
        /// Keep the downloaded TFRecords in <datasets-dir>/.downloads after the import.
        #[arg(long)]
        keep_tfrecords: bool,
    },
    /// Import the reference's multi-resolution TFRecords (<name>-rXX.tfrecords) as a dataset.
    ImportTfrecords {
        /// Folder with the .tfrecords files.
        dir: PathBuf,
        /// New dataset directory.
        out: PathBuf,
        /// Largest level to import (default: the largest present).
        #[arg(long)]
        resolution: Option<u32>,
    },
    /// Images per second of the training loader alone (JSON).
    Bench {
        dir: PathBuf,
        #[arg(long, default_value_t = 128)]
        resolution: u32,
        #[arg(long, default_value_t = 24)]
        batch: usize,
        #[arg(long, default_value_t = 500)]
        batches: usize,
        /// Batches prefetched on the background thread (0 = synchronous reads).
        #[arg(long, default_value_t = loader::DEFAULT_PREFETCH)]
        prefetch: usize,
    },
}

impl DatasetCommand {
    /// The reference's spellings (dataset_tool.py's sub-commands, docs/spec/progan_hp.md §4.5) as the equivalent
    /// commands of ours; ours unchanged.
    pub fn canonical(self) -> Self {
        match self {
            DatasetCommand::ReferenceCreateFromImages { out, dir, shuffle } => {
                DatasetCommand::CreateFromImages {
                    dir,
                    out,
                    resolution: None,
                    shuffle: shuffle == 1,
                    skip_bad: false,
                    name: None,
                }
            }
            DatasetCommand::ReferenceCreateEdgesAndShoes { out, dir, shuffle } => {
                DatasetCommand::CreateEdgesAndShoes {
                    dir,
                    out,
                    resolution: 256,
                    name: None,
                    no_shuffle: shuffle == 0,
                }
            }
            ours => ours,
        }
    }
}

/// Runs a `dataset` subcommand and prints its result.
pub fn run(command: DatasetCommand, globals: &Globals) -> Result<()> {
    let quiet = !crate::io::log::shows(log::Level::Info);
    match command {
        DatasetCommand::Download {
            name,
            datasets_dir,
            keep_tfrecords,
        } => {
            let dir = locate::download_dataset(
                &name,
                &datasets_dir,
                keep_tfrecords,
                globals.base_url.as_deref(),
            )?;
            println!("{}", dir.display());
        }
        DatasetCommand::ImportTfrecords {
            dir,
            out,
            resolution,
        } => {
            locate::import_tfrecords(&dir, &out, resolution)?;
            println!("{}", out.display());
        }
        DatasetCommand::CreateFromImages {
            dir,
            out,
            resolution,
            shuffle,
            skip_bad,
            name,
        } => {
            let opts = images::FromImagesOptions {
                resolution,
                shuffle,
                skip_bad,
                name,
                seed: globals.seed_or_default(),
            };
            let r = images::create_from_images(&dir, &out, &opts)?;
            if !quiet {
                println!("{}", created(&r, true));
            }
        }
        DatasetCommand::CreateEdgesAndShoes {
            dir,
            out,
            resolution,
            name,
            no_shuffle,
        } => {
            let opts = images::EdgesShoesOptions {
                resolution,
                name,
                seed: globals.seed_or_default(),
                shuffle: !no_shuffle,
            };
            let r = images::create_edges_and_shoes(&dir, &out, &opts)?;
            if !quiet {
                println!("{}", created(&r, false));
            }
        }
        reference @ (DatasetCommand::ReferenceCreateFromImages { .. }
        | DatasetCommand::ReferenceCreateEdgesAndShoes { .. }) => {
            return run(reference.canonical(), globals);
        }
        DatasetCommand::Synth {
            kind,
            count,
            full,
            resolution,
            name,
            out,
        } => {
            let kind = synth::Kind::from(kind);
            ensure!(
                !full || kind == synth::Kind::Dsprites,
                "--full applies to --kind dsprites only (the CLEVR kinds have no finite grid)"
            );
            let opts = synth::SynthOptions {
                kind,
                count: if full { 0 } else { count },
                resolution: resolution.unwrap_or(kind.default_resolution()),
                seed: globals.seed_or_default(),
                name,
            };
            let (_, report) = synth::generate(&out, &opts)?;
            println!("{}", serde_json::to_string(&report)?);
        }
        DatasetCommand::Info {
            dir,
            grid,
            level,
            json,
        } => {
            let ds = data::Dataset::open(&dir)?;
            let info = images::info(&ds)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{info}");
            }
            if let Some(path) = grid {
                images::save_sample_grid(&ds, level, 64, 8, &path)?;
                if !json && !quiet {
                    println!("grid        {}", path.display());
                }
            }
        }
        DatasetCommand::Extract {
            dir,
            out,
            level,
            max,
        } => {
            let ds = data::Dataset::open(&dir)?;
            let n = images::extract(&ds, &out, level, max)?;
            if !quiet {
                println!("wrote {n} PNGs to {}", out.display());
            }
        }
        DatasetCommand::Bench {
            dir,
            resolution,
            batch,
            batches,
            prefetch,
        } => {
            let ds = Arc::new(data::Dataset::open(&dir)?);
            let r = loader::bench(
                ds,
                globals.seed_or_default(),
                resolution,
                batch,
                batches,
                prefetch,
            )?;
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(())
}
