//! InfoGAN-CR training (docs/spec/geometry_infogancr.md §B.1): exact resume, the spectral-norm vectors move once per
//! iteration, H is re-initialised at the schedule's changes, the "InfoGAN (modified)" baseline snapshot, the
//! losses' analytic values, and the `train` command's dispatch and errors.

mod common;

use hessian_gan::checkpoint::infogan_cr::{load_snapshot, snapshot_name, CrModels};
use hessian_gan::checkpoint::snapshots_in;
use hessian_gan::commands::train::{self, TrainOutcome, TrainRequest};
use hessian_gan::config::infogan_cr::CrConfig;
use hessian_gan::data::synth::{self, Kind as SynthKind, SynthOptions};
use hessian_gan::data::Dataset;
use hessian_gan::training::infogan_cr::{gaussian_nll, CrTrainer};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// 64 dSprites images at 32² under `root/datasets/dsp`.
fn dataset(root: &Path) -> PathBuf {
    let out = root.join("datasets").join("dsp");
    if !out.join("dataset.json").exists() {
        let opts = SynthOptions {
            kind: SynthKind::Dsprites,
            count: 64,
            resolution: 32,
            seed: 3,
            name: Some("dsp".into()),
        };
        synth::generate(&out, &opts).unwrap();
    }
    out
}

/// A tiny recipe: 32², batches of 8, CR from iteration 4, snapshots every 3 iterations.
fn tiny(root: &Path, extra: Value) -> CrConfig {
    let mut settings: Map<String, Value> = json!({
        "dataset": dataset(root),
        "results_dir": root.join("results"),
        "resolution": 32,
        "batch": 8,
        "cr_batch": 8,
        "iterations": 8,
        "cr_coe_increase_batch": 4,
        "log_every": 4,
        "image_every": 0,
        "snapshot_every": 3,
        "seed": 5
    })
    .as_object()
    .unwrap()
    .clone();
    settings.extend(extra.as_object().unwrap().clone());
    CrConfig::resolve(CrConfig::default(), None, settings).unwrap()
}

fn trainer(root: &Path, cfg: CrConfig, run: &str, resume: Option<&Path>) -> CrTrainer {
    hessian_gan::io::log::init(log::LevelFilter::Error);
    let ds = Arc::new(Dataset::open(&dataset(root)).unwrap());
    let run_dir = root.join(run);
    std::fs::create_dir_all(&run_dir).unwrap();
    let resumed = resume.map(|p| load_snapshot(p).unwrap());
    CrTrainer::new(cfg, Device::Cpu, ds, run_dir, resumed).unwrap()
}

fn tensors(models: &CrModels) -> Vec<(String, Tensor)> {
    models
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect()
}

fn assert_identical(a: &[(String, Tensor)], b: &[(String, Tensor)]) {
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs");
    }
}

#[test]
fn a_resumed_run_is_bit_identical_to_an_uninterrupted_one() {
    let _guard = common::lock();
    let root = common::scratch("cr-resume");
    let cfg = tiny(&root, json!({}));
    let mut whole = trainer(&root, cfg.clone(), "whole", None);
    whole.train().unwrap();
    assert_eq!(whole.state().iteration, 8);
    let reference = tensors(whole.models());

    // The same run stopped after 5 iterations (a snapshot after 3, and the baseline before CR starts at 4), then
    // resumed from the baseline snapshot and from the one after 3 iterations.
    let first = tiny(&root, json!({"iterations": 5}));
    trainer(&root, first, "first", None).train().unwrap();
    let snaps: Vec<String> = snapshots_in(&root.join("first"))
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        snaps,
        [snapshot_name(3), snapshot_name(4), snapshot_name(5)],
        "every 3 iterations, the baseline before the first CR increase, and the end"
    );
    for from in [3, 4] {
        let snap = root.join("first").join(snapshot_name(from));
        let loaded = load_snapshot(&snap).unwrap();
        assert_eq!(loaded.state.iteration, from);
        let mut resumed = trainer(&root, cfg.clone(), &format!("resumed{from}"), Some(&snap));
        resumed.train().unwrap();
        assert_identical(&tensors(resumed.models()), &reference);
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn spectral_norm_vectors_move_every_iteration_and_h_restarts_at_the_schedule() {
    let _guard = common::lock();
    let root = common::scratch("cr-steps");
    let cfg = tiny(&root, json!({"iterations": 6}));
    let mut t = trainer(&root, cfg, "run", None);
    let u_vectors = |t: &CrTrainer| -> Vec<(String, Tensor)> {
        tensors(t.models())
            .into_iter()
            .filter(|(n, _)| n.ends_with("sn_u"))
            .collect()
    };
    let before = u_vectors(&t);
    // The trunk's 3 convolutions and dense layer, D's head and Q's two layers; H's trunk (its head has no SN).
    assert_eq!(
        before.iter().filter(|(n, _)| n.starts_with("D/")).count(),
        7
    );
    assert_eq!(
        before.iter().filter(|(n, _)| n.starts_with("H/")).count(),
        4
    );
    t.iteration().unwrap();
    let after = u_vectors(&t);
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        assert!(!a.equal(b), "{name} did not move in an iteration");
    }
    // H's Adam counts its steps; the re-initialisation at iteration 4 (cr_coe 0 → 2) starts it again, with new
    // weights.
    let h_weights = |t: &CrTrainer| t.models().h_params.flat.detach().copy();
    for _ in 1..4 {
        t.iteration().unwrap();
    }
    assert_eq!(t.models().opt_h.step.double_value(&[]), 4.0);
    let trained = h_weights(&t);
    t.iteration().unwrap();
    assert_eq!(
        t.models().opt_h.step.double_value(&[]),
        1.0,
        "fresh Adam state, one step since"
    );
    let restarted = h_weights(&t);
    // One Adam step moves each weight by at most lr·(1 + rounding): far less than the distance to new draws.
    let moved = (&restarted - &trained).abs().max().double_value(&[]);
    assert!(moved > 0.05, "H was re-drawn: largest change {moved}");
    assert_eq!(
        t.models().opt_g.step.double_value(&[]),
        10.0,
        "two G steps per iteration"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn gaussian_nll_is_the_unit_variance_log_density() {
    let q = Tensor::from_slice(&[0.0f32, 1.0, -1.0, 0.5]).view([2, 2]);
    let c = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.5]).view([2, 2]);
    // Row 0: ½·1 + ½·0; row 1: ½·1 + ½·0; plus ½·ln 2π per code.
    let expected = 0.5 + (2.0 * std::f64::consts::PI).ln();
    let got = gaussian_nll(&q, &c).double_value(&[]);
    assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    assert_eq!(gaussian_nll(&q, &q).kind(), Kind::Float);
}

#[test]
fn the_train_command_runs_infogan_cr_and_names_bad_settings() {
    let _guard = common::lock();
    let root = common::scratch("cr-command");
    let mut overrides: Map<String, Value> =
        serde_json::to_value(tiny(&root, json!({"iterations": 2})))
            .unwrap()
            .as_object()
            .unwrap()
            .clone();
    overrides.insert("model".into(), json!("infogan-cr"));
    let request = TrainRequest {
        overrides: overrides.clone(),
        resume_snapshot: "latest".into(),
        ..Default::default()
    };
    let run_dir = match train::run(&common::globals(), &request).unwrap() {
        TrainOutcome::Trained { run_dir } => run_dir,
        TrainOutcome::DryRun { .. } => panic!("not a dry run"),
    };
    assert!(run_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with("infogan-cr_dsp_cr-0_info-0.05"));
    assert!(run_dir.join("_finished.txt").exists() && run_dir.join("reals.png").exists());
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model"], "infogan-cr");
    assert_eq!(config["channels"], 1);

    // --resume-exp finds the model from the run's config.json.
    let mut more = Map::new();
    more.insert("iterations".into(), json!(3));
    more.insert("results_dir".into(), json!(root.join("results")));
    let resume = TrainRequest {
        overrides: more,
        resume_exp: Some(0),
        resume_snapshot: "2".into(),
        ..Default::default()
    };
    let TrainOutcome::Trained { run_dir } = train::run(&common::globals(), &resume).unwrap() else {
        panic!("trains")
    };
    assert!(run_dir.join(snapshot_name(3)).exists());

    // Settings of the other model, and bad values, are named.
    let mut bad = overrides.clone();
    bad.insert("hp_lambda".into(), json!(0.1));
    let err = train::run(
        &common::globals(),
        &TrainRequest {
            overrides: bad,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("unknown InfoGAN-CR setting 'hp_lambda'"),
        "{err:#}"
    );
    let mut bad = overrides;
    bad.insert("model".into(), json!("vae"));
    let err = train::run(
        &common::globals(),
        &TrainRequest {
            overrides: bad,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("--model vae"), "{err:#}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_progan_trainer_takes_cr_resumes_it_exactly_and_restarts_h_when_it_turns_on() {
    use hessian_gan::io::safetensors;
    let _guard = common::lock();
    let root = common::scratch("progan-cr");
    common::tiny_dataset(&root);
    // CR on 3 codes from 1 kimg, with a gap until 1.5 kimg; 2 kimg in all, a snapshot every kimg.
    let tiny = common::TinyRun::new(&root).with(json!({
        "hp_lambda": 0.0,
        "cr_lambda": 1.0,
        "cr_start_kimg": 1.0,
        "cr_gap": 0.5,
        "cr_gap_end_kimg": 1.5,
    }));
    let cfg = tiny.config();
    assert_eq!(cfg.cr_code_count(), 3, "all of nz without InfoGAN");
    assert_eq!(cfg.run_description(), "progan_tiny_nz-3_cr-1");
    assert_eq!(
        [0, 999, 1000, 1499, 1500].map(|n| cfg.cr_weight_and_gap(n)),
        [(0.0, 0.5), (0.0, 0.5), (1.0, 0.5), (1.0, 0.5), (1.0, 0.0)]
    );
    let run_a = tiny.train();
    let log = std::fs::read_to_string(run_a.join("log.txt")).unwrap();
    assert!(log.contains("H re-initialised"), "{log}");
    assert!(common::events_text(&run_a).contains("Loss/CR"));
    let last = run_a.join("network-snapshot-000002.safetensors");
    let (a, _) = safetensors::load(&last).unwrap();
    assert!(a.keys().any(|k| k.starts_with("H/")) && a.contains_key("opt_H/step"));
    // H restarted at 1 kimg (CR on) and at 1.5 kimg (gap ends): its Adam counts the steps since the last restart,
    // one per iteration of 8 images: about 500/8, not the 1000/8 since 1 kimg (the loop ends on a group of 4).
    let steps_since = a["opt_H/step"].double_value(&[]);
    assert!((60.0..=68.0).contains(&steps_since), "{steps_since}");
    // Resumed from 1 kimg, the run reaches the same tensors, H and its Adam included.
    let mut args = tiny.request();
    args.resume_exp = Some(0);
    args.resume_snapshot = "1".into();
    let run_b = tiny.train_with(args);
    let (b, _) = safetensors::load(&run_b.join("network-snapshot-000002.safetensors")).unwrap();
    assert_eq!(a.len(), b.len());
    for (name, ta) in &a {
        assert!(ta.equal(&b[name]), "{name} differs after resume");
    }
    // Without CR there is no H.
    let plain = common::TinyRun::new(&root).with(json!({"hp_lambda": 0.0, "total_kimg": 1}));
    let run_c = plain.train();
    let (c, _) = safetensors::load(&run_c.join("network-snapshot-000001.safetensors")).unwrap();
    assert!(!c
        .keys()
        .any(|k| k.starts_with("H/") || k.starts_with("opt_H")));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn score_ticks_score_q_on_the_dataset() {
    let _guard = common::lock();
    let root = common::scratch("cr-score-ticks");
    let cfg = tiny(
        &root,
        json!({"iterations": 3, "score_ticks": 1, "score_samples": 100, "score_groups": 5}),
    );
    let mut t = trainer(&root, cfg, "run", None);
    t.train().unwrap();
    let snapshot = root.join("run").join(snapshot_name(3));
    let scores: Value = serde_json::from_str(
        &std::fs::read_to_string(hessian_gan::metrics::suite::beside(
            &snapshot,
            "scores.json",
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(scores["iteration"], 3);
    let fv = scores["scores"]["scores"]["factor_vae"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&fv));
    assert!(common::events_text(&root.join("run")).contains("Scores/MIG"));
    std::fs::remove_dir_all(&root).unwrap();
}
