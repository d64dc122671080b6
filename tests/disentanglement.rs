//! The disentanglement metrics (docs/spec/geometry_infogancr.md §B.3) on constructed codes with known answers:
//! codes equal to the factors score near 1, independent noise near 0, a permutation of the codes changes nothing,
//! and codes mixing two factors land in between; plus the building blocks against hand-computed values.

use hessian_gan::core::rng::Rng;
use hessian_gan::metrics::disentanglement::{
    self as dis, dhsic, discretize, factor_ids, linear_svc_accuracy, mutual_info, Groups, Scores,
};
use ndarray::{array, s, Array2, Axis};

const N: usize = 1500;

/// Factors: x, y uniform in [0, 1) (continuous) and a shape in {0, 1, 2} (discrete).
fn factors(rng: &mut Rng) -> Array2<f64> {
    Array2::from_shape_fn((N, 3), |(_, j)| {
        if j < 2 {
            rng.uniform()
        } else {
            rng.below(3) as f64
        }
    })
}

/// 90 groups of 40 rows, group g fixing factor g mod 3 at one drawn value, the others drawn anew; `encode` maps a
/// factor row to a code row.
fn groups(rng: &mut Rng, encode: &dyn Fn(&[f64]) -> Vec<f64>) -> Groups {
    let mut codes = Vec::new();
    let mut labels = Vec::new();
    for g in 0..90 {
        let k = g % 3;
        let fixed = if k < 2 {
            rng.uniform()
        } else {
            rng.below(3) as f64
        };
        let rows: Vec<Vec<f64>> = (0..40)
            .map(|_| {
                let mut f = vec![rng.uniform(), rng.uniform(), rng.below(3) as f64];
                f[k] = fixed;
                encode(&f)
            })
            .collect();
        let d = rows[0].len();
        codes.push(Array2::from_shape_fn((40, d), |(i, j)| rows[i][j]));
        labels.push(k);
    }
    Groups {
        codes,
        labels,
        std_codes: None,
    }
}

fn encode_all(f: &Array2<f64>, encode: &dyn Fn(&[f64]) -> Vec<f64>) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = f.outer_iter().map(|r| encode(&r.to_vec())).collect();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
}

fn run(seed: u64, encode: &dyn Fn(&[f64]) -> Vec<f64>) -> Scores {
    let mut rng = Rng::new(seed);
    let f = factors(&mut rng);
    let c = encode_all(&f, encode);
    let g = groups(&mut rng, encode);
    dis::score(c.view(), f.view(), &[false, false, true], Some(&g), 600).unwrap()
}

#[test]
fn codes_equal_to_the_factors_score_near_one() {
    let s = run(1, &|f| f.to_vec());
    assert_eq!(
        s.factor_vae,
        Some(1.0),
        "a fixed factor's code never varies"
    );
    assert_eq!(s.factor_vae_revised, Some(1.0));
    assert_eq!(s.beta_vae, Some(1.0));
    assert!(s.mig > 0.9, "MIG {}", s.mig);
    assert!(s.modularity > 0.95, "modularity {}", s.modularity);
    assert!(s.dci_lasso_disentanglement > 0.95, "{s:?}");
    assert!(s.dci_lasso_completeness > 0.95, "{s:?}");
    // The forest variant: each factor's trees split on its own code alone.
    assert!(s.dci_forest_disentanglement > 0.95, "{s:?}");
    assert!(s.dci_forest_completeness > 0.95, "{s:?}");
    assert!(s.sap > 0.6, "SAP {}", s.sap);
    assert!(s.explicitness > 0.85, "explicitness {}", s.explicitness);
    // SAP's continuous entries are R²: 1 on the diagonal.
    assert!((s.sap_matrix[0][0] - 1.0).abs() < 1e-12 && (s.sap_matrix[1][1] - 1.0).abs() < 1e-12);
}

#[test]
fn independent_noise_scores_near_zero_and_a_permutation_changes_nothing() {
    let noise = |seed: u64| {
        move |f: &[f64]| {
            // Noise that does not depend on the factors: a hash of nothing but a counter.
            let mut r = Rng::new(seed ^ (f[0].to_bits() >> 7) ^ (f[1].to_bits() << 3));
            vec![r.uniform(), r.uniform(), r.uniform()]
        }
    };
    let s = run(2, &noise(9));
    assert!(s.mig < 0.05, "MIG {}", s.mig);
    // (DCI with Lasso is not near 0 on noise: Lasso(0.02) zeroes most of the tiny coefficients, and what is left
    // looks sparse. The reference shares this; the ordering test below compares DCI only with real codes.)
    assert!(s.factor_vae.unwrap() < 0.6, "{:?}", s.factor_vae);
    assert!(s.sap < 0.1, "SAP {}", s.sap);
    assert!(s.explicitness < 0.65, "explicitness {}", s.explicitness);

    let identity = run(3, &|f| f.to_vec());
    let permuted = run(3, &|f| vec![f[2], f[0], f[1]]);
    for (a, b, what) in [
        (identity.mig, permuted.mig, "MIG"),
        (identity.sap, permuted.sap, "SAP"),
        (identity.modularity, permuted.modularity, "modularity"),
        (
            identity.factor_vae.unwrap(),
            permuted.factor_vae.unwrap(),
            "FactorVAE",
        ),
    ] {
        assert!((a - b).abs() < 1e-12, "{what}: {a} vs {b}");
    }
    for (a, b, what) in [
        (
            identity.dci_lasso_disentanglement,
            permuted.dci_lasso_disentanglement,
            "DCI D",
        ),
        (
            identity.dci_lasso_completeness,
            permuted.dci_lasso_completeness,
            "DCI C",
        ),
        (identity.explicitness, permuted.explicitness, "explicitness"),
    ] {
        assert!(
            (a - b).abs() < 1e-4,
            "{what}: {a} vs {b} (solver tolerance)"
        );
    }
}

#[test]
fn codes_mixing_two_factors_land_in_between() {
    let identity = run(4, &|f| f.to_vec());
    let mixed = run(4, &|f| vec![f[0] + f[1], f[0] - f[1], f[2]]);
    let noise = run(4, &|f| {
        let mut r = Rng::new(f[0].to_bits() ^ f[1].to_bits().rotate_left(17));
        vec![r.uniform(), r.uniform(), r.uniform()]
    });
    for (name, get) in [
        ("MIG", (|s: &Scores| s.mig) as fn(&Scores) -> f64),
        ("SAP", |s: &Scores| s.sap),
        ("modularity", |s: &Scores| s.modularity),
    ] {
        let (i, m, r) = (get(&identity), get(&mixed), get(&noise));
        assert!(i > m && m > r, "{name}: identity {i}, mixed {m}, noise {r}");
    }
    let (i, m) = (
        identity.dci_lasso_disentanglement,
        mixed.dci_lasso_disentanglement,
    );
    assert!(i > m + 0.2, "DCI disentanglement: identity {i}, mixed {m}");
    // Random-forest DCI orders all three (on noise the trees spread their splits over every code).
    let (i, m, r) = (
        identity.dci_forest_disentanglement,
        mixed.dci_forest_disentanglement,
        noise.dci_forest_disentanglement,
    );
    assert!(
        i > m + 0.2 && m > r,
        "DCI-RF disentanglement: identity {i}, mixed {m}, noise {r}"
    );
}

#[test]
fn building_blocks_match_hand_computed_values() {
    // np.histogram(c, 4) edges 0, 1, 2, 3, 4 → np.digitize(c, edges[:-1]).
    let c = array![0.0, 0.5, 1.0, 2.9, 3.0, 4.0];
    assert_eq!(discretize(c.view(), 4), [1, 1, 2, 3, 4, 4]);
    // A constant column: NumPy widens the range to c ± 0.5, so with 2 bins the edges are c − 0.5, c, c + 0.5 and
    // the value sits on the second edge: bin 2.
    assert_eq!(discretize(array![5.0, 5.0].view(), 2), [2, 2]);
    // Grids map to their value order; more than 64 distinct values fall into 20 bins.
    assert_eq!(factor_ids(array![0.3, 0.1, 0.3, 0.2].view()), [2, 0, 2, 1]);
    let many: Vec<f64> = (0..100).map(f64::from).collect();
    let ids = factor_ids(ndarray::Array1::from(many).view());
    assert_eq!((ids[0], ids[4], ids[5], ids[99]), (0, 0, 1, 19));
    // MI of a balanced binary variable with itself is ln 2; with an independent one, 0.
    let a = [0, 1, 0, 1, 0, 1, 0, 1];
    let b = [0, 0, 1, 1, 0, 0, 1, 1];
    assert!((mutual_info(&a, &a) - std::f64::consts::LN_2).abs() < 1e-15);
    assert!(mutual_info(&a, &b).abs() < 1e-15);
    // Modularity of a one-hot MI matrix is 1; of a row spread evenly over K factors, 0.
    assert!((dis::modularity(&array![[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]) - 1.0).abs() < 1e-15);
    assert!(dis::modularity(&array![[1.0, 1.0, 1.0]]).abs() < 1e-15);
    // Separable classes on one feature: the SVC gets all of them; identical features: the balanced majority.
    let x = array![-2.0, -1.5, -1.0, 1.0, 1.5, 2.0];
    assert_eq!(
        linear_svc_accuracy(x.view(), &[0, 0, 0, 1, 1, 1], 0.01),
        1.0
    );
    let flat = array![0.0, 0.0, 0.0, 0.0];
    assert!(linear_svc_accuracy(flat.view(), &[0, 0, 0, 1], 0.01) <= 0.75);
}

#[test]
fn dhsic_is_small_for_independent_codes_and_larger_for_dependent_ones() {
    let mut rng = Rng::new(11);
    let indep = Array2::from_shape_fn((300, 2), |_| rng.uniform());
    let mut dep = indep.clone();
    let first = dep.column(0).to_owned();
    dep.column_mut(1).assign(&first);
    let (i, d) = (dhsic(indep.view()), dhsic(dep.view()));
    assert!(
        i.abs() < 0.01 && d > 10.0 * i.abs().max(1e-4),
        "independent {i}, dependent {d}"
    );
    // One dimension: the three terms cancel to 0 only for a constant code; any code gives a value ≥ 0.
    assert!(dhsic(indep.slice(s![.., ..1])) >= -1e-12);
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let f = Array2::from_shape_fn((10, 2), |(i, j)| (i * 2 + j) as f64);
    let err = dis::score(
        Array2::<f64>::zeros((9, 2)).view(),
        f.view(),
        &[false, false],
        None,
        100,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("9 rows") && err.contains("10"), "{err}");
    let mut nan = f.clone();
    nan[[3, 1]] = f64::NAN;
    let err = dis::score(nan.view(), f.view(), &[false, false], None, 100)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[3, 1]") && err.contains("not finite"),
        "{err}"
    );
    let err = dis::score(f.view(), f.view(), &[false], None, 100)
        .unwrap_err()
        .to_string();
    assert!(err.contains("discrete"), "{err}");
    let _ = f.sum_axis(Axis(0));
}

/// An .npy fixture as float64 values and its shape.
fn npy(name: &str) -> (Vec<i64>, Vec<f64>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/score")
        .join(name);
    let t = tch::Tensor::read_npy(&path).unwrap();
    let v = Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap();
    (t.size(), v)
}

#[test]
fn agrees_with_numpy_and_scikit_learn() {
    // tests/fixtures/make_score_fixture.py computed these with NumPy and scikit-learn as metric.py does.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/score");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let matrix = |name: &str| {
        let (s, v) = npy(name);
        Array2::from_shape_vec((s[0] as usize, s[1] as usize), v).unwrap()
    };
    let (codes, factors) = (matrix("codes.npy"), matrix("factors.npy"));
    let (gs, gv) = npy("group_codes.npy");
    let (g, l, d) = (gs[0] as usize, gs[1] as usize, gs[2] as usize);
    let (_, labels) = npy("group_labels.npy");
    let groups = Groups {
        codes: (0..g)
            .map(|i| {
                Array2::from_shape_vec((l, d), gv[i * l * d..(i + 1) * l * d].to_vec()).unwrap()
            })
            .collect(),
        labels: labels.iter().map(|&v| v as usize).collect(),
        std_codes: None,
    };
    let s = dis::score(
        codes.view(),
        factors.view(),
        &[true, false, false],
        Some(&groups),
        expected["dhsic_rows"].as_u64().unwrap() as usize,
    )
    .unwrap();
    let got = serde_json::to_value(&s).unwrap();
    // Tolerances: the counting metrics and closed forms to rounding; Lasso (coordinate descent to 1e-4, same
    // objective) and the logistic regressions (L-BFGS to a gradient of 1e-4) to their solvers' precision.
    for (key, tol) in [
        ("factor_vae", 1e-12),
        ("factor_vae_revised", 1e-12),
        ("beta_vae", 1e-12),
        ("sap", 1e-9),
        ("mig", 1e-9),
        ("modularity", 1e-9),
        ("explicitness", 1e-4),
        ("dci_lasso_disentanglement", 1e-6),
        ("dci_lasso_completeness", 1e-6),
        ("dhsic", 1e-9),
    ] {
        let (a, b) = (got[key].as_f64().unwrap(), expected[key].as_f64().unwrap());
        assert!((a - b).abs() <= tol, "{key}: ours {a}, scikit-learn {b}");
    }
    for key in ["mi", "sap_matrix", "dci_lasso_importance"] {
        let (a, b) = (
            got[key].as_array().unwrap(),
            expected[key].as_array().unwrap(),
        );
        for (ra, rb) in a.iter().zip(b) {
            for (x, y) in ra.as_array().unwrap().iter().zip(rb.as_array().unwrap()) {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() < 1e-6, "{key}: {x} vs {y}");
            }
        }
    }
    assert_eq!(got["factor_vae_votes"], expected["factor_vae_votes"]);
}

#[test]
fn the_score_command_reads_npy_files_and_names_bad_ones() {
    use hessian_gan::commands::score::{self, ScoreOptions};
    use hessian_gan::commands::Globals;
    let dir = std::env::temp_dir().join(format!("hg-score-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/score");
    let opts = ScoreOptions {
        codes: Some(fixture.join("codes.npy")),
        factors: Some(fixture.join("factors.npy")),
        discrete_factors: vec![0],
        group_codes: Some(fixture.join("group_codes.npy")),
        group_labels: Some(fixture.join("group_labels.npy")),
        dhsic_rows: 200,
        out: Some(dir.join("scores.json")),
        ..ScoreOptions::default()
    };
    let reports = score::run(&Globals::default(), &opts).unwrap();
    assert_eq!(reports.len(), 1);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("scores.json")).unwrap()).unwrap();
    assert_eq!(
        written["factor_vae"],
        serde_json::json!(reports[0].scores.factor_vae)
    );
    // Too few rows in the codes: the error names both files.
    let short = dir.join("short.npy");
    tch::Tensor::zeros([5, 4], (tch::Kind::Float, tch::Device::Cpu))
        .write_npy(&short)
        .unwrap();
    let err = format!(
        "{:#}",
        score::run(
            &Globals::default(),
            &ScoreOptions {
                codes: Some(short.clone()),
                ..opts.clone()
            }
        )
        .unwrap_err()
    );
    assert!(
        err.contains("short.npy") && err.contains("factors.npy") && err.contains("5 rows"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        score::run(
            &Globals::default(),
            &ScoreOptions {
                discrete_factors: vec![7],
                ..opts.clone()
            }
        )
        .unwrap_err()
    );
    assert!(err.contains("--discrete-factors 7"), "{err}");
    let err = format!(
        "{:#}",
        score::run(
            &Globals::default(),
            &ScoreOptions {
                codes: Some(dir.join("missing.npy")),
                ..opts.clone()
            }
        )
        .unwrap_err()
    );
    assert!(
        err.contains("--codes") && err.contains("missing.npy"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A toy "generator" that renders CLEVR-like scenes through the synthetic renderer: the object's x and y are
/// functions of z (z2 is ignored), hue and shape fixed.
fn toy_generator(mix: bool) -> impl Fn(&tch::Tensor) -> tch::Tensor {
    use hessian_gan::data::synth::{self, Kind};
    move |z: &tch::Tensor| {
        let z = Vec::<f32>::try_from(z.to_kind(tch::Kind::Float).contiguous().view([-1])).unwrap();
        let sigmoid = |v: f32| 1.0 / (1.0 + (-1.2 * v).exp());
        let images: Vec<tch::Tensor> = z
            .chunks(3)
            .map(|c| {
                let (x, y) = if mix {
                    (sigmoid(c[0] + c[1]), sigmoid(c[0] - c[1]))
                } else {
                    (sigmoid(c[0]), sigmoid(c[1]))
                };
                let px = synth::render(Kind::ClevrSimple, &[x, y, 0.5, 1.0], 16).unwrap();
                tch::Tensor::from_slice(&px).view([3, 16, 16])
            })
            .collect();
        hessian_gan::data::reals::to_float(&tch::Tensor::stack(&images, 0))
    }
}

#[test]
fn encoder_free_scores_see_which_component_moves_which_factor() {
    use hessian_gan::data::synth::{self, Kind, SynthOptions};
    use hessian_gan::data::Dataset;
    use hessian_gan::metrics::encoder_free::{score_generator, EncoderFreeOptions};
    use hessian_gan::metrics::predictor::{FactorPredictor, PredictorOptions};
    let dir = std::env::temp_dir().join(format!("hg-encoder-free-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("clevr16");
    synth::generate(
        &data,
        &SynthOptions {
            kind: Kind::ClevrSimple,
            count: 3000,
            resolution: 16,
            seed: 3,
            name: None,
        },
    )
    .unwrap();
    let ds = Dataset::open(&data).unwrap();
    let popts = PredictorOptions {
        steps: 800,
        ..Default::default()
    };
    let cache = dir.join("cache");
    let device = tch::Device::Cpu;
    let predictor = FactorPredictor::load_or_train(&ds, 4, &cache, &popts, device).unwrap();
    let q = &predictor.meta.quality;
    assert_eq!(q.len(), 4);
    assert!(
        q[0].value > 0.8 && q[1].value > 0.8,
        "x and y are read well: {q:?}"
    );
    // The second time it comes from the cache, identical.
    let again = FactorPredictor::load_or_train(&ds, 4, &cache, &popts, device).unwrap();
    let x = hessian_gan::data::reals::to_float(&ds.first_images(4, 8).unwrap());
    assert!(predictor.predict(&x).0.equal(&again.predict(&x).0));

    let opts = EncoderFreeOptions {
        samples: 1200,
        groups: 30,
        group_size: 20,
        effect_bases: 8,
        effect_steps: 8,
        dhsic_rows: 300,
        ..Default::default()
    };
    let toy = score_generator(&toy_generator(false), 3, &predictor, &ds, &opts, device).unwrap();
    let mixed = score_generator(&toy_generator(true), 3, &predictor, &ds, &opts, device).unwrap();
    let e = &toy.effect;
    // z0 moves x, z1 moves y, z2 moves nothing (the same images: exactly 0).
    assert!(e[0][0] > 0.3 && e[0][1] < 0.25 * e[0][0], "{e:?}");
    assert!(e[1][1] > 0.3 && e[1][0] < 0.25 * e[1][1], "{e:?}");
    assert!(e[2].iter().all(|&v| v == 0.0), "{e:?}");
    assert!(
        toy.effect_disentanglement > mixed.effect_disentanglement + 0.1,
        "toy {} {:?} vs mixed {} {:?}",
        toy.effect_disentanglement,
        toy.effect,
        mixed.effect_disentanglement,
        mixed.effect
    );
    assert!(
        toy.scores.mig > mixed.scores.mig,
        "MIG toy {} mixed {}",
        toy.scores.mig,
        mixed.scores.mig
    );
    assert!(toy.predictor_frechet_distance.is_finite());
    std::fs::remove_dir_all(&dir).unwrap();
}
