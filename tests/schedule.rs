//! The training schedule against the reference's tables (docs/spec/progan_hp.md §2.2, §2.4, §2.6, §3.3 point 6).

use hessian_gan::core::schedule::{hp_layer_gate, hp_weight, ScheduleConfig};

fn paper() -> ScheduleConfig {
    ScheduleConfig::default()
}

#[test]
fn lod_resolution_and_minibatch_follow_the_table() {
    let s = paper();
    // (kimg, λ, data resolution, total minibatch on 4 GPUs) — docs/spec/progan_hp.md §2.2's table, including both ends of every phase.
    let table = [
        (0.0, 5.0, 4, 2048),
        (300.0, 5.0, 4, 2048),
        (600.0, 5.0, 4, 2048),
        (900.0, 4.5, 8, 1024),
        (1200.0, 4.0, 8, 1024),
        (1800.0, 4.0, 8, 1024),
        (2100.0, 3.5, 16, 512),
        (2400.0, 3.0, 16, 512),
        (3300.0, 2.5, 32, 256),
        (3600.0, 2.0, 32, 256),
        (4500.0, 1.5, 64, 128),
        (4800.0, 1.0, 64, 128),
        (5700.0, 0.5, 128, 96),
        (6000.0, 0.0, 128, 96),
        (50000.0, 0.0, 128, 96),
    ];
    for (kimg, lod, res, mb) in table {
        let p = s.at((kimg * 1000.0) as u64);
        assert!(
            (p.lod - lod).abs() < 1e-12,
            "kimg {kimg}: lod {} != {lod}",
            p.lod
        );
        assert_eq!(p.resolution, res, "kimg {kimg}");
        assert_eq!(p.minibatch, mb, "kimg {kimg}");
    }
    assert_eq!(s.at(6_000_000).tick_kimg, 60.0);
    assert_eq!(s.at(0).tick_kimg, 160.0);
    assert_eq!(s.at(1_000_000).tick_kimg, 140.0);
}

#[test]
fn num_gpus_scales_the_total_and_keeps_the_per_gpu_batch() {
    for (gpus, total_128) in [(1, 24), (2, 48), (4, 96), (8, 192)] {
        let s = ScheduleConfig {
            num_gpus: gpus,
            ..paper()
        };
        assert_eq!(s.minibatch(128), total_128);
        // Per-GPU (per-chunk) batch is constant across GPU counts: 512, 256, 128, 64, 32, 24 (docs/spec/progan_hp.md §2.1).
        let per: Vec<i64> = [4, 8, 16, 32, 64, 128]
            .iter()
            .map(|&r| s.minibatch(r) / gpus)
            .collect();
        assert_eq!(per, vec![512, 256, 128, 64, 32, 24]);
        s.validate().unwrap();
    }
    let s = paper();
    assert_eq!(
        s.minibatch(1024),
        32,
        "resolutions missing from the table use minibatch_base"
    );
}

#[test]
fn ema_beta_matches_the_half_life() {
    let s = paper();
    assert!(
        (s.ema_beta(96) - 0.99337).abs() < 5e-6,
        "{}",
        s.ema_beta(96)
    );
    assert!(
        (s.ema_beta(2048) - 0.86766).abs() < 5e-6,
        "{}",
        s.ema_beta(2048)
    );
    assert_eq!(
        ScheduleConfig {
            g_smoothing_kimg: 0.0,
            ..paper()
        }
        .ema_beta(96),
        0.0
    );
}

#[test]
fn hp_weight_ramps_from_the_start_point() {
    // From scratch (warmup 0): full weight from the first image.
    assert_eq!(hp_weight(0.1, 0.0, 0.0, 0), 0.0, "t ≤ s gives 0");
    assert_eq!(hp_weight(0.1, 0.0, 0.0, 1), 0.1);
    // The CLI default warmup of 10000 kimg: linear ramp.
    assert!((hp_weight(0.1, 0.0, 10000.0, 5_000_000) - 0.05).abs() < 1e-12);
    assert_eq!(hp_weight(0.1, 0.0, 10000.0, 20_000_000), 0.1);
    // Fine-tune shift: start at 6000 kimg, ramp over 10000.
    assert_eq!(hp_weight(0.1, 6000.0, 10000.0, 6_000_000), 0.0);
    assert!((hp_weight(0.1, 6000.0, 10000.0, 8_500_000) - 0.025).abs() < 1e-12);
    assert_eq!(hp_weight(0.0, 0.0, 0.0, 10_000_000), 0.0);
}

#[test]
fn layer_gates_follow_the_table() {
    // docs/spec/progan_hp.md §3.3 point 6: (layer resolution, starts at kimg, full weight from kimg) at 128².
    let s = paper();
    let rows = [
        (4, 0.0, 0.0),
        (8, 600.0, 1200.0),
        (16, 1800.0, 2400.0),
        (32, 3000.0, 3600.0),
        (64, 4200.0, 4800.0),
        (128, 5400.0, 6000.0),
    ];
    for (res, start, full) in rows {
        let gate = |kimg: f64| hp_layer_gate(7, res, s.lod(kimg));
        if start > 0.0 {
            assert_eq!(gate(start), 0.0, "res {res} at its start {start}");
            assert_eq!(gate(start - 100.0), 0.0, "res {res} before its start");
            assert!(
                (gate((start + full) / 2.0) - 0.5).abs() < 1e-12,
                "res {res} halfway"
            );
        }
        assert_eq!(gate(full), 1.0, "res {res} at {full}");
        assert_eq!(gate(50000.0), 1.0, "res {res} at the end");
    }
    // At 32² (R = 5), layers at 32² have req 1.
    assert_eq!(hp_layer_gate(5, 32, 0.0), 1.0);
    assert_eq!(hp_layer_gate(5, 32, 1.0), 0.0);
}

#[test]
fn small_schedules_and_validation() {
    let s = ScheduleConfig {
        resolution: 32,
        lod_training_kimg: 3.0,
        lod_transition_kimg: 3.0,
        num_gpus: 2,
        minibatch_overrides: [(4, 32), (8, 32), (16, 32), (32, 32)].into_iter().collect(),
        ..paper()
    };
    s.validate().unwrap();
    assert_eq!(s.max_lod(), 3.0);
    assert_eq!(s.at(0).resolution, 4);
    assert_eq!(s.at(4_500).lod, 2.5);
    assert_eq!(s.at(4_500).resolution, 8);
    assert_eq!(s.at(18_000).lod, 0.0);
    assert_eq!(s.at(18_000).minibatch, 32);

    let err = ScheduleConfig {
        num_gpus: 3,
        ..paper()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("--num-gpus 3"), "{err}");
    let err = ScheduleConfig {
        resolution: 100,
        ..paper()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("--resolution 100"), "{err}");
    let bad = ScheduleConfig {
        minibatch_overrides: [(128, 10)].into_iter().collect(),
        ..paper()
    };
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("128²") && err.contains("chunks"), "{err}");
}
