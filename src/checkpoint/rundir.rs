//! Run directories `results/NNNNN-<description>` and the snapshots inside them (docs/spec/progan_hp.md §2.7, §2.8).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The snapshot files of a run directory, sorted by name (= by kimg).
pub fn snapshots_in(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .with_context(|| format!("cannot read run directory {}", run_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("network-snapshot-") && n.ends_with(".safetensors"))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// `results/NNNNN-*` for a run number (docs/spec/progan_hp.md §2.8).
pub fn run_dir_of(results_dir: &Path, exp: u32) -> Result<PathBuf> {
    let prefix = format!("{exp:05}-");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results_dir)
        .with_context(|| format!("cannot read results directory {}", results_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .with_context(|| format!("no run {exp:05} in {}", results_dir.display()))
}

/// The snapshot `which` (`latest` or a kimg number) of a run directory.
pub fn find_snapshot(run_dir: &Path, which: &str) -> Result<PathBuf> {
    let snaps = snapshots_in(run_dir)?;
    if which == "latest" {
        anyhow::ensure!(
            !snaps.is_empty(),
            "{} holds no snapshot yet",
            run_dir.display()
        );
        // The newest snapshot that verifies: a run killed while writing, or a damaged disk, falls back to the one
        // before.
        for snap in snaps.iter().rev() {
            match crate::io::safetensors::verify(snap) {
                Ok(()) => return Ok(snap.clone()),
                Err(e) => log::warn!("{e:#}; trying the snapshot before it"),
            }
        }
        anyhow::bail!(
            "no snapshot in {} verifies ({} damaged); start a new run",
            run_dir.display(),
            snaps.len()
        );
    }
    let number: u64 = which.parse().map_err(|_| {
        anyhow::anyhow!(
            "--resume-snapshot '{which}' must be 'latest' or a snapshot number (kimg for ProGAN runs, iterations \
             for InfoGAN-CR runs)"
        )
    })?;
    snaps
        .into_iter()
        .find(|p| snapshot_number(p) == Some(number))
        .with_context(|| {
            format!(
                "{} has no snapshot numbered {number} (network-snapshot-{number:06}.safetensors for ProGAN, \
                 network-snapshot-{number:09}.safetensors for InfoGAN-CR)",
                run_dir.display()
            )
        })
}

/// The number in a snapshot's name: kimg for ProGAN (`network-snapshot-000120`), completed iterations for
/// InfoGAN-CR (`network-snapshot-000016128`).
pub fn snapshot_number(path: &Path) -> Option<u64> {
    path.file_stem()?
        .to_str()?
        .strip_prefix("network-snapshot-")?
        .parse()
        .ok()
}

/// `results/{1 + largest run number:05}-{desc}` (docs/spec/progan_hp.md §2.7).
pub fn next_run_dir(results_dir: &Path, desc: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(results_dir)
        .with_context(|| format!("cannot create results directory {}", results_dir.display()))?;
    let mut next = 0u32;
    for entry in std::fs::read_dir(results_dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(n) = digits.parse::<u32>() {
            next = next.max(n + 1);
        }
    }
    Ok(results_dir.join(format!("{next:05}-{desc}")))
}

/// The newest snapshot beside `snapshot` (same run directory, other file) that verifies, if any: where to resume
/// from when `snapshot` is damaged.
pub fn newest_good_sibling(snapshot: &Path) -> Option<PathBuf> {
    let dir = snapshot.parent()?;
    snapshots_in(dir)
        .ok()?
        .into_iter()
        .rev()
        .filter(|p| p != snapshot)
        .find(|p| crate::io::safetensors::verify(p).is_ok())
}

/// The numbered run directories (`NNNNN-…`) in `results_dir`, newest (largest number) first; none when the
/// directory does not exist.
pub fn run_dirs_newest_first(results_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(results_dir) else {
        return Vec::new();
    };
    let mut runs: Vec<(u32, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let (number, _) = name.split_once('-')?;
            Some((number.parse().ok()?, p))
        })
        .collect();
    runs.sort();
    runs.into_iter().rev().map(|(_, p)| p).collect()
}

/// The latest snapshot of the newest run (largest run number) in `results_dir` that holds one; `None` when there is
/// no such run (or no `results_dir`).
pub fn newest_snapshot(results_dir: &Path) -> Result<Option<PathBuf>> {
    for run in run_dirs_newest_first(results_dir) {
        if let Some(last) = snapshots_in(&run)?.pop() {
            return Ok(Some(last));
        }
    }
    Ok(None)
}
