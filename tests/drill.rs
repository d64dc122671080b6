//! The kill drill (issue 17). A tiny training run is SIGKILLed at random moments and resumed each time from whatever
//! is on disk; at the end its G, D, Gs, Adam state and counters must equal, bit for bit, those of an uninterrupted run
//! with the same seed. After every kill no file under a final name may be half-written: every snapshot verifies,
//! every JSON and JSONL file parses. A dataset build is killed the same way: its directory is absent or whole, and the
//! finished build equals an uninterrupted one byte for byte.
//!
//! `DRILL_KILLS` sets the number of kills per drill (default 3, what CI runs; `scripts/drill-kill.sh` runs 20) and
//! `DRILL_SEED` the seed of the kill times. The figures are printed (run with `--nocapture` to see them).

mod common;

use common::{env_or, torn_files_check};
use hessian_gan::checkpoint::{load_snapshot, newest_snapshot};
use hessian_gan::core::rng::Rng;
use hessian_gan::data::Dataset;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hessian-gan");

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(["--device", "cpu", "-q"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts")
}

/// Runs `args` to the end; panics on failure.
fn run(args: &[&str]) {
    let out = Command::new(BIN)
        .args(["--device", "cpu", "-q"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hessian-gan {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `args`, SIGKILLs it after `delay` unless it ended first; true when it was killed.
fn kill_after(args: &[&str], delay: Duration) -> bool {
    kill_when(args, delay, || false)
}

/// Starts `args` and SIGKILLs it as soon as `now()` holds or `delay` has passed, unless it ended first; true when it
/// was killed.
fn kill_when(args: &[&str], delay: Duration, now: impl Fn() -> bool) -> bool {
    let mut child = spawn(args);
    let start = Instant::now();
    while start.elapsed() < delay && !now() {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "hessian-gan {args:?} failed by itself");
            return false;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    child.kill().unwrap(); // SIGKILL on Unix: no handler runs
    child.wait().unwrap();
    true
}

/// Whether a snapshot is being written somewhere under `results` (its temporary exists).
fn writing_snapshot(results: &Path) -> bool {
    let Ok(runs) = std::fs::read_dir(results) else {
        return false;
    };
    runs.flatten().any(|run| {
        std::fs::read_dir(run.path()).is_ok_and(|files| {
            files.flatten().any(|f| {
                let n = f.file_name().to_string_lossy().into_owned();
                n.starts_with(".network-snapshot-") && n.contains(".partial-")
            })
        })
    })
}

fn final_snapshot(results: &Path) -> PathBuf {
    newest_snapshot(results)
        .unwrap()
        .expect("the run finished with a snapshot")
}

#[test]
fn training_killed_at_random_moments_resumes_to_the_same_weights() {
    let root = common::scratch("kill-train");
    common::tiny_dataset(&root);
    let mut settings = common::TinyRun::new(&root).config();
    settings.total_kimg = 4.0;
    let preset = root.join("tiny.json");
    std::fs::write(&preset, serde_json::to_string(&settings).unwrap()).unwrap();
    let preset = preset.to_str().unwrap().to_string();
    let results = |name: &str| root.join(name).to_str().unwrap().to_string();

    // The uninterrupted run, timed: kill times are drawn over its duration.
    let t0 = Instant::now();
    let ref_results = results("reference");
    run(&["train", "--config", &preset, "--results-dir", &ref_results]);
    let duration = t0.elapsed();
    let reference = final_snapshot(Path::new(&ref_results));

    // Cycles of kill-and-resume until DRILL_KILLS kills have landed; each cycle ends with the run finished and
    // compared with the uninterrupted one.
    let kills = env_or("DRILL_KILLS", 3) as usize;
    let mut rng = Rng::new(env_or("DRILL_SEED", 17));
    let (mut killed, mut during_writes, mut cycles, mut missed_writes) = (0, 0, 0, 0);
    let a = load_snapshot(&reference).unwrap();
    while killed < kills || cycles == 0 {
        let drill_results = results(&format!("drill-{cycles}"));
        let drill_dir = PathBuf::from(&drill_results);
        loop {
            let resume = newest_snapshot(&drill_dir).unwrap();
            let finished = resume
                .as_ref()
                .is_some_and(|s| load_snapshot(s).unwrap().state.cur_nimg >= 4000);
            let mut args = vec![
                "train",
                "--config",
                &preset,
                "--results-dir",
                &drill_results,
            ];
            let resume_arg;
            if let Some(snap) = &resume {
                resume_arg = snap.to_str().unwrap().to_string();
                args.extend(["--resume", &resume_arg]);
            }
            if finished {
                break;
            }
            if killed >= kills {
                run(&args); // to the end without interruption
                continue;
            }
            // Every other kill lands inside a snapshot write (as soon as its temporary appears after a random
            // delay); the others at a random moment.
            // A snapshot write can be shorter than the polling interval on a fast, idle machine: after three
            // attempts that never saw one, the kill lands at a random moment instead (counted in the summary).
            let hit = if killed % 2 == 1 && missed_writes < 3 {
                let armed = Instant::now() + duration.mul_f64(0.3 * rng.uniform());
                kill_when(&args, duration * 2, || {
                    Instant::now() >= armed && writing_snapshot(&drill_dir)
                })
            } else {
                kill_after(&args, duration.mul_f64(0.05 + 0.95 * rng.uniform()))
            };
            if !hit && killed % 2 == 1 {
                missed_writes += 1;
            }
            if hit {
                killed += 1;
                // A temporary after the kill: it landed inside a write (the next start removes it).
                during_writes += usize::from(!torn_files_check(&drill_dir).is_empty());
            }
        }
        let b = load_snapshot(&final_snapshot(&drill_dir)).unwrap();
        assert_eq!(a.state.cur_nimg, b.state.cur_nimg);
        assert_eq!(a.state.iteration, b.state.iteration);
        assert_eq!(a.tensors.len(), b.tensors.len());
        for (name, t) in &a.tensors {
            assert!(
                t.equal(&b.tensors[name]),
                "{name} differs from the uninterrupted run (cycle {cycles}, {killed} kills so far)"
            );
        }
        cycles += 1;
    }
    println!(
        "kill drill (training): {killed} kills in {cycles} run(s) ({during_writes} inside a write: a temporary \
         was left; {missed_writes} runs ended before a write was seen), every run resumed to identical weights, Adam state and counters ({} tensors)",
        a.tensors.len()
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_dataset_build_killed_midway_is_absent_or_whole() {
    let root = common::scratch("kill-dataset");
    let build = |out: &Path| {
        vec![
            "dataset".to_string(),
            "synth".into(),
            "--kind".into(),
            "clevr-simple".into(),
            "--count".into(),
            "1500".into(),
            "--resolution".into(),
            "32".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let reference = root.join("reference");
    let args = build(&reference);
    let t0 = Instant::now();
    run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let duration = t0.elapsed();

    let kills = env_or("DRILL_KILLS", 3) as usize;
    let mut rng = Rng::new(env_or("DRILL_SEED", 17) ^ 0xD5);
    let (mut killed, mut cycles) = (0, 0);
    while killed < kills || cycles == 0 {
        let out = root.join(format!("drill-{cycles}"));
        let args = build(&out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        while !out.exists() && killed < kills {
            if kill_after(&args, duration.mul_f64(0.05 + 0.95 * rng.uniform())) {
                killed += 1;
            }
            if out.exists() {
                // Whole: it opens, and its metadata parses.
                Dataset::open(&out).unwrap_or_else(|e| panic!("torn dataset after a kill: {e:#}"));
            }
        }
        if !out.exists() {
            run(&args);
        }
        // Byte for byte the uninterrupted build (dataset.json: but for the command line, which names the output).
        for entry in std::fs::read_dir(&reference).unwrap().flatten() {
            let name = entry.file_name();
            let (a, b) = (entry.path(), out.join(&name));
            if name == "dataset.json" {
                let meta = |p: &Path| {
                    let mut v: serde_json::Value =
                        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
                    v.as_object_mut().unwrap().remove("command");
                    v
                };
                assert_eq!(meta(&a), meta(&b), "dataset.json differs");
            } else {
                assert!(
                    std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                    "{name:?} differs from the uninterrupted build"
                );
            }
        }
        cycles += 1;
    }
    // No temporary left beside the builds.
    let leftovers: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
    println!(
        "kill drill (dataset): {killed} kills in {cycles} build(s), each finished identical to an uninterrupted one"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
