//! The command line: every clap type, the conversion of flags into the commands' option structs, the logger's
//! set-up, and all printing of results. `main.rs` only calls [`main`].
//!
//! May import: everything below it (ARCHITECTURE.md). Nothing else in the crate may import `cli` or use clap.

pub mod dataset;
pub mod discover;
pub mod evaluate;
pub mod figures;
pub mod geometry;
pub mod score;
pub mod select;
pub mod sweep;
pub mod train;
pub mod values;
pub mod visualize;

use crate::checkpoint::import;
use crate::commands::train::TrainOutcome;
use crate::commands::{self, info, Globals};
use crate::core::device::DeviceSpec;
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hessian-gan",
    version,
    about = "ProGAN with the Hessian Penalty on libtorch"
)]
pub struct Cli {
    /// Compute device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto")]
    pub device: DeviceSpec,
    /// Seed for every random draw (latents, Rademacher directions, data order); default 1000.
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    /// More output (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors and results.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Base URL for downloads of reference datasets and checkpoints (a mirror); else $HESSIAN_GAN_BASE_URL, else
    /// the reference's server.
    #[arg(long, global = true)]
    pub base_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Versions, CUDA/cuDNN availability, GPUs and CPU threads.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Train ProGAN with the Hessian Penalty (or InfoGAN / vanilla), resume or fine-tune.
    Train(Box<train::TrainArgs>),
    /// Measure training throughput (img/s, ms per D/G step, HP share, memory, TFLOP/s) at a fixed lod; JSON.
    Bench(Box<train::BenchArgs>),
    /// FID and PPL of snapshots (spec §8): a table, JSON next to each snapshot, a line in results/metrics.jsonl.
    Evaluate(Box<evaluate::EvaluateArgs>),
    /// Latent-traversal videos and stills, sample grids, and renders of given latents (--z) for one or more models.
    Visualize(Box<visualize::VisualizeArgs>),
    /// Create, inspect and benchmark datasets (multi-resolution uint8 levels, see README).
    Dataset {
        #[command(subcommand)]
        command: dataset::DatasetCommand,
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
        /// The Hessian Penalty weight the checkpoint was trained with (default: from the path, as the reference
        /// decides: `hessian_penalty_<dataset>_…_w-<λ>` or a pretrained `_ft`/`_fs` name is HP, anything else 0).
        /// Fine-tuning a snapshot recorded with 0 ramps the penalty in from 0.
        #[arg(long, alias = "hp_lambda")]
        hp_lambda: Option<f64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The paper's figures: Hessian heatmaps, Table 2 diagonal-ness, per-pixel HP heatmaps, activeness.
    Figures(Box<figures::FiguresArgs>),
    /// Disentanglement against ground-truth factors: FactorVAE, BetaVAE, SAP, MIG, modularity, explicitness,
    /// DCI and dHSIC of given codes.
    Score(Box<score::ScoreArgs>),
    /// Unsupervised model selection among runs of one configuration: ModelCentrality (InfoGAN-CR's) and UDR
    /// (Lasso, Spearman), with each run's ground-truth scores and each selector's regret where the data has factors.
    Select(Box<select::SelectArgs>),
    /// The generator's latent metric tensor (GAN-Geometry): the pulled-back Hessian of an image distance at many
    /// codes (bp, backward-iter, forward-iter), its spectrum, consistency, axis alignment, and eigen-axis montages.
    Geometry(Box<geometry::GeometryArgs>),
    /// Learn interpretable directions in a frozen generator (ours, imported, or BigGAN 128) with the Hessian
    /// Penalty of its output with respect to the directions' coefficients, and compare them with coordinate, random,
    /// PCA and metric-tensor directions (traversals; effect-matrix scores where the data has factors).
    Discover(Box<discover::DiscoverArgs>),
    /// Many `train` runs of one preset: seeds × a grid of settings (--set KEY=V1,V2), run locally (--parallel at a
    /// time) or as a Slurm job array, resumable; then `sweep status DIR` and `sweep summarize DIR` (mean ± std per
    /// arm, the hand-off to `select`).
    Sweep(Box<sweep::SweepArgs>),
    /// Summarise a study (scripts/study.sh): per dataset, each arm's last score tick as mean ± std over seeds,
    /// every measure against kimg, traversal stills; study.md, study.json and plots.
    Report {
        /// The study's run list: one JSON object per line with dataset, arm, seed, run and parent.
        #[arg(long, default_value = "study-runs/runs.jsonl")]
        manifest: PathBuf,
        /// Where study.md, study.json and the plots go (traversal stills are looked up under <out>/traversals).
        #[arg(long, default_value = "docs/results")]
        out: PathBuf,
        /// `figures --fig diag` outputs (diag.json) of the study's snapshots: adds Table 2's numbers.
        #[arg(long, num_args = 1..)]
        diag: Vec<PathBuf>,
    },
}

/// Runs a parsed command line: sets up logging, then runs the command and prints its results.
pub fn run(cli: Cli) -> Result<()> {
    crate::io::log::init(crate::io::log::level_from_flags(cli.quiet, cli.verbose));
    // Finite differences (Hessian Penalty, figures, PPL) need true float32: libtorch's default lets cuDNN use TF32.
    crate::core::precision::set_strict_fp32();
    let globals = Globals {
        device: cli.device,
        seed: cli.seed,
        base_url: cli.base_url,
    };
    let quiet = cli.quiet;
    match cli.command {
        Command::Info { json } => {
            let report = info::collect(globals.device)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Train(args) => match commands::train::run(&globals, &(*args).into())? {
            TrainOutcome::DryRun {
                config,
                networks,
                schedule,
            } => {
                println!("{config}");
                println!("{networks}");
                print!("{schedule}");
            }
            TrainOutcome::Trained { .. } => {}
        },
        Command::Bench(args) => {
            let opts: commands::bench::BenchOptions = (*args).into();
            if opts.train.dry_run {
                let resolved = commands::bench::resolve(&globals, &opts)?;
                println!("{}", serde_json::to_string_pretty(&resolved)?);
                return Ok(());
            }
            let report = commands::bench::run(&globals, &opts)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Evaluate(args) => {
            let json = args.json;
            args.warn_ignored();
            let evaluations = commands::evaluate::run(&globals, &(*args).into())?;
            evaluate::print(&evaluations, json);
        }
        Command::Dataset { command } => dataset::run(command, &globals)?,
        Command::Import {
            pkl,
            out,
            dataset,
            hp_lambda,
            json,
        } => {
            let opts = import::ImportOptions {
                device: globals.device.resolve()?,
                dataset,
                hp_lambda,
            };
            let report = import::import_pkl_with(&pkl, &out, &opts)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if !quiet {
                print!("{report}");
            }
        }
        Command::Figures(args) => {
            args.warn_ignored();
            let report = commands::figures::run(&globals, &(*args).into())?;
            figures::print_diag(&report);
            if !quiet {
                for f in &report.files {
                    println!("wrote {}", f.display());
                }
            }
        }
        Command::Score(args) => {
            let json = args.json;
            let reports = commands::score::run(&globals, &(*args).into())?;
            score::print(&reports, json)?;
        }
        Command::Select(args) => {
            let report = commands::select::run(&globals, &(&*args).into())?;
            select::print(&report, args.json)?;
        }
        Command::Geometry(args) => {
            let report = commands::geometry::run(&globals, &(&*args).into())?;
            geometry::print(&report, args.json)?;
        }
        Command::Discover(args) => {
            let report = commands::discover::run(&globals, &args.options()?)?;
            discover::print(&report, args.json)?;
        }
        Command::Report {
            manifest,
            out,
            diag,
        } => {
            let report = commands::report::run(&commands::report::ReportOptions {
                manifest,
                out,
                diag,
            })?;
            for (dataset, arms) in &report.datasets {
                for a in arms {
                    let fv = a.last[0].1.map_or("–".to_string(), |s| s.format());
                    println!(
                        "{dataset:<14} {:<16} seeds {}  FactorVAE (z groups) {fv}",
                        a.arm,
                        a.seeds.len()
                    );
                }
            }
            if !quiet {
                for f in &report.files {
                    println!("wrote {}", f.display());
                }
            }
        }
        Command::Sweep(args) => run_sweep(&globals, *args, quiet)?,
        Command::Visualize(args) => {
            for set in commands::visualize::run(&globals, &(*args).into())? {
                if !quiet {
                    println!("{}", set.dir.display());
                }
            }
        }
    }
    Ok(())
}

/// `sweep` and its subcommands. A sweep with failed runs is an error naming them, after the others completed.
fn run_sweep(globals: &Globals, args: sweep::SweepArgs, quiet: bool) -> Result<()> {
    use crate::commands::sweep as cmd;
    use sweep::SweepAction;
    let report = match args.action {
        None => cmd::launch(globals, &args.launch.options()?)?,
        Some(SweepAction::Resume {
            dir,
            parallel,
            dry_run,
        }) => cmd::resume(&dir, parallel, dry_run)?,
        Some(SweepAction::RunOne { dir, index }) => {
            let outcome = cmd::run_one(&dir, index)?;
            if !quiet {
                println!("run {index}: {}", outcome.state.name());
            }
            anyhow::ensure!(
                outcome.state == cmd::RunState::Finished,
                "run {index} {} (exit {}): {}",
                outcome.state.name(),
                outcome.exit_code.map_or("–".into(), |c| c.to_string()),
                outcome.log_tail.last().map_or("", String::as_str)
            );
            return Ok(());
        }
        Some(SweepAction::Status { dir, json }) => {
            return sweep::print_status(&cmd::summary::status(&dir)?, json);
        }
        Some(SweepAction::Summarize { dir, json, select }) => {
            return sweep::print_summary(&cmd::summary::summarize(&dir, select)?, json);
        }
    };
    if !quiet {
        sweep::print_launch(&report);
    }
    if !report.failed.is_empty() {
        let names: Vec<String> = report
            .failed
            .iter()
            .map(|(i, arm, seed, code)| {
                format!(
                    "run {i} ({arm} seed {seed}, exit {})",
                    code.map_or("–".into(), |c| c.to_string())
                )
            })
            .collect();
        anyhow::bail!(
            "{} of {} runs failed: {}; logs in their train.log, `sweep status {}` for details",
            names.len(),
            report.runs,
            names.join(", "),
            report.dir.display()
        );
    }
    Ok(())
}

/// The binary's entry point: parse, run, and turn an error into one line on stderr and a failure exit code.
pub fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its context chain, no backtrace.
            eprintln!("error: {}", crate::io::log::error_line(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}
