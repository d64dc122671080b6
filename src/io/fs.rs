//! Files and directories that appear whole or not at all: everything is written under a temporary sibling name,
//! flushed to the disk (`fsync` of the file, then of its directory after the rename), and renamed into place only when
//! complete, so a crash, a kill or a power cut never leaves a half-written output under a final name.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// A temporary name beside `path` (same directory, so the final rename is atomic): `.<name>.partial-<pid>`.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_string());
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Removes the temporaries that killed writers of `path` left beside it (`.<name>.partial-<pid>` whose process no
/// longer runs), so that an interrupted run does not leak disk space on the next start. Best effort.
pub fn remove_stale_partials(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    remove_dead_temporaries(dir, Some(&name.to_string_lossy()));
}

/// Removes every temporary of a killed writer in `dir` (`.<any name>.partial-<pid>`, the process gone), or only those
/// of `name`. Returns how many were removed. Best effort.
pub fn remove_dead_temporaries(dir: &Path, name: Option<&str>) -> usize {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some((stem, pid)) = file_name.rsplit_once(".partial-") else {
            continue;
        };
        let Some(target) = stem.strip_prefix('.') else {
            continue;
        };
        if name.is_some_and(|n| n != target) {
            continue;
        }
        let alive = pid.parse::<u32>().is_ok_and(|pid| {
            pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
        });
        if !alive {
            let p = entry.path();
            let gone = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            removed += usize::from(gone.is_ok());
        }
    }
    removed
}

fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    Ok(())
}

/// Flushes a file's data to the disk (an ENOSPC or EIO that the page cache deferred surfaces here).
fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot flush {} to the disk", path.display()))
}

/// Flushes a directory's entries (a rename inside it) to the disk. Best effort: some filesystems refuse to open or
/// sync directories, and the rename itself is already atomic.
fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Renames `tmp` to `path` and flushes the directory entry to the disk.
pub fn rename_durably(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// Writes the file `path` atomically: `write` fills the temporary path it is given, which is flushed to the disk and
/// then renamed over `path`. On error the temporary file is removed and `path` is untouched.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    ensure_parent(path)?;
    remove_stale_partials(path);
    let tmp = temp_sibling(path);
    let result = write(&tmp)
        .and_then(|()| sync_file(&tmp))
        .and_then(|()| rename_durably(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes bytes to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("cannot write {}", path.display()))
    })
}

/// Builds the directory `dir` atomically: `build` fills a fresh temporary directory, which is renamed to `dir` only
/// on success. `dir` must not exist yet. On error the temporary directory is removed.
pub fn build_dir_atomic<F>(dir: &Path, build: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    anyhow::ensure!(
        !dir.exists(),
        "{} already exists; remove it or choose another output directory",
        dir.display()
    );
    ensure_parent(dir)?;
    remove_stale_partials(dir);
    let tmp = temp_sibling(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove stale {}", tmp.display()))?;
    }
    std::fs::create_dir(&tmp)
        .with_context(|| format!("cannot create directory {}", tmp.display()))?;
    let result = build(&tmp)
        .and_then(|()| sync_tree(&tmp))
        .with_context(|| format!("cannot build {}", dir.display()))
        .and_then(|()| rename_durably(&tmp, dir));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Flushes every file under `dir`, then `dir` itself.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            sync_file(&path)?;
        }
    }
    sync_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_writes_leave_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("hg-fsutil-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("a.txt");
        write_bytes_atomic(&file, b"one").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"one");
        let err = write_atomic(&file, |tmp| {
            std::fs::write(tmp, b"half")?;
            anyhow::bail!("interrupted")
        });
        assert!(err.is_err());
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"one",
            "the old file survives a failed write"
        );
        assert!(!temp_sibling(&file).exists());

        let out = dir.join("ds");
        assert!(build_dir_atomic(&out, |tmp| {
            std::fs::write(tmp.join("x"), b"1")?;
            anyhow::bail!("corrupt input")
        })
        .is_err());
        assert!(!out.exists() && !temp_sibling(&out).exists());
        build_dir_atomic(&out, |tmp| Ok(std::fs::write(tmp.join("x"), b"1")?)).unwrap();
        assert!(out.join("x").exists());
        assert!(build_dir_atomic(&out, |_| Ok(()))
            .unwrap_err()
            .to_string()
            .contains("already exists"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporaries_of_dead_writers_are_removed() {
        let dir = std::env::temp_dir().join(format!("hg-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.safetensors");
        // pid 0 is never a process we could have been; our own temporary stays.
        let dead = dir.join(".s.safetensors.partial-0");
        let dead_dir = dir.join(".ds.partial-0");
        std::fs::write(&dead, b"torn").unwrap();
        std::fs::create_dir_all(dead_dir.join("sub")).unwrap();
        let ours = temp_sibling(&file);
        std::fs::write(&ours, b"in progress").unwrap();
        let other = dir.join(".t.safetensors.partial-0");
        std::fs::write(&other, b"another file's").unwrap();
        write_bytes_atomic(&file, b"whole").unwrap();
        assert!(!dead.exists());
        assert!(other.exists(), "only this file's temporaries are touched");
        build_dir_atomic(&dir.join("ds"), |_| Ok(())).unwrap();
        assert!(!dead_dir.exists());
        assert_eq!(std::fs::read(&file).unwrap(), b"whole");
        // Every dead writer's temporary at once (what a resumed run does in the directory it resumes from).
        assert_eq!(remove_dead_temporaries(&dir, None), 1);
        assert!(!other.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
