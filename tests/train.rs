//! The trainer on tiny models: one optimisation step, the HP switch, configuration errors, and exact resume.

mod common;
use common::{globals, lock, scratch, tiny_dataset, TinyRun};

use hessian_gan::checkpoint::{find_snapshot, load_snapshot, snapshots_in};
use hessian_gan::commands::train;
use hessian_gan::config::TrainConfig;
use hessian_gan::io::safetensors;
use hessian_gan::training::Trainer;
use serde_json::json;
use std::path::Path;

/// The common tiny model with `extra` settings.
fn tiny_config(root: &Path, extra: serde_json::Value) -> TrainConfig {
    TinyRun::new(root).with(extra).config()
}

fn trainer(root: &Path, cfg: TrainConfig) -> Trainer {
    let run_dir = root.join("results").join(format!("run-{}", cfg.hp_lambda));
    let settings = serde_json::to_value(&cfg).unwrap();
    TinyRun::new(root).with(settings).trainer(&run_dir)
}

#[test]
fn one_step_changes_parameters_with_finite_losses() {
    let _g = lock();
    let root = scratch("step");
    tiny_dataset(&root);
    for hp_lambda in [0.1, 0.0] {
        let cfg = tiny_config(&root, json!({ "hp_lambda": hp_lambda }));
        let mut t = trainer(&root, cfg);
        let before_g = t.models().g_params.flat.copy();
        let before_d = t.models().d_params.flat.copy();
        let before_gs = t.models().gs_params.flat.copy();
        t.iteration(0.5, 8, 8).unwrap();
        let m = t.models();
        assert!(!m.g_params.flat.equal(&before_g), "G did not change");
        assert!(!m.d_params.flat.equal(&before_d), "D did not change");
        // The EMA runs with the D step, before G's update (docs/spec/progan_hp.md §2.3): after one iteration Gs still equals the old G.
        assert!(m.gs_params.flat.equal(&before_gs));
        assert_eq!(t.state().cur_nimg, 8);
        assert_eq!(t.state().iteration, 1);
        t.iteration(0.5, 8, 8).unwrap();
        assert!(
            !t.models().gs_params.flat.equal(&before_gs),
            "Gs did not move toward G"
        );
        let stats = t.take_stats();
        for (k, v) in &stats {
            assert!(v.is_finite(), "{k} = {v}");
        }
        let hp = stats.iter().find(|(k, _)| k == "Loss/hessian_penalty");
        if hp_lambda > 0.0 {
            let (_, v) = hp.expect("HP logged when hp_lambda > 0");
            assert!(*v > 0.0, "the penalty of a random network is positive");
            // At lod 0.5 every regularised layer of the 8² model is active.
            for layer in [
                "4x4/Dense",
                "4x4/Conv",
                "8x8/Conv0_up",
                "8x8/Conv1",
                "images_out",
            ] {
                assert!(
                    stats
                        .iter()
                        .any(|(k, _)| k == &format!("HessianPenalties/{layer}")),
                    "{layer} missing"
                );
            }
        } else {
            assert!(hp.is_none(), "no HP term when hp_lambda is 0");
        }
        assert!(stats.iter().any(|(k, _)| k == "Loss/D"));
        // The reference's D-side scalars (docs/spec/progan_hp.md §2.7). The drift term is mean(D(x)²) per
        // iteration, so over the tick it is at least the square of the mean real score (Jensen).
        let get = |key: &str| {
            stats
                .iter()
                .find(|(k, _)| k == key)
                .unwrap_or_else(|| panic!("{key} missing"))
                .1
        };
        for key in ["Loss/scores/fake", "Loss/scores/mixed", "Loss/mixed_norms"] {
            get(key);
        }
        let real = get("Loss/scores/real");
        assert!(get("Loss/epsilon_penalty") >= real * real * (1.0 - 1e-6));
        assert!(get("Loss/mixed_norms") > 0.0);
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bf16_precision_changes_the_adversarial_passes_but_not_the_hessian_penalty() {
    // --precision bf16 (issue 8): the adversarial passes run under bfloat16 autocast, the HP passes stay float32. On
    // the same G, z and directions the logged penalty equals the float32 run's; the adversarial loss does not.
    let _g = lock();
    let root = scratch("bf16");
    tiny_dataset(&root);
    let mut logged = Vec::new();
    for precision in ["fp32", "bf16"] {
        let cfg = tiny_config(&root, json!({ "precision": precision }));
        assert_eq!(cfg.precision.name(), precision);
        let mut t = trainer(&root, cfg);
        let before = t.models().g_params.flat.copy();
        // The D step first: the penalty's weight ramps from the first image shown.
        tch::manual_seed(6);
        t.d_step(0.5, 8, 8).unwrap();
        tch::manual_seed(5);
        t.g_step(0.5, 8, true).unwrap();
        assert!(!t.models().g_params.flat.equal(&before), "G did not change");
        assert_eq!(
            t.models().g_params.flat.isfinite().all().int64_value(&[]),
            1
        );
        let stats = t.take_stats();
        let get = |key: &str| stats.iter().find(|(k, _)| k == key).unwrap().1;
        assert!(get("Loss/D").is_finite());
        logged.push((get("Loss/hessian_penalty"), get("Loss/G")));
    }
    let ((hp32, g32), (hp16, g16)) = (logged[0], logged[1]);
    assert!(hp32 > 0.0);
    assert!((hp16 - hp32).abs() / hp32 < 1e-5, "HP {hp32} vs {hp16}");
    assert!(
        (g16 - g32).abs() > 1e-7,
        "Loss/G {g32} vs {g16}: bf16 had no effect"
    );
    assert!(
        (g16 - g32).abs() / g32.abs().max(1e-3) < 0.1,
        "Loss/G {g32} vs {g16}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn infogan_adds_its_term() {
    let _g = lock();
    let root = scratch("info");
    tiny_dataset(&root);
    let cfg = tiny_config(
        &root,
        json!({ "hp_lambda": 0.0, "infogan_lambda": 1.0, "infogan_nz": 2 }),
    );
    let mut t = trainer(&root, cfg);
    t.iteration(0.0, 8, 8).unwrap();
    let stats = t.take_stats();
    let (_, mi) = stats
        .iter()
        .find(|(k, _)| k == "Loss/InfoGAN")
        .expect("InfoGAN term logged");
    assert!(mi.is_finite() && *mi > 0.0);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bad_settings_are_clear_errors() {
    let root = scratch("bad");
    let resolve = |extra: serde_json::Value| {
        let m = tiny_config(&root, json!({}));
        m.validate().unwrap();
        let mut cli = serde_json::to_value(&m)
            .unwrap()
            .as_object()
            .unwrap()
            .clone();
        cli.extend(extra.as_object().unwrap().clone());
        TrainConfig::resolve(TrainConfig::default(), None, cli)
            .unwrap_err()
            .to_string()
    };
    assert!(resolve(json!({"infogan_nz": 5, "infogan_lambda": 1.0}))
        .contains("--infogan-nz 5 exceeds --nz 3"));
    assert!(resolve(json!({"infogan_nz": 2})).contains("--infogan-lambda"));
    assert!(resolve(json!({"num_rademacher_samples": 1})).contains("--num-rademacher-samples"));
    assert!(resolve(json!({"epsilon": 0.0})).contains("--epsilon"));
    assert!(resolve(json!({"num_gpus": 3})).contains("--num-gpus 3"));
    assert!(resolve(json!({"layers_to_reg": [0]})).contains("start at 1"));
    assert!(resolve(json!({"layers_to_reg": [40]})).contains("none of these layers"));
    assert!(resolve(json!({"bogus": 1})).contains("unknown training setting 'bogus'"));
    // A preset with an unknown key names the file and the key.
    let preset = root.join("p.json");
    std::fs::write(&preset, r#"{"hp_lambdaa": 0.1}"#).unwrap();
    let err = TrainConfig::resolve(TrainConfig::default(), Some(&preset), Default::default())
        .unwrap_err();
    assert!(
        err.to_string().contains("p.json") && err.to_string().contains("hp_lambdaa"),
        "{err}"
    );
    // Every shipped preset resolves, as its model's configuration.
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")).unwrap() {
        let path = entry.unwrap().path();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if hessian_gan::config::infogan_cr::is_cr_config(&json) {
            use hessian_gan::config::infogan_cr::CrConfig;
            CrConfig::resolve(CrConfig::default(), Some(&path), Default::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            continue;
        }
        TrainConfig::resolve(TrainConfig::default(), Some(&path), Default::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn presets_match_the_reference_scripts() {
    let cfg = |name: &str| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .join(format!("{name}.json"));
        TrainConfig::resolve(TrainConfig::default(), Some(&p), Default::default()).unwrap()
    };
    let c = cfg("clevr_simple_hp");
    assert_eq!(
        (c.hp_lambda, c.warmup_kimg, c.nz, c.total_kimg, c.num_gpus),
        (0.1, 0.0, 12, 50000.0, 4)
    );
    assert_eq!(
        c.run_description(),
        "hessian_penalty_clevr_simple_nz-12_w-0.1"
    );
    let u = cfg("clevr_u_hp");
    assert_eq!(
        (u.dataset.as_str(), u.nz, u.hp_lambda),
        ("clevr_simple", 3, 0.025)
    );
    assert_eq!(cfg("clevr_1fov_hp").hp_lambda, 0.025);
    for (name, k) in [
        ("edges_and_shoes", 12),
        ("clevr_simple", 4),
        ("clevr_complex", 10),
        ("clevr_1fov", 1),
        ("clevr_u", 3),
    ] {
        let i = cfg(&format!("{name}_infogan"));
        assert_eq!(
            (i.infogan_nz, i.infogan_lambda, i.hp_lambda),
            (k, 1.0, 0.0),
            "{name}"
        );
        assert_eq!(cfg(&format!("{name}_vanilla")).hp_lambda, 0.0);
    }
    assert_eq!(
        cfg("clevr_simple_vanilla").run_description(),
        "progan_clevr_simple_nz-12"
    );
    assert_eq!(
        cfg("clevr_complex_infogan").run_description(),
        "infogan_clevr_complex_nz-12_inz-10"
    );
}

fn run(root: &Path, extra: serde_json::Value) -> TinyRun {
    TinyRun::new(root).with(extra)
}

#[test]
fn resumed_run_reaches_the_same_weights() {
    let _g = lock();
    let root = scratch("resume");
    tiny_dataset(&root);
    // Uninterrupted: 2 kimg with a snapshot every tick (1 kimg).
    let tiny = run(&root, json!({}));
    let run_a = tiny.train();
    let snaps = snapshots_in(&run_a).unwrap();
    let names: Vec<String> = snaps
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "network-snapshot-000001.safetensors",
            "network-snapshot-000002.safetensors"
        ]
    );
    for f in [
        "config.json",
        "log.txt",
        "reals.png",
        "fakes000000.png",
        "z.npy",
        "_finished.txt",
    ] {
        assert!(run_a.join(f).exists(), "{f} missing");
    }
    // Resume from the first snapshot (run 0 at 1 kimg) into a new run directory, to the same total.
    let mut args = tiny.request();
    args.resume_exp = Some(0);
    args.resume_snapshot = "1".into();
    let run_b = tiny.train_with(args);
    assert_eq!(run_b, tiny.run_dir(1));
    let (a, meta_a) =
        safetensors::load(&run_a.join("network-snapshot-000002.safetensors")).unwrap();
    let (b, meta_b) =
        safetensors::load(&run_b.join("network-snapshot-000002.safetensors")).unwrap();
    assert_eq!(a.len(), b.len());
    for (name, ta) in &a {
        let tb = &b[name];
        assert!(
            ta.equal(tb),
            "{name} differs after resume (max |Δ| {})",
            (ta - tb).abs().max().double_value(&[])
        );
    }
    let state = |m: &std::collections::HashMap<String, String>| {
        serde_json::from_str::<serde_json::Value>(&m["state"]).unwrap()["cur_nimg"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(state(&meta_a), state(&meta_b));
    // Resuming past the end is refused with a clear message.
    let mut args = tiny.request();
    args.resume_exp = Some(0);
    let err = train::run(&globals(), &args).unwrap_err().to_string();
    assert!(err.contains("--total-kimg"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn fine_tuning_a_vanilla_run_ramps_the_penalty_from_the_resume_point() {
    let _g = lock();
    let root = scratch("finetune");
    tiny_dataset(&root);
    run(&root, json!({"hp_lambda": 0.0, "total_kimg": 1})).train();
    let finetune = run(
        &root,
        json!({"hp_lambda": 0.1, "warmup_kimg": 10, "total_kimg": 2}),
    );
    let mut args = finetune.request();
    args.resume_exp = Some(0);
    let run_b = finetune.train_with(args);
    let log = std::fs::read_to_string(run_b.join("log.txt")).unwrap();
    assert!(
        log.contains("fine-tuning a run without HP: the penalty ramps from 0 at 1.0 kimg"),
        "{log}"
    );
    // 1 kimg after the resume point with a 10 kimg ramp: weight ≈ 0.1 × (1024 + …)/10000.
    let (_, meta) = safetensors::load(&find_snapshot(&run_b, "latest").unwrap()).unwrap();
    let state: serde_json::Value = serde_json::from_str(&meta["state"]).unwrap();
    assert!(
        (state["hp_start_kimg"].as_f64().unwrap() - 1.024).abs() < 1e-9,
        "{state}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_collapse_guard_warns_when_gs_ignores_z_and_stays_silent_on_a_healthy_run() {
    let _g = lock();
    let root = scratch("collapse");
    tiny_dataset(&root);
    let warning = "barely depends on z";
    // A healthy vanilla run.
    let healthy = TinyRun::new(&root)
        .with(json!({"hp_lambda": 0.0, "total_kimg": 3}))
        .train();
    let log = std::fs::read_to_string(healthy.join("log.txt")).unwrap();
    assert!(!log.contains(warning), "{log}");

    // A collapsed one: G and Gs zeroed, so every z gives the same image, and a learning rate too small to undo it.
    let tiny = TinyRun::new(&root)
        .with(json!({"hp_lambda": 0.0, "learning_rate": 1e-12, "total_kimg": 3}));
    let run_dir = root.join("results").join("collapsed");
    let mut t = tiny.trainer(&run_dir);
    tch::no_grad(|| {
        let _ = t.models().g_params.flat.shallow_clone().zero_();
        let _ = t.models().gs_params.flat.shallow_clone().zero_();
    });
    t.train().unwrap();
    drop(t);
    let log = std::fs::read_to_string(run_dir.join("log.txt")).unwrap();
    assert_eq!(log.matches(warning).count(), 1, "warned once: {log}");
    for flag in [
        "--hp-lambda",
        "--warmup-kimg",
        "--layers-to-reg",
        "--resume-exp",
    ] {
        assert!(log.contains(flag), "the warning names {flag}: {log}");
    }
    // TensorBoard has the measurement.
    assert!(common::events_text(&run_dir).contains("Progress/diversity"));
}

#[test]
fn a_grey_dataset_trains_one_channel_networks_and_its_snapshot_does_not_resume_on_rgb() {
    let _g = lock();
    let root = scratch("grey");
    tiny_dataset(&root);
    let opts = hessian_gan::data::synth::SynthOptions {
        kind: hessian_gan::data::synth::Kind::Dsprites,
        count: 64,
        resolution: 8,
        seed: 5,
        name: Some("grey".into()),
    };
    hessian_gan::data::synth::generate(&root.join("datasets").join("grey"), &opts).unwrap();
    let tiny = run(&root, json!({"dataset": "grey", "total_kimg": 1}));
    let run_dir = tiny.train();
    let snap = find_snapshot(&run_dir, "latest").unwrap();
    let loaded = hessian_gan::checkpoint::load_snapshot(&snap).unwrap();
    assert_eq!(loaded.config.num_channels, 1);
    let net = loaded.config.net();
    assert_eq!(net.num_channels, 1);
    // ToRGB of the 8² block maps nf(2) = fmap_base 32 / 2² = 8 channels to 1: its weight is [1, 8, 1, 1].
    let to_rgb = loaded
        .tensors
        .iter()
        .find(|(k, _)| k.starts_with("Gs/") && k.contains("ToRGB_lod0") && k.ends_with("weight"))
        .map(|(_, t)| t.size())
        .expect("a ToRGB_lod0 weight in the snapshot");
    assert_eq!(to_rgb, vec![1, 8, 1, 1]);
    let fakes = image::open(run_dir.join("fakes000001.png"))
        .unwrap()
        .to_rgb8();
    assert!(
        fakes.pixels().all(|p| p[0] == p[1] && p[1] == p[2]),
        "grey fakes"
    );

    // Resuming it on the RGB dataset is a clear error.
    let mut request = run(&root, json!({"dataset": "tiny", "total_kimg": 2})).request();
    request.resume = Some(snap);
    let err = format!("{:#}", train::run(&globals(), &request).unwrap_err());
    assert!(
        err.contains("has 3 channel(s)") && err.contains("was trained on 1"),
        "{err}"
    );
}

#[test]
fn non_finite_gradients_are_skipped_logged_and_stop_the_run_at_the_last_good_snapshot() {
    // Issue 17: an absurd λ from 1 kimg on makes every G gradient non-finite. The updates are skipped and logged,
    // the run stops after max_consecutive_skips naming its last good snapshot (1 kimg), and a resume from it with a
    // sane λ trains on.
    let _g = lock();
    let root = scratch("nonfinite");
    tiny_dataset(&root);
    let tiny = run(
        &root,
        json!({"hp_lambda": 1e38, "hp_start_kimg": 1.0, "total_kimg": 3, "max_consecutive_skips": 16}),
    );
    let err = match train::run(&globals(), &tiny.request()) {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("a run with non-finite gradients must stop"),
    };
    let good = tiny.run_dir(0).join("network-snapshot-000001.safetensors");
    assert!(
        err.contains("consecutive updates of G had non-finite gradients")
            && err.contains(&format!("The last good snapshot is {}", good.display())),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    let log = std::fs::read_to_string(tiny.run_dir(0).join("log.txt")).unwrap();
    assert!(
        log.contains("updates skipped for non-finite gradients") && log.contains(&err),
        "the skips and the stop are in log.txt:\n{log}"
    );
    // The snapshot named verifies and resumes, with a sane penalty, to the end.
    let snap = load_snapshot(&good).unwrap();
    assert_eq!(snap.state.cur_nimg / 1000, 1);
    let mut request = run(&root, json!({"hp_lambda": 0.1, "total_kimg": 2})).request();
    request.resume = Some(good);
    let resumed = run(&root, json!({})).train_with(request);
    assert!(resumed.join("_finished.txt").exists());
}
