//! FID and PPL (docs/spec/progan_hp.md §8): the Fréchet distance against closed forms, feature statistics, slerp, the
//! percentile filter, `--z` checks; and `train --metrics` / `evaluate` end to end on a tiny trained snapshot with
//! TorchScript stand-ins for the metric networks (tests/fixtures/make_detectors.py, run with the project's venv),
//! one of them downloaded from a local HTTP server.

mod common;
use common::{detectors, globals, lock, scratch, tiny_dataset, TinyRun};

use common::http::TestServer;
use hessian_gan::checkpoint;
use hessian_gan::checkpoint::reference;
use hessian_gan::commands::evaluate::{self, EvaluateOptions};
use hessian_gan::commands::Globals;
use hessian_gan::data::Dataset;
use hessian_gan::metrics::fid::{self, feature_stats, frechet_distance, FeatureStats};
use hessian_gan::metrics::ppl::{self, filtered_mean, slerp};
use hessian_gan::metrics::{suite, MetricSuite};
use hessian_gan::metrics::{Detector, DetectorKind, MetricKind, MetricsOptions};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn f64s(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn stats(mean: &[f64], cov: &Tensor) -> FeatureStats {
    FeatureStats {
        mean: Tensor::from_slice(mean),
        cov: cov.to_kind(Kind::Double),
        count: 1000,
    }
}

fn diag(v: &[f64]) -> Tensor {
    Tensor::from_slice(v).diag(0)
}

/// A random orthogonal matrix (QR of a seeded Gaussian matrix).
fn orthogonal(d: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    let (q, _) = Tensor::linalg_qr(
        &Tensor::randn([d, d], (Kind::Double, Device::Cpu)),
        "reduced",
    );
    q
}

/// FID of N(μ1, Σ1), N(μ2, Σ2) with commuting covariances Σi = Q diag(λi) Qᵀ: ‖μ1 − μ2‖² + Σ (√λ1 − √λ2)².
fn closed_form_commuting(m1: &[f64], m2: &[f64], l1: &[f64], l2: &[f64]) -> f64 {
    let m: f64 = m1.iter().zip(m2).map(|(a, b)| (a - b).powi(2)).sum();
    let s: f64 = l1
        .iter()
        .zip(l2)
        .map(|(a, b)| a + b - 2.0 * (a * b).sqrt())
        .sum();
    m + s
}

#[test]
fn frechet_distance_matches_diagonal_closed_form() {
    let m1 = [0.5, -1.0, 2.0, 0.0, 3.0];
    let m2 = [0.0, -1.5, 2.0, 1.0, 3.0];
    // Includes a zero variance (a singular covariance) and a tiny one.
    let l1 = [1.0, 4.0, 0.25, 0.0, 1e-12];
    let l2 = [2.0, 1.0, 0.25, 9.0, 3.0];
    let got = frechet_distance(&stats(&m1, &diag(&l1)), &stats(&m2, &diag(&l2))).unwrap();
    let want = closed_form_commuting(&m1, &m2, &l1, &l2);
    assert!((got - want).abs() < 1e-9 * want, "{got} vs {want}");
    // Symmetric in its arguments.
    let back = frechet_distance(&stats(&m2, &diag(&l2)), &stats(&m1, &diag(&l1))).unwrap();
    assert!((back - want).abs() < 1e-9 * want);
}

#[test]
fn frechet_distance_matches_rotated_closed_form_with_near_singular_covariance() {
    let d = 12;
    let q = orthogonal(d, 11);
    let mut l1: Vec<f64> = (0..d).map(|i| 0.1 + i as f64 * 0.7).collect();
    let l2: Vec<f64> = (0..d).map(|i| 3.0 / (1.0 + i as f64)).collect();
    // Nearly singular: three directions with (almost) no variance.
    l1[0] = 1e-13;
    l1[4] = 0.0;
    l1[9] = 1e-9;
    let rot = |l: &[f64]| q.matmul(&diag(l)).matmul(&q.tr());
    let m1: Vec<f64> = (0..d).map(|i| (i as f64).sin()).collect();
    let m2: Vec<f64> = (0..d).map(|i| (i as f64).cos()).collect();
    let got = frechet_distance(&stats(&m1, &rot(&l1)), &stats(&m2, &rot(&l2))).unwrap();
    let want = closed_form_commuting(&m1, &m2, &l1, &l2);
    assert!((got - want).abs() < 1e-8 * want, "{got} vs {want}");
}

#[test]
fn trace_of_sqrt_product_matches_the_two_by_two_formula() {
    // For 2×2 PSD matrices the eigenvalues λ1, λ2 of Σ1Σ2 give Tr sqrtm(Σ1Σ2) = √λ1 + √λ2
    // = sqrt(tr(Σ1Σ2) + 2·sqrt(det Σ1 · det Σ2)), also when Σ1 and Σ2 do not commute.
    let r = |a: f64| {
        Tensor::from_slice(&[a.cos(), -a.sin(), a.sin(), a.cos()])
            .reshape([2, 2])
            .to_kind(Kind::Double)
    };
    for (a, l1) in [(0.5, [1.0, 1e-12]), (1.1, [2.0, 0.3]), (0.0, [1.0, 0.0])] {
        let s1 = r(a).matmul(&diag(&l1)).matmul(&r(a).tr());
        let s2 = Tensor::from_slice(&[2.0, 0.3, 0.3, 0.5]).reshape([2, 2]);
        let tr_prod = s1.matmul(&s2).trace().double_value(&[]);
        let det = s1.det().double_value(&[]).max(0.0) * s2.det().double_value(&[]);
        let want = (tr_prod + 2.0 * det.sqrt()).sqrt();
        let got = fid::trace_sqrt_product(&s1, &s2);
        assert!((got - want).abs() < 1e-9, "angle {a}: {got} vs {want}");
    }
}

#[test]
fn fid_of_a_feature_set_with_itself_is_zero() {
    tch::manual_seed(3);
    for (n, d) in [(400, 16), (10, 32)] {
        // The second case has fewer samples than features: a rank-deficient covariance.
        let x = Tensor::randn([n, d], (Kind::Float, Device::Cpu)) * 3.0 + 1.5;
        let a = feature_stats(&x).unwrap();
        let b = feature_stats(&x).unwrap();
        let fid = frechet_distance(&a, &b).unwrap();
        let scale = a.cov.trace().double_value(&[]);
        // Full rank: float64 rounding only. Rank-deficient: the square roots of the rounding noise in the null
        // space (√1e-13 ≈ 3e-7 per direction) set the floor.
        let tol = if n > d { 1e-9 } else { 1e-6 };
        assert!(fid.abs() < tol * scale, "n {n} d {d}: FID {fid}");
        // A shifted copy: only the mean term remains.
        let c = feature_stats(&(&x + 0.5)).unwrap();
        let shifted = frechet_distance(&a, &c).unwrap();
        assert!((shifted - 0.25 * d as f64).abs() < tol * scale, "{shifted}");
    }
}

#[test]
fn feature_stats_are_float64_with_the_unbiased_divisor() {
    tch::manual_seed(5);
    // More rows than one reduction chunk (4096), with a large mean (cancellation would show in float32).
    let x = Tensor::randn([5000, 3], (Kind::Float, Device::Cpu)) * 0.01 + 1000.0;
    let s = feature_stats(&x).unwrap();
    assert_eq!(s.count, 5000);
    assert_eq!(s.mean.kind(), Kind::Double);
    let xd = x.to_kind(Kind::Double);
    let want_mean = xd.mean_dim(0, false, Kind::Double);
    let want_cov = xd.tr().cov(1, None::<Tensor>, None::<Tensor>);
    assert!(f64s(&(&s.mean - &want_mean)).iter().all(|e| e.abs() < 1e-9));
    let err = (&s.cov - &want_cov).abs().max().double_value(&[]);
    assert!(err < 1e-12, "covariance error {err}");
    assert!((s.cov.double_value(&[0, 0]) - 1e-4).abs() < 1e-5);
}

#[test]
fn fid_from_samples_approaches_the_closed_form() {
    // 20,000 samples per Gaussian in 4-d: the estimate is within a few percent of the exact value.
    tch::manual_seed(9);
    let (m1, m2) = ([0.0, 1.0, 0.0, 2.0], [1.0, 1.0, -1.0, 2.0]);
    let (l1, l2) = ([1.0, 2.0, 0.5, 1.0], [1.0, 0.5, 2.0, 4.0]);
    let draw = |m: &[f64], l: &[f64]| {
        let sd = Tensor::from_slice(l).sqrt();
        Tensor::randn([20_000, 4], (Kind::Double, Device::Cpu)) * sd + Tensor::from_slice(m)
    };
    let a = feature_stats(&draw(&m1, &l1)).unwrap();
    let b = feature_stats(&draw(&m2, &l2)).unwrap();
    let got = frechet_distance(&a, &b).unwrap();
    let want = closed_form_commuting(&m1, &m2, &l1, &l2);
    assert!((got - want).abs() < 0.05 * want, "{got} vs {want}");
}

#[test]
fn non_finite_statistics_give_nan() {
    let good = stats(&[0.0, 0.0], &diag(&[1.0, 1.0]));
    let bad = stats(&[f64::NAN, 0.0], &diag(&[1.0, 1.0]));
    assert!(frechet_distance(&good, &bad).unwrap().is_nan());
    let wide = stats(&[0.0, 0.0, 0.0], &diag(&[1.0, 1.0, 1.0]));
    assert!(frechet_distance(&good, &wide).is_err());
}

#[test]
fn slerp_follows_the_reference_formula() {
    let a = Tensor::from_slice(&[3.0f64, 0.0, 0.0, 1.0, 2.0, 2.0]).reshape([2, 3]);
    let b = Tensor::from_slice(&[0.0f64, 5.0, 0.0, -2.0, 1.0, 0.5]).reshape([2, 3]);
    let norm = |t: &Tensor| t / t.square().sum_dim_intlist(-1, true, None).sqrt();
    // t = 0 is the normalised start, t = 1 the normalised end.
    let e0 = slerp(&a, &b, 0.0);
    assert!(f64s(&(&e0 - norm(&a))).iter().all(|e| e.abs() < 1e-12));
    let e1 = slerp(&a, &b, 1.0);
    assert!(f64s(&(&e1 - norm(&b))).iter().all(|e| e.abs() < 1e-12));
    // A quarter turn halfway: (1, 0, 0) and (0, 1, 0) → (√½, √½, 0).
    let h = f64s(&slerp(&a.narrow(0, 0, 1), &b.narrow(0, 0, 1), 0.5));
    let r = 0.5f64.sqrt();
    assert!((h[0] - r).abs() < 1e-12 && (h[1] - r).abs() < 1e-12 && h[2].abs() < 1e-12);
    // Unit length, and the angle from the start is t·θ.
    let theta = (norm(&a) * norm(&b))
        .sum_dim_intlist(-1, false, None)
        .acos();
    for t in [1e-4, 0.3, 0.8] {
        let e = slerp(&a, &b, t);
        let len = e.square().sum_dim_intlist(-1, false, None).sqrt();
        assert!(f64s(&len).iter().all(|l| (l - 1.0).abs() < 1e-12));
        let ang = (&e * norm(&a)).sum_dim_intlist(-1, false, None).acos();
        let want = &theta * t;
        let err = f64s(&(ang - want)).iter().fold(0f64, |m, e| m.max(e.abs()));
        assert!(err < 1e-7, "t {t}: angle error {err}");
    }
    // The PPL endpoints: float32, e0 = ẑ0 and e1 one ε-step away along the great circle (to float32 resolution,
    // ~6e-8 per coordinate, i.e. about 1e-3 of the step).
    let pairs = Tensor::stack(&[&a, &b], 1).to_kind(Kind::Float);
    let (p0, p1) = ppl::endpoints(&pairs, 1e-4);
    assert_eq!(p0.kind(), Kind::Float);
    let step = f64s(
        &(&p1 - &p0)
            .square()
            .sum_dim_intlist(-1, false, Kind::Double)
            .sqrt(),
    );
    for (s, th) in step.iter().zip(f64s(&theta)) {
        assert!(
            (s - 1e-4 * th).abs() < 1e-3 * 1e-4 * th,
            "{s} vs {}",
            1e-4 * th
        );
    }
}

#[test]
fn percentile_filter_matches_numpy_lower_and_higher() {
    // 1..=1000 in a scrambled order: lower 1st percentile = sorted[floor(9.99)] = 10, higher 99th =
    // sorted[ceil(989.01)] = 991; the mean of 10..=991 is 500.5 over 982 values.
    let values: Vec<f64> = (0..1000).map(|i| ((i * 367) % 1000 + 1) as f64).collect();
    let (mean, lo, hi, kept) = filtered_mean(&values);
    assert_eq!((lo, hi, kept), (10.0, 991.0, 982));
    assert!((mean - 500.5).abs() < 1e-12);
    // Ties at the bounds are kept (lo ≤ d ≤ hi).
    let mut v = vec![1.0; 50];
    v.extend(vec![2.0; 50]);
    v.push(1e9);
    let (mean, lo, hi, kept) = filtered_mean(&v);
    assert_eq!((lo, hi, kept), (1.0, 2.0, 100));
    assert!((mean - 1.5).abs() < 1e-12);
    // One value: both percentiles are that value.
    assert_eq!(filtered_mean(&[7.0]), (7.0, 7.0, 7.0, 1));
    assert!(filtered_mean(&[1.0, f64::NAN, 2.0]).0.is_nan());
    assert!(filtered_mean(&[]).0.is_nan());
}

#[test]
fn z_files_are_checked_against_the_model_width() {
    let pairs = ppl::latent_pairs(4, 6, 3);
    assert_eq!(pairs.size(), vec![6, 2, 3]);
    assert!(ppl::pairs_from_z(&pairs, 3, 0, "--z p.npy")
        .unwrap()
        .equal(&pairs));
    // Start latents only: ends come from the seed, the same for every model.
    let starts = pairs.select(1, 0);
    let a = ppl::pairs_from_z(&starts, 3, 9, "--z s.npy").unwrap();
    assert!(a.select(1, 0).equal(&starts));
    assert!(a.equal(&ppl::pairs_from_z(&starts, 3, 9, "--z s.npy").unwrap()));
    let err = ppl::pairs_from_z(&starts, 5, 9, "--z s.npy")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--z s.npy") && err.contains("width 3") && err.contains("nz = 5"),
        "{err}"
    );
    let err = ppl::pairs_from_z(&pairs.reshape([3, 4, 3]), 3, 0, "--z q.npy")
        .unwrap_err()
        .to_string();
    assert!(err.contains("[N, 2, nz]"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------------
// End to end with TorchScript stand-ins for the metric networks.

/// Trains a tiny 8² model for two iterations of 16 images (one tick, snapshot `network-snapshot-000000`) with
/// `extra` settings; returns the run directory.
fn train_tiny(root: &Path, extra: Value) -> PathBuf {
    TinyRun::new(root)
        .with(json!({
            "hp_lambda": 0.0,
            "lod_training_kimg": 0.25,
            "lod_transition_kimg": 0.25,
            "minibatch": {"4": 16, "8": 16},
            "total_kimg": 0.032
        }))
        .with(extra)
        .train()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn eval_args(snapshot: &Path, root: &Path, det: &Path) -> EvaluateOptions {
    EvaluateOptions {
        models: vec![snapshot.display().to_string()],
        snapshot_kimgs: vec!["latest".into()],
        dataset: None,
        datasets_dir: root.join("datasets"),
        results_dir: root.join("results"),
        pretrained_dir: root.join("pretrained_models"),
        metrics: vec!["fid".into(), "ppl".into()],
        num_images: 40,
        num_samples: 24,
        batch_size: 16,
        z: None,
        fid_detector: Some(det.join("inception-2015-12-05.pt").display().to_string()),
        ppl_detector: Some(det.join("vgg16.pt").display().to_string()),
        cache_dir: root.join("cache"),
        no_cache: false,
    }
}

#[test]
fn training_logs_metrics_at_snapshot_ticks() {
    let Some(det) = detectors() else { return };
    let _g = lock();
    let root = scratch("train");
    tiny_dataset(&root);
    let run = train_tiny(
        &root,
        json!({
            "metrics": ["fid", "ppl"],
            "compute_metrics_ticks": 1,
            "metrics_options": {
                "fid_num_images": 40,
                "ppl_num_samples": 20,
                "batch_size": 16,
                "fid_detector": det.join("inception-2015-12-05.pt"),
                "ppl_detector": det.join("vgg16.pt"),
                "cache_dir": root.join("cache")
            }
        }),
    );
    let log = std::fs::read_to_string(run.join("log.txt")).unwrap();
    let line = log
        .lines()
        .find(|l| l.starts_with("metrics kimg"))
        .unwrap_or_else(|| panic!("no metrics line in the log:\n{log}"));
    assert!(
        line.contains("fid40 ") && line.contains("ppl_zend_v2 "),
        "{line}"
    );
    // TensorBoard holds both scalars under the reference's Metrics/ prefix.
    let events = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("events.out"))
        .expect("an events file")
        .path();
    let bytes = std::fs::read(events).unwrap();
    for tag in ["Metrics/fid40", "Metrics/ppl_zend_v2"] {
        assert!(
            bytes.windows(tag.len()).any(|w| w == tag.as_bytes()),
            "{tag} not logged"
        );
    }
    // The snapshot's metrics file and the results log.
    let snap = checkpoint::snapshots_in(&run).unwrap().pop().unwrap();
    let doc = read_json(&suite::beside(&snap, "metrics.json"));
    let fid = doc["metrics"]["fid40"]["value"].as_f64().unwrap();
    let ppl = doc["metrics"]["ppl_zend_v2"]["value"].as_f64().unwrap();
    assert!(fid.is_finite() && fid > 0.0, "{fid}");
    assert!(ppl.is_finite() && ppl > 0.0, "{ppl}");
    assert_eq!(doc["metrics"]["ppl_zend_v2"]["num_samples"], 20);
    let lines = std::fs::read_to_string(root.join("results/metrics.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count(),
        1,
        "one metric tick in a one-tick run"
    );
    // The trainer and `evaluate` agree on the same snapshot, latents and settings (seed 7, as the run).
    let det_dir = det.clone();
    let mut args = eval_args(&snap, &root, &det_dir);
    args.num_samples = 20;
    let g = Globals {
        seed: Some(7),
        ..globals()
    };
    evaluate::run(&g, &args).unwrap();
    let again = read_json(&suite::beside(&snap, "metrics.json"));
    assert_eq!(again["metrics"]["fid40"]["reals"]["cache"], "hit");
    let fid2 = again["metrics"]["fid40"]["value"].as_f64().unwrap();
    let ppl2 = again["metrics"]["ppl_zend_v2"]["value"].as_f64().unwrap();
    assert!((fid - fid2).abs() < 1e-6 * fid, "{fid} vs {fid2}");
    assert!((ppl - ppl2).abs() < 1e-6 * ppl, "{ppl} vs {ppl2}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn evaluate_end_to_end_with_download_cache_and_z() {
    let Some(det) = detectors() else { return };
    let _g = lock();
    let root = scratch("e2e");
    tiny_dataset(&root);
    let run = train_tiny(&root, json!({}));
    let snap = checkpoint::snapshots_in(&run).unwrap().pop().unwrap();

    // The Inception stand-in comes from a local HTTP server into the cache directory.
    let server = TestServer::start();
    let inception = std::fs::read(det.join("inception-2015-12-05.pt")).unwrap();
    server.add_file("metrics/inception-2015-12-05.pt", inception.clone());
    let url = server.url("metrics/inception-2015-12-05.pt");
    let mut args = eval_args(&snap, &root, &det);
    args.fid_detector = Some(url.clone());
    evaluate::run(&globals(), &args).unwrap();
    let cached = root.join("cache/inception-2015-12-05.pt");
    assert_eq!(std::fs::read(&cached).unwrap(), inception);
    assert_eq!(server.log_for("metrics/inception-2015-12-05.pt").len(), 1);

    let doc = read_json(&suite::beside(&snap, "metrics.json"));
    let fid = &doc["metrics"]["fid40"];
    let ppl = &doc["metrics"]["ppl_zend_v2"];
    let fid_value = fid["value"].as_f64().unwrap();
    let ppl_value = ppl["value"].as_f64().unwrap();
    assert!(fid_value.is_finite() && fid_value > 0.0);
    assert!(ppl_value.is_finite() && ppl_value > 0.0);
    // Each record names its pipeline.
    assert_eq!(fid["detector"]["source"], url.as_str());
    assert_eq!(
        fid["detector"]["sha256"],
        hessian_gan::io::download::sha256_file(&cached)
            .unwrap()
            .as_str()
    );
    assert_eq!(fid["feature_dims"], 48);
    assert_eq!(
        (fid["num_real"].clone(), fid["num_fake"].clone()),
        (json!(40), json!(40))
    );
    assert_eq!(fid["reals"]["cache"], "computed");
    assert_eq!(fid["reals"]["count"], 64);
    assert_eq!(ppl["detector"]["source"], "local file");
    assert_eq!(ppl["epsilon"], 1e-4);
    assert!(ppl["resize"].as_str().unwrap().contains("8x8 -> 256x256"));
    assert!(ppl["kept"].as_u64().unwrap() >= 22 && ppl["kept"].as_u64().unwrap() <= 24);
    assert!(ppl["images_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(doc["model"], reference::describe(&snap).name.as_str());
    // The latents used are written next to the snapshot.
    let fz = Tensor::read_npy(suite::beside(&snap, "fid-z.npy")).unwrap();
    let pz = Tensor::read_npy(suite::beside(&snap, "ppl-z.npy")).unwrap();
    assert_eq!((fz.size(), pz.size()), (vec![40, 3], vec![24, 2, 3]));

    // Second run: the cached network is used as it is (no request) and the real statistics come from the cache,
    // giving the same number; the fakes' latents are the same for the same seed.
    let mut args = eval_args(&snap, &root, &det);
    args.fid_detector = Some(url.clone());
    args.metrics = vec!["fid".into()];
    evaluate::run(&globals(), &args).unwrap();
    assert_eq!(server.log_for("metrics/inception-2015-12-05.pt").len(), 1);
    let doc = read_json(&suite::beside(&snap, "metrics.json"));
    assert_eq!(doc["metrics"]["fid40"]["reals"]["cache"], "hit");
    assert_eq!(
        doc["metrics"]["fid40"]["value"].as_f64().unwrap(),
        fid_value
    );
    // PPL from the earlier run is kept in the merged file.
    assert_eq!(
        doc["metrics"]["ppl_zend_v2"]["value"].as_f64().unwrap(),
        ppl_value
    );

    // A corrupt cache entry is recomputed, not trusted.
    let npz = PathBuf::from(
        doc["metrics"]["fid40"]["reals"]["cache_file"]
            .as_str()
            .unwrap(),
    );
    let mut bytes = std::fs::read(&npz).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&npz, bytes).unwrap();
    let mut args = eval_args(&snap, &root, &det);
    args.metrics = vec!["fid".into()];
    evaluate::run(&globals(), &args).unwrap();
    let doc = read_json(&suite::beside(&snap, "metrics.json"));
    let cache = doc["metrics"]["fid40"]["reals"]["cache"].as_str().unwrap();
    assert!(cache.starts_with("recomputed (corrupt"), "{cache}");
    assert_eq!(
        doc["metrics"]["fid40"]["value"].as_f64().unwrap(),
        fid_value
    );

    // Another seed draws other fakes: a different FID from the same cached reals.
    let mut args = eval_args(&snap, &root, &det);
    args.metrics = vec!["fid".into()];
    let g = Globals {
        seed: Some(99),
        ..globals()
    };
    evaluate::run(&g, &args).unwrap();
    let doc = read_json(&suite::beside(&snap, "metrics.json"));
    assert_eq!(doc["metrics"]["fid40"]["reals"]["cache"], "hit");
    assert_ne!(
        doc["metrics"]["fid40"]["value"].as_f64().unwrap(),
        fid_value
    );

    // --z with the written pairs reproduces PPL exactly, whatever the seed.
    let z_file = root.join("pairs.npy");
    std::fs::copy(suite::beside(&snap, "ppl-z.npy"), &z_file).unwrap();
    let mut args = eval_args(&snap, &root, &det);
    args.metrics = vec!["ppl".into()];
    args.z = Some(z_file.clone());
    evaluate::run(&g, &args).unwrap();
    let doc = read_json(&suite::beside(&snap, "metrics.json"));
    assert_eq!(
        doc["metrics"]["ppl_zend_v2"]["value"].as_f64().unwrap(),
        ppl_value
    );
    assert!(doc["metrics"]["ppl_zend_v2"]["latents"]
        .as_str()
        .unwrap()
        .contains("pairs.npy"));

    // A --z of the wrong width is a one-line error naming both numbers.
    let bad = root.join("bad.npy");
    Tensor::zeros([5, 4], (Kind::Float, Device::Cpu))
        .write_npy(&bad)
        .unwrap();
    let mut args = eval_args(&snap, &root, &det);
    args.metrics = vec!["ppl".into()];
    args.z = Some(bad);
    let err = format!("{:#}", evaluate::run(&globals(), &args).unwrap_err());
    assert!(
        err.contains("width 4") && err.contains("nz = 3") && !err.contains('\n'),
        "{err}"
    );

    // One line per evaluated model and run in the results log.
    let lines = std::fs::read_to_string(root.join("results/metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 5);
    for l in lines.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(v["metrics"].as_object().is_some_and(|m| !m.is_empty()));
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn detector_errors_are_clear() {
    let Some(det) = detectors() else { return };
    let root = scratch("errors");
    // The wrong network for FID: the call convention check inside the stand-in fails, and the error names it.
    let wrong = Detector::load(
        DetectorKind::Inception,
        Some(det.join("vgg16.pt").to_str().unwrap()),
        &root,
        Device::Cpu,
    )
    .unwrap();
    let x = Tensor::zeros([2, 3, 8, 8], (Kind::Uint8, Device::Cpu));
    let err = format!("{:#}", wrong.inception_features(&x).unwrap_err());
    assert!(
        err.contains("vgg16.pt") && err.contains("float images") && !err.contains('\n'),
        "{err}"
    );
    // Not TorchScript at all.
    let junk = root.join("junk.pt");
    std::fs::write(&junk, b"not a model").unwrap();
    let err = Detector::load(
        DetectorKind::Lpips,
        Some(junk.to_str().unwrap()),
        &root,
        Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("junk.pt") && err.contains("TorchScript"),
        "{err}"
    );
    // A missing local file and a missing download say what to do.
    let err = Detector::load(
        DetectorKind::Inception,
        Some("/no/such.pt"),
        &root,
        Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("--fid-detector /no/such.pt") && err.contains("inception-2015-12-05.pt"),
        "{err}"
    );
    let server = TestServer::start();
    let err = Detector::load(
        DetectorKind::Lpips,
        Some(&server.url("missing/vgg16.pt")),
        &root.join("cache"),
        Device::Cpu,
    )
    .err()
    .map(|e| format!("{e:#}"))
    .unwrap();
    assert!(
        err.contains("404") && err.contains("--ppl-detector") && err.contains("place it at"),
        "{err}"
    );
    assert!(!root.join("cache/vgg16.pt").exists());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn metric_suite_runs_only_what_was_asked() {
    let Some(det) = detectors() else { return };
    let _g = lock();
    let root = scratch("suite");
    let ds_dir = tiny_dataset(&root);
    let ds = Dataset::open(&ds_dir).unwrap();
    let opts = MetricsOptions {
        fid_num_images: 100, // more than the 64 images: the dataset repeats in order
        batch_size: 16,
        fid_detector: Some(det.join("inception-2015-12-05.pt").display().to_string()),
        cache_dir: root.join("cache"),
        use_cache: false,
        ..Default::default()
    };
    // FID alone never touches PPL's network, so a missing one is no error; asking for PPL too is.
    let missing = MetricsOptions {
        ppl_detector: Some("/no/such/vgg16.pt".into()),
        ..opts.clone()
    };
    MetricSuite::new(&[MetricKind::Fid], missing.clone(), Device::Cpu).unwrap();
    let err = MetricSuite::new(&[MetricKind::Fid, MetricKind::Ppl], missing, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--ppl-detector /no/such/vgg16.pt"), "{err}");
    // The reals of a dataset against themselves: feature statistics of the same images give FID 0.
    let inception = Detector::load(
        DetectorKind::Inception,
        opts.fid_detector.as_deref(),
        &opts.cache_dir,
        Device::Cpu,
    )
    .unwrap();
    let (a, info) = fid::real_stats(&ds, 3, 100, &inception, &opts, Device::Cpu).unwrap();
    assert_eq!(info.cache, "disabled");
    assert!(info.cache_file.is_none() && !root.join("cache").exists());
    let feats = fid::real_features(&ds, 3, 128, &inception, 16, Device::Cpu).unwrap();
    // Image i and image i + 64 are the same image (wrap-around in order).
    assert!(feats.narrow(0, 0, 64).equal(&feats.narrow(0, 64, 64)));
    let b = feature_stats(&feats.narrow(0, 0, 100)).unwrap();
    assert!(frechet_distance(&a, &b).unwrap().abs() < 1e-9);
    // The fingerprint changes when the level file changes.
    let f1 = fid::dataset_fingerprint(&ds, 3).unwrap();
    assert_eq!(f1, fid::dataset_fingerprint(&ds, 3).unwrap());
    assert_ne!(f1, fid::dataset_fingerprint(&ds, 2).unwrap());
    drop(ds);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bare_evaluate_picks_the_latest_snapshot_of_the_newest_run() {
    let root = scratch("bare");
    // No runs: a clear error that says how to name a model.
    let err = format!(
        "{:#}",
        evaluate::default_model(&root.join("results")).unwrap_err()
    );
    assert!(
        err.contains("no snapshot in") && err.contains("--models") && !err.contains('\n'),
        "{err}"
    );
    // The newest run with a snapshot wins; a newer run without one (still starting) is passed over.
    let results = root.join("results");
    for (run, snaps) in [
        ("00000-a", &["000001", "000002"][..]),
        ("00003-b", &["000004", "000010"][..]),
        ("00004-c", &[][..]),
    ] {
        std::fs::create_dir_all(results.join(run)).unwrap();
        for s in snaps {
            let name = format!("network-snapshot-{s}.safetensors");
            std::fs::write(results.join(run).join(name), b"").unwrap();
        }
    }
    assert_eq!(
        evaluate::default_model(&results).unwrap(),
        results.join("00003-b/network-snapshot-000010.safetensors")
    );
    std::fs::remove_dir_all(&root).unwrap();

    // End to end: `evaluate` with no model evaluates the newest real run on its own training data.
    let Some(det) = detectors() else { return };
    let _g = lock();
    let root = scratch("bare-e2e");
    tiny_dataset(&root);
    train_tiny(&root, json!({}));
    let newest = train_tiny(&root, json!({"seed": 8}));
    let snap = checkpoint::snapshots_in(&newest).unwrap().pop().unwrap();
    let mut args = eval_args(&snap, &root, &det);
    args.models.clear();
    args.metrics = vec!["fid".into()];
    let out = evaluate::run(&globals(), &args).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].record["snapshot"], json!(snap));
    assert!(out[0].rows[0].value.is_finite());
    std::fs::remove_dir_all(&root).unwrap();
}
