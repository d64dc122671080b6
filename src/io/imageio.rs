//! Image grids and PNGs from tensors: the one place images are converted and tiled.

use crate::io::fs;
use anyhow::{ensure, Context, Result};
use std::path::Path;
use tch::{Kind, Tensor};

/// Float images in [−1, 1] to uint8 with round-half-even and clipping (`rint(clip((x+1)·127.5))`, the reference's
/// display conversion, docs/spec/progan_hp.md §7.1). Works on any shape and device.
pub fn float_to_u8(images: &Tensor) -> Tensor {
    ((images.to_kind(Kind::Float) + 1.0) * 127.5)
        .round()
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8)
}

/// Tiles `[N, C, H, W]` uint8 images (C = 1 or 3) into one RGB image with `cols` columns, `pad` pixels between
/// tiles (and around them) filled with `pad_value`.
pub fn grid(images: &Tensor, cols: usize, pad: usize, pad_value: u8) -> Result<image::RgbImage> {
    tile(images, cols, pad, pad, pad, pad_value)
}

/// Tiles `[N, C, H, W]` uint8 images (C = 1 or 3) row-major into `cols` columns, with `pad_x` pixels between
/// columns, `pad_y` between rows and `border` around the whole, all filled with `pad_value`.
pub fn tile(
    images: &Tensor,
    cols: usize,
    pad_x: usize,
    pad_y: usize,
    border: usize,
    pad_value: u8,
) -> Result<image::RgbImage> {
    let size = images.size();
    ensure!(
        size.len() == 4,
        "image grid: expected [N, C, H, W] images, got shape {size:?}"
    );
    ensure!(
        images.kind() == Kind::Uint8,
        "image grid: expected uint8 images, got {:?}",
        images.kind()
    );
    let (n, c, h, w) = (
        size[0] as usize,
        size[1],
        size[2] as usize,
        size[3] as usize,
    );
    ensure!(
        c == 1 || c == 3,
        "image grid: expected 1 or 3 channels, got {c}"
    );
    ensure!(n > 0 && cols > 0, "image grid: nothing to tile");
    let images = if c == 1 {
        images.expand([-1, 3, -1, -1], false)
    } else {
        images.shallow_clone()
    };
    // NCHW -> NHWC, contiguous on the CPU.
    let nhwc = images
        .to_device(tch::Device::Cpu)
        .permute([0, 2, 3, 1])
        .contiguous();
    let mut data = vec![0u8; n * h * w * 3];
    nhwc.copy_data_u8(&mut data, n * h * w * 3);
    let cols = cols.min(n);
    let rows = n.div_ceil(cols);
    let gw = cols * w + (cols - 1) * pad_x + 2 * border;
    let gh = rows * h + (rows - 1) * pad_y + 2 * border;
    let mut out = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([pad_value; 3]));
    for i in 0..n {
        let gx = border + (i % cols) * (w + pad_x);
        let gy = border + (i / cols) * (h + pad_y);
        for y in 0..h {
            let src = &data[((i * h + y) * w) * 3..((i * h + y + 1) * w) * 3];
            let start = ((gy + y) * gw + gx) * 3;
            out.as_mut()[start..start + w * 3].copy_from_slice(src);
        }
    }
    Ok(out)
}

/// Images placed left to right, top-aligned, `gap` pixels apart, on a background of `value`.
pub fn hstack(images: &[image::RgbImage], gap: u32, value: u8) -> image::RgbImage {
    let w = images.iter().map(|i| i.width()).sum::<u32>()
        + gap * (images.len().saturating_sub(1) as u32);
    let h = images.iter().map(|i| i.height()).max().unwrap_or(0);
    let mut out = image::RgbImage::from_pixel(w, h, image::Rgb([value; 3]));
    let mut x = 0;
    for img in images {
        image::imageops::replace(&mut out, img, x as i64, 0);
        x += img.width() + gap;
    }
    out
}

/// `img` enlarged `factor` times by repeating pixels (nearest neighbour); `factor` 1 returns a copy.
pub fn zoom(img: &image::RgbImage, factor: u32) -> image::RgbImage {
    let f = factor.max(1);
    image::RgbImage::from_fn(img.width() * f, img.height() * f, |x, y| {
        *img.get_pixel(x / f, y / f)
    })
}

/// Saves an RGB image as PNG atomically.
pub fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    fs::write_atomic(path, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .with_context(|| format!("cannot write {}", path.display()))
    })
}

/// Tiles float images in [−1, 1] and saves the grid as PNG.
pub fn save_grid(images: &Tensor, cols: usize, path: &Path) -> Result<()> {
    save_png(&grid(&float_to_u8(images), cols, 0, 0)?, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoom_repeats_every_pixel() {
        let img = image::RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8 * 100, 7, 9]));
        let z = zoom(&img, 3);
        assert_eq!((z.width(), z.height()), (6, 3));
        for (x, y, p) in z.enumerate_pixels() {
            assert_eq!(*p, *img.get_pixel(x / 3, y / 3), "({x}, {y})");
        }
        assert_eq!(zoom(&img, 1), img);
    }

    #[test]
    fn grid_places_tiles_row_major() {
        // Three 2×2 tiles with values 10, 20, 30 in 2 columns, pad 1 with value 255.
        let t = Tensor::from_slice(&[10u8, 20, 30])
            .reshape([3, 1, 1, 1])
            .expand([3, 3, 2, 2], false);
        let g = grid(&t, 2, 1, 255).unwrap();
        assert_eq!((g.width(), g.height()), (7, 7));
        assert_eq!(g.get_pixel(1, 1).0, [10, 10, 10]);
        assert_eq!(g.get_pixel(4, 2).0, [20, 20, 20]);
        assert_eq!(g.get_pixel(1, 4).0, [30, 30, 30]);
        assert_eq!(
            g.get_pixel(4, 4).0,
            [255, 255, 255],
            "empty cell stays padding"
        );
        assert_eq!(g.get_pixel(0, 0).0, [255, 255, 255]);
    }

    #[test]
    fn tile_pads_between_only_and_hstack_gaps() {
        let t = Tensor::from_slice(&[10u8, 20, 30, 40])
            .reshape([4, 1, 1, 1])
            .expand([4, 3, 2, 3], false);
        // 2 columns of 3-wide tiles with 1 px between columns and 2 between rows, no border.
        let g = tile(&t, 2, 1, 2, 0, 7).unwrap();
        assert_eq!((g.width(), g.height()), (7, 6));
        assert_eq!(g.get_pixel(0, 0).0, [10; 3]);
        assert_eq!(g.get_pixel(3, 0).0, [7; 3]);
        assert_eq!(g.get_pixel(4, 1).0, [20; 3]);
        assert_eq!(g.get_pixel(0, 2).0, [7; 3]);
        assert_eq!(g.get_pixel(0, 4).0, [30; 3]);
        assert_eq!(g.get_pixel(6, 5).0, [40; 3]);
        let a = image::RgbImage::from_pixel(2, 3, image::Rgb([1; 3]));
        let b = image::RgbImage::from_pixel(1, 1, image::Rgb([2; 3]));
        let s = hstack(&[a, b], 4, 0);
        assert_eq!((s.width(), s.height()), (7, 3));
        assert_eq!(s.get_pixel(1, 2).0, [1; 3]);
        assert_eq!(s.get_pixel(3, 0).0, [0; 3]);
        assert_eq!(s.get_pixel(6, 0).0, [2; 3]);
        assert_eq!(s.get_pixel(6, 1).0, [0; 3]);
    }

    #[test]
    fn float_conversion_rounds_and_clips() {
        let x = Tensor::from_slice(&[-2.0f32, -1.0, 0.0, 1.0, 3.0]);
        let u = float_to_u8(&x);
        let v: Vec<u8> = Vec::try_from(&u).unwrap();
        // 0 -> 127.5 rounds half to even: 128.
        assert_eq!(v, vec![0, 0, 128, 255, 255]);
    }
}
