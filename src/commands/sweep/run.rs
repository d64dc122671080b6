//! One run of a sweep, and the local runner. A run is `train` as a child process of this binary with the run's
//! seed, settings and `--results-dir`; its state is read back from disk (train's `_finished.txt` and snapshots, and
//! `attempt.json`, which this module writes around every attempt), so that any process — the local runner, a Slurm
//! task, `sweep status` — sees the same state, and a killed or requeued run resumes from its newest snapshot.

use super::{Manifest, RunRecord, SweepReport};
use crate::checkpoint::rundir::snapshot_number;
use crate::checkpoint::{find_snapshot, run_dirs_newest_first};
use crate::io::{fs, progress};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Not started.
    Pending,
    /// Handed to Slurm and not started yet.
    Submitted,
    Running,
    /// Started and stopped without finishing (killed, preempted, aborted): resumes from its newest snapshot.
    Interrupted,
    Finished,
    Failed,
}

impl RunState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Submitted => "submitted",
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::Finished => "finished",
            Self::Failed => "failed",
        }
    }
}

/// `attempt.json` in a run's directory: the last attempt at the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub state: RunState,
    pub host: String,
    pub pid: u32,
    /// Unix seconds.
    pub started: u64,
    #[serde(default)]
    pub ended: Option<u64>,
    pub command: Vec<String>,
    /// The snapshot it resumed from, if any.
    #[serde(default)]
    pub resumed_from: Option<PathBuf>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub log_tail: Vec<String>,
}

/// What one attempt at a run did.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub index: usize,
    pub state: RunState,
    /// Finished before this attempt: nothing was run.
    pub skipped: bool,
    pub resumed_from: Option<PathBuf>,
    pub exit_code: Option<i32>,
    pub log_tail: Vec<String>,
}

/// The log file of a run's attempts (train's output, appended attempt after attempt).
pub const LOG: &str = "train.log";
const ATTEMPT: &str = "attempt.json";
/// Log lines kept with a failure.
const TAIL_LINES: usize = 15;

/// The newest snapshot of the run that verifies (a torn last one falls back to the one before).
pub fn resume_point(results: &Path) -> Option<PathBuf> {
    run_dirs_newest_first(results)
        .iter()
        .find_map(|d| find_snapshot(d, "latest").ok())
}

/// The train directory that finished, if any.
pub fn finished_dir(results: &Path) -> Option<PathBuf> {
    run_dirs_newest_first(results)
        .into_iter()
        .find(|d| d.join("_finished.txt").exists())
}

/// kimg (ProGAN) or iterations (InfoGAN-CR) of the newest snapshot, from its name.
pub fn progress_of(results: &Path) -> Option<u64> {
    run_dirs_newest_first(results).iter().find_map(|d| {
        crate::checkpoint::snapshots_in(d)
            .ok()?
            .last()
            .and_then(|s| snapshot_number(s))
    })
}

fn read_attempt(results: &Path) -> Option<Attempt> {
    let text = std::fs::read_to_string(results.join(ATTEMPT)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_attempt(results: &Path, attempt: &Attempt) -> Result<()> {
    fs::write_bytes_atomic(
        &results.join(ATTEMPT),
        serde_json::to_string_pretty(attempt)?.as_bytes(),
    )
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn now() -> u64 {
    crate::metrics::suite::unix_time()
}

/// Whether process `pid` runs on this host. A killed process whose parent died too stays a zombie until init
/// reaps it (some containers' init never does): dead all the same.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (comm) S …`: the state follows the last ')' (comm may hold one).
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        !matches!(state, Some('Z' | 'X') | None)
    })
}

/// The state of a run from its directory. An attempt recorded as running whose process is gone on this host was
/// killed (or its machine rebooted): interrupted. Runs on other hosts (Slurm nodes) are taken at their word.
pub fn observe(results: &Path) -> (RunState, Option<Attempt>) {
    if finished_dir(results).is_some() {
        return (RunState::Finished, read_attempt(results));
    }
    let attempt = read_attempt(results);
    let state = match &attempt {
        None if resume_point(results).is_some() => RunState::Interrupted,
        None => RunState::Pending,
        Some(a) => match a.state {
            RunState::Running if a.host == host() && !alive(a.pid) => RunState::Interrupted,
            // An attempt that ended without _finished.txt (train stopped by abort.txt or a signal) is interrupted.
            RunState::Finished => RunState::Interrupted,
            s => s,
        },
    };
    (state, attempt)
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// The `train` command line of a run, resuming from `resume` when given.
fn train_command(
    manifest: &Manifest,
    results: &Path,
    record: &RunRecord,
    resume: Option<&Path>,
) -> Vec<String> {
    let grid = &manifest.grid;
    let mut args = vec![
        "--device".to_string(),
        grid.device.clone(),
        "--seed".into(),
        record.seed.to_string(),
        "train".into(),
        "--config".into(),
        grid.config.display().to_string(),
        "--results-dir".into(),
        results.display().to_string(),
    ];
    for (k, v) in &record.overrides {
        // As JSON, which train's --set parses back to the same value (a string stays a string).
        args.push("--set".into());
        args.push(format!("{k}={v}"));
    }
    if let Some(snapshot) = resume {
        args.push("--resume".into());
        args.push(snapshot.display().to_string());
    }
    args.extend(grid.train_args.iter().cloned());
    args
}

/// One attempt at a run: nothing when it has finished, `train --resume` from its newest snapshot when it has one
/// (never a restart that would throw its training away), else a fresh `train`. train's output goes to the run's
/// `train.log`; `attempt.json` records the attempt before and after. `threads`, when given, caps libtorch's CPU
/// threads of the run (unless the environment already sets OMP_NUM_THREADS).
pub fn execute(
    sweep_dir: &Path,
    manifest: &Manifest,
    record: &RunRecord,
    threads: Option<usize>,
) -> Result<Outcome> {
    let results = sweep_dir.join(&record.dir);
    let mut outcome = Outcome {
        index: record.index,
        state: RunState::Finished,
        skipped: true,
        resumed_from: None,
        exit_code: None,
        log_tail: Vec::new(),
    };
    if finished_dir(&results).is_some() {
        return Ok(outcome);
    }
    std::fs::create_dir_all(&results)
        .with_context(|| format!("cannot create {}", results.display()))?;
    let resume = resume_point(&results);
    let args = train_command(manifest, &results, record, resume.as_deref());
    let log_path = results.join(LOG);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    {
        use std::io::Write;
        writeln!(
            log,
            "== sweep run {} ({} seed {}) at {}: {} {}",
            record.index,
            record.arm,
            record.seed,
            now(),
            manifest.binary.display(),
            args.join(" ")
        )?;
    }
    let mut command = Command::new(&manifest.binary);
    if !manifest.workdir.as_os_str().is_empty() {
        command.current_dir(&manifest.workdir);
    }
    if let Some(n) = threads.filter(|_| std::env::var_os("OMP_NUM_THREADS").is_none()) {
        command.env("OMP_NUM_THREADS", n.to_string());
    }
    let mut child = command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", manifest.binary.display()))?;
    let mut attempt = Attempt {
        state: RunState::Running,
        host: host(),
        pid: child.id(),
        started: now(),
        ended: None,
        command: args,
        resumed_from: resume.clone(),
        exit_code: None,
        log_tail: Vec::new(),
    };
    write_attempt(&results, &attempt)?;
    let status = child
        .wait()
        .with_context(|| format!("waiting for run {}", record.index))?;
    attempt.ended = Some(now());
    attempt.exit_code = status.code();
    attempt.state = match (status.success(), finished_dir(&results).is_some()) {
        (_, true) => RunState::Finished,
        (true, false) => RunState::Interrupted,
        (false, false) => RunState::Failed,
    };
    if attempt.state != RunState::Finished {
        attempt.log_tail = tail(&log_path, TAIL_LINES);
    }
    write_attempt(&results, &attempt)?;
    outcome.state = attempt.state;
    outcome.skipped = false;
    outcome.resumed_from = resume;
    outcome.exit_code = attempt.exit_code;
    outcome.log_tail = attempt.log_tail;
    Ok(outcome)
}

/// Copies an outcome into the manifest's record.
fn record_outcome(record: &mut RunRecord, outcome: &Outcome) {
    record.status = outcome.state;
    let failed = outcome.state == RunState::Failed;
    record.exit_code = if failed { outcome.exit_code } else { None };
    record.log_tail = if failed {
        outcome.log_tail.clone()
    } else {
        Vec::new()
    };
}

/// The local runner: every run not finished yet, `parallel` at a time (default 1), each a child process; a failed
/// run is recorded and the others go on. The manifest is rewritten (atomically, by this thread only) after each
/// run.
pub fn local(dir: &Path, mut manifest: Manifest, dry_run: bool) -> Result<SweepReport> {
    let parallel = manifest.parallel.unwrap_or(1).max(1);
    let mut todo = VecDeque::new();
    let mut skipped = 0;
    for record in &mut manifest.runs {
        let (state, _) = observe(&dir.join(&record.dir));
        if state == RunState::Finished {
            record.status = state;
            skipped += 1;
        } else {
            todo.push_back(record.index);
        }
    }
    manifest.save(dir)?;
    let mut report = SweepReport::before(dir, &manifest, skipped, dry_run);
    if dry_run || todo.is_empty() {
        return Ok(report);
    }
    log::info!(
        "sweep {}: {} runs to do ({} finished), {} at a time",
        dir.display(),
        todo.len(),
        skipped,
        parallel
    );
    // Runs side by side share the cores: libtorch's default of one thread per core in each of them oversubscribes
    // the machine, and its spinning OpenMP threads then slow every run down many times over.
    let threads = (parallel > 1).then(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / parallel).max(1)
    });
    let bar = progress::bar(Some(todo.len() as u64), "sweep");
    let workers = parallel.min(todo.len());
    let queue = Arc::new(Mutex::new(todo));
    let shared = Arc::new((dir.to_path_buf(), manifest.clone()));
    let (tx, rx) = mpsc::channel::<(usize, Result<Outcome>)>();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (queue, shared, tx) = (queue.clone(), shared.clone(), tx.clone());
        handles.push(std::thread::spawn(move || loop {
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            let Some(index) = next else { break };
            let (dir, manifest) = &*shared;
            let result = execute(dir, manifest, &manifest.runs[index], threads);
            if tx.send((index, result)).is_err() {
                break;
            }
        }));
    }
    drop(tx);
    for (index, result) in rx {
        let record = &mut manifest.runs[index];
        let outcome = result.unwrap_or_else(|e| Outcome {
            index,
            state: RunState::Failed,
            skipped: false,
            resumed_from: None,
            exit_code: None,
            log_tail: vec![crate::io::log::error_line(e.as_ref())],
        });
        record_outcome(record, &outcome);
        let what = format!("run {index} ({} seed {})", record.arm, record.seed);
        match outcome.state {
            RunState::Finished => log::info!("{what} finished"),
            RunState::Failed => {
                log::warn!(
                    "{what} failed (exit {}): {}",
                    outcome.exit_code.map_or("–".into(), |c| c.to_string()),
                    outcome.log_tail.last().map_or("", String::as_str)
                );
                report
                    .failed
                    .push((index, record.arm.clone(), record.seed, outcome.exit_code));
            }
            other => {
                log::warn!("{what} stopped: {}", other.name());
                report.stopped.push(index);
            }
        }
        manifest.save(dir)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    for h in handles {
        let _ = h.join();
    }
    Ok(report)
}
