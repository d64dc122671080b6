//! Direction discovery (issue 20, docs/spec/progan_hp.md §11): the penalty with respect to the coefficients against a
//! direct computation, recovery of a known rotated basis, Gram–Schmidt and --no-ortho, the eased path, and the
//! command's outputs, exact resume and bad input.

mod common;

use hessian_gan::checkpoint::{save_snapshot, Models, TrainState};
use hessian_gan::commands::discover::compare::{eased_path, walk};
use hessian_gan::commands::discover::{self, DiscoverOptions};
use hessian_gan::commands::Globals;
use hessian_gan::config::TrainConfig;
use hessian_gan::core::discover::{
    coefficients, complete_basis, discovery_loss, gram_schmidt, init_directions,
    orthonormality_error, DirectionInit, Discovery, SearchSpace,
};
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn cpu() -> (Kind, Device) {
    (Kind::Float, Device::Cpu)
}

/// A separable generator in the rotated coordinates u = z·Rᵀ: every output depends on one u_i only, so its Hessian
/// with respect to w is diagonal exactly when the directions are R's rows up to sign and order.
fn separable(r: &Tensor) -> impl Fn(&Tensor) -> Tensor + '_ {
    move |z: &Tensor| {
        let u = z.matmul(&r.tr());
        Tensor::cat(&[u.square(), (&u * 2.0).sin(), u.tanh() * 3.0], 1)
    }
}

#[test]
fn the_penalty_in_w_is_the_mean_unbiased_variance_of_second_differences() {
    tch::manual_seed(1);
    let nz = 5;
    let r = gram_schmidt(&Tensor::randn([nz, nz], cpu())).unwrap();
    let g = separable(&r);
    let q = gram_schmidt(&Tensor::randn([3, nz], cpu())).unwrap();
    let z = Tensor::randn([6, nz], cpu());
    let w = coefficients(
        &Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]),
        &Tensor::from_slice(&[0.5f32, -1.0, 2.0, -0.3, 0.0, 1.5]),
        3,
    );
    let signs = Tensor::randint(2, [2, 6, 3], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let got = discovery_loss(&g, &z, &w, &q, Some(&signs))
        .unwrap()
        .double_value(&[]);
    // Directly: D_k = (G(z + (w + εv_k)Q) − 2G(z + wQ) + G(z + (w − εv_k)Q)) / ε², unbiased variance over k = 2,
    // mean over samples and outputs.
    let at = |w: &Tensor| g(&(&z + w.matmul(&q))).to_kind(Kind::Double);
    let eps = 0.1;
    let d: Vec<Tensor> = (0..2)
        .map(|k| {
            let x = signs.get(k) * eps;
            (at(&(&w + &x)) - at(&w) * 2.0 + at(&(&w - &x))) / (eps * eps)
        })
        .collect();
    let want = ((&d[0] - &d[1]).square() / 2.0)
        .mean(Kind::Double)
        .double_value(&[]);
    assert!(
        (got - want).abs() <= 1e-4 * want.abs().max(1e-6),
        "penalty {got} vs direct {want}"
    );
    assert!(want > 1e-3, "a random basis is not disentangled: {want}");
}

#[test]
fn discovery_recovers_a_rotated_basis_up_to_sign_and_order() {
    tch::manual_seed(2);
    let nz = 4;
    let r = gram_schmidt(&Tensor::randn([nz, nz], cpu())).unwrap();
    let g = separable(&r);
    let a0 = init_directions(DirectionInit::Random, nz, nz, true).unwrap();
    let mut d = Discovery::new(&a0, 0..nz, nz, 0.01, 2.0, true, Device::Cpu).unwrap();
    let mut last = 0.0;
    for _ in 0..600 {
        let z = Tensor::randn([32, nz], cpu());
        last = d.step(&g, &z).unwrap().double_value(&[]);
    }
    let m = d.directions().detach().matmul(&r.tr()).abs(); // |cos| of each direction with each row of R
    let best = Vec::<f64>::try_from(m.amax(1, false).to_kind(Kind::Double)).unwrap();
    let which = Vec::<i64>::try_from(m.argmax(1, false)).unwrap();
    assert!(
        best.iter().all(|&c| c > 0.99),
        "directions vs R's rows: best |cos| {best:?} (penalty {last})"
    );
    let mut sorted = which.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![0, 1, 2, 3],
        "each row of R found once: {which:?}"
    );
    assert!(orthonormality_error(&d.a.detach()) < 1e-6);
}

#[test]
fn coordinate_init_on_an_axis_aligned_generator_stays_put() {
    tch::manual_seed(3);
    let nz = 4;
    let eye = Tensor::eye(nz, cpu());
    let g = separable(&eye);
    let a0 = init_directions(DirectionInit::Coords, nz, nz, true).unwrap();
    let mut d = Discovery::new(&a0, 0..nz, nz, 0.01, 2.0, true, Device::Cpu).unwrap();
    for _ in 0..50 {
        let loss = d.step(&g, &Tensor::randn([16, nz], cpu())).unwrap();
        assert!(loss.double_value(&[]) < 1e-6);
    }
    let moved = (d.a.detach() - &eye).abs().max().double_value(&[]);
    assert!(moved < 1e-5, "coordinate directions moved by {moved}");
}

#[test]
fn no_ortho_leaves_a_free_and_ortho_keeps_it_orthonormal() {
    tch::manual_seed(4);
    let nz = 5;
    let r = gram_schmidt(&Tensor::randn([nz, nz], cpu())).unwrap();
    let g = separable(&r);
    for ortho in [true, false] {
        tch::manual_seed(5);
        let a0 = init_directions(DirectionInit::Random, 3, nz, ortho).unwrap();
        let mut d = Discovery::new(&a0, 0..nz, nz, 0.05, 2.0, ortho, Device::Cpu).unwrap();
        for _ in 0..20 {
            let _ = d.step(&g, &Tensor::randn([16, nz], cpu())).unwrap();
        }
        let err = orthonormality_error(&d.a.detach());
        if ortho {
            assert!(err < 1e-6, "Gram–Schmidt after every step: error {err}");
        } else {
            assert!(err > 1e-2, "--no-ortho must leave A free, error {err}");
        }
    }
}

#[test]
fn a_sub_space_search_only_moves_its_components() {
    tch::manual_seed(6);
    let nz = 6;
    let r = gram_schmidt(&Tensor::randn([nz, nz], cpu())).unwrap();
    let g = separable(&r);
    let space = SearchSpace::Mid.range(nz).unwrap();
    let a0 = init_directions(DirectionInit::Random, 2, 2, true).unwrap();
    let mut d = Discovery::new(&a0, space, nz, 0.05, 2.0, true, Device::Cpu).unwrap();
    let _ = d.step(&g, &Tensor::randn([8, nz], cpu())).unwrap();
    let q = d.directions().detach();
    assert_eq!(q.size(), vec![2, nz]);
    let outside = Tensor::cat(&[q.narrow(1, 0, 2), q.narrow(1, 4, 2)], 1);
    assert_eq!(outside.abs().max().double_value(&[]), 0.0);
}

#[test]
fn the_eased_path_visits_minus_one_and_plus_one_and_returns_to_the_centre() {
    let p = eased_path(180);
    assert_eq!(p.len(), 180);
    let min = p.iter().copied().fold(f64::MAX, f64::min);
    let max = p.iter().copied().fold(f64::MIN, f64::max);
    // The reference's curve stops near ±0.98 (its easing quirk); ours reaches the ends.
    assert!(
        (min + 1.0).abs() < 1e-3 && (max - 1.0).abs() < 1e-3,
        "{min} {max}"
    );
    assert!(p[0].abs() < 1e-9 && p[89].abs() < 1e-9 && p[90].abs() < 1e-9 && p[179].abs() < 1e-9);
    assert!(p[..90].iter().all(|&v| v <= 0.0) && p[90..].iter().all(|&v| v >= 0.0));
}

#[test]
fn a_walk_replaces_the_component_along_the_direction() {
    tch::manual_seed(7);
    let q = gram_schmidt(&Tensor::randn([2, 6], cpu())).unwrap();
    let z = Tensor::randn([3, 6], cpu());
    let moved = walk(&z, &q.get(0), 1.5);
    let along = moved.matmul(&q.get(0));
    assert!((along - 1.5).abs().max().double_value(&[]) < 1e-5);
    // Everything orthogonal to the direction is unchanged, the other direction's coordinate included.
    let diff = (moved.matmul(&q.get(1)) - z.matmul(&q.get(1))).abs().max();
    assert!(diff.double_value(&[]) < 1e-5);
    // The same as setting coordinate 0 in the completed basis: z = c·B.
    let b = complete_basis(&q).unwrap();
    let c = z.matmul(&b.tr());
    let _ = c.select(1, 0).fill_(1.5);
    assert!((c.matmul(&b) - moved).abs().max().double_value(&[]) < 1e-5);
}

fn tiny_snapshot(dir: &Path) -> std::path::PathBuf {
    tch::manual_seed(8);
    let cfg = TrainConfig {
        resolution: 8,
        nz: 4,
        fmap_base: 32,
        fmap_max: 8,
        ..TrainConfig::default()
    };
    let models = Models::new(&cfg, Device::Cpu).unwrap();
    let snap = dir.join("network-snapshot-000001.safetensors");
    save_snapshot(&snap, &models, &cfg, &TrainState::default(), false).unwrap();
    snap
}

fn options(snap: &Path, out: &Path, iters: u64) -> DiscoverOptions {
    DiscoverOptions {
        model: snap.display().to_string(),
        out: out.to_path_buf(),
        iters,
        batch: 4,
        save_every: 3,
        log_every: 3,
        skip_compare: true,
        ..DiscoverOptions::default()
    }
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let _lock = common::lock();
    let dir = common::scratch("discover-resume");
    let snap = tiny_snapshot(&dir);
    let globals = Globals {
        seed: Some(3),
        ..Globals::default()
    };
    let whole = discover::run(&globals, &options(&snap, &dir.join("a"), 6)).unwrap();
    let half = discover::run(&globals, &options(&snap, &dir.join("b"), 3)).unwrap();
    // Without --seed: the run's recorded seed is used.
    let resumed = discover::run(
        &Globals::default(),
        &DiscoverOptions {
            resume: Some(half.run_dir.clone()),
            ..options(&snap, &dir.join("b"), 6)
        },
    )
    .unwrap();
    assert_eq!(resumed.run_dir, half.run_dir);
    assert_eq!(resumed.iterations, 6);
    let read = |p: &Path| Tensor::read_npy(p).unwrap();
    let a = read(&whole.run_dir.join("A_000006.npy"));
    let b = read(&resumed.run_dir.join("A_000006.npy"));
    assert!(a.equal(&b), "resume is exact: {a} vs {b}");
    assert!(
        !a.equal(&read(&whole.run_dir.join("A_000000.npy"))),
        "A did not move"
    );
    assert!(orthonormality_error(&a) < 1e-6);
    for f in [
        "A_000003.json",
        "state_000003.safetensors",
        "directions.npy",
        "discover.json",
    ] {
        assert!(whole.run_dir.join(f).is_file(), "{f} missing");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(whole.run_dir.join("A_000006.json")).unwrap())
            .unwrap();
    assert_eq!(meta["iteration"], 6);
    assert_eq!(meta["ndirs"], 4);
    assert!(meta["penalty"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_settings_name_the_flag() {
    let _lock = common::lock();
    let dir = common::scratch("discover-bad");
    let snap = tiny_snapshot(&dir);
    let globals = Globals::default();
    let err = |o: DiscoverOptions| format!("{:#}", discover::run(&globals, &o).unwrap_err());
    let base = options(&snap, &dir.join("out"), 2);
    assert!(err(DiscoverOptions {
        ndirs: Some(5),
        ..base.clone()
    })
    .contains("--ndirs 5"));
    assert!(err(DiscoverOptions {
        search_space: SearchSpace::Coarse,
        ..base.clone()
    })
    .contains("--search-space coarse"));
    assert!(err(DiscoverOptions {
        path_size: 0.0,
        ..base.clone()
    })
    .contains("--path-size"));
    assert!(err(DiscoverOptions {
        model: "missing/G_ema.pth".into(),
        ..base.clone()
    })
    .contains("G_ema.pth"));
    assert!(err(DiscoverOptions {
        resume: Some(dir.join("nowhere")),
        ..base
    })
    .contains("discover.json"));
}

#[test]
fn visualize_walks_directions_eight_per_video_and_refuses_the_wrong_width() {
    use hessian_gan::commands::visualize::{self, VisualizeOptions};
    use hessian_gan::io::video::VideoFormat;
    let _lock = common::lock();
    let dir = common::scratch("discover-visualize");
    let snap = tiny_snapshot(&dir);
    let globals = Globals {
        seed: Some(1),
        ..Globals::default()
    };
    let opts = VisualizeOptions {
        models: vec![snap.display().to_string()],
        out: dir.join("vis"),
        samples: 3,
        steps: 4,
        format: VideoFormat::Gif,
        directions: Some("random".into()),
        ..VisualizeOptions::default()
    };
    let sets = visualize::run(&globals, &opts).unwrap();
    assert_eq!(sets.len(), 1);
    let set = &sets[0];
    assert_eq!(set.mode, "directions");
    for f in [
        "d000_to_d004.gif",
        "directions.png",
        "z.npy",
        "visualize.json",
    ] {
        assert!(
            set.dir.join(f).is_file(),
            "{f} missing in {}",
            set.dir.display()
        );
    }
    let video = set.video.as_ref().unwrap();
    assert_eq!(video.steps, 8, "two eased halves of --steps frames");
    // 4 directions of 3 samples: the still has a row per direction.
    let still = image::open(set.dir.join("directions.png")).unwrap();
    assert_eq!(still.height(), 4 * 8 + 5 * 2);

    let bad = dir.join("wide.npy");
    Tensor::zeros([2, 7], cpu()).write_npy(&bad).unwrap();
    let err = visualize::run(
        &globals,
        &VisualizeOptions {
            directions: Some(bad.display().to_string()),
            ..opts
        },
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("nz = 4") && msg.contains("wide.npy"), "{msg}");
}
