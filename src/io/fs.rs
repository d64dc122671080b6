//! Files and directories that appear whole or not at all: everything is written under a temporary sibling name and
//! renamed into place only when complete, so a crash or Ctrl-C never leaves a half-written output behind.

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

fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    Ok(())
}

/// Writes the file `path` atomically: `write` fills the temporary path it is given, which is then renamed over
/// `path`. On error the temporary file is removed and `path` is untouched.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    ensure_parent(path)?;
    let tmp = temp_sibling(path);
    let result = write(&tmp).and_then(|()| {
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes bytes to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))
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
    let tmp = temp_sibling(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove stale {}", tmp.display()))?;
    }
    std::fs::create_dir(&tmp)
        .with_context(|| format!("cannot create directory {}", tmp.display()))?;
    let result = build(&tmp).and_then(|()| {
        std::fs::rename(&tmp, dir)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), dir.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
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
}
