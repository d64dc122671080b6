//! The contrastive regulariser's latents and schedule (docs/spec/geometry_infogancr.md §B.1).
//!
//! - [`CrLatents`]: the uniform codes and nuisance noise of an InfoGAN-CR generator, ordinary batches, and the pairs
//!   that H learns to tell apart: both images of a pair share one code exactly; every other code is drawn for each
//!   image and pushed at least `gap` apart.
//! - [`CrSchedule`]: when the CR weight rises and the gap shrinks. Each change re-initialises H (weights and Adam
//!   state). Everything is a closed form of the iteration number, so a resumed run needs no saved schedule state.
//!
//! The draws use libtorch's generator, which the trainer seeds per iteration.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The latent layout `[c_1..c_K, z_1..z_N]`, every entry uniform on `[low, high]` (the reference: [−1, 1]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrLatents {
    pub codes: i64,
    pub noise: i64,
    pub low: f64,
    pub high: f64,
    /// Both images of a pair get the same nuisance noise. The reference's code does this (it draws the noise with
    /// the "same" sampler at distance 0) although the paper's figure says the rest is drawn at random; true keeps
    /// the code's behaviour (§B.1 step 4).
    pub share_noise: bool,
}

/// A batch of CR pairs: latents of the first and second images, and the index of the code they share.
pub struct CrPairs {
    pub first: Tensor,
    pub second: Tensor,
    pub shared: Tensor,
}

impl CrLatents {
    /// The reference's dSprites latents: 5 codes, 5 noise dimensions, U(−1, 1), noise shared within a pair.
    pub fn dsprites() -> Self {
        CrLatents {
            codes: 5,
            noise: 5,
            low: -1.0,
            high: 1.0,
            share_noise: true,
        }
    }

    fn uniform(&self, dims: &[i64], device: Device) -> Tensor {
        Tensor::rand(dims, (Kind::Float, device)) * (self.high - self.low) + self.low
    }

    /// An ordinary batch `[n, K + N]`.
    pub fn sample(&self, n: i64, device: Device) -> Tensor {
        self.uniform(&[n, self.codes + self.noise], device)
    }

    /// `n` pairs at distance `gap` (§B.1 `sample_cr`): per row a code `i` uniform over the K codes, one value of
    /// `c_i` for both images, and for every other code two values at least `gap` apart — both drawn from
    /// `U(low + gap/2, high − gap/2)` and moved `gap/2` away from each other, so that they stay in `[low, high]`.
    pub fn sample_pairs(&self, n: i64, gap: f64, device: Device) -> CrPairs {
        let k = self.codes;
        let inner = self.high - self.low - gap;
        assert!(
            inner >= 0.0,
            "gap {gap} exceeds the code range [{}, {}]",
            self.low,
            self.high
        );
        let draw = || Tensor::rand([n, k], (Kind::Float, device)) * inner + (self.low + gap / 2.0);
        let (a, b) = (draw(), draw());
        let sign = a.lt_tensor(&b).to_kind(Kind::Float) * 2.0 - 1.0; // −1 moves a down when a < b
        let a = &a - &sign * (gap / 2.0);
        let b = &b + &sign * (gap / 2.0);
        let shared = Tensor::randint(k, [n], (Kind::Int64, device));
        let mask = shared.one_hot(k).to_kind(Kind::Bool);
        let value = self.uniform(&[n, 1], device).expand([n, k], false);
        let a = a.where_self(&mask.logical_not(), &value);
        let b = b.where_self(&mask.logical_not(), &value);
        let z1 = self.uniform(&[n, self.noise], device);
        let z2 = if self.share_noise {
            z1.shallow_clone()
        } else {
            self.uniform(&[n, self.noise], device)
        };
        CrPairs {
            first: Tensor::cat(&[a, z1], 1),
            second: Tensor::cat(&[b, z2], 1),
            shared,
        }
    }
}

/// CR pairs for Gaussian latents `[n, nz]` ~ N(0, 1) whose first `codes` components are regularised (the ProGAN
/// trainer's `--cr-lambda`): per row one shared code; every other code drawn for each image and, when two values are
/// closer than `gap`, moved apart symmetrically about their midpoint to exactly `gap` (a Gaussian has no range to
/// stay in, unlike [`CrLatents::sample_pairs`]); the components after the codes shared (`share_noise`) or drawn
/// for each image.
pub fn gaussian_pairs(
    n: i64,
    nz: i64,
    codes: i64,
    gap: f64,
    share_noise: bool,
    device: Device,
) -> CrPairs {
    let normal = |k: i64| Tensor::randn([n, k], (Kind::Float, device));
    let (a, b) = (normal(codes), normal(codes));
    let mid = (&a + &b) / 2.0;
    let half = (&b - &a).abs().clamp_min(gap) / 2.0;
    let sign = b.ge_tensor(&a).to_kind(Kind::Float) * 2.0 - 1.0; // b above a: +1
    let a = &mid - &sign * &half;
    let b = &mid + &sign * &half;
    let shared = Tensor::randint(codes, [n], (Kind::Int64, device));
    let mask = shared.one_hot(codes).to_kind(Kind::Bool).logical_not();
    let value = normal(1).expand([n, codes], false);
    let a = a.where_self(&mask, &value);
    let b = b.where_self(&mask, &value);
    let rest1 = normal(nz - codes);
    let rest2 = if share_noise {
        rest1.shallow_clone()
    } else {
        normal(nz - codes)
    };
    CrPairs {
        first: Tensor::cat(&[a, rest1], 1),
        second: Tensor::cat(&[b, rest2], 1),
        shared,
    }
}

/// When the CR weight (`cr_coe`) rises and the gap falls (§B.1 "Schedules"). At the start of iteration `t > 0`
/// (0-based), when `t` is a multiple of `cr_coe_increase_batch` and fewer than `cr_coe_increase_times` increases
/// happened, `cr_coe += cr_coe_increase`; likewise `gap = max(gap − gap_decrease, 0)`. Each change re-initialises H.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrSchedule {
    pub cr_coe_start: f64,
    pub cr_coe_increase: f64,
    pub cr_coe_increase_batch: u64,
    pub cr_coe_increase_times: u64,
    pub gap_start: f64,
    pub gap_decrease: f64,
    pub gap_decrease_batch: u64,
    pub gap_decrease_times: u64,
}

/// One change of the schedule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CrEvent {
    pub iteration: u64,
    /// The weight and gap from this iteration on.
    pub cr_coe: f64,
    pub gap: f64,
    pub what: &'static str,
}

fn changes(t: u64, every: u64, times: u64) -> u64 {
    t.checked_div(every).map_or(0, |n| n.min(times))
}

impl CrSchedule {
    /// `cr_coe` during iteration `t`.
    pub fn cr_coe(&self, t: u64) -> f64 {
        self.cr_coe_start
            + self.cr_coe_increase
                * changes(t, self.cr_coe_increase_batch, self.cr_coe_increase_times) as f64
    }

    /// The gap during iteration `t`.
    pub fn gap(&self, t: u64) -> f64 {
        let n = changes(t, self.gap_decrease_batch, self.gap_decrease_times);
        (self.gap_start - self.gap_decrease * n as f64).max(0.0)
    }

    fn is_change(t: u64, every: u64, times: u64) -> bool {
        every > 0 && t > 0 && t.is_multiple_of(every) && t / every <= times
    }

    /// Whether H is re-initialised at the start of iteration `t`.
    pub fn resets_h(&self, t: u64) -> bool {
        Self::is_change(t, self.cr_coe_increase_batch, self.cr_coe_increase_times)
            || Self::is_change(t, self.gap_decrease_batch, self.gap_decrease_times)
    }

    /// The first iteration with a raised `cr_coe`; the run's state just before it (after iteration − 1) is the
    /// "InfoGAN (modified)" baseline snapshot.
    pub fn first_increase(&self) -> Option<u64> {
        (self.cr_coe_increase_batch > 0 && self.cr_coe_increase_times > 0)
            .then_some(self.cr_coe_increase_batch)
    }

    /// Every change in iterations `0..total`, in order.
    pub fn events(&self, total: u64) -> Vec<CrEvent> {
        let mut out = Vec::new();
        let mut push = |every: u64, times: u64, what: &'static str| {
            for n in 1..=times {
                let Some(t) = every.checked_mul(n).filter(|&t| every > 0 && t < total) else {
                    break;
                };
                out.push(CrEvent {
                    iteration: t,
                    cr_coe: self.cr_coe(t),
                    gap: self.gap(t),
                    what,
                });
            }
        };
        push(
            self.cr_coe_increase_batch,
            self.cr_coe_increase_times,
            "cr_coe increase, H re-initialised",
        );
        push(
            self.gap_decrease_batch,
            self.gap_decrease_times,
            "gap decrease, H re-initialised",
        );
        out.sort_by_key(|e| e.iteration);
        out
    }

    pub fn validate(&self, codes_range: f64) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.cr_coe_start >= 0.0 && self.cr_coe_increase >= 0.0,
            "cr_coe_start and cr_coe_increase must not be negative"
        );
        anyhow::ensure!(
            (0.0..codes_range).contains(&self.gap_start) && self.gap_decrease >= 0.0,
            "gap_start {} must be in [0, {codes_range}) (the codes' range) and gap_decrease ≥ 0",
            self.gap_start
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dsprites() -> CrSchedule {
        CrSchedule {
            cr_coe_start: 0.0,
            cr_coe_increase: 2.0,
            cr_coe_increase_batch: 288_000,
            cr_coe_increase_times: 1,
            gap_start: 0.0,
            gap_decrease: 0.0,
            gap_decrease_batch: 0,
            gap_decrease_times: 0,
        }
    }

    #[test]
    fn the_spec_tables_schedules() {
        // dSprites: cr_coe 0 → 2.0 at 288,000 of 322,560 (the last 34,560 iterations), gap 0 throughout.
        let s = dsprites();
        assert_eq!((s.cr_coe(287_999), s.cr_coe(288_000)), (0.0, 2.0));
        assert_eq!(s.cr_coe(322_559), 2.0);
        assert!(!s.resets_h(0) && !s.resets_h(287_999) && s.resets_h(288_000));
        assert!(!s.resets_h(576_000), "one increase only");
        assert_eq!(s.first_increase(), Some(288_000));
        assert_eq!(
            s.events(322_560),
            vec![CrEvent {
                iteration: 288_000,
                cr_coe: 2.0,
                gap: 0.0,
                what: "cr_coe increase, H re-initialised"
            }]
        );
        assert_eq!(
            (0..322_560u64).filter(|&t| s.cr_coe(t) > 0.0).count(),
            34_560
        );
        // 3D teapot: 0 → 3.0 at 50,000; gap 1.9 until 85,000, then 0.
        let t = CrSchedule {
            cr_coe_increase: 3.0,
            cr_coe_increase_batch: 50_000,
            gap_start: 1.9,
            gap_decrease: 1.9,
            gap_decrease_batch: 85_000,
            gap_decrease_times: 1,
            ..dsprites()
        };
        assert_eq!(
            (t.gap(84_999), t.gap(85_000), t.gap(125_000)),
            (1.9, 0.0, 0.0)
        );
        let events: Vec<(u64, f64, f64)> = t
            .events(125_000)
            .iter()
            .map(|e| (e.iteration, e.cr_coe, e.gap))
            .collect();
        assert_eq!(events, vec![(50_000, 3.0, 1.9), (85_000, 3.0, 0.0)]);
        // Repeated increases stop after the given number; the gap never goes below 0.
        let r = CrSchedule {
            cr_coe_increase: 0.5,
            cr_coe_increase_batch: 10,
            cr_coe_increase_times: 3,
            gap_start: 1.0,
            gap_decrease: 0.4,
            gap_decrease_batch: 7,
            gap_decrease_times: 5,
            ..dsprites()
        };
        assert_eq!(
            [0, 10, 20, 30, 40, 1000].map(|i| r.cr_coe(i)),
            [0.0, 0.5, 1.0, 1.5, 1.5, 1.5]
        );
        assert_eq!(r.gap(14), 1.0 - 0.8);
        assert_eq!(r.gap(21), 0.0);
        assert_eq!(
            (0..100).filter(|&i| r.resets_h(i)).collect::<Vec<_>>(),
            vec![7, 10, 14, 20, 21, 28, 30, 35]
        );
    }

    #[test]
    fn gaussian_pairs_share_one_code_and_keep_the_others_apart() {
        tch::manual_seed(5);
        let n = 5000;
        for gap in [0.0, 1.0] {
            let p = gaussian_pairs(n, 6, 4, gap, true, Device::Cpu);
            let diff = (&p.first - &p.second).abs();
            let shared = p.shared.one_hot(4).to_kind(Kind::Bool);
            let codes = diff.narrow(1, 0, 4);
            assert_eq!(
                codes.masked_select(&shared).abs().max().double_value(&[]),
                0.0
            );
            let others = codes.masked_select(&shared.logical_not());
            assert!(others.min().double_value(&[]) >= gap - 1e-5, "gap {gap}");
            assert_eq!(
                diff.narrow(1, 4, 2).max().double_value(&[]),
                0.0,
                "noise shared"
            );
        }
        // Without a gap the codes are standard normal draws.
        let p = gaussian_pairs(n, 4, 4, 0.0, false, Device::Cpu);
        let x = p.first.to_kind(Kind::Double);
        assert!(x.mean(None).double_value(&[]).abs() < 0.03);
        assert!((x.var(true).double_value(&[]) - 1.0).abs() < 0.05);
    }

    #[test]
    fn pairs_share_one_code_and_keep_the_others_apart() {
        tch::manual_seed(11);
        let lat = CrLatents::dsprites();
        let n = 20_000;
        for gap in [0.0, 0.5, 1.9] {
            let p = lat.sample_pairs(n, gap, Device::Cpu);
            assert_eq!(p.first.size(), [n, 10]);
            let a = Vec::<f32>::try_from(p.first.flatten(0, -1)).unwrap();
            let b = Vec::<f32>::try_from(p.second.flatten(0, -1)).unwrap();
            let shared = Vec::<i64>::try_from(&p.shared).unwrap();
            let mut counts = [0usize; 5];
            for r in 0..n as usize {
                counts[shared[r] as usize] += 1;
                for j in 0..10 {
                    let (x, y) = (a[r * 10 + j], b[r * 10 + j]);
                    assert!((-1.0..=1.0).contains(&x) && (-1.0..=1.0).contains(&y));
                    if j == shared[r] as usize || j >= 5 {
                        assert_eq!(x, y, "the shared code and the noise are equal");
                    } else {
                        assert!((x - y).abs() >= gap as f32 - 1e-6, "{x} {y} gap {gap}");
                    }
                }
            }
            // The shared code is uniform over the 5 codes: each count within 5σ of n/5.
            let (mean, sd) = (n as f64 / 5.0, (n as f64 * 0.2 * 0.8).sqrt());
            assert!(
                counts.iter().all(|&c| (c as f64 - mean).abs() < 5.0 * sd),
                "{counts:?}"
            );
        }
        // Without a gap the other codes of the two images are independent uniforms: mean 0, variance 1/3,
        // correlation 0 (to sampling error).
        let p = lat.sample_pairs(n, 0.0, Device::Cpu);
        let not_shared = p.shared.one_hot(5).eq(0);
        let x = p
            .first
            .narrow(1, 0, 5)
            .masked_select(&not_shared)
            .to_kind(Kind::Double);
        let y = p
            .second
            .narrow(1, 0, 5)
            .masked_select(&not_shared)
            .to_kind(Kind::Double);
        let m = x.mean(None).double_value(&[]);
        let v = x.var(true).double_value(&[]);
        let corr =
            ((&x * &y).mean(None).double_value(&[]) - m * y.mean(None).double_value(&[])) / v;
        assert!(m.abs() < 0.02 && (v - 1.0 / 3.0).abs() < 0.01 && corr.abs() < 0.02);
        // Independent noise on request.
        let free = CrLatents {
            share_noise: false,
            ..lat
        };
        let p = free.sample_pairs(100, 0.0, Device::Cpu);
        assert!(!p.first.narrow(1, 5, 5).equal(&p.second.narrow(1, 5, 5)));
    }
}
