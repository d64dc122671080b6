//! `hessian-gan`: parses the command line and hands over to the library.

use clap::{Parser, Subcommand};
use hessian_gan::dataset::{self, images, loader, synth};
use hessian_gan::{
    bench, device::DeviceSpec, evaluate, fetch, figures, import, info, train, visualize, Globals,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "hessian-gan",
    version,
    about = "ProGAN with the Hessian Penalty on libtorch"
)]
struct Cli {
    /// Compute device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto")]
    device: DeviceSpec,
    /// Seed for every random draw (latents, Rademacher directions, data order); default 1000.
    #[arg(long, global = true)]
    seed: Option<u64>,
    /// More output (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only errors and results.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Base URL for downloads of reference datasets and checkpoints (a mirror); else $HESSIAN_GAN_BASE_URL, else
    /// the reference's server.
    #[arg(long, global = true)]
    base_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Versions, CUDA/cuDNN availability, GPUs and CPU threads.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Train ProGAN with the Hessian Penalty (or InfoGAN / vanilla), resume or fine-tune.
    Train(Box<train::TrainArgs>),
    /// Measure training throughput (img/s, ms per D/G step, HP share, memory, TFLOP/s) at a fixed lod; JSON.
    Bench(Box<bench::BenchArgs>),
    /// FID and PPL of snapshots (spec §8): a table, JSON next to each snapshot, a line in results/metrics.jsonl.
    Evaluate(Box<evaluate::EvaluateArgs>),
    /// Latent-traversal videos and stills, sample grids, and renders of given latents (--z) for one or more models.
    Visualize(Box<visualize::VisualizeArgs>),
    /// Create, inspect and benchmark datasets (multi-resolution uint8 levels, see README).
    Dataset {
        #[command(subcommand)]
        command: DatasetCommand,
    },
    /// Convert one of the reference's TensorFlow checkpoints (network-snapshot-*.pkl, the pretrained models) into
    /// a snapshot. The pickle is read without executing anything.
    Import {
        /// The reference's .pkl file.
        pkl: PathBuf,
        /// The snapshot to write (.safetensors).
        out: PathBuf,
        /// Dataset name recorded in the snapshot's config (the pickle does not name it).
        #[arg(long)]
        dataset: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The paper's figures: Hessian heatmaps, Table 2 diagonal-ness, per-pixel HP heatmaps, activeness.
    Figures(Box<figures::FiguresArgs>),
}

#[derive(Subcommand)]
enum DatasetCommand {
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
    },
    /// A synthetic dataset with ground-truth factors (CLEVR-like scenes or dSprites).
    Synth {
        /// Which dataset.
        #[arg(long, value_enum)]
        kind: synth::Kind,
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

fn run_dataset(command: DatasetCommand, globals: &Globals) -> anyhow::Result<()> {
    let v = globals.verbosity;
    match command {
        DatasetCommand::Download {
            name,
            datasets_dir,
            keep_tfrecords,
        } => {
            let dir = fetch::download_dataset(&name, &datasets_dir, keep_tfrecords, globals)?;
            println!("{}", dir.display());
        }
        DatasetCommand::ImportTfrecords {
            dir,
            out,
            resolution,
        } => {
            fetch::import_tfrecords(&dir, &out, resolution, globals)?;
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
            let r = images::create_from_images(&dir, &out, &opts, v)?;
            if v >= 0 {
                println!(
                    "created {}: {} images at {}×{} ({} skipped) in {:.1} s",
                    r.out.display(),
                    r.count,
                    r.resolution,
                    r.resolution,
                    r.skipped.len(),
                    r.seconds
                );
            }
        }
        DatasetCommand::CreateEdgesAndShoes {
            dir,
            out,
            resolution,
            name,
        } => {
            let opts = images::EdgesShoesOptions {
                resolution,
                name,
                seed: globals.seed_or_default(),
            };
            let r = images::create_edges_and_shoes(&dir, &out, &opts, v)?;
            if v >= 0 {
                println!(
                    "created {}: {} images at {}×{} in {:.1} s",
                    r.out.display(),
                    r.count,
                    r.resolution,
                    r.resolution,
                    r.seconds
                );
            }
        }
        DatasetCommand::Synth {
            kind,
            count,
            full,
            resolution,
            name,
            out,
        } => {
            anyhow::ensure!(
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
            let (_, report) = synth::generate(&out, &opts, v)?;
            println!("{}", serde_json::to_string(&report)?);
        }
        DatasetCommand::Info {
            dir,
            grid,
            level,
            json,
        } => {
            let ds = dataset::Dataset::open(&dir)?;
            let info = images::info(&ds)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{info}");
            }
            if let Some(path) = grid {
                images::save_sample_grid(&ds, level, 64, 8, &path)?;
                if !json && v >= 0 {
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
            let ds = dataset::Dataset::open(&dir)?;
            let n = images::extract(&ds, &out, level, max, v)?;
            if v >= 0 {
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
            let ds = Arc::new(dataset::Dataset::open(&dir)?);
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

fn run(cli: Cli) -> anyhow::Result<()> {
    // Finite differences (Hessian Penalty, figures, PPL) need true float32: libtorch's default lets cuDNN use TF32.
    hessian_gan::precision::set_strict_fp32();
    let globals = Globals {
        device: cli.device,
        seed: cli.seed,
        base_url: cli.base_url,
        verbosity: if cli.quiet {
            -1
        } else {
            cli.verbose.min(3) as i8
        },
    };
    match cli.command {
        Command::Info { json } => {
            let report = info::collect(globals.device)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Train(args) => train::run(&globals, *args)?,
        Command::Bench(args) => bench::run(&globals, *args)?,
        Command::Evaluate(args) => evaluate::run(&globals, *args)?,
        Command::Dataset { command } => run_dataset(command, &globals)?,
        Command::Import {
            pkl,
            out,
            dataset,
            json,
        } => {
            let opts = import::ImportOptions {
                device: globals.device.resolve()?,
                dataset,
            };
            let report = import::import_pkl_with(&pkl, &out, &opts)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if globals.verbosity >= 0 {
                print!("{report}");
            }
        }
        Command::Figures(args) => {
            figures::run(&globals, &args)?;
        }
        Command::Visualize(args) => {
            for set in visualize::run(&globals, &args)? {
                if globals.verbosity >= 0 {
                    println!("{}", set.dir.display());
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its context chain, no backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
