//! The Slurm runner: `sweep.sbatch`, a job array with one task per run that calls `sweep run-one DIR --index
//! $SLURM_ARRAY_TASK_ID` (the same resume logic as the local runner), submitted with `sbatch --parsable`.
//! `--requeue` lets Slurm restart a preempted or failed-node task; the restarted task resumes from the run's newest
//! snapshot.

use super::run::{observe, RunState};
use super::{Manifest, SweepReport};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `#SBATCH` settings passed through when given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SlurmOptions {
    /// `--gpus` per task (e.g. `1` or `a100:1`).
    pub gpus: Option<String>,
    /// `--time` per task (e.g. `2-00:00:00`).
    pub time: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub cpus_per_task: Option<u32>,
    /// `--mem` per task (e.g. `32G`).
    pub mem: Option<String>,
}

/// The batch script's file name in the sweep directory.
pub const SCRIPT: &str = "sweep.sbatch";

/// `0-7` for consecutive indices, else `1,4,6`; with `%P` when a limit is given.
fn array_spec(indices: &[usize], parallel: Option<usize>) -> String {
    let consecutive = indices.windows(2).all(|w| w[1] == w[0] + 1);
    let mut spec = match (indices.first(), indices.last()) {
        (Some(a), Some(b)) if consecutive => format!("{a}-{b}"),
        _ => indices
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
    };
    if let Some(p) = parallel {
        let _ = write!(spec, "%{p}");
    }
    spec
}

/// Quotes a word for bash.
fn quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The batch script for the runs `indices` of the sweep in `dir`.
pub fn script(dir: &Path, manifest: &Manifest, indices: &[usize]) -> String {
    let o = &manifest.slurm;
    let mut s = String::from("#!/bin/bash\n");
    let mut directive = |d: String| {
        let _ = writeln!(s, "#SBATCH {d}");
    };
    directive(format!("--job-name=hg-sweep-{}", manifest.name));
    directive(format!(
        "--array={}",
        array_spec(indices, manifest.parallel)
    ));
    // One log per task, appended to by a requeued task rather than overwritten.
    directive(format!(
        "--output={}",
        quote(&dir.join("slurm").join("%A_%a.out").display().to_string())
    ));
    directive("--open-mode=append".into());
    // Relative paths of the preset (datasets_dir…) mean what they meant where the sweep was made.
    if !manifest.workdir.as_os_str().is_empty() {
        directive(format!(
            "--chdir={}",
            quote(&manifest.workdir.display().to_string())
        ));
    }
    directive("--requeue".into());
    if let Some(v) = &o.gpus {
        directive(format!("--gpus={v}"));
    }
    if let Some(v) = &o.time {
        directive(format!("--time={v}"));
    }
    if let Some(v) = &o.partition {
        directive(format!("--partition={v}"));
    }
    if let Some(v) = &o.account {
        directive(format!("--account={v}"));
    }
    if let Some(v) = o.cpus_per_task {
        directive(format!("--cpus-per-task={v}"));
    }
    if let Some(v) = &o.mem {
        directive(format!("--mem={v}"));
    }
    let _ = writeln!(
        s,
        "\n# One task per run of {}; a requeued task resumes its run from the newest snapshot.\nexec {} sweep run-one {} --index \"$SLURM_ARRAY_TASK_ID\"",
        manifest.name,
        quote(&manifest.binary.display().to_string()),
        quote(&dir.display().to_string())
    );
    s
}

/// Writes `sweep.sbatch` for the runs not finished yet and, unless `dry_run`, submits it with `sbatch --parsable`
/// and records the job id in the manifest.
pub fn submit(dir: &Path, mut manifest: Manifest, dry_run: bool) -> Result<SweepReport> {
    let mut todo = Vec::new();
    let mut skipped = 0;
    for record in &mut manifest.runs {
        let (state, _) = observe(&dir.join(&record.dir));
        record.status = state;
        if state == RunState::Finished {
            skipped += 1;
        } else {
            todo.push(record.index);
        }
    }
    std::fs::create_dir_all(dir.join("slurm"))
        .with_context(|| format!("cannot create {}", dir.join("slurm").display()))?;
    let script_path: PathBuf = dir.join(SCRIPT);
    let mut report = SweepReport::before(dir, &manifest, skipped, dry_run);
    if todo.is_empty() {
        manifest.save(dir)?;
        return Ok(report);
    }
    crate::io::fs::write_bytes_atomic(&script_path, script(dir, &manifest, &todo).as_bytes())?;
    report.script = Some(script_path.clone());
    if dry_run {
        manifest.save(dir)?;
        return Ok(report);
    }
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(&script_path)
        .output()
        .context("cannot run sbatch (is Slurm installed here? --dry-run writes the script only)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "sbatch {} failed: {}",
            script_path.display(),
            err.lines().last().unwrap_or("").trim()
        );
    }
    // `--parsable` prints `jobid` or `jobid;cluster`.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let job_id = stdout
        .trim()
        .split(';')
        .next()
        .filter(|j| !j.is_empty())
        .with_context(|| format!("sbatch printed no job id: {stdout}"))?
        .to_string();
    for &i in &todo {
        manifest.runs[i].status = RunState::Submitted;
    }
    manifest.job_ids.push(job_id.clone());
    manifest.save(dir)?;
    report.job_id = Some(job_id);
    Ok(report)
}

/// The tasks of job `job` that Slurm runs now (`<job>_<index>`), or None when squeue cannot tell (not installed,
/// controller unreachable).
pub fn active_tasks(job: &str) -> Option<Vec<String>> {
    let out = Command::new("squeue")
        .args([
            "-h",
            "-t",
            "RUNNING,COMPLETING,SUSPENDED",
            "-o",
            "%i",
            "-j",
            job,
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        // squeue fails for a job id it has forgotten (all tasks ended long ago): nothing of it runs.
        let err = String::from_utf8_lossy(&out.stderr);
        return err.contains("Invalid job id").then(Vec::new);
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs() {
        assert_eq!(array_spec(&[0, 1, 2, 3], Some(2)), "0-3%2");
        assert_eq!(array_spec(&[1, 4, 5], None), "1,4,5");
        assert_eq!(quote("a b'c"), r"'a b'\''c'");
    }
}
