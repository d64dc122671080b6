//! The ProGAN "paper" networks (docs/spec/progan_hp.md §1, §15.1, §15.3–§15.5): parameter counts, HP layer numbering and
//! shapes, lod blending against the reference's "linear" formulation, minibatch stddev and pixel norm on hand-made
//! inputs, the fused-conv import rules, and the equalised-LR scale.

use hessian_gan::core::networks::tf_compat::{
    tf_conv2d_downscale2d, tf_name_to_tch, tf_upscale2d_conv2d, tf_weight_to_tch,
};
use hessian_gan::core::networks::{
    check_minibatch, minibatch_stddev, param_count, param_count_prefix, pixel_norm, summary,
    Discriminator, EqConv2d, EqDense, Generator, NetConfig,
};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use tch::{nn, Device, Kind, Tensor};

/// libtorch's generator is global and tests run on several threads: every test that draws holds this lock.
static RNG: Mutex<()> = Mutex::new(());

fn seed(s: i64) -> MutexGuard<'static, ()> {
    let guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(s);
    guard
}

const SQRT2: f64 = std::f64::consts::SQRT_2;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a - b).abs().max().double_value(&[])
}

fn assert_close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
    let d = max_abs_diff(a, b);
    assert!(d <= tol, "{what}: max |a − b| = {d:e} > {tol:e}");
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// A small model with channel changes: 16², nf(0..2) = 16, nf(3) = 8.
fn tiny(infogan_nz: i64) -> NetConfig {
    NetConfig {
        resolution: 16,
        nz: 5,
        num_channels: 3,
        fmap_base: 64,
        fmap_max: 16,
        infogan_nz,
    }
}

fn randn(shape: &[i64], kind: Kind) -> Tensor {
    Tensor::randn(shape, (kind, Device::Cpu))
}

// ---------------------------------------------------------------------------------------------------------------
// Parameter counts and the summary (docs/spec/progan_hp.md §1.5)

#[test]
fn parameter_counts_at_128_match_the_paper_networks() {
    let _rng = seed(1);
    let base = NetConfig::default();
    assert_eq!(
        base,
        NetConfig {
            resolution: 128,
            nz: 12,
            num_channels: 3,
            fmap_base: 8192,
            fmap_max: 512,
            infogan_nz: 0
        }
    );
    assert_eq!(
        (0..=8).map(|s| base.nf(s)).collect::<Vec<_>>(),
        [512, 512, 512, 512, 512, 256, 128, 64, 32]
    );

    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = NetConfig {
        infogan_nz: 3,
        ..base.clone()
    };
    let g = Generator::new(&(vs.root() / "G"), &cfg);
    let d = Discriminator::new(&(vs.root() / "D"), &cfg);
    assert_eq!(g.num_params(), 18_837_394);
    assert_eq!(param_count_prefix(&vs, "G"), 18_837_394);
    assert_eq!(d.num_params(), 22_941_313);
    assert_eq!(d.q_num_params(), 6_554_624 + 513 * 3);
    assert_eq!(
        param_count_prefix(&vs, "D.4x4.Q_Encoder"),
        6_554_624 + 513 * 3
    );
    assert_eq!(
        param_count_prefix(&vs, "D"),
        22_941_313 + 6_554_624 + 513 * 3
    );
    assert_eq!(
        param_count(&vs),
        18_837_394 + 22_941_313 + 6_554_624 + 513 * 3
    );
    assert!(d.has_q_head());

    // Names follow the TF variables with '.' for '/', and the stored shapes are tch layouts.
    let vars = vs.variables();
    let shape = |n: &str| {
        vars.get(n)
            .unwrap_or_else(|| panic!("no variable {n}"))
            .size()
    };
    assert_eq!(shape("G.4x4.Dense.weight"), [8192, 12]);
    assert_eq!(shape("G.4x4.Dense.bias"), [512]);
    assert_eq!(shape("G.8x8.Conv0_up.weight"), [512, 512, 3, 3]);
    assert_eq!(shape("G.128x128.Conv0_up.weight"), [128, 256, 3, 3]);
    assert_eq!(shape("G.128x128.Conv1.bias"), [128]);
    assert_eq!(shape("G.ToRGB_lod0.weight"), [3, 128, 1, 1]);
    assert_eq!(shape("G.ToRGB_lod5.weight"), [3, 512, 1, 1]);
    assert_eq!(shape("D.FromRGB_lod0.weight"), [128, 3, 1, 1]);
    assert_eq!(shape("D.128x128.Conv1_down.weight"), [256, 128, 3, 3]);
    assert_eq!(shape("D.4x4.Conv.weight"), [512, 513, 3, 3]);
    assert_eq!(shape("D.4x4.Dense0.weight"), [512, 8192]);
    assert_eq!(shape("D.4x4.Dense1.weight"), [1, 512]);
    assert_eq!(shape("D.4x4.Q_Encoder.Dense1.weight"), [3, 512]);
    assert_eq!(vars.len(), 2 * (2 + 2 * 5 + 6) + 2 * (6 + 2 * 5 + 3 + 3));

    // Equalised LR: weights ~ N(0, 1) as stored, biases zero.
    let w = &vars["G.64x64.Conv1.weight"];
    let (m, s) = (
        w.mean(Kind::Double).double_value(&[]),
        w.std(true).double_value(&[]),
    );
    assert!(
        m.abs() < 0.01 && (s - 1.0).abs() < 0.01,
        "stored weight mean {m}, std {s}"
    );
    assert_eq!(
        vars["D.4x4.Dense0.bias"]
            .abs()
            .sum(Kind::Double)
            .double_value(&[]),
        0.0
    );
}

#[test]
fn summary_lists_layers_and_the_totals() {
    let _rng = seed(2);
    let s = summary(&NetConfig::default()).unwrap();
    for needle in [
        "4x4/Dense",
        "128x128/Conv1",
        "ToRGB_lod0",
        "FromRGB_lod5",
        "4x4/MinibatchStddev",
        "513×4×4",
        "G total",
        "18,837,394",
        "D total",
        "22,941,313",
    ] {
        assert!(s.contains(needle), "summary lacks {needle:?}:\n{s}");
    }
    assert!(!s.contains("Q head"), "no Q head without infogan_nz:\n{s}");
    // The HP layer numbers sit next to G's layers.
    let hp_line = |n: &str, name: &str| {
        s.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 2 && f[0] == n && f[1] == name
        })
    };
    assert!(
        hp_line("1", "4x4/Dense")
            && hp_line("11", "128x128/Conv0_up")
            && hp_line("13", "images_out")
    );
    let q = summary(&NetConfig {
        nz: 3,
        infogan_nz: 1,
        ..NetConfig::default()
    })
    .unwrap();
    for needle in [
        "18,763,666",
        "22,941,313",
        "Q head total",
        "6,555,137",
        "4x4/Q_Encoder/Dense1",
    ] {
        assert!(q.contains(needle), "summary lacks {needle:?}:\n{q}");
    }
    let bad = summary(&NetConfig {
        resolution: 100,
        ..NetConfig::default()
    });
    assert!(bad.unwrap_err().to_string().contains("--resolution 100"));
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration and HP layer numbering (docs/spec/progan_hp.md §1.3, §3.3 point 6, §15.1, §15.2)

#[test]
fn hp_layers_at_128_follow_the_reference_table() {
    let cfg = NetConfig::default();
    assert_eq!(cfg.log2_res(), 7);
    assert_eq!(cfg.num_hp_layers(), 13);
    let table: [(&str, [i64; 3], i64); 13] = [
        ("4x4/Dense", [512, 4, 4], 6),
        ("4x4/Conv", [512, 4, 4], 6),
        ("8x8/Conv0_up", [512, 8, 8], 5),
        ("8x8/Conv1", [512, 8, 8], 5),
        ("16x16/Conv0_up", [512, 16, 16], 4),
        ("16x16/Conv1", [512, 16, 16], 4),
        ("32x32/Conv0_up", [512, 32, 32], 3),
        ("32x32/Conv1", [512, 32, 32], 3),
        ("64x64/Conv0_up", [256, 64, 64], 2),
        ("64x64/Conv1", [256, 64, 64], 2),
        ("128x128/Conv0_up", [128, 128, 128], 1),
        ("128x128/Conv1", [128, 128, 128], 1),
        ("images_out", [3, 128, 128], 1),
    ];
    for (i, (name, shape, req)) in table.iter().enumerate() {
        let l = i + 1;
        assert_eq!(cfg.hp_layer_name(l), *name, "layer {l}");
        assert_eq!(cfg.hp_layer_shape(l), shape.to_vec(), "layer {l}");
        assert_eq!(cfg.hp_layer_resolution(l), shape[1], "layer {l}");
        assert_eq!(cfg.hp_layer_req(l), *req, "layer {l}");
    }
    assert!(cfg.check_hp_layers(&[1, 13]).is_ok());
    let e = cfg.check_hp_layers(&[3, 14]).unwrap_err().to_string();
    assert!(
        e.contains("--layers-to-reg 14") && e.contains("1..=13"),
        "{e}"
    );
    assert!(cfg.check_hp_layers(&[0]).is_err());
}

#[test]
fn hp_layers_at_128_have_the_table_shapes_when_run() {
    // The paper's widths at 128² are too slow for a unit test; a narrow model at the same resolution runs the same
    // code path, and its shapes must follow the same formula.
    let _rng = seed(3);
    let cfg = NetConfig {
        fmap_base: 256,
        fmap_max: 16,
        ..NetConfig::default()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let g = Generator::new(&vs.root(), &cfg);
    let z = randn(&[1, 12], Kind::Float);
    let layers: Vec<usize> = (1..=13).collect();
    let acts = tch::no_grad(|| g.hp_layers(&z, 0.0, &layers, true));
    assert_eq!(acts.len(), 13);
    let widths = [16, 16, 16, 16, 16, 16, 16, 16, 8, 8, 4, 4, 3];
    for (i, a) in acts.iter().enumerate() {
        let l = i + 1;
        let want = cfg.hp_layer_shape(l);
        assert_eq!(want[0], widths[i], "layer {l} width");
        assert_eq!(a.size(), [1, want[0], want[1], want[2]], "layer {l}");
    }
}

#[test]
fn layer_numbering_at_32_has_nine_layers_with_rgb_last() {
    let cfg = NetConfig {
        resolution: 32,
        ..NetConfig::default()
    };
    assert_eq!(cfg.num_hp_layers(), 9);
    let names: Vec<String> = (1..=9).map(|l| cfg.hp_layer_name(l)).collect();
    assert_eq!(
        names,
        [
            "4x4/Dense",
            "4x4/Conv",
            "8x8/Conv0_up",
            "8x8/Conv1",
            "16x16/Conv0_up",
            "16x16/Conv1",
            "32x32/Conv0_up",
            "32x32/Conv1",
            "images_out"
        ]
    );
    assert_eq!(cfg.hp_layer_shape(9), [3, 32, 32]);
    // docs/spec/progan_hp.md §15.2: req = R − log2(res) + 1 with R = 5.
    assert_eq!(
        (1..=9).map(|l| cfg.hp_layer_req(l)).collect::<Vec<_>>(),
        [4, 4, 3, 3, 2, 2, 1, 1, 1]
    );
    // At 64² layer 9 is a convolution.
    let c64 = NetConfig {
        resolution: 64,
        ..NetConfig::default()
    };
    assert_eq!(c64.hp_layer_name(9), "64x64/Conv0_up");
    assert_eq!(c64.hp_layer_name(11), "images_out");
    assert!(cfg.check_hp_layers(&[10]).is_err());
}

#[test]
fn config_validation_names_the_flag() {
    let ok = NetConfig::default();
    assert!(ok.validate().is_ok());
    assert!(tiny(5).validate().is_ok());
    let cases: [(NetConfig, &str); 6] = [
        (
            NetConfig {
                resolution: 100,
                ..ok.clone()
            },
            "--resolution 100",
        ),
        (
            NetConfig {
                resolution: 4,
                ..ok.clone()
            },
            "--resolution 4",
        ),
        (
            NetConfig {
                nz: 0,
                ..ok.clone()
            },
            "--nz 0",
        ),
        (
            NetConfig {
                infogan_nz: 13,
                ..ok.clone()
            },
            "--infogan-nz 13",
        ),
        (
            NetConfig {
                fmap_base: 32,
                ..ok.clone()
            },
            "--fmap-base 32",
        ),
        (
            NetConfig {
                fmap_max: 0,
                ..ok.clone()
            },
            "--fmap-max 0",
        ),
    ];
    for (cfg, needle) in cases {
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "{needle}: {e}");
        assert!(!e.contains('\n'), "one-line error: {e}");
    }
    // The config round-trips through JSON, and missing keys take the paper's defaults.
    let json = serde_json::to_string(&tiny(2)).unwrap();
    assert_eq!(serde_json::from_str::<NetConfig>(&json).unwrap(), tiny(2));
    let partial: NetConfig = serde_json::from_str(r#"{"resolution": 64, "nz": 3}"#).unwrap();
    assert_eq!(
        partial,
        NetConfig {
            resolution: 64,
            nz: 3,
            ..NetConfig::default()
        }
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Primitive operations (docs/spec/progan_hp.md §1.2)

#[test]
fn pixel_norm_rescales_each_pixel_to_unit_rms() {
    // [N=2, C=2]: (3, 4) has mean square 12.5; (0, 0) stays 0 thanks to ε.
    let x = Tensor::from_slice(&[3.0f64, 4.0, 0.0, 0.0]).view([2, 2]);
    let y = values(&pixel_norm(&x));
    let d = (12.5f64 + 1e-8).sqrt();
    let want = [3.0 / d, 4.0 / d, 0.0, 0.0];
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() < 1e-14, "{y:?} vs {want:?}");
    }
    // NCHW: normalised over channels, separately per pixel.
    let x = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 6.0]).view([1, 2, 1, 2]); // pixel 0: (1, 3); pixel 1: (2, 6)
    let y = values(&pixel_norm(&x));
    let (d0, d1) = ((5.0f64 + 1e-8).sqrt(), (20.0f64 + 1e-8).sqrt());
    let want = [1.0 / d0, 2.0 / d1, 3.0 / d0, 6.0 / d1];
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() < 1e-14, "{y:?} vs {want:?}");
    }
}

/// `x` of shape [N, 1, 1, 1] from values.
fn column(v: &[f64]) -> Tensor {
    Tensor::from_slice(v).view([v.len() as i64, 1, 1, 1])
}

fn extra_channel(y: &Tensor) -> Vec<f64> {
    let c = y.size()[1];
    values(
        &y.narrow(1, c - 1, 1)
            .mean_dim(&[2i64, 3][..], false, None::<Kind>),
    )
}

fn assert_vec_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (a, b) in got.iter().zip(want) {
        assert!((a - b).abs() <= tol, "{what}: got {got:?}, want {want:?}");
    }
}

#[test]
fn minibatch_stddev_on_hand_made_batches() {
    let sd = |var: f64| (var + 1e-8).sqrt();

    // One group of 4, two channels and two pixels: per-element biased variances averaged over C, H, W.
    // Sample b has channel 0 = (b, b) and channel 1 = (2b, 0): variances 1.25, 1.25, 5, 0.
    let mut v = Vec::new();
    for b in 0..4 {
        let b = b as f64;
        v.extend([b, b, 2.0 * b, 0.0]);
    }
    let x = Tensor::from_slice(&v).view([4, 2, 1, 2]);
    let y = minibatch_stddev(&x, 4, 1);
    assert_eq!(y.size(), [4, 3, 1, 2]);
    assert_close(
        &y.narrow(1, 0, 2),
        &x,
        0.0,
        "the input channels are kept, in front",
    );
    let s = (2.0 * sd(1.25) + sd(5.0) + sd(0.0)) / 4.0;
    assert_vec_close(&extra_channel(&y), &[s; 4], 1e-12, "single group");

    // N = 8, group 4, M = 2: sample b joins group b mod 2 (strided, not contiguous).
    let x = column(&[0.0, 10.0, 1.0, 20.0, 2.0, 30.0, 3.0, 40.0]);
    let y = minibatch_stddev(&x, 4, 1);
    // group 0 = {0, 1, 2, 3}: var 1.25; group 1 = {10, 20, 30, 40}: var 125.
    let (a, b) = (sd(1.25), sd(125.0));
    assert_vec_close(
        &extra_channel(&y),
        &[a, b, a, b, a, b, a, b],
        1e-12,
        "strided groups",
    );

    // Same batch in 2 chunks of 4: one group per chunk, {0, 10, 1, 20} and {2, 30, 3, 40}.
    // Chunk 0: mean 7.75, squared deviations 60.0625 + 5.0625 + 45.5625 + 150.0625 = 260.75 → var 65.1875.
    // Chunk 1: mean 18.75, 280.5625 + 126.5625 + 248.0625 + 451.5625 = 1106.75 → var 276.6875.
    let y = minibatch_stddev(&x, 4, 2);
    let (a, b) = (sd(65.1875), sd(276.6875));
    assert_vec_close(
        &extra_channel(&y),
        &[a, a, a, a, b, b, b, b],
        1e-12,
        "2 chunks",
    );

    // 3 chunks of 2: the group shrinks to min(4, 2) = 2; var of a pair is ((a − b)/2)².
    let x = column(&[0.0, 10.0, 1.0, 20.0, 2.0, 30.0]);
    let y = minibatch_stddev(&x, 4, 3);
    let (a, b, c) = (sd(25.0), sd(90.25), sd(196.0));
    assert_vec_close(
        &extra_channel(&y),
        &[a, a, b, b, c, c],
        1e-12,
        "3 chunks of 2",
    );

    // Identical samples: sqrt(0 + 1e-8) = 1e-4.
    let y = minibatch_stddev(&column(&[7.0; 4]), 4, 1);
    assert_vec_close(&extra_channel(&y), &[1e-4; 4], 1e-15, "ε");

    // Float input stays float.
    assert_eq!(
        minibatch_stddev(&x.to_kind(Kind::Float), 4, 3).kind(),
        Kind::Float
    );

    // Batches that do not split are refused with a message.
    assert!(check_minibatch(8, 2, 4).is_ok());
    assert!(check_minibatch(96, 4, 4).is_ok());
    assert!(check_minibatch(6, 4, 4)
        .unwrap_err()
        .to_string()
        .contains("--num-gpus"));
    assert!(check_minibatch(6, 1, 4)
        .unwrap_err()
        .to_string()
        .contains("group size 4"));
}

#[test]
fn equalised_lr_keeps_unit_input_at_the_gain() {
    let _rng = seed(4);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    // G's dense gain √2/4 (docs/spec/progan_hp.md §1.2 quotes the resulting scales).
    let g12 = EqDense::new(&(&root / "g12"), 12, 8, 8, SQRT2 / 4.0);
    let g3 = EqDense::new(&(&root / "g3"), 3, 8, 8, SQRT2 / 4.0);
    assert!((g12.scale - 0.10206).abs() < 1e-5 && (g3.scale - 0.20412).abs() < 1e-5);

    // Unit-variance input → output standard deviation ≈ gain, for a dense and a conv layer.
    let dense = EqDense::new(&(&root / "dense"), 512, 512, 512, SQRT2);
    let x = randn(&[512, 512], Kind::Float);
    let sd = tch::no_grad(|| dense.forward(&x))
        .std(true)
        .double_value(&[]);
    assert!((sd - SQRT2).abs() < 0.03 * SQRT2, "dense: std {sd}");
    let conv = EqConv2d::new(&(&root / "conv"), 128, 64, 3, 1.0);
    let x = randn(&[8, 128, 18, 18], Kind::Float);
    // Interior pixels only (the zero padding lowers the border).
    let y = tch::no_grad(|| conv.forward(&x))
        .narrow(2, 1, 16)
        .narrow(3, 1, 16);
    let sd = y.std(true).double_value(&[]);
    assert!((sd - 1.0).abs() < 0.03, "conv: std {sd}");
    assert!((conv.scale - 1.0 / (128.0f64 * 9.0).sqrt()).abs() < 1e-15);
}

// ---------------------------------------------------------------------------------------------------------------
// The fused resampling convolutions and the weight-import rule (docs/spec/progan_hp.md §1.2, §1.7, §15.5)

#[test]
fn fused_up_conv_is_nearest_up_plus_conv_with_the_rotated_kernel() {
    let _rng = seed(5);
    let x = randn(&[2, 3, 5, 4], Kind::Double);
    let w_tf = randn(&[3, 3, 3, 4], Kind::Double); // TF layout [kh, kw, in, out]
    let fused = tf_upscale2d_conv2d(&x, &w_tf);
    assert_eq!(fused.size(), [2, 4, 10, 8]);
    let ours = tf_weight_to_tch("8x8/Conv0_up/weight", &w_tf).unwrap();
    assert_eq!(ours.size(), [4, 3, 3, 3]);
    let up = x.upsample_nearest2d([10, 8], None, None);
    let conv = |w: &Tensor| up.conv2d(w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
    assert_close(&conv(&ours), &fused, 1e-12, "rotated kernel");
    // Without the rotation it is a different operation (the kernel is not symmetric).
    let unrotated = w_tf.permute([3, 2, 0, 1]);
    assert!(max_abs_diff(&conv(&unrotated), &fused) > 0.1);

    // First principles for the transposed convolution: with 1 channel, out[2i + a − 1, 2j + b − 1] += x[i, j]·K[a, b]
    // where K is the 4×4 sum of the four shifts of the zero-padded 3×3 kernel.
    let k3 = randn(&[3, 3], Kind::Double);
    let xs = randn(&[3, 3], Kind::Double);
    let (k3v, xv) = (values(&k3), values(&xs));
    let mut k4 = [[0.0f64; 4]; 4];
    for (a, row) in k4.iter_mut().enumerate() {
        for (b, v) in row.iter_mut().enumerate() {
            for (da, db) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                // padded[p][q] = k3[p − 1][q − 1]; shift (da, db) reads padded[a + da][b + db].
                let (p, q) = (a + da, b + db);
                if (1..=3).contains(&p) && (1..=3).contains(&q) {
                    *v += k3v[(p - 1) * 3 + (q - 1)];
                }
            }
        }
    }
    let mut out = [[0.0f64; 6]; 6];
    for i in 0..3 {
        for j in 0..3 {
            for (a, krow) in k4.iter().enumerate() {
                for (b, k) in krow.iter().enumerate() {
                    let (p, q) = (2 * i + a, 2 * j + b);
                    if (1..=6).contains(&p) && (1..=6).contains(&q) {
                        out[p - 1][q - 1] += xv[i * 3 + j] * k;
                    }
                }
            }
        }
    }
    let brute: Vec<f64> = out.iter().flatten().copied().collect();
    let got = values(&tf_upscale2d_conv2d(
        &xs.view([1, 1, 3, 3]),
        &k3.view([3, 3, 1, 1]),
    ));
    assert_vec_close(&got, &brute, 1e-12, "transposed conv by hand");
}

#[test]
fn fused_down_conv_is_conv_plus_average_pool_with_the_same_kernel() {
    let _rng = seed(6);
    let x = randn(&[2, 3, 8, 6], Kind::Double);
    let w_tf = randn(&[3, 3, 3, 5], Kind::Double);
    let fused = tf_conv2d_downscale2d(&x, &w_tf);
    assert_eq!(fused.size(), [2, 5, 4, 3]);
    let ours = tf_weight_to_tch("16x16/Conv1_down/weight", &w_tf).unwrap();
    let y = x
        .conv2d(&ours, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)
        .avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None);
    assert_close(&y, &fused, 1e-12, "conv + pool");
}

#[test]
fn tf_import_rules_for_names_and_layouts() {
    assert_eq!(
        tf_name_to_tch("4x4/Q_Encoder/Dense1/bias"),
        "4x4.Q_Encoder.Dense1.bias"
    );
    let dense = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]); // TF [in 2, out 3]
    let d = tf_weight_to_tch("4x4/Dense0/weight", &dense).unwrap();
    assert_eq!(d.size(), [3, 2]);
    assert_eq!(values(&d), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let conv = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
    assert_eq!(
        tf_weight_to_tch("ToRGB_lod0/weight", &conv).unwrap().size(),
        [5, 4, 2, 3]
    );
    let bias = Tensor::ones([7], (Kind::Float, Device::Cpu));
    assert_eq!(
        tf_weight_to_tch("8x8/Conv1/bias", &bias).unwrap().size(),
        [7]
    );
    let lod = Tensor::from(0.0f32);
    assert!(tf_weight_to_tch("lod", &lod)
        .unwrap_err()
        .to_string()
        .contains("lod"));
    assert!(tf_weight_to_tch("8x8/Conv1/bias", &conv).is_err());
}

// ---------------------------------------------------------------------------------------------------------------
// Independent re-implementations of G and D in the reference's "linear" structure (docs/spec/progan_hp.md §1.4, §1.5: all blocks
// computed, each stage lerp_clip'ed), from the VarStore's tensors by name, with TF's fused ops and TF-layout
// kernels. Both structures are mathematically identical; ours is the recursive one that skips inactive blocks.

type Vars = HashMap<String, Tensor>;

fn ref_lrelu(x: &Tensor) -> Tensor {
    x.maximum(&(x * 0.2))
}

fn ref_pn(x: &Tensor) -> Tensor {
    x / (x.square().mean_dim(1, true, None::<Kind>) + 1e-8).sqrt()
}

fn ref_up2(x: &Tensor) -> Tensor {
    x.repeat_interleave_self_int(2, Some(2), None)
        .repeat_interleave_self_int(2, Some(3), None)
}

fn ref_down2(x: &Tensor) -> Tensor {
    let (n, c, h, w) = x.size4().unwrap();
    x.view([n, c, h / 2, 2, w / 2, 2])
        .mean_dim(&[3i64, 5][..], false, None::<Kind>)
}

fn lerp_clip(a: &Tensor, b: &Tensor, t: f64) -> Tensor {
    a + (b - a) * t.clamp(0.0, 1.0)
}

/// (weight · gain/√fan_in in TF layout, bias) of layer `name`; dense weights come back as `[in, out]`.
fn tf_layer(vars: &Vars, name: &str, gain: f64, rotate: bool) -> (Tensor, Tensor) {
    let w = &vars[&format!("{name}.weight")];
    let b = vars[&format!("{name}.bias")].shallow_clone();
    let fan_in: i64 = w.size()[1..].iter().product();
    let scale = gain / (fan_in as f64).sqrt();
    let w = if w.dim() == 2 {
        w.tr()
    } else if rotate {
        w.flip([2, 3]).permute([2, 3, 1, 0])
    } else {
        w.permute([2, 3, 1, 0])
    };
    (w * scale, b)
}

fn ref_conv(vars: &Vars, name: &str, x: &Tensor, gain: f64) -> Tensor {
    let (w, b) = tf_layer(vars, name, gain, false);
    let k = w.size()[0];
    x.conv2d(
        &w.permute([3, 2, 0, 1]),
        Some(&b),
        [1, 1],
        [k / 2, k / 2],
        [1, 1],
        1,
    )
}

fn ref_dense(vars: &Vars, name: &str, x: &Tensor, gain: f64) -> Tensor {
    let (w, b) = tf_layer(vars, name, gain, false);
    x.flatten(1, -1).matmul(&w) + b
}

/// Returns (images_out, the 2R−2 convolution/dense activations).
fn ref_generator(vars: &Vars, cfg: &NetConfig, z: &Tensor, lod: f64) -> (Tensor, Vec<Tensor>) {
    let r_log2 = cfg.log2_res();
    let mut acts = Vec::new();
    let (w, b) = tf_layer(vars, "G.4x4.Dense", SQRT2 / 4.0, false);
    let x = ref_pn(z).matmul(&w).view([-1, cfg.nf(1), 4, 4]) + b.view([1, -1, 1, 1]);
    let x = ref_pn(&ref_lrelu(&x));
    acts.push(x.shallow_clone());
    let mut x = ref_pn(&ref_lrelu(&ref_conv(vars, "G.4x4.Conv", &x, SQRT2)));
    acts.push(x.shallow_clone());
    let torgb = |x: &Tensor, s: i64| ref_conv(vars, &format!("G.ToRGB_lod{}", r_log2 - s), x, 1.0);
    let mut images_out = torgb(&x, 2);
    for s in 3..=r_log2 {
        let res = 1 << s;
        let (w, b) = tf_layer(vars, &format!("G.{res}x{res}.Conv0_up"), SQRT2, true);
        x = ref_pn(&ref_lrelu(
            &(tf_upscale2d_conv2d(&x, &w) + b.view([1, -1, 1, 1])),
        ));
        acts.push(x.shallow_clone());
        x = ref_pn(&ref_lrelu(&ref_conv(
            vars,
            &format!("G.{res}x{res}.Conv1"),
            &x,
            SQRT2,
        )));
        acts.push(x.shallow_clone());
        let img = torgb(&x, s);
        images_out = lerp_clip(&img, &ref_up2(&images_out), lod - (r_log2 - s) as f64);
    }
    (images_out, acts)
}

fn ref_discriminator(
    vars: &Vars,
    cfg: &NetConfig,
    x: &Tensor,
    lod: f64,
    chunks: i64,
) -> (Tensor, Option<Tensor>) {
    let r_log2 = cfg.log2_res();
    let fromrgb = |img: &Tensor, s: i64| {
        ref_lrelu(&ref_conv(
            vars,
            &format!("D.FromRGB_lod{}", r_log2 - s),
            img,
            SQRT2,
        ))
    };
    let mut img = x.shallow_clone();
    let mut h = fromrgb(&img, r_log2);
    for s in (3..=r_log2).rev() {
        let res = 1 << s;
        h = ref_lrelu(&ref_conv(vars, &format!("D.{res}x{res}.Conv0"), &h, SQRT2));
        let (w, b) = tf_layer(vars, &format!("D.{res}x{res}.Conv1_down"), SQRT2, false);
        h = ref_lrelu(&(tf_conv2d_downscale2d(&h, &w) + b.view([1, -1, 1, 1])));
        img = ref_down2(&img);
        h = lerp_clip(&h, &fromrgb(&img, s - 1), lod - (r_log2 - s) as f64);
    }
    let q = (cfg.infogan_nz > 0).then(|| {
        let y = ref_lrelu(&ref_conv(vars, "D.4x4.Q_Encoder.Conv", &h, SQRT2));
        let y = ref_lrelu(&ref_dense(vars, "D.4x4.Q_Encoder.Dense0", &y, SQRT2));
        ref_dense(vars, "D.4x4.Q_Encoder.Dense1", &y, 1.0)
    });
    let h = minibatch_stddev(&h, 4, chunks);
    let h = ref_lrelu(&ref_conv(vars, "D.4x4.Conv", &h, SQRT2));
    let h = ref_lrelu(&ref_dense(vars, "D.4x4.Dense0", &h, SQRT2));
    (ref_dense(vars, "D.4x4.Dense1", &h, 1.0), q)
}

/// A tiny G and D in f64 on one VarStore, with non-zero biases so that they are exercised too.
fn tiny_nets(cfg: &NetConfig) -> (nn::VarStore, Generator, Discriminator) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let g = Generator::new(&(vs.root() / "G"), cfg);
    let d = Discriminator::new(&(vs.root() / "D"), cfg);
    vs.set_kind(Kind::Double);
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.ends_with(".bias") {
                let r = t.randn_like() * 0.1;
                t.copy_(&r);
            }
        }
    });
    (vs, g, d)
}

const LODS: [f64; 7] = [0.0, 0.25, 0.5, 1.0, 1.3, 1.999, 2.0];

#[test]
fn generator_matches_the_reference_at_every_lod() {
    let _rng = seed(7);
    let cfg = tiny(0);
    let (vs, g, _) = tiny_nets(&cfg);
    let vars = vs.variables();
    let z = randn(&[3, cfg.nz], Kind::Double);
    let all: Vec<usize> = (1..=cfg.num_hp_layers()).collect();
    tch::no_grad(|| {
        for lod in LODS {
            let (want_img, want_acts) = ref_generator(&vars, &cfg, &z, lod);
            let img = g.forward(&z, lod, true);
            assert_eq!(img.size(), [3, 3, 16, 16]);
            assert_close(&img, &want_img, 1e-10, &format!("image at lod {lod}"));
            let (img2, acts) = g.forward_with_layers(&z, lod, &all, true);
            assert_close(&img2, &img, 0.0, "forward_with_layers image");
            assert_eq!(acts.len(), 7);
            for (l, (a, w)) in acts.iter().zip(&want_acts).enumerate() {
                assert_close(a, w, 1e-10, &format!("layer {} at lod {lod}", l + 1));
            }
            assert_close(&acts[6], &img, 0.0, "the last layer is the RGB output");
        }
    });
}

#[test]
fn discriminator_matches_the_reference_at_every_lod() {
    let _rng = seed(8);
    let cfg = tiny(2);
    let (vs, _, d) = tiny_nets(&cfg);
    let vars = vs.variables();
    let x = randn(&[8, 3, 16, 16], Kind::Double);
    tch::no_grad(|| {
        for lod in LODS {
            for chunks in [1, 2] {
                let (want, want_q) = ref_discriminator(&vars, &cfg, &x, lod, chunks);
                let (score, q) = d.forward(&x, lod, chunks);
                assert_eq!(score.size(), [8, 1]);
                assert_close(
                    &score,
                    &want,
                    1e-10,
                    &format!("score at lod {lod}, {chunks} chunks"),
                );
                let q = q.expect("the Q head exists");
                assert_eq!(q.size(), [8, 2]);
                assert_close(&q, &want_q.unwrap(), 1e-10, &format!("Q at lod {lod}"));
                assert_close(&d.score(&x, lod, chunks), &score, 0.0, "score without Q");
            }
        }
    });
}

#[test]
fn lod_endpoints_are_the_pure_paths() {
    let _rng = seed(9);
    let cfg = tiny(0);
    let (vs, g, d) = tiny_nets(&cfg);
    let vars = vs.variables();
    let z = randn(&[2, cfg.nz], Kind::Double);
    let x = randn(&[4, 3, 16, 16], Kind::Double);
    tch::no_grad(|| {
        // G at integer lod L (α = 0): ToRGB of the top active block only, nearest-upscaled by 2^L.
        let acts = g.hp_layers(&z, 0.0, &[2, 4, 6], true);
        for (lod, act, lod_name) in [(2.0, &acts[0], 2), (1.0, &acts[1], 1), (0.0, &acts[2], 0)] {
            let rgb = ref_conv(&vars, &format!("G.ToRGB_lod{lod_name}"), act, 1.0);
            let f = 1 << lod_name;
            let want = rgb.upsample_nearest2d([16, 16], None, None);
            assert_eq!(rgb.size()[2] * f, 16);
            assert_close(
                &g.forward(&z, lod, true),
                &want,
                1e-12,
                &format!("G pure path at lod {lod}"),
            );
        }
        // α → 1 reaches the lower-resolution path (continuity across the integer lod).
        for l in [0.0, 1.0] {
            let below = g.forward(&z, l + 1.0 - 1e-9, true);
            assert_close(&below, &g.forward(&z, l + 1.0, true), 1e-7, "G α → 1");
            let (sb, _) = d.forward(&x, l + 1.0 - 1e-9, 1);
            assert_close(&sb, &d.forward(&x, l + 1.0, 1).0, 1e-7, "D α → 1");
        }
        // α = 0 with a tiny α > 0 differs by O(α): the lerp is continuous at both ends.
        assert_close(
            &g.forward(&z, 1.0 + 1e-9, true),
            &g.forward(&z, 1.0, true),
            1e-7,
            "G α → 0",
        );
        assert_close(
            &d.forward(&x, 1.0 + 1e-9, 1).0,
            &d.forward(&x, 1.0, 1).0,
            1e-7,
            "D α → 0",
        );

        // D at lod 2 sees only the 4×4 box-downscaled image: changing pixels within each 4×4 cell without changing
        // their means leaves the score unchanged; at lod 0 it does change it.
        let bump = Tensor::from_slice(&[1.0f64, -1.0, 0.0, 0.0])
            .view([1, 1, 2, 2])
            .repeat([4, 3, 8, 8]);
        let x2 = &x + bump;
        assert_close(
            &d.forward(&x2, 2.0, 1).0,
            &d.forward(&x, 2.0, 1).0,
            1e-10,
            "D at lod 2",
        );
        assert!(max_abs_diff(&d.forward(&x2, 0.0, 1).0, &d.forward(&x, 0.0, 1).0) > 1e-6);
    });
}

#[test]
fn hp_layers_are_slices_of_the_full_pass_in_the_requested_order() {
    let _rng = seed(10);
    let cfg = tiny(0);
    let (_vs, g, _) = tiny_nets(&cfg);
    let z = randn(&[3, cfg.nz], Kind::Double);
    tch::no_grad(|| {
        for lod in [0.0, 0.6, 2.0] {
            let (img, all) = g.forward_with_layers(&z, lod, &(1..=7).collect::<Vec<_>>(), true);
            let picked = g.hp_layers(&z, lod, &[7, 1, 3, 3], true);
            assert_eq!(picked.len(), 4);
            assert_close(&picked[0], &img, 0.0, "layer 7 = image");
            assert_close(&picked[1], &all[0], 0.0, "layer 1");
            assert_close(&picked[2], &all[2], 0.0, "layer 3");
            assert_close(&picked[3], &all[2], 0.0, "layer 3 again");
            // Layers above the active resolution are still computed when asked for.
            let deep = g.hp_layers(&z, lod, &[6], true);
            assert_close(&deep[0], &all[5], 0.0, "layer 6");
        }
        assert!(g.hp_layers(&z, 0.0, &[], true).is_empty());
        // normalize_latents = false takes z as already normalised.
        let zn = pixel_norm(&z);
        assert_close(
            &g.forward(&zn, 0.3, false),
            &g.forward(&z, 0.3, true),
            1e-12,
            "pre-normalised z",
        );
        assert_close(
            &g.forward(&(&z * 3.0), 0.3, true),
            &g.forward(&z, 0.3, true),
            1e-7,
            "scale of z",
        );
    });
}

#[test]
fn minibatch_chunks_make_d_act_per_chunk() {
    // With per-chunk minibatch stddev, D over two chunks equals D over each half separately.
    let _rng = seed(11);
    let cfg = tiny(0);
    let (_vs, _, d) = tiny_nets(&cfg);
    let x = randn(&[8, 3, 16, 16], Kind::Double);
    tch::no_grad(|| {
        let (both, q) = d.forward(&x, 0.5, 2);
        assert!(q.is_none());
        let a = d.forward(&x.narrow(0, 0, 4), 0.5, 1).0;
        let b = d.forward(&x.narrow(0, 4, 4), 0.5, 1).0;
        assert_close(&both, &Tensor::cat(&[a, b], 0), 1e-12, "chunks");
        assert!(max_abs_diff(&both, &d.forward(&x, 0.5, 1).0) > 1e-9);
    });
}

#[test]
fn gradient_penalty_double_backward_reaches_every_parameter() {
    // WGAN-GP differentiates D's input gradient again (docs/spec/progan_hp.md §3.2): every op in D must be twice differentiable.
    let _rng = seed(12);
    let cfg = tiny(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let g = Generator::new(&(vs.root() / "G"), &cfg);
    let d = Discriminator::new(&(vs.root() / "D"), &cfg);
    let z = randn(&[4, cfg.nz], Kind::Float);
    let fake = g.forward(&z, 0.5, true);
    let x = fake.detach().set_requires_grad(true);
    let (score, _) = d.forward(&x, 0.5, 1);
    let grads = Tensor::run_backward(&[score.sum(Kind::Float)], &[&x], true, true);
    let gp = (grads[0].flatten(1, -1).norm_scalaropt_dim(2, [1], false) - 1.0)
        .square()
        .mean(Kind::Float);
    let loss = gp + d.forward(&fake, 0.5, 1).0.mean(Kind::Float);
    loss.backward();
    // At lod 0.5 the 4×4 RGB heads are not part of the graph (only the 16² and 8² ones are blended).
    for (name, t) in vs.variables() {
        let gr = t.grad();
        if name.contains("RGB_lod2") {
            assert!(
                !gr.defined(),
                "{name} is inactive at lod 0.5 but has a gradient"
            );
            continue;
        }
        assert!(gr.defined(), "{name} has no gradient");
        let ok = gr.isfinite().all().int64_value(&[]) == 1;
        assert!(ok, "{name} has a non-finite gradient");
        if name.starts_with("D.") && name.ends_with("weight") {
            assert!(
                gr.abs().sum(Kind::Double).double_value(&[]) > 0.0,
                "{name} has a zero gradient"
            );
        }
    }
}

#[test]
fn blocks_above_the_active_resolution_are_not_in_the_graph() {
    let _rng = seed(13);
    let cfg = tiny(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let g = Generator::new(&(vs.root() / "G"), &cfg);
    let d = Discriminator::new(&(vs.root() / "D"), &cfg);
    let z = randn(&[4, cfg.nz], Kind::Float);
    // lod 1.5: 8² blended with 4²; the 16² blocks and the full-resolution RGB heads stay out.
    let img = g.forward(&z, 1.5, true);
    assert_eq!(img.size(), [4, 3, 16, 16]);
    let (score, q) = d.forward(&img, 1.5, 1);
    (score.mean(Kind::Float) + q.unwrap().square().mean(Kind::Float)).backward();
    for (name, t) in vs.variables() {
        let inactive = name.contains("16x16") || name.contains("RGB_lod0");
        assert_eq!(t.grad().defined(), !inactive, "{name}");
    }
}

#[test]
fn batched_hessian_penalty_on_the_generator_equals_the_unbatched_passes() {
    // Issue 8 / docs/spec/progan_hp.md §3.3: the 2k perturbed passes go through G as one batch that stops at the deepest regularised
    // layer. They must give the penalties of 2k separate full forward passes on the same directions.
    use hessian_gan::core::hessian::HessianPenalty;
    let _rng = seed(12);
    let cfg = tiny(0);
    let (_vs, g, _) = tiny_nets(&cfg);
    let hp = HessianPenalty::new(3, 0.1).unwrap().with_chunks(2).unwrap();
    let z = randn(&[4, cfg.nz], Kind::Double);
    let layers = [1, 3, 5];
    let dirs = hp.rademacher(&z);
    assert_eq!(dirs.size(), [3, 4, cfg.nz]);
    tch::no_grad(|| {
        for lod in [0.0, 0.5, 1.0] {
            let batched = hp
                .penalties(|x| g.hp_layers(x, lod, &layers, true), &z, Some(&dirs))
                .unwrap();
            let mut per_layer: Vec<Vec<Tensor>> = layers.iter().map(|_| Vec::new()).collect();
            for i in 0..hp.k as i64 {
                for sign in [1.0, -1.0] {
                    let zi = &z + dirs.get(i) * (sign * hp.epsilon);
                    let (_, acts) = g.forward_with_layers(&zi, lod, &layers, true);
                    for (l, a) in acts.into_iter().enumerate() {
                        per_layer[l].push(a);
                    }
                }
            }
            let perturbed: Vec<Tensor> = per_layer.iter().map(|v| Tensor::cat(v, 0)).collect();
            let unbatched = hp.from_activations(4, &perturbed).unwrap();
            assert_eq!(batched.len(), 3);
            for (l, (b, u)) in batched.iter().zip(&unbatched).enumerate() {
                let (b, u) = (b.double_value(&[]), u.double_value(&[]));
                assert!(u > 0.0, "layer {} penalty {u}", layers[l]);
                let rel = (b - u).abs() / u;
                assert!(
                    rel < 1e-5,
                    "lod {lod} layer {}: batched {b} vs unbatched {u}",
                    layers[l]
                );
            }
        }
    });
}

#[test]
fn fast_kernels_give_the_plain_path_images_scores_hp_and_gradients() {
    // Issue 16: channels-last activations and the fused resampling convolutions are the same function as the
    // reference's formulation (`Kernels::Plain`), in float32 to 1e-5, forward and backward, at every lod.
    use hessian_gan::core::hessian::HessianPenalty;
    use hessian_gan::core::native::is_channels_last;
    use hessian_gan::core::networks::Kernels;
    let _rng = seed(16);
    let cfg = NetConfig {
        resolution: 32,
        nz: 6,
        num_channels: 3,
        fmap_base: 128,
        fmap_max: 32,
        infogan_nz: 2,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let mut g = Generator::new(&(vs.root() / "G"), &cfg);
    let mut d = Discriminator::new(&(vs.root() / "D"), &cfg);
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.ends_with(".bias") {
                let r = t.randn_like() * 0.1;
                t.copy_(&r);
            }
        }
    });
    assert_eq!(g.kernels(), Kernels::Fast, "fast is the default");
    let z = randn(&[8, cfg.nz], Kind::Float);
    let hp = HessianPenalty::new(2, 0.1).unwrap().with_chunks(2).unwrap();
    let dirs = hp.rademacher(&z);
    let layers: Vec<usize> = (1..=cfg.num_hp_layers()).collect();
    let params: Vec<Tensor> = vs.trainable_variables();
    let mut run = |kernels: Kernels, lod: f64| {
        g.set_kernels(kernels);
        d.set_kernels(kernels);
        let img = g.forward(&z, lod, true);
        assert!(img.is_contiguous(), "G returns NCHW images");
        let acts = g.hp_layers(&z, lod, &[3], true);
        assert_eq!(is_channels_last(&acts[0]), kernels == Kernels::Fast);
        let (scores, q) = d.forward(&img, lod, 2);
        let pens = hp
            .penalties(|x| g.hp_layers(x, lod, &layers, true), &z, Some(&dirs))
            .unwrap();
        let loss = scores.sum(Kind::Float)
            + q.unwrap().square().sum(Kind::Float)
            + Tensor::stack(&pens, 0).sum(Kind::Float) * 0.1;
        let grads = Tensor::run_backward(&[&loss], &params, false, false);
        (img, scores, Tensor::stack(&pens, 0), grads)
    };
    for lod in [0.0, 0.5, 1.0, 2.5] {
        let (img_p, s_p, hp_p, g_p) = run(Kernels::Plain, lod);
        let (img_f, s_f, hp_f, g_f) = run(Kernels::Fast, lod);
        // Relative to the largest entry: float32 rounding differs between the two summation orders.
        let rel = |a: &Tensor, b: &Tensor| {
            max_abs_diff(a, b) / b.abs().max().double_value(&[]).max(1e-30)
        };
        // The HP is a variance of second differences divided by ε² = 0.01: it amplifies the float32 rounding of
        // the two summation orders by ~100, so its bound is 100× the images' (CI saw 1.46e-5 at lod 0).
        for (a, b, what, tol) in [
            (&img_f, &img_p, "images", 1e-5),
            (&s_f, &s_p, "D scores", 1e-5),
            (&hp_f, &hp_p, "HP per layer", 1e-3),
        ] {
            let e = rel(a, b);
            assert!(e < tol, "{what} at lod {lod}: relative {e:e}");
        }
        assert!(hp_p.min().double_value(&[]) > 0.0);
        // The gradients include the HP's, whose second differences amplify float32 rounding by 1/ε²: the two
        // summation orders differ by up to ~2e-4 of the largest entry (seen 1.5e-4 under load).
        for ((a, b), name) in g_f.iter().zip(&g_p).zip(0..) {
            if b.defined() {
                let e = rel(a, b);
                assert!(e < 1e-3, "gradient {name} at lod {lod}: relative {e:e}");
            }
        }
    }
}
