//! `sweep status` (each run's state and progress, read from its directory) and `sweep summarize` (per arm, mean ±
//! std over seeds of every number the runs' final snapshots recorded: FID/PPL from the metric ticks or `evaluate`,
//! the disentanglement scores of `--score-ticks`), and the hand-off to ModelCentrality (`select`) per arm.

use super::run::{finished_dir, observe, progress_of, RunState};
use super::{slurm, Manifest, Runner};
use crate::checkpoint::find_snapshot;
use crate::commands::report::{Stat, MEASURES};
use crate::io::fs;
use crate::metrics::suite::beside;
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One row of `sweep status`.
#[derive(Clone, Debug, Serialize)]
pub struct RunStatus {
    pub index: usize,
    pub arm: String,
    pub seed: u64,
    pub state: RunState,
    /// The newest snapshot's number: kimg (ProGAN) or iterations (InfoGAN-CR).
    pub kimg: Option<u64>,
    /// Slurm: `<job>_<index>` of the last submission.
    pub job: Option<String>,
    pub dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// `sweep status`.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub dir: PathBuf,
    pub runner: Runner,
    pub job_ids: Vec<String>,
    pub runs: Vec<RunStatus>,
    /// Runs per state.
    pub counts: BTreeMap<&'static str, usize>,
}

/// Each run's state from its directory; the manifest's statuses are refreshed with them (atomically).
pub fn status(dir: &Path) -> Result<StatusReport> {
    let dir = &super::sweep_dir(dir)?;
    let mut manifest = Manifest::load(dir)?;
    let job = manifest.job_ids.last().cloned();
    let queued = match (manifest.runner, &job) {
        (Runner::Slurm, Some(j)) => slurm::active_tasks(j),
        _ => None,
    };
    let mut runs = Vec::new();
    let mut counts = BTreeMap::new();
    for record in &mut manifest.runs {
        let results = dir.join(&record.dir);
        let (mut state, attempt) = observe(&results);
        // Handed to Slurm and not started: still queued.
        if state == RunState::Pending && record.status == RunState::Submitted {
            state = RunState::Submitted;
        }
        // A task that Slurm no longer runs (cancelled, timed out, its node lost) cannot say so itself: its run
        // is interrupted, and `sweep resume` continues it.
        if let (RunState::Running, Some(active), Some(j)) = (state, &queued, &job) {
            if !active.contains(&format!("{j}_{}", record.index)) {
                state = RunState::Interrupted;
            }
        }
        record.status = state;
        let failed = state == RunState::Failed;
        record.exit_code = attempt
            .as_ref()
            .and_then(|a| a.exit_code)
            .filter(|_| failed);
        record.log_tail = attempt
            .as_ref()
            .filter(|_| failed)
            .map(|a| a.log_tail.clone())
            .unwrap_or_default();
        *counts.entry(state.name()).or_insert(0) += 1;
        runs.push(RunStatus {
            index: record.index,
            arm: record.arm.clone(),
            seed: record.seed,
            state,
            kimg: progress_of(&results),
            job: match manifest.runner {
                Runner::Slurm => job.as_ref().map(|j| format!("{j}_{}", record.index)),
                Runner::Local => None,
            },
            dir: results,
            exit_code: record.exit_code,
            log_tail: record.log_tail.clone(),
        });
    }
    manifest.save(dir)?;
    Ok(StatusReport {
        dir: dir.to_path_buf(),
        runner: manifest.runner,
        job_ids: manifest.job_ids,
        runs,
        counts,
    })
}

/// The final numbers of one finished run.
#[derive(Clone, Debug, Serialize)]
pub struct RunValues {
    pub index: usize,
    pub seed: u64,
    /// train's run directory that finished.
    pub run_dir: PathBuf,
    /// Its final snapshot, whose metrics file the values come from.
    pub snapshot: PathBuf,
    pub values: BTreeMap<String, f64>,
}

/// One arm of `sweep summarize`.
#[derive(Clone, Debug, Serialize)]
pub struct ArmSummary {
    pub arm: String,
    pub runs: Vec<RunValues>,
    /// Runs of the arm that have not finished (left out).
    pub unfinished: Vec<usize>,
    /// Per number: mean, sample std and n over the finished runs that have it.
    pub stats: BTreeMap<String, Stat>,
    /// The `select` command over the arm's finished runs.
    pub select_command: Vec<String>,
    /// `--select`: select's report…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select_report: Option<PathBuf>,
    /// …or why select refused (e.g. models without an encoder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select_error: Option<String>,
}

/// `sweep summarize`.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryReport {
    pub dir: PathBuf,
    pub arms: Vec<ArmSummary>,
    pub file: PathBuf,
}

/// The numbers of a metrics document (`<snapshot>-metrics.json`): each metric's `value` (`fid50k`, `ppl_zend_v2`,
/// from the metric ticks or `evaluate`), and the score ticks' measures that `report` tabulates.
fn values_of(doc: &Value) -> BTreeMap<String, f64> {
    let mut values = BTreeMap::new();
    if let Some(metrics) = doc.get("metrics").and_then(Value::as_object) {
        for (name, record) in metrics {
            if let Some(v) = record.get("value").and_then(Value::as_f64) {
                values.insert(name.clone(), v);
            }
        }
    }
    if doc.get("scores").is_some() {
        for m in &MEASURES {
            if let Some(v) = doc.pointer(m.pointer).and_then(Value::as_f64) {
                values.insert(m.key.to_string(), v);
            }
        }
    }
    values
}

/// A finished run's final snapshot and its numbers.
fn run_values(index: usize, seed: u64, results: &Path) -> Result<Option<RunValues>> {
    let Some(run_dir) = finished_dir(results) else {
        return Ok(None);
    };
    let snapshot = find_snapshot(&run_dir, "latest")?;
    let metrics = beside(&snapshot, "metrics.json");
    let values = match std::fs::read_to_string(&metrics) {
        Ok(text) => values_of(
            &serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", metrics.display()))?,
        ),
        Err(_) => BTreeMap::new(),
    };
    Ok(Some(RunValues {
        index,
        seed,
        run_dir,
        snapshot,
        values,
    }))
}

/// The `select` command line for some run directories; `--datasets-dir` from the first run's configuration, since
/// select finds the runs' dataset by name under it.
fn select_command(binary: &Path, device: &str, runs: &[RunValues], out: &Path) -> Vec<String> {
    let mut cmd = vec![
        binary.display().to_string(),
        "--device".into(),
        device.to_string(),
        "select".into(),
        "--runs".into(),
    ];
    cmd.extend(runs.iter().map(|r| r.run_dir.display().to_string()));
    let datasets_dir = runs.first().and_then(|r| {
        let text = std::fs::read_to_string(r.run_dir.join("config.json")).ok()?;
        let cfg: Value = serde_json::from_str(&text).ok()?;
        cfg.get("datasets_dir")?.as_str().map(str::to_string)
    });
    if let Some(d) = datasets_dir {
        cmd.push("--datasets-dir".into());
        cmd.push(d);
    }
    cmd.push("--out".into());
    cmd.push(out.display().to_string());
    cmd
}

/// Runs one `select` command; its report path, or the last line of its error.
fn run_select(cmd: &[String], out: &Path) -> std::result::Result<PathBuf, String> {
    let result = Command::new(&cmd[0])
        .args(&cmd[1..])
        .arg("--quiet")
        .output()
        .map_err(|e| format!("cannot start select: {e}"))?;
    if result.status.success() {
        Ok(out.to_path_buf())
    } else {
        let err = String::from_utf8_lossy(&result.stderr);
        Err(err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("select failed")
            .trim()
            .to_string())
    }
}

/// Per arm, the finished runs' final numbers as mean ± std; `summary.json` in the sweep directory. With `select`,
/// also runs ModelCentrality (`select`) over each arm's finished runs, recording its report or its refusal.
pub fn summarize(dir: &Path, select: bool) -> Result<SummaryReport> {
    let dir = &super::sweep_dir(dir)?;
    let manifest = Manifest::load(dir)?;
    let mut arms: Vec<ArmSummary> = Vec::new();
    for record in &manifest.runs {
        let pos = match arms.iter().position(|a| a.arm == record.arm) {
            Some(p) => p,
            None => {
                arms.push(ArmSummary {
                    arm: record.arm.clone(),
                    runs: Vec::new(),
                    unfinished: Vec::new(),
                    stats: BTreeMap::new(),
                    select_command: Vec::new(),
                    select_report: None,
                    select_error: None,
                });
                arms.len() - 1
            }
        };
        match run_values(record.index, record.seed, &dir.join(&record.dir))? {
            Some(v) => arms[pos].runs.push(v),
            None => arms[pos].unfinished.push(record.index),
        }
    }
    for arm in &mut arms {
        let mut by_key: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for run in &arm.runs {
            for (k, v) in &run.values {
                by_key.entry(k.clone()).or_default().push(*v);
            }
        }
        arm.stats = by_key
            .into_iter()
            .filter_map(|(k, vs)| Stat::of(&vs).map(|s| (k, s)))
            .collect();
        if arm.runs.is_empty() {
            continue;
        }
        let slug = manifest
            .runs
            .iter()
            .find(|r| r.arm == arm.arm)
            .and_then(|r| r.dir.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .and_then(|n| {
                // `<index>-<slug>-s<seed>` → `<slug>`
                let rest = n.split_once('-')?.1;
                Some(rest.rsplit_once("-s")?.0.to_string())
            })
            .unwrap_or_else(|| arm.arm.clone());
        let out = dir.join(format!("select-{slug}.json"));
        arm.select_command =
            select_command(&manifest.binary, &manifest.grid.device, &arm.runs, &out);
        if select {
            match run_select(&arm.select_command, &out) {
                Ok(path) => arm.select_report = Some(path),
                Err(e) => {
                    log::warn!("select for arm {}: {e}", arm.arm);
                    arm.select_error = Some(e);
                }
            }
        }
    }
    let file = dir.join("summary.json");
    let report = SummaryReport {
        dir: dir.to_path_buf(),
        arms,
        file: file.clone(),
    };
    fs::write_bytes_atomic(&file, serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(report)
}
