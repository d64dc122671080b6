//! Full disks (issue 17): `train` whose snapshot does not fit, and `dataset synth` that runs out of space, on a small
//! tmpfs mounted by the test. Expected: a one-line "No space left on device" error naming the file, the previous
//! snapshot intact, no file under a final name half-written, nothing left behind, and a resume that works once there
//! is space again.
//!
//! Mounting needs root (CI runs as root); where it is impossible the tests say so and pass without running.

mod common;

use hessian_gan::checkpoint::{load_snapshot, newest_snapshot, run_dir_of, snapshots_in};
use hessian_gan::io::safetensors;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hessian-gan");

/// A tmpfs of `size` bytes mounted at `dir` for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs at {} (root needed): {}",
                    dir.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    /// Fills the filesystem until `leave` bytes at most are free; returns the filler's path.
    fn fill_leaving(&self, leave: u64) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        // Write page by page until the disk refuses, then give back what should stay free.
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        let len = std::fs::metadata(&path).unwrap().len();
        f.set_len(len.saturating_sub(leave)).unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn hg(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["--device", "cpu", "-q"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// No file with a final name under `dir` is half-written, and no temporary is left.
fn assert_whole(dir: &Path) {
    let left = common::torn_files_check(dir);
    assert!(left.is_empty(), "temporaries were left behind: {left:?}");
}

/// The last line of a failed command's stderr, checked to be its one error line about a full disk.
fn disk_full_error(stderr: &str) -> &str {
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("No space left on device"),
        "one clear line: {stderr}"
    );
    assert_eq!(stderr.lines().filter(|l| l.starts_with("error")).count(), 1);
    last
}

#[test]
fn train_stops_cleanly_when_the_snapshot_does_not_fit_and_resumes_with_space() {
    let root = common::scratch("full-train");
    common::tiny_dataset(&root);
    let Some(disk) = Tmpfs::mount(&root.join("disk"), 32 << 20) else {
        return;
    };
    let results = disk.0.join("results");
    let mut cfg = common::TinyRun::new(&root).config();
    cfg.total_kimg = 1.0;
    cfg.results_dir = results.clone();
    let preset = root.join("tiny.json");
    std::fs::write(&preset, serde_json::to_string(&cfg).unwrap()).unwrap();
    let preset = preset.to_str().unwrap();

    let (ok, err) = hg(&["train", "--config", preset]);
    assert!(ok, "{err}");
    let run = snapshots_in(&run_dir_of(&results, 0).unwrap()).unwrap();
    let first = run.last().unwrap().clone();
    let size = std::fs::metadata(&first).unwrap().len();
    if std::env::var_os("FULL_DISK_VERBOSE").is_some() {
        for e in std::fs::read_dir(first.parent().unwrap())
            .unwrap()
            .flatten()
        {
            println!(
                "{} {}",
                e.file_name().to_string_lossy(),
                e.metadata().unwrap().len()
            );
        }
    }

    // Four fifths of a snapshot of space left: the run starts (config, log, grids and events, about 0.4 of a
    // snapshot, fit) and its next snapshot cannot be written.
    let filler = disk.fill_leaving(size * 4 / 5);
    let resume = [
        "train",
        "--config",
        preset,
        "--total-kimg",
        "2",
        "--resume",
        first.to_str().unwrap(),
    ];
    let (ok, err) = hg(&resume);
    assert!(!ok, "training on a full disk must fail");
    let last = disk_full_error(&err);
    assert!(
        last.contains("network-snapshot-000002.safetensors: No space left on device (os error 28)"),
        "the error names the snapshot: {last}"
    );
    println!("full disk, train: {last}");
    safetensors::verify(&first).unwrap();
    assert_whole(&results);

    // With space again, the same resume reaches 2 kimg.
    std::fs::remove_file(filler).unwrap();
    let (ok, err) = hg(&resume);
    assert!(ok, "{err}");
    let done = newest_snapshot(&results).unwrap().unwrap();
    assert!(load_snapshot(&done).unwrap().state.cur_nimg >= 2000);
    assert_whole(&results);
    drop(disk);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_dataset_build_that_runs_out_of_space_leaves_nothing() {
    let root = common::scratch("full-dataset");
    let Some(disk) = Tmpfs::mount(&root.join("disk"), 1 << 20) else {
        return;
    };
    let out = disk.0.join("ds");
    let (ok, err) = hg(&[
        "dataset",
        "synth",
        "--kind",
        "clevr-simple",
        "--count",
        "2000",
        "--resolution",
        "32",
        out.to_str().unwrap(),
    ]);
    assert!(!ok, "a 2000-image dataset does not fit in 1 MB");
    let last = disk_full_error(&err);
    assert!(
        last.contains(&format!("cannot build {}", out.display())),
        "names the dataset: {last}"
    );
    assert!(!out.exists(), "no dataset under its final name");
    println!("full disk, dataset synth: {last}");
    let left: Vec<_> = std::fs::read_dir(&disk.0).unwrap().flatten().collect();
    assert!(left.is_empty(), "the temporary build was removed: {left:?}");
    drop(disk);
    std::fs::remove_dir_all(&root).unwrap();
}
