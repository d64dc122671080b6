//! `sweep`'s flags, and the printing of its status table and summary.

use crate::cli::train::TrainArgs;
use crate::cli::values::RunnerArg;
use crate::commands::sweep::summary::{StatusReport, SummaryReport};
use crate::commands::sweep::{SlurmOptions, SweepOptions, SweepReport};
use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;

/// Flags of `sweep`: either a grid to run (`--config …`) or one of the subcommands on an existing sweep directory.
#[derive(clap::Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  hessian-gan sweep --config configs/clevr_simple_hp.json --seeds 1-5 --set hp_lambda=0.05,0.1 --parallel 2\n  hessian-gan sweep --config C --seeds 1-10 --runner slurm --gpus 1 --time 1-00:00:00 --parallel 4 -- --total-kimg 6000\n  hessian-gan sweep status results/sweep-clevr_simple_hp\n  hessian-gan sweep summarize results/sweep-clevr_simple_hp --select"
)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// The grid and the runner of a new (or re-run) sweep.
#[derive(clap::Args, Debug)]
pub struct LaunchArgs {
    /// The preset every run trains (e.g. configs/clevr_simple_hp.json).
    #[arg(long, required = true)]
    pub config: Option<PathBuf>,
    /// Seeds: ranges and lists, e.g. 1-10, 1,3,5 or 1-3,7. Each arm runs every seed.
    #[arg(long, required = true)]
    pub seeds: Option<String>,
    /// A setting and its values, by its configuration name (as in configs/*.json): --set hp_lambda=0.05,0.1
    /// (JSON values; lists stay whole: layers_to_reg=[1,2],[3]). Repeatable; the arms are the product of all --set.
    #[arg(long = "set", value_name = "KEY=V1,V2,…")]
    pub set: Vec<String>,
    /// local: child processes on this machine; slurm: a job array (sweep.sbatch), submitted with sbatch.
    #[arg(long, value_enum, default_value = "local")]
    pub runner: RunnerArg,
    /// Runs at a time: local child processes (default 1), or the Slurm array's %P limit (default none).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// The sweep directory (default results/sweep-<preset name>). Re-running the same sweep into it resumes it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the manifest (and, for slurm, sweep.sbatch) without running or submitting anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Slurm: --gpus per task (e.g. 1 or a100:1).
    #[arg(long)]
    pub gpus: Option<String>,
    /// Slurm: --time per task (e.g. 1-00:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// Slurm: --partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm: --account.
    #[arg(long)]
    pub account: Option<String>,
    /// Slurm: --cpus-per-task.
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// Slurm: --mem per task (e.g. 32G).
    #[arg(long)]
    pub mem: Option<String>,
    /// `train` flags for every run, after `--` (e.g. -- --total-kimg 6000 --score-ticks 5). Not --seed,
    /// --results-dir, --config or --resume: the sweep sets those.
    #[arg(last = true, value_name = "TRAIN FLAGS")]
    pub train_args: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum SweepAction {
    /// Continue a sweep with its recorded grid and runner: finished runs are skipped, interrupted ones resume from
    /// their newest snapshot, the rest start (slurm: submits the unfinished runs again).
    Resume {
        /// The sweep directory.
        dir: PathBuf,
        /// Replaces the recorded --parallel.
        #[arg(long)]
        parallel: Option<usize>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Run (or resume) one run of the sweep: what each Slurm array task executes.
    RunOne {
        dir: PathBuf,
        #[arg(long)]
        index: usize,
    },
    /// Each run's state (pending, submitted, running, interrupted, finished, failed), newest snapshot's kimg and
    /// Slurm job, and the counts.
    Status {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Per arm, mean ± std (n) over seeds of each number the finished runs' final snapshots recorded (FID/PPL,
    /// --score-ticks scores); summary.json; the `select` command of each arm.
    Summarize {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
        /// Also run ModelCentrality (`select`) over each arm's runs (needs models with an encoder: InfoGAN's Q or
        /// InfoGAN-CR); a refusal is reported per arm.
        #[arg(long)]
        select: bool,
    },
}

/// Parses the flags after `--` as `train`'s, to check them before any run starts.
#[derive(Parser)]
#[command(name = "train", no_binary_name = true)]
struct TrainOnly {
    #[command(flatten)]
    train: TrainArgs,
}

impl LaunchArgs {
    pub fn options(&self) -> Result<SweepOptions> {
        let parsed = TrainOnly::try_parse_from(&self.train_args).map_err(|e| {
            let msg = e.to_string();
            anyhow::anyhow!(
                "train flags after --: {}",
                msg.lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
            )
        })?;
        Ok(SweepOptions {
            config: self.config.clone().context("--config is required")?,
            seeds: self.seeds.clone().context("--seeds is required")?,
            sets: self.set.clone(),
            train_args: self.train_args.clone(),
            train_overrides: parsed.train.overrides(),
            runner: self.runner.into(),
            parallel: self.parallel,
            out: self.out.clone(),
            dry_run: self.dry_run,
            slurm: SlurmOptions {
                gpus: self.gpus.clone(),
                time: self.time.clone(),
                partition: self.partition.clone(),
                account: self.account.clone(),
                cpus_per_task: self.cpus_per_task,
                mem: self.mem.clone(),
            },
            command: std::env::args().collect(),
        })
    }
}

/// What a sweep or submission did, on stdout.
pub fn print_launch(report: &SweepReport) {
    println!("sweep {}", report.dir.display());
    if let Some(script) = &report.script {
        println!("batch script {}", script.display());
    }
    match (&report.job_id, report.dry_run) {
        (Some(job), _) => println!("submitted job {job}"),
        (None, true) => println!("dry run: nothing run or submitted"),
        (None, false) => println!(
            "{} runs: {} finished before, {} failed now",
            report.runs,
            report.skipped,
            report.failed.len()
        ),
    }
    if !report.stopped.is_empty() {
        println!(
            "runs {:?} stopped before finishing; `sweep resume {}` continues them",
            report.stopped,
            report.dir.display()
        );
    }
}

/// `sweep status`'s table.
pub fn print_status(report: &StatusReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let arm_w = report
        .runs
        .iter()
        .map(|r| r.arm.len())
        .max()
        .unwrap_or(3)
        .max(3);
    println!(
        "{:>5}  {:<arm_w$}  {:>6}  {:<11}  {:>6}  job",
        "run", "arm", "seed", "state", "kimg"
    );
    for r in &report.runs {
        println!(
            "{:>5}  {:<arm_w$}  {:>6}  {:<11}  {:>6}  {}",
            r.index,
            r.arm,
            r.seed,
            r.state.name(),
            r.kimg.map_or("–".into(), |k| k.to_string()),
            r.job.as_deref().unwrap_or("–")
        );
        if let Some(line) = r.log_tail.last() {
            println!(
                "       exit {}: {line}",
                r.exit_code.map_or("–".into(), |c| c.to_string())
            );
        }
    }
    println!(
        "{}",
        report
            .counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// `sweep summarize`'s tables (one per arm) and select commands.
pub fn print_summary(report: &SummaryReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    for arm in &report.arms {
        println!(
            "arm {}: {} finished runs{}",
            arm.arm,
            arm.runs.len(),
            if arm.unfinished.is_empty() {
                String::new()
            } else {
                format!(" ({} not finished, left out)", arm.unfinished.len())
            }
        );
        for (key, stat) in &arm.stats {
            println!("  {key:<28} {} (n={})", stat.format(), stat.n);
        }
        if !arm.select_command.is_empty() {
            println!("  model selection: {}", arm.select_command.join(" "));
        }
        if let Some(path) = &arm.select_report {
            println!("  select report: {}", path.display());
        }
        if let Some(err) = &arm.select_error {
            println!("  select refused: {err}");
        }
    }
    println!("wrote {}", report.file.display());
    Ok(())
}
