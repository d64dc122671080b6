//! `geometry`: the pulled-back metric tensor on maps with known Jacobians, Lanczos on its products, the distances
//! through a tiny trained generator (l2, lpips with a TorchScript stand-in of PPL's network, a layer), the
//! command's files and numbers, and its bad input.

mod common;
use common::{detectors, globals, lock, scratch, tiny_dataset, TinyRun};

use hessian_gan::checkpoint;
use hessian_gan::checkpoint::reference;
use hessian_gan::commands::geometry::{self, feature_map, Distance, GeometryOptions, Method};
use hessian_gan::core::geometry::{
    full_hessian, lanczos, symmetric_eigh, BackwardHvp, ForwardHvp, HvpOperator, LanczosOptions,
    PulledMetric, Reduction,
};
use hessian_gan::core::latents::LatentConvention;
use hessian_gan::metrics::detector::{Detector, DetectorKind};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

/// φ(z) = [Az, (Bz)²]: H = 2JᵀJ with J = [A; 2·diag(Bz0)·B], a full-rank metric with a spread spectrum.
fn quadratic(n: i64, seed: i64) -> (Tensor, Tensor, Tensor) {
    tch::manual_seed(seed);
    let a = Tensor::randn([n, n], (Kind::Float, Device::Cpu)) * 0.3;
    let b = Tensor::randn([2 * n, n], (Kind::Float, Device::Cpu));
    let z0 = Tensor::randn([1, n], (Kind::Float, Device::Cpu));
    (a, b, z0)
}

#[test]
fn bp_is_two_jtj_and_the_iterative_methods_reproduce_its_top_eigenpairs() {
    let _g = lock();
    let n = 24;
    let (a, b, z0) = quadratic(n, 11);
    let phi = |z: &Tensor| {
        Ok(Tensor::cat(
            &[
                z.matmul(&a.transpose(0, 1)),
                z.matmul(&b.transpose(0, 1)).square(),
            ],
            1,
        ))
    };
    let m = PulledMetric::new(phi, Reduction::Sum, &z0, Device::Cpu).unwrap();
    let h = full_hessian(&mut BackwardHvp::new(&m).unwrap()).unwrap();
    // The analytic metric.
    let bz = z0.matmul(&b.transpose(0, 1)).squeeze_dim(0);
    let j = Tensor::cat(
        &[
            a.shallow_clone(),
            b.shallow_clone() * (bz * 2.0).unsqueeze(1),
        ],
        0,
    )
    .to_kind(Kind::Double);
    let want = j.transpose(0, 1).matmul(&j) * 2.0;
    assert!(max_abs(&(&h - &want)) <= 1e-4 * max_abs(&want));

    let exact = symmetric_eigh(&h).unwrap();
    let (top, top_v) = exact.descending();
    let k = 5;
    let mut opts = LanczosOptions::new(k);
    opts.max_restarts = 50;
    let check = |op: &mut dyn HvpOperator, rel: f64| -> bool {
        let got = lanczos(op, &opts).unwrap();
        let (vals, vecs) = got.descending();
        (0..k).all(|i| {
            let cos = vecs
                .select(1, i as i64)
                .dot(&top_v.select(1, i as i64))
                .abs()
                .double_value(&[]);
            (vals[i] - top[i]).abs() <= rel * top[0] && cos > 1.0 - 10.0 * rel
        })
    };
    assert!(check(&mut BackwardHvp::new(&m).unwrap(), 1e-5));
    let mut fwd = ForwardHvp::new(&m, 1e-3).unwrap();
    assert!(check(&mut fwd, 1e-3));
    // The reference's ForwardIter differentiates the mean of its two distances: half the eigenvalues. The same
    // check fails on it.
    let mut halved = ForwardHvp::new(&m, 1e-3).unwrap();
    halved.reference_mean = true;
    assert!(!check(&mut halved, 1e-3));
    let got = lanczos(&mut halved, &opts).unwrap();
    assert!((got.descending().0[0] * 2.0 - top[0]).abs() <= 1e-3 * top[0]);
}

/// A results directory with one tiny trained run (8², nz 6), built once per test binary.
fn tiny_snapshot() -> &'static Path {
    static SNAP: OnceLock<PathBuf> = OnceLock::new();
    SNAP.get_or_init(|| {
        let root = scratch("geometry");
        tiny_dataset(&root);
        let tiny = TinyRun::new(&root).with(json!({
            "nz": 6, "hp_lambda": 0.0, "lod_training_kimg": 0.01, "lod_transition_kimg": 0.01
        }));
        let cfg = tiny.config();
        let run_dir = root.join("results").join("00000-tiny");
        let mut t = tiny.trainer(&run_dir);
        for _ in 0..4 {
            t.iteration(0.0, 8, 8).unwrap();
        }
        let path = run_dir.join("network-snapshot-000001.safetensors");
        checkpoint::save_snapshot(&path, t.models(), &cfg, t.state(), true).unwrap();
        path
    })
}

fn options(out: &Path) -> GeometryOptions {
    GeometryOptions {
        models: vec![tiny_snapshot().display().to_string()],
        num_points: 3,
        cutoff: Some(2),
        eig_list: vec![0, 1],
        steps: 3,
        dist_steps: 5,
        action_codes: 2,
        out: out.to_path_buf(),
        ..GeometryOptions::default()
    }
}

#[test]
fn the_command_writes_the_reference_files_and_its_methods_agree() {
    let _g = lock();
    let out = scratch("geometry-run");
    let mut opts = options(&out);
    opts.methods = vec!["bp".into(), "backward-iter".into(), "forward-iter".into()];
    // G is piecewise linear (leaky ReLU): a step that crosses kinks measures an averaged Jacobian, so finite
    // differences are checked with a step below the default 1e-3.
    opts.eps = 1e-4;
    let report = geometry::run(&globals(), &opts).unwrap();
    let m = &report.models[0];
    assert_eq!((m.nz, m.resolution, m.distance.as_str()), (6, 8, "l2"));
    let names: Vec<Method> = m.methods.iter().map(|s| s.method).collect();
    assert_eq!(
        names,
        [Method::Bp, Method::BackwardIter, Method::ForwardIter]
    );
    assert_eq!(m.methods[0].eigenpairs, 6);
    assert_eq!(m.methods[0].products_per_point, 6.0);
    assert_eq!(m.methods[1].eigenpairs, 2);
    // Exact products agree with the full matrix to float32 accuracy; finite differences to their step.
    let (back, fwd) = (&m.comparisons[0], &m.comparisons[1]);
    assert!(back.max_relative_eigenvalue_error < 1e-4, "{back:?}");
    assert!(fwd.max_relative_eigenvalue_error < 2e-2, "{fwd:?}");
    assert!(back.cca_mean > 0.99 && fwd.cca_mean > 0.95);
    // The spectrum has one rank per eigenpair, descending, with the band around the mean.
    let s = &m.methods[0].spectrum;
    assert_eq!(s.len(), 6);
    assert!(s.windows(2).all(|w| w[0].mean >= w[1].mean));
    assert!(s.iter().all(|r| r.p5 <= r.median && r.median <= r.p95));
    assert!(m.methods[0].consistency.is_some());
    assert!(m.chance_max_component > 1.0 / 6f64.sqrt() && m.chance_max_component < 1.0);

    // The reference's per-point files and keys.
    let dir = &m.dir;
    let point = Tensor::read_npz(dir.join("points/Hess_BP_0.npz")).unwrap();
    let get = |k: &str| {
        point
            .iter()
            .find(|(n, _)| n == k)
            .unwrap()
            .1
            .shallow_clone()
    };
    let (eva, evc, h, feat) = (get("eva_BP"), get("evc_BP"), get("H_BP"), get("feat"));
    assert_eq!(
        (eva.size(), evc.size(), h.size(), feat.size()),
        (vec![6], vec![6, 6], vec![6, 6], vec![1, 6])
    );
    let e = Vec::<f64>::try_from(&eva).unwrap();
    assert!(e.windows(2).all(|w| w[0] <= w[1]), "ascending: {e:?}");
    assert!(max_abs(&(&h - h.transpose(0, 1))) == 0.0);
    let rebuilt = (&evc * eva.unsqueeze(0)).matmul(&evc.transpose(0, 1));
    assert!(max_abs(&(&rebuilt - &h)) <= 1e-9 * max_abs(&h));
    // G normalises z, so moving along z0 itself changes nothing: z0 spans H's null space.
    let hz = h.matmul(&feat.transpose(0, 1));
    assert!(max_abs(&hz) <= 1e-3 * max_abs(&h) * feat.norm().double_value(&[]));
    assert!(e[0].abs() <= 1e-3 * e[5]);
    for f in [
        "points/Hess_BackwardIter_2.npz",
        "points/Hess_ForwardIter_2.npz",
        "H_avg_BP.npz",
        "spectrum.png",
        "spectrum.svg",
        "consistency_log.png",
        "consistency_lin.png",
        "consistency_hist.svg",
        "consistency_examples.png",
        "eig_explore_linear.png",
        "eig_action_0_linear.png",
        "distance_curves.svg",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    // The montage: one row per listed axis, one column per step, each 8² tile zoomed ×16 with a 2-px border.
    let img = image::open(dir.join("eig_explore_linear.png")).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        ((3 * 10 + 2) * 16, (2 * 10 + 2) * 16)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("geometry.json")).unwrap()).unwrap();
    assert_eq!(json["models"][0]["methods"][1]["method"], "backward-iter");
}

#[test]
fn lpips_layer_and_l2_metrics_equal_finite_difference_jacobians() {
    let _g = lock();
    let g = reference::load_gs(tiny_snapshot(), Device::Cpu).unwrap();
    let det = detectors().map(|d| {
        Detector::load_file(
            DetectorKind::Lpips,
            &d.join("vgg16.pt"),
            "test".into(),
            Device::Cpu,
        )
        .unwrap()
    });
    let mut cases = vec![(Distance::L2, false), (Distance::Layer(2), false)];
    if det.is_some() {
        cases.extend([(Distance::Lpips, false), (Distance::Lpips, true)]);
    }
    tch::manual_seed(5);
    let z0 = Tensor::randn([1, 6], (Kind::Float, Device::Cpu));
    let v = Tensor::randn([6], (Kind::Double, Device::Cpu));
    for (distance, native) in cases {
        let reduction = if distance == Distance::L2 {
            Reduction::Mean
        } else {
            Reduction::Sum
        };
        let phi = feature_map(
            &g,
            distance,
            det.as_ref(),
            native,
            LatentConvention::PreNorm,
        );
        // vᵀHv = 2‖Jv‖² (divided by the feature count for the mean), Jv by central differences of φ.
        let h = 1e-3;
        let dv = v.to_kind(Kind::Float).unsqueeze(0) * h;
        let jv = {
            let _ng = tch::no_grad_guard();
            (phi(&(&z0 + &dv)).unwrap() - phi(&(&z0 - &dv)).unwrap()) / (2.0 * h)
        };
        let count = jv.numel() as f64;
        let mut want = 2.0
            * jv.to_kind(Kind::Double)
                .square()
                .sum(Kind::Double)
                .double_value(&[]);
        if reduction == Reduction::Mean {
            want /= count;
        }
        let m = PulledMetric::new(phi, reduction, &z0, Device::Cpu).unwrap();
        let got = BackwardHvp::new(&m).unwrap().vhv(&v).unwrap();
        assert!(
            (got - want).abs() <= 2e-2 * want,
            "{distance:?} native {native}: vᵀHv {got} vs 2‖Jv‖² {want}"
        );
    }
}

#[test]
fn bad_input_gets_one_line_naming_what_to_change() {
    let _g = lock();
    let out = scratch("geometry-bad");
    let err = |opts: GeometryOptions| {
        let e = format!("{:#}", geometry::run(&globals(), &opts).unwrap_err());
        assert!(!e.contains('\n'), "{e}");
        e
    };
    let mut o = options(&out);
    o.distance = "lpips".into();
    o.ppl_detector = Some("/no/such/vgg16.pt".into());
    assert!(err(o).contains("--ppl-detector /no/such/vgg16.pt"));
    let mut o = options(&out);
    o.distance = "layer:99".into();
    let e = err(o);
    assert!(e.contains("--distance layer:99"), "{e}");
    let mut o = options(&out);
    o.distance = "cosine".into();
    assert!(err(o).contains("l2, lpips or layer:K"));
    let mut o = options(&out);
    o.methods = vec!["backward-iter".into()];
    o.cutoff = Some(6);
    let e = err(o);
    assert!(e.contains("--cutoff 6") && e.contains("bp"), "{e}");
    let mut o = options(&out);
    o.methods = vec!["backward-iter".into()];
    o.eig_list = vec![0, 3];
    assert!(err(o).contains("--eig-list 3"));
    let mut o = options(&out);
    o.methods = vec!["newton".into()];
    assert!(err(o).contains("--methods newton"));
    // Large latents: auto picks Lanczos; bp on them says to use it.
    assert_eq!(Method::parse("auto", 12).unwrap(), Method::Bp);
    assert_eq!(Method::parse("auto", 2048).unwrap(), Method::BackwardIter);
    let big = Tensor::zeros([1, 1100], (Kind::Float, Device::Cpu));
    let m = PulledMetric::new(|z: &Tensor| Ok(z * 2.0), Reduction::Sum, &big, Device::Cpu).unwrap();
    let e = full_hessian(&mut BackwardHvp::new(&m).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("n = 1100") && e.contains("backward-iter"), "{e}");
}
