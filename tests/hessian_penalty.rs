//! The Hessian Penalty core against analytic ground truths (docs/spec/progan_hp.md §10, §3.3 point 9, §9.1).

use hessian_gan::core::hessian::{full_hessian, weighted_sum, HessianPenalty, Reduction, Variance};
use std::sync::{Mutex, MutexGuard};
use tch::{nn, nn::Module, Kind, Tensor};

/// libtorch's generator is global and the test harness runs tests on several threads: every test that seeds holds
/// this lock so its draws are its own.
static RNG: Mutex<()> = Mutex::new(());

fn seed(s: i64) -> MutexGuard<'static, ()> {
    let guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(s);
    guard
}

const K: usize = 256;

fn col(z: &Tensor, i: i64) -> Tensor {
    z.select(1, i)
}

fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

/// The expected value of the estimator: population variance scales the ground truth by (k−1)/k.
fn expected(truth: f64, variance: Variance, k: usize) -> f64 {
    match variance {
        Variance::Population => truth * (k as f64 - 1.0) / k as f64,
        Variance::Unbiased => truth,
    }
}

fn assert_rel(got: f64, want: f64, tol: f64, what: &str) {
    let rel = (got - want).abs() / want.abs().max(1e-12);
    assert!(
        rel < tol,
        "{what}: got {got}, want {want} (relative error {rel:.4} >= {tol})"
    );
}

const BOTH: [Variance; 2] = [Variance::Population, Variance::Unbiased];

#[test]
fn square_of_one_variable_has_zero_penalty() {
    for v in BOTH {
        let _rng = seed(500);
        let hp = HessianPenalty::new(4, 0.1).unwrap().with_variance(v);
        let z = Tensor::from_slice(&[0.7f64]).reshape([1, 1]);
        let p = hp.penalty(|z| vec![z.square()], &z, None, None).unwrap();
        assert!(
            scalar(&p).abs() < 1e-9,
            "x^2 must give 0, got {}",
            scalar(&p)
        );
    }
}

#[test]
fn bilinear_term_gives_four() {
    for v in BOTH {
        let _rng = seed(500);
        let hp = HessianPenalty::new(K, 0.1).unwrap().with_variance(v);
        let z = Tensor::from_slice(&[0.3f64, -1.2]).reshape([1, 2]);
        let p = hp
            .penalty(|z| vec![col(z, 0) * col(z, 1)], &z, None, None)
            .unwrap();
        assert_rel(scalar(&p), expected(4.0, v, K), 0.2, "x0*x1");
    }
}

#[test]
fn quartic_gives_square_of_mixed_derivative() {
    for v in BOTH {
        let _rng = seed(501);
        let hp = HessianPenalty::new(K, 0.1).unwrap().with_variance(v);
        let (x0, x1) = (1.3f64, -0.8f64);
        let z = Tensor::from_slice(&[x0, x1]).reshape([1, 2]);
        let f = |z: &Tensor| vec![(col(z, 0).square() * col(z, 1).square()) * 0.25];
        let p = hp.penalty(f, &z, None, None).unwrap();
        assert_rel(
            scalar(&p),
            expected((2.0 * x0 * x1).powi(2), v, K),
            0.2,
            "0.25 x0^2 x1^2",
        );
    }
}

fn batch4() -> (Tensor, Vec<f64>) {
    let vals = [0.5f64, 1.0, -1.5, 0.8, 2.0, -0.3, -0.9, -1.1];
    let truth = vals
        .chunks(2)
        .map(|p| (2.0 * p[0] * p[1]).powi(2))
        .collect();
    (Tensor::from_slice(&vals).reshape([4, 2]), truth)
}

#[test]
fn batched_quartic_takes_the_max_over_the_batch() {
    let (z, truth) = batch4();
    let max = truth.iter().cloned().fold(f64::MIN, f64::max);
    for v in BOTH {
        let _rng = seed(502);
        let hp = HessianPenalty::new(K, 0.1).unwrap().with_variance(v);
        let f = |z: &Tensor| vec![(col(z, 0).square() * col(z, 1).square()) * 0.25];
        let p = hp.penalty(f, &z, None, None).unwrap();
        assert_rel(scalar(&p), expected(max, v, K), 0.2, "batched max");
        // Per-element map: every sample near its own ground truth.
        let map = hp
            .with_reduction(Reduction::None)
            .penalties(f, &z, None)
            .unwrap()
            .remove(0);
        assert_eq!(map.size(), vec![4]);
        for (i, t) in truth.iter().enumerate() {
            assert_rel(
                map.double_value(&[i as i64]),
                expected(*t, v, K),
                0.2,
                "per-sample map",
            );
        }
    }
}

#[test]
fn multi_layer_mean_reduction_sums_the_layers() {
    let (z, truth) = batch4();
    let mean = truth.iter().sum::<f64>() / 4.0;
    for v in BOTH {
        let _rng = seed(503);
        let hp = HessianPenalty::new(K, 0.1)
            .unwrap()
            .with_variance(v)
            .with_reduction(Reduction::Mean);
        let f = |z: &Tensor| {
            let a = (col(z, 0).square() * col(z, 1).square()) * 0.25;
            let b = &a * 10.0;
            vec![a, b]
        };
        let per = hp.penalties(f, &z, None).unwrap();
        assert_rel(scalar(&per[0]), expected(mean, v, K), 0.2, "layer A");
        assert_rel(
            scalar(&per[1]),
            expected(100.0 * mean, v, K),
            0.2,
            "layer B",
        );
        let total = hp.penalty(f, &z, None, None).unwrap();
        assert_rel(scalar(&total), expected(101.0 * mean, v, K), 0.2, "A + B");
        // Layer B is exactly 10·A, so its penalty is exactly 100× A's on the same directions.
        assert_rel(scalar(&per[1]), 100.0 * scalar(&per[0]), 1e-9, "B = 100 A");
        // Per-activation weights.
        let weighted = weighted_sum(&per, Some(&[1.0, 0.5])).unwrap();
        assert_rel(
            scalar(&weighted),
            scalar(&per[0]) + 0.5 * scalar(&per[1]),
            1e-12,
            "weights",
        );
    }
}

#[test]
fn population_is_exactly_k_minus_1_over_k_of_unbiased_on_the_same_directions() {
    let z = Tensor::from_slice(&[0.4f64, -0.6, 1.1]).reshape([1, 3]);
    let f = |z: &Tensor| vec![col(z, 0) * col(z, 1) * col(z, 2) + col(z, 0).square() * col(z, 2)];
    for k in [2usize, 3, 8] {
        let pop = HessianPenalty::new(k, 0.1).unwrap();
        let _rng = seed(7);
        let dirs = pop.rademacher(&z);
        let a = scalar(&pop.penalty(f, &z, Some(&dirs), None).unwrap());
        let unb = pop.clone().with_variance(Variance::Unbiased);
        let b = scalar(&unb.penalty(f, &z, Some(&dirs), None).unwrap());
        assert_rel(
            a,
            b * (k as f64 - 1.0) / k as f64,
            1e-12,
            "population vs unbiased",
        );
    }
}

#[test]
fn random_quadratic_form_estimator_is_unbiased() {
    // f(z) = zᵀAz has the constant Hessian H = A + Aᵀ, and E[Var_v(vᵀHv)] = 2·Σ_{i≠j} H_ij² (docs/spec/progan_hp.md §3.3 point 9).
    let _rng = seed(11);
    let d = 5;
    let a = Tensor::randn([d, d], (Kind::Double, tch::Device::Cpu));
    let h = &a + a.tr();
    let off = &h - h.diag(0).diag_embed(0, -2, -1);
    let truth = 2.0 * scalar(&off.square().sum(Kind::Double));
    let f = |z: &Tensor| vec![(z.matmul(&a) * z).sum_dim_intlist(1, false, Kind::Double)];
    let n = 1000;
    let (mut unbiased, mut population) = (0.0, 0.0);
    let seeds = 20;
    for s in 0..seeds {
        tch::manual_seed(1000 + s);
        let z = Tensor::randn([n, d], (Kind::Double, tch::Device::Cpu));
        let hp = HessianPenalty::new(2, 0.1)
            .unwrap()
            .with_reduction(Reduction::Mean);
        let dirs = hp.rademacher(&z);
        population += scalar(&hp.penalty(f, &z, Some(&dirs), None).unwrap());
        let hp = hp.with_variance(Variance::Unbiased);
        unbiased += scalar(&hp.penalty(f, &z, Some(&dirs), None).unwrap());
    }
    unbiased /= seeds as f64;
    population /= seeds as f64;
    assert_rel(unbiased, truth, 0.05, "mean of unbiased estimates");
    assert_rel(
        population,
        truth / 2.0,
        0.05,
        "mean of population estimates at k = 2",
    );
}

fn mlp(vs: &nn::Path, nz: i64) -> impl Module {
    nn::seq()
        .add(nn::linear(vs / "fc1", nz, 16, Default::default()))
        .add_fn(|x| x.tanh())
        .add(nn::linear(vs / "fc2", 16, 8, Default::default()))
        .add_fn(|x| x.tanh())
        .add(nn::linear(vs / "fc3", 8, 4, Default::default()))
}

#[test]
fn batched_evaluation_equals_a_loop_over_the_2k_passes() {
    let _rng = seed(3);
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let net = mlp(&vs.root(), 6);
    vs.double();
    let z = Tensor::randn([5, 6], (Kind::Double, tch::Device::Cpu));
    let f = |x: &Tensor| {
        let h = net.forward(x);
        vec![h.tanh(), h]
    };
    let k = 4;
    let hp = HessianPenalty::new(k, 0.1)
        .unwrap()
        .with_reduction(Reduction::None);
    let dirs = hp.rademacher(&z);
    let batched = hp.penalties(f, &z, Some(&dirs)).unwrap();
    // The same estimate from 2k separate passes.
    let center = f(&z);
    for (layer, got) in batched.iter().enumerate() {
        let seconds: Vec<Tensor> = (0..k as i64)
            .map(|i| {
                let x = dirs.get(i) * 0.1;
                let plus = &f(&(&z + &x))[layer];
                let minus = &f(&(&z - &x))[layer];
                (plus - &center[layer] * 2.0 + minus) / 0.01
            })
            .collect();
        let s = Tensor::stack(&seconds, 0);
        let want = s.var_dim(0, false, false);
        let diff = scalar(&(got - &want).abs().max());
        assert!(
            diff < 1e-6,
            "layer {layer}: batched and looped differ by {diff}"
        );
    }
}

#[test]
fn gradients_reach_every_parameter_through_the_penalty() {
    let _rng = seed(4);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let net = mlp(&vs.root(), 3);
    let z = Tensor::randn([8, 3], (Kind::Float, tch::Device::Cpu));
    let hp = HessianPenalty::new(2, 0.1).unwrap();
    let loss = hp
        .penalty(|x| vec![net.forward(x)], &z, None, None)
        .unwrap();
    assert!(scalar(&loss) > 0.0);
    loss.backward();
    let vars = vs.variables();
    assert_eq!(vars.len(), 6);
    for (name, var) in vars {
        let g = var.grad();
        assert!(g.defined(), "{name} got no gradient");
        let mass = scalar(&g.abs().sum(Kind::Float));
        if name == "fc3.bias" {
            // A bias on the output shifts A(z±x) and A(z) alike, so it cancels in every second difference.
            assert_eq!(mass, 0.0, "the output bias cannot affect the penalty");
        } else {
            assert!(mass > 0.0, "{name} has an all-zero gradient");
        }
    }
}

#[test]
fn chunked_max_averages_the_chunk_maxima() {
    let (z, truth) = batch4();
    let _rng = seed(9);
    let f = |z: &Tensor| vec![(col(z, 0).square() * col(z, 1).square()) * 0.25];
    let hp = HessianPenalty::new(K, 0.1).unwrap();
    let dirs = hp.rademacher(&z);
    let map = hp
        .clone()
        .with_reduction(Reduction::None)
        .penalties(f, &z, Some(&dirs))
        .unwrap()
        .remove(0);
    let m: Vec<f64> = (0..4).map(|i| map.double_value(&[i])).collect();
    let chunked = hp
        .with_chunks(2)
        .unwrap()
        .penalty(f, &z, Some(&dirs), None)
        .unwrap();
    let want = (m[0].max(m[1]) + m[2].max(m[3])) / 2.0;
    assert_rel(scalar(&chunked), want, 1e-12, "mean of chunk maxima");
    assert!(truth.len() == 4);
}

#[test]
fn the_unperturbed_activation_cancels_at_k_2() {
    // k = 2 takes the shortcut Var = (S_1 − S_2)² / (2·divisor·ε⁴); check it against the definition, the variance
    // over k of the second differences (A(z+x) − 2A(z) + A(z−x)) / ε², centre included, in both conventions.
    let (z, _) = batch4();
    let z = z.to_kind(Kind::Double);
    let f = |z: &Tensor| {
        vec![
            col(z, 0).square() * col(z, 1) + col(z, 1).exp(),
            col(z, 0) * col(z, 1),
        ]
    };
    for variance in [Variance::Population, Variance::Unbiased] {
        let hp = HessianPenalty::new(2, 0.1)
            .unwrap()
            .with_variance(variance)
            .with_reduction(Reduction::None);
        let dirs = hp.rademacher(&z);
        let got = hp.penalties(f, &z, Some(&dirs)).unwrap();
        let centre = f(&z);
        for (layer, got) in got.iter().enumerate() {
            let d: Vec<Tensor> = (0..2)
                .map(|i| {
                    let x = dirs.get(i) * 0.1;
                    (&f(&(&z + &x))[layer] - &centre[layer] * 2.0 + &f(&(&z - &x))[layer]) / 0.01
                })
                .collect();
            let mean = (&d[0] + &d[1]) / 2.0;
            let ss = (&d[0] - &mean).square() + (&d[1] - &mean).square();
            let want = ss
                / if variance == Variance::Population {
                    2.0
                } else {
                    1.0
                };
            let err = (got - &want).abs().max().double_value(&[]);
            let size = want.abs().max().double_value(&[]);
            assert!(
                size > 1e-3 && err < 1e-9 * size.max(1.0),
                "{variance:?} layer {layer}: {err:e}"
            );
        }
    }
}

#[test]
fn seeded_draws_are_reproducible() {
    let z = Tensor::zeros([3, 4], (Kind::Float, tch::Device::Cpu));
    let hp = HessianPenalty::new(2, 0.1).unwrap();
    let _rng = seed(77);
    let a = hp.rademacher(&z);
    drop(_rng);
    let _rng2 = seed(77);
    let b = hp.rademacher(&z);
    assert!(a.equal(&b));
    assert_eq!(a.size(), vec![2, 3, 4]);
    assert_eq!(scalar(&a.abs().min()), 1.0, "entries are ±1");
}

#[test]
fn invalid_settings_and_shapes_are_clear_errors() {
    let err = HessianPenalty::new(1, 0.1).unwrap_err().to_string();
    assert!(err.contains("k") && err.contains("at least 2"), "{err}");
    let err = HessianPenalty::new(2, 0.0).unwrap_err().to_string();
    assert!(err.contains("epsilon"), "{err}");
    assert!(HessianPenalty::new(2, f64::NAN).is_err());

    let z = Tensor::ones([4, 2], (Kind::Float, tch::Device::Cpu));
    let hp = HessianPenalty::new(2, 0.1).unwrap();
    // A network that drops half the batch.
    let err = hp
        .penalties(|x| vec![x.narrow(0, 0, x.size()[0] / 2)], &z, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("activation 0") && err.contains("batch"),
        "{err}"
    );
    // Perturbed activations that do not have 2k × z's batch.
    let err = hp
        .penalties(|x| vec![x.narrow(0, 0, 4)], &z, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2k·n = 16"), "{err}");
    // Directions of the wrong shape.
    let bad = Tensor::ones([3, 4, 2], (Kind::Float, tch::Device::Cpu));
    assert!(hp
        .penalties(|x| vec![x.shallow_clone()], &z, Some(&bad))
        .is_err());
    // Chunks that do not divide the batch.
    let hp3 = hp.clone().with_chunks(3).unwrap();
    let err = hp3
        .penalties(|x| vec![x.shallow_clone()], &z, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 equal chunks"), "{err}");
    // A summed penalty needs a reduction.
    let none = hp.with_reduction(Reduction::None);
    assert!(none
        .penalty(|x| vec![x.shallow_clone()], &z, None, None)
        .is_err());
}

/// f: R³ → R^{2×2}, cubic, with hand-derived Hessians.
fn cubic(z: &Tensor) -> Tensor {
    let (a, b, c) = (col(z, 0), col(z, 1), col(z, 2));
    let f0 = a.pow_tensor_scalar(3) + &a * &b * &c * 2.0;
    let f1 = b.square() * &c - c.pow_tensor_scalar(3);
    let f2 = &a * &b;
    let f3 = c.square() * 0.5 + &a;
    Tensor::stack(&[f0, f1, f2, f3], 1).reshape([-1, 2, 2])
}

fn cubic_hessian(z: [f64; 3]) -> [[[f64; 3]; 3]; 4] {
    let [a, b, c] = z;
    [
        [
            [6.0 * a, 2.0 * c, 2.0 * b],
            [2.0 * c, 0.0, 2.0 * a],
            [2.0 * b, 2.0 * a, 0.0],
        ],
        [
            [0.0, 0.0, 0.0],
            [0.0, 2.0 * c, 2.0 * b],
            [0.0, 2.0 * b, -6.0 * c],
        ],
        [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
    ]
}

#[test]
fn full_hessian_matches_the_analytic_hessian_of_a_cubic() {
    let points = [[0.3, -1.1, 0.7], [1.5, 0.2, -0.4]];
    let flat: Vec<f64> = points.iter().flatten().cloned().collect();
    let z = Tensor::from_slice(&flat).reshape([2, 3]);
    for max_batch in [1usize, 7, 1000] {
        let h = full_hessian(cubic, &z, 0.1, max_batch).unwrap();
        assert_eq!(h.size(), vec![2, 2, 2, 3, 3]);
        assert_eq!(h.kind(), Kind::Double);
        for (s, p) in points.iter().enumerate() {
            let want = cubic_hessian(*p);
            for (o, hw) in want.iter().enumerate() {
                for (i, row) in hw.iter().enumerate() {
                    for (j, want) in row.iter().enumerate() {
                        let idx = [s as i64, o as i64 / 2, o as i64 % 2, i as i64, j as i64];
                        let got = h.double_value(&idx);
                        assert!(
                            (got - want).abs() < 1e-9,
                            "sample {s} output {o} H[{i}][{j}]: got {got}, want {want} (max_batch {max_batch})"
                        );
                    }
                }
            }
        }
    }
    assert!(full_hessian(cubic, &z, -0.1, 10).is_err());
    assert!(full_hessian(cubic, &z.reshape([-1]), 0.1, 10).is_err());
}
