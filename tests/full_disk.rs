//! Full disks (issue 17): `train` whose snapshot does not fit, `dataset synth` that runs out of space, and `evaluate`
//! whose statistics cache or results do not fit, on a small tmpfs mounted by the test. Expected: a one-line "No space
//! left on device" error naming the file, the previous snapshot (or metrics file) intact, no file under a final name
//! half-written, nothing left behind, and a resume that works once there is space again. A cache that cannot be
//! written is not a failure: the computed metric is kept and the cache is skipped with a warning.
//!
//! Mounting needs root (CI runs as root); where it is impossible the tests say so and pass without running.

mod common;

use hessian_gan::checkpoint::{load_snapshot, newest_snapshot, run_dir_of, snapshots_in};
use hessian_gan::io::safetensors;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hessian-gan");

/// A tmpfs of `size` bytes mounted at `dir` for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Gives the mounted filesystem a new size (more space for the resume).
    fn resize(&self, size: u64) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot remount {}", self.0.display());
    }

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
    hg_logging(&["-q"], args)
}

/// `hg` with other logging flags (`-q` hides warnings).
fn hg_logging(logging: &[&str], args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["--device", "cpu"])
        .args(logging)
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

#[test]
fn evaluate_keeps_its_result_when_the_cache_does_not_fit_and_fails_cleanly_when_its_result_does_not(
) {
    let Some(det) = common::detectors() else {
        return;
    };
    let root = common::scratch("full-evaluate");
    let run = common::TinyRun::new(&root)
        .with(json!({
            "hp_lambda": 0.0,
            "lod_training_kimg": 0.25,
            "lod_transition_kimg": 0.25,
            "minibatch": {"4": 16, "8": 16},
            "total_kimg": 0.032
        }))
        .train();
    let Some(disk) = Tmpfs::mount(&root.join("disk"), 1 << 20) else {
        return;
    };
    let snapshot = snapshots_in(&run).unwrap().last().unwrap().clone();
    let cache = disk.0.join("cache");
    std::fs::create_dir(&cache).unwrap();
    let inception = det.join("inception-2015-12-05.pt");
    let evaluate = |snapshot: &Path, results: &Path, logging: &[&str]| {
        hg_logging(
            logging,
            &[
                "evaluate",
                "--models",
                snapshot.to_str().unwrap(),
                "--metrics",
                "fid",
                "--num-images",
                "40",
                "--batch-size",
                "16",
                "--fid-detector",
                inception.to_str().unwrap(),
                "--cache-dir",
                cache.to_str().unwrap(),
                "--results-dir",
                results.to_str().unwrap(),
            ],
        )
    };
    let metrics_json = |snapshot: &Path| -> Value {
        let path = hessian_gan::metrics::suite::beside(snapshot, "metrics.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let fid = |doc: &Value| doc["metrics"]["fid40"]["value"].as_f64().unwrap();

    // 1. The statistics cache is on a full disk: FID is computed and recorded, the cache is skipped with a warning,
    //    and no half of a cache entry is left.
    let filler = disk.fill_leaving(0);
    let results = root.join("results");
    let (ok, err) = evaluate(&snapshot, &results, &[]);
    assert!(ok, "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("not cached"))
        .unwrap_or_else(|| panic!("a warning says the cache was skipped: {err}"));
    assert!(warning.contains("No space left on device"), "{warning}");
    println!("full disk, evaluate cache: {warning}");
    let doc = metrics_json(&snapshot);
    let how = doc["metrics"]["fid40"]["reals"]["cache"].as_str().unwrap();
    assert!(how.starts_with("computed, not cached ("), "{how}");
    let first = fid(&doc);
    assert!(first.is_finite() && first > 0.0);
    let left: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert!(left.is_empty(), "nothing is left in the cache: {left:?}");

    // With space, the next run caches the statistics and the one after reads them: the same FID each time.
    std::fs::remove_file(&filler).unwrap();
    let (ok, err) = evaluate(&snapshot, &results, &["-q"]);
    assert!(ok, "{err}");
    let doc = metrics_json(&snapshot);
    assert_eq!(doc["metrics"]["fid40"]["reals"]["cache"], "computed");
    assert_eq!(fid(&doc), first);
    let (ok, err) = evaluate(&snapshot, &results, &["-q"]);
    assert!(ok, "{err}");
    let doc = metrics_json(&snapshot);
    assert_eq!(doc["metrics"]["fid40"]["reals"]["cache"], "hit");
    assert_eq!(fid(&doc), first);

    // 2. The run itself is on a full disk: one error line naming the file, the earlier metrics file intact, and no
    //    file half-written.
    let on_disk = disk.0.join("run");
    std::fs::create_dir(&on_disk).unwrap();
    let copied = on_disk.join(snapshot.file_name().unwrap());
    std::fs::copy(&snapshot, &copied).unwrap();
    let before_path = hessian_gan::metrics::suite::beside(&copied, "metrics.json");
    std::fs::copy(
        hessian_gan::metrics::suite::beside(&snapshot, "metrics.json"),
        &before_path,
    )
    .unwrap();
    let before = std::fs::read(&before_path).unwrap();
    let filler = disk.fill_leaving(0);
    let (ok, err) = evaluate(&copied, &disk.0.join("results"), &["-q"]);
    assert!(!ok, "the results cannot be written");
    let last = disk_full_error(&err);
    assert!(
        last.contains(on_disk.to_str().unwrap()),
        "names the file: {last}"
    );
    println!("full disk, evaluate results: {last}");
    assert_eq!(std::fs::read(&before_path).unwrap(), before);
    assert_whole(&disk.0);
    std::fs::remove_file(filler).unwrap();
    drop(disk);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_download_that_runs_out_of_space_keeps_its_partial_file_and_resumes() {
    use hessian_gan::io::download::{download, partial_path, DownloadOptions};
    let root = common::scratch("full-download");
    let Some(disk) = Tmpfs::mount(&root.join("disk"), 1 << 20) else {
        return;
    };
    let body: Vec<u8> = (0..(3u32 << 19))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let server = common::http::TestServer::start();
    server.add_file("big.bin", body.clone());
    server.validators("big.bin", Some("\"v1\""), None);
    let dest = disk.0.join("big.bin");
    let opts = DownloadOptions {
        retries: 1,
        backoff: std::time::Duration::from_millis(1),
        label: Some("big.bin".into()),
        ..DownloadOptions::default()
    };
    let err = download(&server.url("big.bin"), &dest, &opts).unwrap_err();
    let line = hessian_gan::io::log::error_line(err.as_ref());
    assert!(
        line.contains("big.bin.partial") && line.contains("No space left on device"),
        "names the file: {line}"
    );
    println!("full disk, download: {line}");
    assert!(!dest.exists(), "no file under the final name");
    let kept = std::fs::metadata(partial_path(&dest)).unwrap().len();
    assert!(kept > 0 && kept < body.len() as u64);

    // With space, the same download continues from what it kept, under the same version of the file.
    disk.resize(4 << 20);
    let report = download(&server.url("big.bin"), &dest, &opts).unwrap();
    assert_eq!(report.resumed_from, kept);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let last = server.log_for("big.bin").pop().unwrap();
    assert_eq!(last.status, 206);
    assert_eq!(last.if_range.as_deref(), Some("\"v1\""));
    assert_whole(&disk.0);
    drop(disk);
    std::fs::remove_dir_all(&root).unwrap();
}
