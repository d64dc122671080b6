//! `select` (docs/spec/geometry_infogancr.md §B.2) on InfoGAN-CR snapshots written by the test: identical models
//! tie on every selector, the report's matrices have the documented structure, and bad input (one run, a model
//! without an encoder, models with different code counts) fails with a clear message.

mod common;

use hessian_gan::checkpoint::infogan_cr::{save_snapshot, CrModels, CrState};
use hessian_gan::commands::select::{self, SelectOptions};
use hessian_gan::config::infogan_cr::CrConfig;
use hessian_gan::data::synth::{self, Kind as SynthKind, SynthOptions};
use hessian_gan::metrics::encoder::EncoderOptions;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use tch::Device;

/// A 32² dSprites dataset with factors under `root/datasets/dsp`.
fn dataset(root: &Path) -> PathBuf {
    let out = root.join("datasets").join("dsp");
    synth::generate(
        &out,
        &SynthOptions {
            kind: SynthKind::Dsprites,
            count: 200,
            resolution: 32,
            seed: 9,
            name: Some("dsp".into()),
        },
    )
    .unwrap();
    out
}

/// An untrained InfoGAN-CR snapshot (weights from `seed`) of `codes` codes.
fn snapshot(root: &Path, name: &str, seed: i64, codes: i64) -> PathBuf {
    let settings: Map<String, Value> = json!({
        "dataset": root.join("datasets").join("dsp"),
        "resolution": 32,
        "codes": codes,
        "seed": seed,
    })
    .as_object()
    .unwrap()
    .clone();
    let cfg = CrConfig::resolve(CrConfig::default(), None, settings).unwrap();
    tch::manual_seed(seed);
    let models = CrModels::new(&cfg, Device::Cpu);
    let path = root.join(format!("{name}.safetensors"));
    save_snapshot(&path, &models, &cfg, &CrState::default()).unwrap();
    path
}

fn options(root: &Path, runs: &[&Path]) -> SelectOptions {
    SelectOptions {
        runs: runs.iter().map(|p| p.display().to_string()).collect(),
        results_dir: root.join("results"),
        groups: 10,
        group_size: 10,
        std_samples: 60,
        udr_samples: 60,
        batch: 25,
        encoder: EncoderOptions {
            samples: 200,
            groups: 10,
            dhsic_rows: 100,
            ..EncoderOptions::default()
        },
        ..SelectOptions::default()
    }
}

#[test]
fn identical_models_tie_and_the_report_holds_every_matrix() {
    let _guard = common::lock();
    let root = common::scratch("select-tie");
    dataset(&root);
    let a = snapshot(&root, "a", 1, 5);
    let b = snapshot(&root, "b", 2, 5);
    let report = select::run(&common::globals(), &options(&root, &[&a, &a, &b, &a])).unwrap();
    let m = &report.models;
    assert_eq!(m.len(), 4);
    // The copies of a read the same probe sets with the same encoder: equal scores on every selector.
    for i in [1, 3] {
        assert_eq!(m[i].model_centrality, m[0].model_centrality);
        assert_eq!(m[i].udr_lasso, m[0].udr_lasso);
        assert_eq!(m[i].udr_spearman, m[0].udr_spearman);
        assert_eq!(
            m[i].own.as_ref().unwrap().factor_vae,
            m[0].own.as_ref().unwrap().factor_vae
        );
    }
    // C's columns of the copies are equal; (C + Cᵀ)/2 is symmetric; MC is its off-diagonal row mean.
    for (i, model) in m.iter().enumerate() {
        assert_eq!(report.cross[i][1], report.cross[i][0]);
        for j in 0..4 {
            assert_eq!(report.symmetric[i][j], report.symmetric[j][i]);
            assert!((0.0..=1.0).contains(&report.cross[i][j]));
        }
        let mean: f64 = (0..4)
            .filter(|&j| j != i)
            .map(|j| report.symmetric[i][j])
            .sum::<f64>()
            / 3.0;
        assert!((mean - model.model_centrality).abs() < 1e-12);
        assert_eq!(report.udr_lasso_pairs[i][i], 0.0);
    }
    // With ground truth every selector's pick has a regret in [0, 1]; ties go to the first model.
    assert_eq!(report.picks.len(), 3);
    for p in &report.picks {
        let r = p.regret.unwrap();
        assert!((0.0..=1.0).contains(&r), "{p:?}");
        assert_eq!(p.best_factor_vae.unwrap() - p.factor_vae.unwrap(), r);
    }
    let ranked: Vec<f64> = report
        .ranking
        .iter()
        .map(|&i| m[i].model_centrality)
        .collect();
    let mut sorted = ranked.clone();
    sorted.sort_by(|x, y| y.total_cmp(x));
    assert_eq!(ranked, sorted);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(&report.json).unwrap()).unwrap();
    assert_eq!(json["models"].as_array().unwrap().len(), 4);
    assert!(report.figure.exists() && report.figure.with_extension("svg").exists());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bad_input_is_named() {
    let _guard = common::lock();
    let root = common::scratch("select-bad");
    dataset(&root);
    let a = snapshot(&root, "a", 1, 5);
    let four = snapshot(&root, "four", 3, 4);
    let err = |runs: &[&Path]| {
        format!(
            "{:#}",
            select::run(&common::globals(), &options(&root, runs)).unwrap_err()
        )
    };
    assert!(err(&[&a]).contains("at least two"), "{}", err(&[&a]));
    let e = err(&[&a, &four]);
    assert!(
        e.contains("has 4 codes") && e.contains("one configuration"),
        "{e}"
    );
    // A ProGAN run without a Q head has no encoder.
    let run = common::TinyRun::new(&root)
        .with(json!({"hp_lambda": 0.0, "total_kimg": 0.016, "minibatch": {"4": 16, "8": 16}}))
        .train();
    let progan = hessian_gan::checkpoint::snapshots_in(&run)
        .unwrap()
        .pop()
        .unwrap();
    let e = err(&[&a, &progan]);
    assert!(e.contains("no Q head"), "{e}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn score_reads_infogan_cr_models_through_their_q_head() {
    use hessian_gan::commands::score::{self, ModelScoreOptions, ScoreMethod, ScoreOptions};
    let _guard = common::lock();
    let root = common::scratch("score-cr");
    dataset(&root);
    let a = snapshot(&root, "a", 1, 5);
    let opts = |method| ScoreOptions {
        dhsic_rows: 100,
        models: ModelScoreOptions {
            models: vec![a.display().to_string()],
            results_dir: root.join("results"),
            method,
            encoder: EncoderOptions {
                samples: 200,
                groups: 10,
                ..EncoderOptions::default()
            },
            ..ModelScoreOptions::default()
        },
        ..ScoreOptions::default()
    };
    let reports = score::run(&common::globals(), &opts(ScoreMethod::Auto)).unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].method, "q-head");
    let fv = reports[0].factor_vae.unwrap();
    assert!((0.0..=1.0).contains(&fv));
    assert_eq!(reports[0].record["kind"], "infogan-cr");
    assert!(hessian_gan::metrics::suite::beside(&a, "scores.json").exists());
    let err = score::run(&common::globals(), &opts(ScoreMethod::Free)).unwrap_err();
    assert!(format!("{err:#}").contains("Q head"), "{err:#}");
    std::fs::remove_dir_all(&root).unwrap();
}
