//! The multi-resolution cascade of a dataset (docs/spec/progan_hp.md §2.9, §15.7).
//!
//! Level XX−1 is the 2×2 box average of level XX computed on the **float** values of level XX (the cascade never
//! passes through uint8), and every level is rounded half-to-even and clipped to uint8 on its own. This reproduces
//! the reference exporter bit for bit: it computes, in float32,
//! `(img[:, 0::2, 0::2] + img[:, 0::2, 1::2] + img[:, 1::2, 0::2] + img[:, 1::2, 1::2]) * 0.25`
//! (summed left to right) and quantises with `np.rint(img).clip(0, 255)`.

use anyhow::{ensure, Result};

/// The smallest level stored (4×4, as in ProGAN).
pub const MIN_LOG2: u32 = 2;

/// One 2×2 box-average step on float CHW data of size `size`×`size`; returns the `size/2` level.
pub fn box_down(src: &[f32], channels: usize, size: usize) -> Vec<f32> {
    let half = size / 2;
    let mut out = vec![0f32; channels * half * half];
    for c in 0..channels {
        let plane = &src[c * size * size..(c + 1) * size * size];
        let dst = &mut out[c * half * half..(c + 1) * half * half];
        for y in 0..half {
            let r0 = &plane[2 * y * size..(2 * y + 1) * size];
            let r1 = &plane[(2 * y + 1) * size..(2 * y + 2) * size];
            let d = &mut dst[y * half..(y + 1) * half];
            for (x, v) in d.iter_mut().enumerate() {
                // Same order as the reference: ((a + b) + c) + d, then × 0.25, in float32.
                *v = (r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1]) * 0.25;
            }
        }
    }
    out
}

/// Round half to even and clip to [0, 255] (NumPy's `rint(x).clip(0, 255).astype(uint8)`).
pub fn quantize(src: &[f32]) -> Vec<u8> {
    src.iter()
        .map(|v| v.round_ties_even().clamp(0.0, 255.0) as u8)
        .collect()
}

/// The cascade of one CHW uint8 image of size `size`×`size` (a power of two ≥ 4): element k is the level of size
/// `size >> k`, from the image itself down to 4×4.
pub fn cascade(image: &[u8], channels: usize, size: usize) -> Result<Vec<Vec<u8>>> {
    ensure!(
        size.is_power_of_two() && size >= 1 << MIN_LOG2,
        "image size {size} is not a power of two ≥ 4"
    );
    ensure!(
        image.len() == channels * size * size,
        "image of {} bytes, expected {channels}×{size}×{size}",
        image.len()
    );
    let mut levels = vec![image.to_vec()];
    let mut cur: Vec<f32> = image.iter().map(|&v| v as f32).collect();
    let mut s = size;
    while s > 1 << MIN_LOG2 {
        cur = box_down(&cur, channels, s);
        s /= 2;
        levels.push(quantize(&cur));
    }
    Ok(levels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_halves_round_to_even_at_every_level() {
        // 8×8 single channel. Top-left 2×2 block of level 3: [1, 2; 2, 2] → mean 1.75 → 2;
        // block [0, 1; 0, 0] → 0.25 → 0; block [1, 0; 1, 0] → 0.5 → 0 (half to even);
        // block [1, 2; 1, 2] → 1.5 → 2 (half to even); block [3, 2; 2, 3] → 2.5 → 2; [3, 4; 3, 4] → 3.5 → 4.
        let mut img = vec![0u8; 64];
        let set = |img: &mut Vec<u8>, bx: usize, by: usize, v: [u8; 4]| {
            img[(2 * by) * 8 + 2 * bx] = v[0];
            img[(2 * by) * 8 + 2 * bx + 1] = v[1];
            img[(2 * by + 1) * 8 + 2 * bx] = v[2];
            img[(2 * by + 1) * 8 + 2 * bx + 1] = v[3];
        };
        set(&mut img, 0, 0, [1, 2, 2, 2]);
        set(&mut img, 1, 0, [0, 1, 0, 0]);
        set(&mut img, 0, 1, [1, 0, 1, 0]);
        set(&mut img, 1, 1, [1, 2, 1, 2]);
        set(&mut img, 2, 0, [3, 2, 2, 3]);
        set(&mut img, 3, 0, [3, 4, 3, 4]);
        let levels = cascade(&img, 1, 8).unwrap();
        assert_eq!(levels.len(), 2);
        assert_eq!(levels[0], img);
        // Level 2 (4×4) row 0: 1.75→2, 0.25→0, 2.5→2, 3.5→4; row 1: 0.5→0, 1.5→2, 0, 0.
        assert_eq!(&levels[1][0..4], &[2, 0, 2, 4]);
        assert_eq!(&levels[1][4..8], &[0, 2, 0, 0]);
        assert!(levels[1][8..].iter().all(|&v| v == 0));
    }

    #[test]
    fn lower_levels_come_from_floats_not_from_rounded_levels() {
        // The top-left 4×4 pixels average to 0.5, 0.5, 0.5 and 1.5 on the 8×8 level (rounded: 0, 0, 0, 2). The float
        // cascade gives 0.75 → 1 on the 4×4 level; re-averaging the rounded level would give 0.5 → 0.
        let mut img = vec![0u8; 256];
        let put = |img: &mut Vec<u8>, x0: usize, y0: usize, vals: [u8; 4]| {
            img[y0 * 16 + x0] = vals[0];
            img[y0 * 16 + x0 + 1] = vals[1];
            img[(y0 + 1) * 16 + x0] = vals[2];
            img[(y0 + 1) * 16 + x0 + 1] = vals[3];
        };
        // The top-left 4×4 pixels form the 2×2 cells of one 8×8-level 2×2 block.
        put(&mut img, 0, 0, [1, 0, 0, 1]); // 0.5
        put(&mut img, 2, 0, [1, 0, 1, 0]); // 0.5
        put(&mut img, 0, 2, [0, 0, 1, 1]); // 0.5
        put(&mut img, 2, 2, [1, 2, 1, 2]); // 1.5
        let levels = cascade(&img, 1, 16).unwrap();
        assert_eq!(&levels[1][0..2], &[0, 0]);
        assert_eq!(&levels[1][8..10], &[0, 2]);
        assert_eq!(levels[2][0], 1, "float mean 0.75 rounds to 1");
        assert_eq!(levels[2].len(), 16);
    }

    #[test]
    fn channels_are_independent_and_clipped() {
        let mut img = vec![255u8; 3 * 4 * 4];
        img[16..32].fill(0);
        let levels = cascade(&img, 3, 4).unwrap();
        assert_eq!(levels.len(), 1);
        let img8: Vec<u8> = (0..3 * 64)
            .map(|i| if i / 64 == 1 { 7 } else { 255 })
            .collect();
        let l = cascade(&img8, 3, 8).unwrap();
        assert_eq!(l[1].len(), 48);
        assert!(l[1][..16].iter().all(|&v| v == 255));
        assert!(l[1][16..32].iter().all(|&v| v == 7));
        assert!(cascade(&img8, 3, 6).is_err());
        assert!(cascade(&img8[1..], 3, 8).is_err());
    }
}
