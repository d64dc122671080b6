//! The eager PyTorch yardstick (benches/pytorch_baseline.py, issue 16) computes what hessian-gan computes: the same
//! parameter counts, and on a snapshot's weights the same images, D scores and Hessian Penalty per layer for given z
//! and directions. Otherwise a speed ratio against it would compare different work.
//!
//! Runs the venv's Python (scripts/setup.sh, which the README's test command runs first).

mod common;

use hessian_gan::checkpoint::{save_snapshot, Models, TrainState};
use hessian_gan::config::TrainConfig;
use hessian_gan::core::hessian::HessianPenalty;
use hessian_gan::core::latents::write_npy;
use hessian_gan::data::npy::read_f32;
use std::path::Path;
use std::process::Command;
use tch::{Device, Kind, Tensor};

fn python() -> std::path::PathBuf {
    common::venv_python().expect(
        "no Python venv with torch: run `bash scripts/setup.sh` (the README's test command does)",
    )
}

fn npy(path: &Path) -> Tensor {
    let (shape, values) = read_f32(path).unwrap();
    let shape: Vec<i64> = shape.iter().map(|&s| s as i64).collect();
    Tensor::from_slice(&values).reshape(shape.as_slice())
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-30)
}

#[test]
fn the_baseline_reproduces_our_networks_and_penalty_on_a_snapshot() {
    let _lock = common::lock();
    let dir = common::scratch("pytorch-baseline");
    tch::manual_seed(3);
    let cfg = TrainConfig {
        resolution: 16,
        nz: 5,
        fmap_base: 64,
        fmap_max: 16,
        infogan_nz: 2,
        num_gpus: 2,
        ..TrainConfig::default()
    };
    let models = Models::new(&cfg, Device::Cpu).unwrap();
    tch::no_grad(|| {
        // Non-zero biases, so that a bias in the wrong place shows.
        for p in [&models.d_params, &models.g_params] {
            p.flat.shallow_clone().copy_(&p.flat.randn_like());
        }
    });
    let snap = dir.join("snapshot.safetensors");
    save_snapshot(&snap, &models, &cfg, &TrainState::default(), false).unwrap();
    let z = Tensor::randn([6, cfg.nz], (Kind::Float, Device::Cpu));
    let hp = HessianPenalty::new(3, cfg.epsilon).unwrap();
    let dirs = hp.rademacher(&z);
    write_npy(&z, &dir.join("z.npy")).unwrap();
    write_npy(&dirs, &dir.join("v.npy")).unwrap();

    let out = dir.join("out");
    let run = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pytorch_baseline.py"))
        .args(["check", "--snapshot"])
        .arg(&snap)
        .arg("--z")
        .arg(dir.join("z.npy"))
        .arg("--directions")
        .arg(dir.join("v.npy"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let counts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("params.json")).unwrap()).unwrap();
    assert_eq!(counts["g"], models.g.num_params());
    assert_eq!(counts["d"], models.d.num_params());
    assert_eq!(counts["q"], models.d.q_num_params());
    assert_eq!(counts["g_tensors"], models.g_params.names.len());
    assert_eq!(counts["d_tensors"], models.d_params.names.len());

    let layers: Vec<usize> = (1..=cfg.net().num_hp_layers()).collect();
    let (images, scores, pens) = tch::no_grad(|| {
        let images = models.g.forward(&z, 0.0, true);
        let scores = models.d.score(&images, 0.0, 2);
        let pens = hp
            .penalties(
                |x| models.g.hp_layers(x, 0.0, &layers, true),
                &z,
                Some(&dirs),
            )
            .unwrap();
        (images, scores, Tensor::stack(&pens, 0))
    });
    let e = rel(&npy(&out.join("images.npy")), &images);
    assert!(e < 1e-5, "images: relative {e:e}");
    let e = rel(&npy(&out.join("scores.npy")), &scores);
    assert!(e < 1e-5, "scores: relative {e:e}");
    let theirs = npy(&out.join("hp.npy"));
    assert_eq!(theirs.size(), [layers.len() as i64]);
    for l in 0..layers.len() as i64 {
        let (a, b) = (theirs.double_value(&[l]), pens.double_value(&[l]));
        assert!(
            b > 0.0 && (a - b).abs() <= 1e-4 * b,
            "HP layer {}: {a} vs ours {b}",
            l + 1
        );
    }
}
