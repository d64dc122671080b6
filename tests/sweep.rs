//! `hessian-gan sweep` (issue 21): the grid, its errors, the Slurm batch script, local sweeps of tiny runs (in
//! parallel, with a failing arm, summarised), resuming an interrupted run from its snapshot, and a real Slurm round
//! trip (scripts/slurm-test.sh) where Slurm is installed and we are root.

mod common;

use common::{scratch, tiny_dataset, TinyRun};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hessian-gan");

/// The binary on the CPU with one libtorch thread: on a small shared machine, libtorch's default of a spinning
/// thread per core slows a tiny run down many times over whenever anything else runs.
fn command() -> Command {
    let mut c = Command::new(BIN);
    c.env("OMP_NUM_THREADS", "1").args(["--device", "cpu"]);
    c
}

fn bin(args: &[&str]) -> Output {
    command().args(args).output().expect("the binary starts")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A tiny dataset and a preset of the tiny run (1 kimg, a snapshot and a score tick every kimg) under `root`.
fn preset(root: &Path, extra: Value) -> PathBuf {
    tiny_dataset(root);
    let request = TinyRun::new(root)
        .with(json!({
            "total_kimg": 1,
            "score_ticks": 1,
            "score_samples": 120,
            "score_groups": 6,
            "metrics_options": {"cache_dir": root.join("cache")},
        }))
        .with(extra)
        .request();
    request.config.unwrap()
}

#[test]
fn the_grid_expands_into_runs_and_the_batch_script_holds_the_array() {
    let root = scratch("grid");
    let config = preset(&root, json!({}));
    let out = root.join("sw");
    let args = [
        "sweep",
        "--config",
        config.to_str().unwrap(),
        "--seeds",
        "1-2,5",
        "--set",
        "hp_lambda=0,0.1",
        "--set",
        "layers_to_reg=[1,2],[3]",
        "--runner",
        "slurm",
        "--parallel",
        "3",
        "--gpus",
        "1",
        "--time",
        "01:00:00",
        "--partition",
        "gpu",
        "--account",
        "lab",
        "--cpus-per-task",
        "4",
        "--mem",
        "16G",
        "--dry-run",
        "--out",
        out.to_str().unwrap(),
        "--",
        "--tick-kimg",
        "0.5",
    ];
    let res = bin(&args);
    assert!(res.status.success(), "{}", stderr(&res));
    let m = json_file(&out.join("manifest.json"));
    let runs = m["runs"].as_array().unwrap();
    // 3 seeds × 2 λ × 2 layer lists.
    assert_eq!(runs.len(), 12);
    let arms: Vec<&str> = runs.iter().map(|r| r["arm"].as_str().unwrap()).collect();
    assert_eq!(arms[0], "hp_lambda=0,layers_to_reg=[1,2]");
    assert_eq!(arms[3], "hp_lambda=0,layers_to_reg=[3]");
    assert_eq!(arms[11], "hp_lambda=0.1,layers_to_reg=[3]");
    let mut distinct = arms.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "runs of an arm are adjacent");
    let seeds: Vec<u64> = runs.iter().map(|r| r["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, [1, 2, 5].repeat(4));
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["index"], json!(i));
        assert_eq!(r["status"], "pending");
    }
    // JSON values keep their spelling: 0 stays an integer.
    assert_eq!(
        runs[4]["overrides"],
        json!({"hp_lambda": 0, "layers_to_reg": [3]})
    );
    assert_eq!(runs[5]["dir"], "runs/005-hp_lambda-0_layers_to_reg-_3_-s5");
    assert_eq!(m["grid"]["train_args"], json!(["--tick-kimg", "0.5"]));
    assert!(
        m["job_ids"].as_array().unwrap().is_empty(),
        "a dry run submits nothing"
    );

    let script = std::fs::read_to_string(out.join("sweep.sbatch")).unwrap();
    let dir = std::fs::canonicalize(&out).unwrap();
    for line in [
        "#SBATCH --array=0-11%3".to_string(),
        "#SBATCH --requeue".into(),
        "#SBATCH --gpus=1".into(),
        "#SBATCH --time=01:00:00".into(),
        "#SBATCH --partition=gpu".into(),
        "#SBATCH --account=lab".into(),
        "#SBATCH --cpus-per-task=4".into(),
        "#SBATCH --mem=16G".into(),
        format!("#SBATCH --output={}/slurm/%A_%a.out", dir.display()),
        format!(
            "exec {} sweep run-one {} --index \"$SLURM_ARRAY_TASK_ID\"",
            std::fs::canonicalize(BIN).unwrap().display(),
            dir.display()
        ),
    ] {
        assert!(
            script.lines().any(|l| l == line),
            "{line} missing from\n{script}"
        );
    }

    // The same directory with another grid is refused, naming what differs.
    let mut other = args.to_vec();
    other[4] = "1-3";
    let res = bin(&other);
    assert!(!res.status.success());
    assert!(
        stderr(&res).contains("another sweep") && stderr(&res).contains("--seeds"),
        "{}",
        stderr(&res)
    );
}

#[test]
fn bad_input_gives_one_line_errors_naming_the_flag() {
    let root = scratch("errors");
    let config = preset(&root, json!({}));
    let c = config.to_str().unwrap();
    let out = root.join("sw");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--config", c, "--seeds", "5-1", "--out", o],
            "--seeds '5-1'",
        ),
        (vec!["--config", c, "--seeds", "", "--out", o], "--seeds"),
        (vec!["--config", c, "--seeds", "1,x", "--out", o], "'x'"),
        (
            vec![
                "--config",
                c,
                "--seeds",
                "1",
                "--set",
                "hp_lamda=0.1",
                "--out",
                o,
            ],
            "unknown training setting 'hp_lamda'",
        ),
        (
            vec![
                "--config",
                c,
                "--seeds",
                "1",
                "--set",
                "hp_lambda",
                "--out",
                o,
            ],
            "--set 'hp_lambda'",
        ),
        (
            vec![
                "--config",
                c,
                "--seeds",
                "1",
                "--set",
                "hp_lambda=",
                "--out",
                o,
            ],
            "--set hp_lambda: no values",
        ),
        (
            vec![
                "--config",
                c,
                "--seeds",
                "1",
                "--set",
                "hp_lambda=x",
                "--out",
                o,
            ],
            "arm hp_lambda=x",
        ),
        (
            vec![
                "--config", c, "--seeds", "1", "--set", "seed=1,2", "--out", o,
            ],
            "--set seed",
        ),
        (
            vec!["--config", c, "--seeds", "1", "--parallel", "0", "--out", o],
            "--parallel 0",
        ),
        (
            vec!["--config", "/nonexistent.json", "--seeds", "1", "--out", o],
            "--config /nonexistent.json",
        ),
        (
            vec!["--config", c, "--seeds", "1", "--out", o, "--", "--bogus"],
            "'--bogus'",
        ),
        (
            vec![
                "--config",
                c,
                "--seeds",
                "1",
                "--out",
                o,
                "--",
                "--results-dir",
                "x",
            ],
            "--results-dir",
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["sweep"];
        full.extend(&args);
        let res = bin(&full);
        let err = stderr(&res);
        assert!(!res.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(
        !out.join("manifest.json").exists(),
        "bad input writes no sweep"
    );
    let res = bin(&["sweep", "status", root.join("nothing").to_str().unwrap()]);
    assert!(
        stderr(&res).contains("no such sweep directory"),
        "{}",
        stderr(&res)
    );
}

/// The value of `key` in a finished run's final snapshot metrics file.
fn final_value(run_results: &Path, key: &str) -> f64 {
    let train_dir = std::fs::read_dir(run_results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("_finished.txt").exists())
        .unwrap_or_else(|| panic!("no finished run in {}", run_results.display()));
    let snap = hessian_gan::checkpoint::find_snapshot(&train_dir, "latest").unwrap();
    let doc = json_file(&hessian_gan::metrics::suite::beside(&snap, "metrics.json"));
    let pointer = match key {
        "mig" => "/scores/scores/mig",
        other => return doc["scores"][other].as_f64().unwrap(),
    };
    doc.pointer(pointer).unwrap().as_f64().unwrap()
}

#[test]
fn a_local_sweep_runs_two_at_a_time_reports_a_failed_arm_and_summarises() {
    let root = scratch("local");
    let config = preset(&root, json!({}));
    let out = root.join("sw");
    let args = [
        "sweep",
        "--config",
        config.to_str().unwrap(),
        "--seeds",
        "1-2",
        "--set",
        "dataset=tiny,no_such_dataset",
        "--parallel",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    let t0 = Instant::now();
    let res = bin(&args);
    eprintln!("local sweep of 4 runs: {:.1} s", t0.elapsed().as_secs_f64());
    // The missing dataset's runs fail; the sweep goes on, then fails naming them.
    assert!(!res.status.success());
    let err = stderr(&res);
    assert!(err.contains("2 of 4 runs failed"), "{err}");
    assert!(
        err.contains("run 2 (dataset=no_such_dataset seed 1") && err.contains("run 3 ("),
        "{err}"
    );

    let m = json_file(&out.join("manifest.json"));
    let states: Vec<&str> = m["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["finished", "finished", "failed", "failed"]);
    let failed = &m["runs"][2];
    assert!(failed["exit_code"].as_i64().unwrap() != 0);
    let tail = failed["log_tail"].as_array().unwrap();
    assert!(
        tail.iter()
            .any(|l| l.as_str().unwrap().contains("no_such_dataset")),
        "{tail:?}"
    );

    let status = stdout(&bin(&["sweep", "status", out.to_str().unwrap()]));
    assert!(
        status
            .lines()
            .last()
            .unwrap()
            .contains("failed 2, finished 2"),
        "{status}"
    );
    let row = status
        .lines()
        .find(|l| l.contains("dataset=tiny") && l.trim_start().starts_with('1'))
        .unwrap();
    assert!(
        row.contains("finished") && row.split_whitespace().nth(4) == Some("1"),
        "kimg 1: {row}"
    );

    let res = bin(&["sweep", "summarize", out.to_str().unwrap(), "--select"]);
    assert!(res.status.success(), "{}", stderr(&res));
    let text = stdout(&res);
    assert!(
        text.contains("model selection:") && text.contains("select --runs"),
        "{text}"
    );
    let summary = json_file(&out.join("summary.json"));
    let arm = &summary["arms"][0];
    assert_eq!(arm["arm"], "dataset=tiny");
    assert_eq!(summary["arms"][1]["unfinished"], json!([2, 3]));
    let dirs: Vec<PathBuf> = m["runs"].as_array().unwrap()[..2]
        .iter()
        .map(|r| out.join(r["dir"].as_str().unwrap()))
        .collect();
    for key in ["factor_vae_z", "mig", "effect_max"] {
        let v: Vec<f64> = dirs.iter().map(|d| final_value(d, key)).collect();
        let mean = (v[0] + v[1]) / 2.0;
        let std = ((v[0] - mean).powi(2) + (v[1] - mean).powi(2)).sqrt(); // n − 1 = 1
        let stat = &arm["stats"][key];
        assert_eq!(stat["n"], 2, "{key}");
        assert!(
            (stat["mean"].as_f64().unwrap() - mean).abs() < 1e-12,
            "{key}: {stat} vs {v:?}"
        );
        assert!(
            (stat["std"].as_f64().unwrap() - std).abs() < 1e-12,
            "{key}: {stat} vs {v:?}"
        );
    }
    // The command names both runs; the models have no encoder (no InfoGAN), so select refuses, per arm.
    let cmd = arm["select_command"].as_array().unwrap();
    assert_eq!(
        cmd.iter()
            .filter(|a| a.as_str().unwrap().contains("/runs/00"))
            .count(),
        2
    );
    assert!(
        arm["select_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{arm}"
    );

    // The same command again: finished runs are skipped (one attempt in their log), the failed ones tried again.
    let res = bin(&args);
    assert!(!res.status.success());
    for (dir, attempts) in [
        (&dirs[0], 1),
        (&out.join(m["runs"][2]["dir"].as_str().unwrap()), 2),
    ] {
        let log = std::fs::read_to_string(dir.join("train.log")).unwrap();
        assert_eq!(log.matches("== sweep run").count(), attempts, "{log}");
    }
}

#[test]
fn an_interrupted_run_resumes_from_its_newest_snapshot() {
    let root = scratch("resume");
    let config = preset(&root, json!({"total_kimg": 3, "score_ticks": 0}));
    let out = root.join("sw");
    let args = [
        "sweep",
        "--config",
        config.to_str().unwrap(),
        "--seeds",
        "4",
        "--out",
        out.to_str().unwrap(),
    ];
    // The sweep in its own process group, so that the kill takes its train child too (a node that went away).
    use std::os::unix::process::CommandExt;
    let mut child = command()
        .arg("-q")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let results = out.join("runs").join("000-base-s4");
    let deadline = Instant::now() + Duration::from_secs(120);
    let first_snapshot = loop {
        let found = std::fs::read_dir(&results).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join("network-snapshot-000001.safetensors"))
                .find(|p| hessian_gan::io::safetensors::verify(p).is_ok())
        });
        if let Some(p) = found {
            break p;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended before its first snapshot"
        );
        assert!(Instant::now() < deadline, "no snapshot after 120 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let pgid = child.id().to_string();
    Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    child.wait().unwrap();
    let finished_early = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .any(|e| e.path().join("_finished.txt").exists());
    assert!(
        !finished_early,
        "the run finished before the kill; the test needs a longer run"
    );

    let status = stdout(&bin(&["sweep", "status", out.to_str().unwrap()]));
    assert!(status.contains("interrupted"), "{status}");

    let res = bin(&["sweep", "resume", out.to_str().unwrap()]);
    assert!(res.status.success(), "{}", stderr(&res));
    let attempt = json_file(&results.join("attempt.json"));
    assert_eq!(attempt["state"], "finished");
    let resumed = PathBuf::from(
        attempt["resumed_from"]
            .as_str()
            .expect("resumed, not restarted"),
    );
    assert_eq!(
        resumed.parent(),
        first_snapshot.parent(),
        "from the killed run's directory"
    );
    assert!(attempt["command"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "--resume"));
    // The killed run's directory and snapshots are kept; the resumed run reached 3 kimg in a directory of its own.
    assert!(first_snapshot.exists());
    let status = stdout(&bin(&["sweep", "status", out.to_str().unwrap()]));
    let row = status.lines().nth(1).unwrap();
    assert!(
        row.contains("finished") && row.split_whitespace().nth(4) == Some("3"),
        "{status}"
    );
    let dirs: Vec<String> = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
}

#[test]
fn a_real_slurm_cluster_runs_the_sweep_as_a_job_array() {
    let on_path = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !["sbatch", "slurmctld", "slurmd", "munged"]
        .iter()
        .all(|t| on_path(t))
    {
        eprintln!("skipping: Slurm not installed (apt-get install slurm-wlm munge)");
        return;
    }
    if !root {
        eprintln!("skipping: the Slurm test starts daemons and needs root");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-test.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("HESSIAN_GAN_BIN", BIN)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("PASS: 4 of 4 runs finished through Slurm; a cancelled run resumed")
            && text.contains("task resumed its run from its snapshot and finished")
            && text.contains("DUE TO JOB REQUEUE"),
        "{text}"
    );
}
