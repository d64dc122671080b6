//! `score --models` end to end on tiny trained models (encoder-free and the Q head), its records and pictures, its
//! errors, and `train --score-ticks`.

mod common;

use common::{globals, lock, scratch, TinyRun};
use hessian_gan::commands::score::{self, ModelScoreOptions, ScoreMethod, ScoreOptions};
use hessian_gan::data::synth::{self, Kind as SynthKind, SynthOptions};
use hessian_gan::data::writer::DatasetWriter;
use hessian_gan::metrics::encoder::EncoderOptions;
use hessian_gan::metrics::encoder_free::EncoderFreeOptions;
use hessian_gan::metrics::predictor::PredictorOptions;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Small counts: a few seconds per model on 2 cores.
fn options(root: &Path, models: Vec<String>) -> ScoreOptions {
    ScoreOptions {
        dhsic_rows: 100,
        models: ModelScoreOptions {
            models,
            snapshot_kimgs: vec!["latest".into()],
            datasets_dir: root.join("datasets"),
            results_dir: root.join("results"),
            pretrained_dir: root.join("pretrained"),
            cache_dir: root.join("cache"),
            free: EncoderFreeOptions {
                samples: 300,
                groups: 9,
                group_size: 12,
                effect_bases: 4,
                effect_steps: 5,
                batch: 64,
                ..EncoderFreeOptions::default()
            },
            encoder: EncoderOptions {
                samples: 300,
                groups: 8,
                group_size: 10,
                batch: 64,
                ..EncoderOptions::default()
            },
            predictor: PredictorOptions {
                steps: 40,
                ..PredictorOptions::default()
            },
            ..ModelScoreOptions::default()
        },
        ..ScoreOptions::default()
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Eight grey 8² images without factors under `root/datasets/plain`.
fn plain_dataset(root: &Path) -> PathBuf {
    let plain = root.join("datasets").join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let mut w = DatasetWriter::create(&plain, "plain", 8, 3, Vec::new()).unwrap();
    for i in 0..8u8 {
        w.push(&[i * 20; 3 * 8 * 8], None).unwrap();
    }
    w.finish("test", "test").unwrap();
    plain
}

fn snapshot(run_dir: &Path) -> PathBuf {
    hessian_gan::checkpoint::find_snapshot(run_dir, "latest").unwrap()
}

#[test]
fn scores_of_models_are_recorded_drawn_and_compared() {
    let _g = lock();
    let root = scratch("models");
    let vanilla = TinyRun::new(&root).with(json!({"hp_lambda": 0.0})).train();
    let info = TinyRun::new(&root)
        .with(json!({"hp_lambda": 0.0, "infogan_nz": 2, "infogan_lambda": 1.0}))
        .train();

    // One model without a Q head: the encoder-free row only.
    let opts = options(&root, vec![vanilla.display().to_string()]);
    let reports = score::run(&globals(), &opts).unwrap();
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(r.method, "encoder-free");
    let free = &r.record["encoder_free"];
    // nz 3 components × the 4 factors of clevr-simple, each entry a fraction of the factor's range.
    let effect = free["effect"].as_array().unwrap();
    assert_eq!(effect.len(), 3);
    for row in effect {
        assert_eq!(row.as_array().unwrap().len(), 4);
        for v in row.as_array().unwrap() {
            let v = v.as_f64().unwrap();
            assert!((0.0..=1.0 + 1e-9).contains(&v), "effect {v}");
        }
    }
    let largest = effect
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .fold(0.0f64, f64::max);
    assert_eq!(free["effect_max"].as_f64().unwrap(), largest);
    assert_eq!(free["samples"], json!(300));
    assert_eq!(free["predictor_quality"].as_array().unwrap().len(), 4);
    let votes: u64 = free["factor_vae_z_votes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(votes, 9, "every group votes once");
    let fv = r.factor_vae.unwrap();
    assert!((0.0..=1.0).contains(&fv), "FactorVAE on z groups {fv}");
    let snap = snapshot(&vanilla);
    let beside = |suffix: &str| hessian_gan::metrics::suite::beside(&snap, suffix);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(beside("scores.json")).unwrap()).unwrap();
    assert_eq!(written["encoder_free"]["effect"], free["effect"]);
    for png in ["effect.png", "mi.png"] {
        let img = image::open(beside(png)).unwrap();
        assert!(img.width() > 200 && img.height() > 200, "{png}");
    }
    assert!(!beside("q-mi.png").exists(), "no Q head, no Q picture");
    let jsonl = root.join("results").join("scores.jsonl");
    assert_eq!(lines(&jsonl).len(), 1);
    // The predictor was cached, keyed by the dataset fingerprint and resolution.
    let cached: Vec<_> = std::fs::read_dir(root.join("cache").join("predictors"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1);

    // Both models: the InfoGAN one also through its Q head, with groups rendered by the synthetic renderer;
    // the same seed gives the vanilla model the same numbers; a chart compares them.
    let opts = options(
        &root,
        vec![vanilla.display().to_string(), info.display().to_string()],
    );
    let reports = score::run(&globals(), &opts).unwrap();
    let methods: Vec<&str> = reports.iter().map(|r| r.method).collect();
    assert_eq!(methods, ["encoder-free", "encoder-free", "q-head"]);
    assert_eq!(reports[0].record["encoder_free"], *free, "deterministic");
    let q = &reports[2].record["q_head"];
    assert_eq!(q["groups"], json!(8));
    assert!(q["group_images"].as_str().unwrap().contains("clevr-simple"));
    assert_eq!(q["std_images"], json!(6), "10 % of the 64 images");
    let qs = &reports[2].scores;
    assert_eq!(qs.mi.len(), 2, "infogan_nz 2 codes");
    assert!(reports[2].factor_vae.is_some() && qs.beta_vae.is_some());
    assert!(hessian_gan::metrics::suite::beside(&snapshot(&info), "q-mi.png").exists());
    assert_eq!(lines(&jsonl).len(), 3, "one line per model and run");
    let chart = image::open(root.join("results").join("scores.png")).unwrap();
    assert!(chart.width() >= 720);
    assert!(root.join("results").join("scores.svg").exists());

    // --method q needs a Q head.
    let mut q_only = options(&root, vec![vanilla.display().to_string()]);
    q_only.models.method = ScoreMethod::Q;
    let err = format!("{:#}", score::run(&globals(), &q_only).unwrap_err());
    assert!(
        err.contains("no Q head") && err.contains("--method free"),
        "{err}"
    );
}

#[test]
fn a_dataset_without_factors_or_at_too_low_a_resolution_is_refused() {
    let _g = lock();
    let root = scratch("refused");
    let run = TinyRun::new(&root).with(json!({"hp_lambda": 0.0})).train();

    // Images without factors.
    let plain = plain_dataset(&root);
    let mut opts = options(&root, vec![run.display().to_string()]);
    opts.models.dataset = Some(plain.display().to_string());
    let err = format!("{:#}", score::run(&globals(), &opts).unwrap_err());
    assert!(
        err.contains("plain") && err.contains("no ground-truth factors"),
        "{err}"
    );

    // Factors, but only at 4²: the 8² model cannot be read at its resolution.
    let small = root.join("datasets").join("small");
    synth::generate(
        &small,
        &SynthOptions {
            kind: SynthKind::ClevrSimple,
            count: 16,
            resolution: 4,
            seed: 1,
            name: Some("small".into()),
        },
    )
    .unwrap();
    opts.models.dataset = Some(small.display().to_string());
    let err = format!("{:#}", score::run(&globals(), &opts).unwrap_err());
    assert!(err.contains("--resolution 8"), "{err}");

    // Both codes and models.
    let mut both = options(&root, vec![run.display().to_string()]);
    both.codes = Some(root.join("c.npy"));
    both.factors = Some(root.join("f.npy"));
    let err = format!("{:#}", score::run(&globals(), &both).unwrap_err());
    assert!(err.contains("not both"), "{err}");
}

#[test]
fn score_ticks_record_disentanglement_during_training() {
    let _g = lock();
    let root = scratch("ticks");
    let run = TinyRun::new(&root)
        .with(json!({
            "score_ticks": 2,
            "score_samples": 120,
            "score_groups": 6,
            "metrics_options": {"cache_dir": root.join("cache")},
        }))
        .train();
    // Ticks 1 and 2 (due at the first tick, every 2nd and at the end): kimg 1 and 2.
    let log = std::fs::read_to_string(run.join("log.txt")).unwrap();
    assert_eq!(log.matches("scores kimg").count(), 2, "{log}");
    assert!(log.contains("effect_disentanglement"), "{log}");
    let jsonl = lines(&root.join("results").join("scores.jsonl"));
    assert_eq!(jsonl.len(), 2);
    assert!(jsonl[1]["kimg"].as_f64().unwrap() >= 2.0, "{}", jsonl[1]);
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(hessian_gan::metrics::suite::beside(
            &snapshot(&run),
            "metrics.json",
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(metrics["scores"]["samples"], json!(120));
    let text = common::events_text(&run);
    for tag in [
        "Scores/mig",
        "Scores/factor_vae",
        "Scores/effect_disentanglement",
    ] {
        assert!(text.contains(tag), "{tag} missing from TensorBoard");
    }

    // A dataset without factors fails before the first iteration.
    plain_dataset(&root);
    let request = TinyRun::new(&root)
        .with(json!({"score_ticks": 1, "dataset": "plain"}))
        .request();
    let err = format!(
        "{:#}",
        hessian_gan::commands::train::run(&globals(), &request).unwrap_err()
    );
    assert!(
        err.contains("--score-ticks") && err.contains("no ground-truth factors"),
        "{err}"
    );
}
