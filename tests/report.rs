//! `report`: a study's summary from score ticks, checked on hand-written metrics files with known statistics.

mod common;

use hessian_gan::commands::report::{self, ReportOptions};
use serde_json::{json, Value};
use std::path::Path;

/// A score tick as `train --score-ticks` writes it (only the fields `report` reads, plus the header's lod).
fn tick(run: &Path, kimg: u32, lod: f64, fvae: f64, fd: f64, diversity: f64) {
    std::fs::create_dir_all(run).unwrap();
    let doc = json!({
        "kimg": kimg as f64 + 0.04, "lod": lod, "diversity_ratio": diversity,
        "scores": {
            "factor_vae_z": fvae, "effect_disentanglement": 0.1, "effect_max": 0.5,
            "predictor_frechet_distance": fd,
            "scores": {"mig": 0.05, "dci_lasso_disentanglement": 0.2},
        },
    });
    std::fs::write(
        run.join(format!("network-snapshot-{kimg:06}-metrics.json")),
        doc.to_string(),
    )
    .unwrap();
}

#[test]
fn the_table_holds_each_arms_last_tick_as_mean_and_sample_std_over_seeds() {
    let root = common::scratch("report");
    let (v1, v2, h1) = (
        root.join("vanilla-s1"),
        root.join("vanilla-s2"),
        root.join("hp-s1"),
    );
    // A growing-phase tick (lod 1) is left out of tables and curves.
    tick(&v1, 4, 1.0, 0.1, 5000.0, 4.0);
    tick(&v1, 6, 0.0, 0.5, 80.0, 1.0);
    tick(&v1, 8, 0.0, 0.6, 70.0, 0.9);
    tick(&v2, 6, 0.0, 0.4, 90.0, 1.1);
    tick(&v2, 8, 0.0, 0.8, 60.0, 0.7);
    tick(&h1, 10, 0.0, 0.25, 100.0, 0.3);
    // A snapshot without scores (a plain snapshot tick) is not a tick.
    std::fs::write(
        v1.join("network-snapshot-000010-metrics.json"),
        json!({"kimg": 10.0, "lod": 0.0}).to_string(),
    )
    .unwrap();
    let diag = root.join("diag.json");
    std::fs::write(
        &diag,
        json!({"models": [
            {"path": h1.join("network-snapshot-000010.safetensors"),
             "fraction_max_on_diagonal": 0.8, "relative_diagonal_strength": 2.5},
            {"path": "/elsewhere/network-snapshot-000001.safetensors",
             "fraction_max_on_diagonal": 0.1, "relative_diagonal_strength": 0.1},
        ]})
        .to_string(),
    )
    .unwrap();
    let manifest = root.join("runs.jsonl");
    let line = |arm: &str, seed: u32, run: &Path, parent: &str| {
        json!({"dataset": "clevr-simple", "arm": arm, "seed": seed, "run": run, "parent": parent})
            .to_string()
    };
    std::fs::write(
        &manifest,
        [
            line("vanilla", 2, &v2, ""),
            line("vanilla", 1, &v1, ""),
            line("hp", 1, &h1, v1.to_str().unwrap()),
        ]
        .join("\n"),
    )
    .unwrap();
    let out = root.join("out");
    let r = report::run(&ReportOptions {
        manifest: manifest.clone(),
        out: out.clone(),
        diag: vec![diag],
    })
    .unwrap();

    let arms = &r.datasets["clevr-simple"];
    assert_eq!(
        arms.iter().map(|a| a.arm.as_str()).collect::<Vec<_>>(),
        ["vanilla", "hp"]
    );
    let vanilla = &arms[0];
    assert_eq!(vanilla.seeds, [1, 2]);
    let (values, stat) = &vanilla.last[0];
    assert_eq!(values, &[0.6, 0.8]);
    let stat = stat.unwrap();
    assert!((stat.mean - 0.7).abs() < 1e-12);
    assert!((stat.std - 0.02f64.sqrt()).abs() < 1e-12);
    // FactorVAE's curve: kimg 6 and 8 (the lod-1 tick is gone), each the mean of both seeds.
    let curve = &vanilla.curves[0];
    assert_eq!(curve.len(), 2);
    assert!((curve[0].0 - 6.0).abs() < 1e-9 && (curve[0].1 - 0.45).abs() < 1e-12);
    assert!((curve[1].1 - 0.7).abs() < 1e-12);
    assert!(vanilla.diag_fraction.is_none());
    // The fine-tuning arm's curve continues its parent's.
    let hp = &arms[1];
    let kimgs: Vec<f64> = hp.curves[0].iter().map(|p| p.0.round()).collect();
    assert_eq!(kimgs, [6.0, 8.0, 10.0]);
    assert_eq!(hp.last[0].1.unwrap().std, 0.0);
    assert_eq!(hp.diag_fraction.unwrap().mean, 0.8);
    assert_eq!(hp.diag_strength.unwrap().mean, 2.5);

    let md = std::fs::read_to_string(out.join("study.md")).unwrap();
    assert!(md.contains("| vanilla | 2 | 8 | 0.700 ± 0.141 |"), "{md}");
    assert!(md.contains("| 65.0 ± 7.1 |"), "the FD column: {md}");
    assert!(md.contains("| hp | 1 | 10 | 0.250 ± 0.000 |"), "{md}");
    assert!(
        md.contains("| – | – |\n"),
        "vanilla has no Table 2 numbers: {md}"
    );
    assert!(md.contains("| 0.800 ± 0.000 | 2.500 ± 0.000 |"), "{md}");
    assert!(md.contains("![clevr-simple](study-clevr-simple.png)"));
    let png = image::open(out.join("study-clevr-simple.png")).unwrap();
    assert_eq!(
        (png.width(), png.height()),
        (3 * 560, 3 * 400),
        "7 measures on 3 columns"
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("study.json")).unwrap()).unwrap();
    assert_eq!(json["measures"][0], "factor_vae_z");
    assert_eq!(json["datasets"]["clevr-simple"][1]["arm"], "hp");
}

#[test]
fn a_bad_manifest_gets_one_line_that_names_it() {
    let root = common::scratch("report-bad");
    let manifest = root.join("runs.jsonl");
    std::fs::write(&manifest, "\n").unwrap();
    let opts = ReportOptions {
        manifest: manifest.clone(),
        out: root.join("out"),
        diag: vec![],
    };
    let err = format!("{:#}", report::run(&opts).unwrap_err());
    assert!(
        err.contains("lists no runs") && err.contains("runs.jsonl"),
        "{err}"
    );
    std::fs::write(
        &manifest,
        "{\"dataset\":\"d\",\"arm\":\"a\",\"seed\":1,\"run\":\"r\"}\nnot json\n",
    )
    .unwrap();
    let err = format!("{:#}", report::run(&opts).unwrap_err());
    assert!(err.contains("runs.jsonl line 2"), "{err}");
    let missing = ReportOptions {
        manifest: root.join("nope.jsonl"),
        ..opts
    };
    let err = format!("{:#}", report::run(&missing).unwrap_err());
    assert!(err.contains("nope.jsonl"), "{err}");
}
