//! Data-parallel training (issue 21) with Gloo on the CPU: a 2-process run reaches the weights of the one-process
//! run with 2 chunks; the torchrun environment starts the same job; a killed worker fails the job naming its rank,
//! and the run resumes from its last snapshot.

mod common;

use common::{scratch, tiny_dataset, TinyRun};
use hessian_gan::checkpoint::snapshots_in;
use hessian_gan::io::safetensors;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hessian-gan");

/// The tiny run with `extra`, its preset written to `root/tiny.json`.
fn preset(root: &Path, extra: serde_json::Value) -> PathBuf {
    if !root.join("datasets/tiny/dataset.json").exists() {
        tiny_dataset(root);
    }
    let tiny = TinyRun::new(root).with(extra);
    tiny.request().config.unwrap()
}

/// `hessian-gan --device cpu -q train --config <preset> <args>`, one CPU thread per process.
fn train(preset: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["--device", "cpu", "-q", "train", "--config"])
        .arg(preset)
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .stdin(Stdio::null());
    cmd
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The run directories under `results`, in order.
fn runs(results: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(results) else {
        return vec![];
    };
    let mut v: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// Largest |a − b| over the networks' tensors of two snapshots, and the largest |a|.
fn max_difference(a: &Path, b: &Path) -> (f64, f64, usize) {
    let (ta, _) = safetensors::load(a).unwrap();
    let (tb, _) = safetensors::load(b).unwrap();
    assert_eq!(ta.len(), tb.len());
    let (mut diff, mut scale, mut n) = (0f64, 0f64, 0);
    for (name, x) in &ta {
        if !(name.starts_with("G/") || name.starts_with("D/") || name.starts_with("Gs/")) {
            continue;
        }
        let y = &tb[name];
        diff = diff.max((x - y).abs().max().double_value(&[]));
        scale = scale.max(x.abs().max().double_value(&[]));
        n += 1;
    }
    (diff, scale, n)
}

#[test]
fn two_gloo_processes_reach_the_weights_of_one_process_with_two_chunks() {
    let root = scratch("equivalence");
    // 1 kimg at batch 8: 125 iterations through the fade-in and the HP at both lods.
    let preset = preset(&root, json!({"total_kimg": 1, "tick_kimg": 0.5}));
    ok(train(&preset, &[]).output().unwrap(), "one process");
    ok(
        train(&preset, &["--nproc", "2"]).output().unwrap(),
        "two processes",
    );
    let dirs = runs(&root.join("results"));
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let (one, two) = (&dirs[0], &dirs[1]);
    // Rank 0 wrote the run; rank 1 only its log.
    for f in ["log.txt", "z.npy", "fakes000000.png", "_finished.txt"] {
        assert!(two.join(f).exists(), "{f} missing in the 2-process run");
    }
    assert!(two.join("log-rank1.txt").exists());
    let log = std::fs::read_to_string(two.join("log-rank1.txt")).unwrap();
    assert!(
        log.contains("rank 1 of 2 (Gloo): 1 of the 2 chunks"),
        "{log}"
    );
    let last = |d: &Path| snapshots_in(d).unwrap().pop().unwrap();
    assert_eq!(
        last(one).file_name(),
        last(two).file_name(),
        "both runs end at the same snapshot"
    );
    let (diff, scale, n) = max_difference(&last(one), &last(two));
    assert!(n > 20, "compared {n} tensors");
    // Only the order of the gradient sums differs (one batch's mean vs. the mean of two halves' means).
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "2 processes differ from 1 process × 2 chunks by {diff} (weights up to {scale})"
    );
    eprintln!(
        "1 process × 2 chunks vs 2 processes: max abs difference {diff:e} (weights up to {scale})"
    );
    // And not trivially: the last half kimg of training moved the weights far more than that.
    let first = snapshots_in(one).unwrap().remove(0);
    let (moved, _, _) = max_difference(&first, &last(one));
    assert!(
        moved > 100.0 * diff.max(1e-7),
        "training moved the weights by {moved} only"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_torchrun_environment_starts_the_same_job() {
    let root = scratch("torchrun");
    let preset = preset(&root, json!({"total_kimg": 0.25, "tick_kimg": 0.25}));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let children: Vec<_> = (0..2)
        .map(|rank| {
            train(&preset, &[])
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        ok(c.wait_with_output().unwrap(), "a torchrun-style rank");
    }
    let dirs = runs(&root.join("results"));
    assert_eq!(dirs.len(), 1, "one run directory for the job: {dirs:?}");
    assert!(dirs[0].join("_finished.txt").exists());
    assert!(dirs[0].join("log-rank1.txt").exists());
    // Bad environments are one-line errors naming the variable.
    let out = train(&preset, &[])
        .env("WORLD_SIZE", "2")
        .env("RANK", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("MASTER_PORT"),
        "{err}"
    );
    let out = train(&preset, &["--nproc", "3"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--num-gpus 2") && err.contains("3 processes"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// The worker processes of `parent`, with their RANK.
fn workers(parent: u32) -> Vec<(u32, String)> {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let rank = env
                .split(|&b| b == 0)
                .find_map(|kv| kv.strip_prefix(b"RANK="))
                .map(|r| String::from_utf8_lossy(r).into_owned())?;
            Some((pid.parse().ok()?, rank))
        })
        .collect()
}

#[test]
fn a_killed_worker_fails_the_job_naming_its_rank_and_the_run_resumes() {
    let root = scratch("killed");
    // Snapshots every 0.25 kimg of 4 kimg: the kill comes after the first and well before the end.
    let preset = preset(
        &root,
        json!({"total_kimg": 4, "tick_kimg": 0.25, "network_snapshot_ticks": 1}),
    );
    let job = train(&preset, &["--nproc", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let snapshot = loop {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "no snapshot after 4 minutes"
        );
        if let Some(dir) = runs(&root.join("results")).pop() {
            if let Some(s) = snapshots_in(&dir).unwrap().pop() {
                break s;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let pids = workers(job.id());
    assert_eq!(pids.len(), 2, "{pids:?}");
    let rank1 = pids
        .iter()
        .find(|(_, r)| r == "1")
        .expect("rank 1 is running")
        .0;
    Command::new("kill")
        .args(["-9", &rank1.to_string()])
        .status()
        .unwrap();
    let out = job.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job must fail");
    assert!(
        err.contains("rank 1 of 2 was killed by signal 9 (SIGKILL)")
            && err.contains("the other worker(s) were stopped")
            && err.contains("Resume from the last snapshot with: hessian-gan train --resume"),
        "{err}"
    );
    for (pid, rank) in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "rank {rank} outlived the job"
        );
    }
    // The command the error names continues the run to the end, from the newest snapshot at the time of failure.
    let named = err
        .split("--resume ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(
        snapshots_in(snapshot.parent().unwrap())
            .unwrap()
            .contains(&PathBuf::from(&named)),
        "{named}"
    );
    ok(
        Command::new(BIN)
            .args([
                "--device", "cpu", "-q", "train", "--resume", &named, "--nproc", "2",
            ])
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap(),
        "the resumed job",
    );
    let resumed = runs(&root.join("results")).pop().unwrap();
    assert!(resumed.join("_finished.txt").exists());
    assert_eq!(
        snapshots_in(&resumed)
            .unwrap()
            .pop()
            .unwrap()
            .file_name()
            .unwrap(),
        "network-snapshot-000004.safetensors"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bench_measures_two_processes_beside_one() {
    let out = ok(
        Command::new(BIN)
            .args([
                "--device",
                "cpu",
                "-q",
                "bench",
                "--resolution",
                "8",
                "--nz",
                "3",
                "--fmap-base",
                "32",
                "--fmap-max",
                "16",
                "--num-gpus",
                "2",
                "--minibatch",
                "8=8",
                "--steps",
                "3",
                "--warmup",
                "1",
                "--variants",
                "hp,nohp",
                "--nproc",
                "2",
            ])
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap(),
        "bench --nproc 2",
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["processes"], 1);
    let scaling = &report["scaling"];
    assert_eq!(scaling["processes"], 2);
    assert_eq!(scaling["backend"], "Gloo");
    let rows = scaling["variants"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, one) in rows.iter().zip(report["variants"].as_array().unwrap()) {
        assert_eq!(row["variant"], one["variant"]);
        assert_eq!(row["images_per_s_one_process"], one["images_per_s"]);
        let (ips, speedup, eff) = (
            row["images_per_s"].as_f64().unwrap(),
            row["speedup"].as_f64().unwrap(),
            row["efficiency"].as_f64().unwrap(),
        );
        assert!(ips.is_finite() && ips > 0.0, "{row}");
        let expect = ips / one["images_per_s"].as_f64().unwrap();
        assert!(
            (speedup - expect).abs() < 1e-9 && (eff - speedup / 2.0).abs() < 1e-9,
            "{row}"
        );
    }
    // The geometry variant has no multi-process mode.
    let out = Command::new(BIN)
        .args([
            "--device",
            "cpu",
            "bench",
            "--variants",
            "geometry",
            "--nproc",
            "2",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--variants geometry"),
        "{err}"
    );
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(") ").next().map(|rest| !rest.starts_with('Z')))
        .unwrap_or(false)
}

#[test]
fn workers_die_with_a_killed_launcher() {
    let root = scratch("orphans");
    let preset = preset(&root, json!({"total_kimg": 50, "tick_kimg": 1}));
    let mut job = train(&preset, &["--nproc", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let pids = loop {
        let w = workers(job.id());
        if w.len() == 2 {
            break w;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "workers did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    job.kill().unwrap();
    job.wait().unwrap();
    let start = Instant::now();
    while pids.iter().any(|(pid, _)| alive(*pid)) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "workers outlived their killed launcher: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_dir_all(&root).unwrap();
}
