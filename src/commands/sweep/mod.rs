//! `hessian-gan sweep`: many `train` runs of one preset, over seeds and a grid of settings (issue 21), in one sweep
//! directory with a `manifest.json`. Runs are child processes of this binary (`train`'s own command line), one after
//! another or several at a time (`local`), or the tasks of a Slurm job array (`slurm.rs`); either way one run is
//! [`run::execute`]: skip it when finished, resume it from its newest snapshot when one exists, else start it.
//!
//! Layout: `<sweep>/manifest.json`, `<sweep>/runs/<index>-<arm slug>-s<seed>/` (the run's `--results-dir`: train's
//! numbered run directories, `train.log`, `attempt.json`), and for Slurm `sweep.sbatch` and `slurm/` (task logs).

pub mod grid;
pub mod run;
pub mod slurm;
pub mod summary;

use crate::commands::Globals;
use crate::io::fs;
use anyhow::{bail, ensure, Context, Result};
use grid::Axis;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

pub use run::RunState;
pub use slurm::SlurmOptions;

/// Where the runs execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runner {
    /// Child processes on this machine.
    Local,
    /// A Slurm job array, one task per run.
    Slurm,
}

/// What `sweep --config …` is asked to do.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    pub config: PathBuf,
    /// `--seeds` as given (parsed by [`grid::parse_seeds`]).
    pub seeds: String,
    /// `--set` as given (parsed by [`grid::parse_axis`]).
    pub sets: Vec<String>,
    /// `train` flags after `--`, passed to every run.
    pub train_args: Vec<String>,
    /// The settings those flags give (for checking the arms before anything runs).
    pub train_overrides: Map<String, Value>,
    pub runner: Runner,
    /// Runs at a time (local) or the array's `%P` limit (Slurm).
    pub parallel: Option<usize>,
    /// The sweep directory (default `results/sweep-<preset name>`).
    pub out: Option<PathBuf>,
    /// Write the manifest (and the batch script) but run or submit nothing.
    pub dry_run: bool,
    pub slurm: SlurmOptions,
    /// This command line, recorded in the manifest.
    pub command: Vec<String>,
}

/// The grid a sweep directory belongs to: re-running a sweep into the same directory must name the same grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// The preset, absolute (Slurm tasks may start elsewhere).
    pub config: PathBuf,
    pub seeds: Vec<u64>,
    pub axes: Vec<Axis>,
    pub train_args: Vec<String>,
    /// `--device` of every run.
    pub device: String,
}

/// One run of the sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub index: usize,
    pub arm: String,
    pub seed: u64,
    pub overrides: Map<String, Value>,
    /// Its `--results-dir`, relative to the sweep directory.
    pub dir: PathBuf,
    /// As last seen by the command that wrote the manifest (`sweep status` refreshes it).
    pub status: RunState,
    /// Exit status of its last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last lines of its log when its last attempt failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    /// The command line that made the sweep.
    pub command: Vec<String>,
    /// The binary every run (and every Slurm task) executes.
    pub binary: PathBuf,
    /// The directory the sweep was made in: every run starts there, so that the preset's relative paths
    /// (`datasets_dir`, `results_dir`…) keep their meaning for `sweep resume` and Slurm tasks.
    #[serde(default)]
    pub workdir: PathBuf,
    pub grid: Grid,
    pub runner: Runner,
    #[serde(default)]
    pub parallel: Option<usize>,
    #[serde(default)]
    pub slurm: SlurmOptions,
    /// Slurm job ids of the submissions, oldest first.
    #[serde(default)]
    pub job_ids: Vec<String>,
    pub runs: Vec<RunRecord>,
}

impl Manifest {
    pub const FILE: &'static str = "manifest.json";

    pub fn load(sweep_dir: &Path) -> Result<Manifest> {
        let path = sweep_dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not a sweep directory (no {})",
                sweep_dir.display(),
                Self::FILE
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a sweep manifest", path.display()))
    }

    pub fn save(&self, sweep_dir: &Path) -> Result<()> {
        fs::write_bytes_atomic(
            &sweep_dir.join(Self::FILE),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )
    }

    pub fn run(&self, index: usize) -> Result<&RunRecord> {
        self.runs.get(index).with_context(|| {
            format!(
                "--index {index}: the sweep has runs 0 to {}",
                self.runs.len().saturating_sub(1)
            )
        })
    }
}

/// What a local sweep or a submission did.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub dir: PathBuf,
    pub runner: Runner,
    pub runs: usize,
    /// Runs already finished before this command (skipped).
    pub skipped: usize,
    /// Local: the runs that failed in this command (index, arm, seed, exit code).
    pub failed: Vec<(usize, String, u64, Option<i32>)>,
    /// Local: runs that stopped without finishing or failing (train stopped by `abort.txt` or Ctrl-C); the next
    /// resume continues them.
    pub stopped: Vec<usize>,
    /// Slurm: the batch script, and the job id unless `--dry-run`.
    pub script: Option<PathBuf>,
    pub job_id: Option<String>,
    pub dry_run: bool,
}

impl SweepReport {
    /// The report of a command on the sweep in `dir` before it has run or submitted anything.
    fn before(dir: &Path, manifest: &Manifest, skipped: usize, dry_run: bool) -> Self {
        SweepReport {
            dir: dir.to_path_buf(),
            runner: manifest.runner,
            runs: manifest.runs.len(),
            skipped,
            failed: Vec::new(),
            stopped: Vec::new(),
            script: None,
            job_id: None,
            dry_run,
        }
    }
}

/// The runs of a grid: arm-major, then seeds in `--seeds` order.
fn expand(grid: &Grid) -> Vec<RunRecord> {
    let mut runs = Vec::new();
    for arm in grid::arms(&grid.axes) {
        for &seed in &grid.seeds {
            let index = runs.len();
            runs.push(RunRecord {
                index,
                arm: arm.name.clone(),
                seed,
                overrides: arm.overrides.clone(),
                dir: Path::new("runs").join(format!("{index:03}-{}-s{seed}", arm.slug)),
                status: RunState::Pending,
                exit_code: None,
                log_tail: Vec::new(),
            });
        }
    }
    runs
}

/// Flags after `--` that the sweep sets itself for every run.
const OWN_TRAIN_FLAGS: [&str; 8] = [
    "--seed",
    "--results-dir",
    "--results_dir",
    "--config",
    "--resume",
    "--resume-exp",
    "--resume_exp",
    "--dry-run",
];

/// Entry point of `sweep --config …`: builds (or re-opens) the sweep directory, then runs or submits.
pub fn launch(globals: &Globals, opts: &SweepOptions) -> Result<SweepReport> {
    ensure!(
        globals.seed.is_none(),
        "--seed: a sweep takes its seeds from --seeds"
    );
    ensure!(
        opts.config.is_file(),
        "--config {}: no such file",
        opts.config.display()
    );
    if opts.parallel == Some(0) {
        bail!("--parallel 0: at least one run must run at a time");
    }
    for a in &opts.train_args {
        let flag = a.split('=').next().unwrap_or(a);
        ensure!(
            !OWN_TRAIN_FLAGS.contains(&flag),
            "{flag} after --: the sweep sets it for every run (use --seeds, --out or `sweep resume`)"
        );
    }
    let seeds = grid::parse_seeds(&opts.seeds)?;
    let axes = opts
        .sets
        .iter()
        .map(|s| grid::parse_axis(s))
        .collect::<Result<Vec<_>>>()?;
    grid::validate(&opts.config, &axes, &opts.train_overrides)?;
    let config = std::fs::canonicalize(&opts.config)
        .with_context(|| format!("--config {}", opts.config.display()))?;
    let name = config
        .file_stem()
        .map_or_else(|| "sweep".into(), |s| s.to_string_lossy().into_owned());
    let grid = Grid {
        config,
        seeds,
        axes,
        train_args: opts.train_args.clone(),
        device: globals.device.to_string(),
    };
    let dir = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(format!("sweep-{name}")));
    let manifest = if dir.join(Manifest::FILE).exists() {
        let mut old = Manifest::load(&dir)?;
        if old.grid != grid {
            bail!(
                "{}: holds another sweep ({}); use another --out, or `sweep resume {}` to continue that one",
                dir.display(),
                grid_difference(&old.grid, &grid),
                dir.display()
            );
        }
        // The binary that continues the sweep runs its runs (the recorded one may have been rebuilt elsewhere).
        old.binary = std::env::current_exe().context("cannot locate this binary for the runs")?;
        old.runner = opts.runner;
        old.parallel = opts.parallel.or(old.parallel);
        if opts.runner == Runner::Slurm {
            old.slurm = opts.slurm.clone();
        }
        old
    } else {
        let binary = std::env::current_exe().context("cannot locate this binary for the runs")?;
        Manifest {
            name,
            command: opts.command.clone(),
            binary,
            workdir: std::env::current_dir().context("cannot read the current directory")?,
            runs: expand(&grid),
            grid,
            runner: opts.runner,
            parallel: opts.parallel,
            slurm: opts.slurm.clone(),
            job_ids: Vec::new(),
        }
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the sweep directory {}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir)?;
    manifest.save(&dir)?;
    proceed(&dir, manifest, opts.dry_run)
}

/// The first thing that differs between two grids, for the error of a re-run with another grid.
fn grid_difference(old: &Grid, new: &Grid) -> String {
    if old.config != new.config {
        format!(
            "--config {} there, {} here",
            old.config.display(),
            new.config.display()
        )
    } else if old.seeds != new.seeds {
        format!("--seeds {:?} there, {:?} here", old.seeds, new.seeds)
    } else if old.axes != new.axes {
        let show = |axes: &[Axis]| {
            axes.iter()
                .map(|a| {
                    format!(
                        "{}={}",
                        a.key,
                        a.values
                            .iter()
                            .map(Value::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!("--set {} there, {} here", show(&old.axes), show(&new.axes))
    } else if old.train_args != new.train_args {
        format!(
            "train flags {:?} there, {:?} here",
            old.train_args, new.train_args
        )
    } else {
        format!("--device {} there, {} here", old.device, new.device)
    }
}

/// `dir` made absolute (the runs and Slurm tasks may start elsewhere), with an error naming it when it is missing.
pub fn sweep_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(dir)
        .with_context(|| format!("{}: no such sweep directory", dir.display()))
}

/// Entry point of `sweep resume DIR`: the same sweep again, with its recorded runner; `parallel` replaces the
/// recorded one when given.
pub fn resume(dir: &Path, parallel: Option<usize>, dry_run: bool) -> Result<SweepReport> {
    if parallel == Some(0) {
        bail!("--parallel 0: at least one run must run at a time");
    }
    let dir = sweep_dir(dir)?;
    let mut manifest = Manifest::load(&dir)?;
    manifest.parallel = parallel.or(manifest.parallel);
    manifest.binary = std::env::current_exe().context("cannot locate this binary for the runs")?;
    proceed(&dir, manifest, dry_run)
}

fn proceed(dir: &Path, manifest: Manifest, dry_run: bool) -> Result<SweepReport> {
    match manifest.runner {
        Runner::Local => run::local(dir, manifest, dry_run),
        Runner::Slurm => slurm::submit(dir, manifest, dry_run),
    }
}

/// Entry point of `sweep run-one DIR --index I` (what a Slurm task runs): [`run::execute`] on that run. It does not
/// write the manifest (tasks run concurrently); `sweep status` reads what the run left in its directory.
pub fn run_one(dir: &Path, index: usize) -> Result<run::Outcome> {
    let dir = sweep_dir(dir)?;
    let manifest = Manifest::load(&dir)?;
    let record = manifest.run(index)?.clone();
    // A task's CPUs are its allocation's, not the node's.
    let threads = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|n| n.parse().ok());
    run::execute(&dir, &manifest, &record, threads)
}
