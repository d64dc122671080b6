//! From loader batches to the discriminator's input (docs/spec/progan_hp.md §2.5, `process_reals`): uint8 → [−1, 1], the
//! fade between two resolutions during a transition, and nearest upscaling to the final resolution.

use tch::{Kind, Tensor};

/// The level (log2 resolution) the data come from at level-of-detail `lod` when training to `2^final_log2`:
/// `final_log2 − floor(lod)` (docs/spec/progan_hp.md §2.2: resolution = 2^(R − floor λ)).
pub fn level_for_lod(lod: f64, final_log2: u32) -> u32 {
    final_log2 - (lod.max(0.0).floor() as u32).min(final_log2)
}

/// uint8 [0, 255] → float [−1, 1] (`x·2/255 − 1`, the reference's `adjust_dynamic_range`).
pub fn to_float(x: &Tensor) -> Tensor {
    x.to_kind(Kind::Float) * (2.0 / 255.0) - 1.0
}

/// The reference's `process_reals` on a batch read at [`level_for_lod`]: to [−1, 1]; then, with `t = lod − floor(lod)`,
/// `x ← lerp(x, nearest_up2(boxdown2(x)), t)` (the fade-in of the new resolution); then nearest upscaling by
/// `2^floor(lod)` to the final resolution. No mirror augmentation. Works on any device.
pub fn process_reals(x: &Tensor, lod: f64) -> Tensor {
    let lod = lod.max(0.0);
    let mut x = to_float(x);
    let t = lod - lod.floor();
    if t > 0.0 {
        let down = x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
        let up = down
            .repeat_interleave_self_int(2, 2, None)
            .repeat_interleave_self_int(2, 3, None);
        x = &x + (up - &x) * t;
    }
    let factor = 1i64 << (lod.floor() as i64);
    if factor > 1 {
        x = x
            .repeat_interleave_self_int(factor, 2, None)
            .repeat_interleave_self_int(factor, 3, None);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_schedule() {
        assert_eq!(level_for_lod(5.0, 7), 2);
        assert_eq!(level_for_lod(4.5, 7), 3);
        assert_eq!(level_for_lod(0.0, 7), 7);
        assert_eq!(level_for_lod(0.25, 7), 7);
    }

    #[test]
    fn fade_and_upscale_match_a_hand_computation() {
        // One 2×2 grey image [0, 255; 255, 255]: float [−1, 1; 1, 1], box mean 0.5.
        let x = Tensor::from_slice(&[0u8, 255, 255, 255]).reshape([1, 1, 2, 2]);
        let v = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        assert_eq!(v(&process_reals(&x, 0.0)), vec![-1.0, 1.0, 1.0, 1.0]);
        // lod 0.25: lerp towards 0.5 by a quarter: −1 + 1.5/4 = −0.625, 1 − 0.5/4 = 0.875.
        let f = v(&process_reals(&x, 0.25));
        let want = [-0.625f32, 0.875, 0.875, 0.875];
        for (a, b) in f.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{f:?}");
        }
        // lod 1: no fade, nearest upscale ×2 to 4×4.
        let u = process_reals(&x, 1.0);
        assert_eq!(u.size(), vec![1, 1, 4, 4]);
        assert_eq!(
            v(&u),
            vec![
                -1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0
            ]
        );
        // lod 1.5 on 2×2 data: fade to the mean (0.5 everywhere at t = 0.5 gives −0.25 and 0.75), then ×2.
        let h = v(&process_reals(&x, 1.5));
        assert!(
            (h[0] + 0.25).abs() < 1e-6 && (h[2] - 0.75).abs() < 1e-6 && (h[15] - 0.75).abs() < 1e-6
        );
    }
}
