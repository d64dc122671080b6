//! Latent traversals: one component of z swept while the others stay fixed, rendered as animated GIFs
//! (spec progan_hp §7.2).

use crate::{fsutil, imageio};
use anyhow::{Context, Result};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame};
use std::path::Path;
use tch::{Kind, Tensor};

/// Latents for one component: for each base z (row of `base`) and each of `steps` values from −extent to +extent
/// (endpoints included), a copy of z with component `component` replaced. Step-major: `[steps·n, nz]`.
pub fn sweep_latents(base: &Tensor, component: i64, steps: i64, extent: f64) -> Tensor {
    let n = base.size()[0];
    let values = Tensor::linspace(-extent, extent, steps, (Kind::Float, base.device()));
    let z = base.unsqueeze(0).repeat([steps, 1, 1]); // [steps, n, nz]
    let col = values.unsqueeze(1).expand([steps, n], false);
    z.select(2, component).copy_(&col);
    z.reshape([steps * n, -1])
}

/// Frames of a sweep: `generate` maps latents to images in [−1, 1]; returns `[steps, n, C, H, W]`.
pub fn sweep_frames<F>(
    base: &Tensor,
    component: i64,
    steps: i64,
    extent: f64,
    generate: F,
) -> Tensor
where
    F: Fn(&Tensor) -> Tensor,
{
    let z = sweep_latents(base, component, steps, extent);
    let images = generate(&z);
    let s = images.size();
    images.reshape([steps, -1, s[1], s[2], s[3]])
}

/// Writes `[frames, n, C, H, W]` images in [−1, 1] as a looping GIF, each frame a row of `cols`-wide grid.
pub fn save_gif(frames: &Tensor, cols: usize, fps: u32, path: &Path) -> Result<()> {
    let count = frames.size()[0];
    let mut rendered = Vec::with_capacity(count as usize);
    for f in 0..count {
        let rgb = imageio::grid(&imageio::float_to_u8(&frames.get(f)), cols, 0, 0)?;
        let rgba = image::DynamicImage::ImageRgb8(rgb).to_rgba8();
        rendered.push(Frame::from_parts(
            rgba,
            0,
            0,
            Delay::from_numer_denom_ms(1000, fps),
        ));
    }
    fsutil::write_atomic(path, |tmp| {
        let file = std::fs::File::create(tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut enc = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
        enc.set_repeat(Repeat::Infinite)?;
        enc.encode_frames(rendered)
            .with_context(|| format!("cannot encode {}", path.display()))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_changes_only_the_chosen_component() {
        let base = Tensor::from_slice(&[0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6]).reshape([2, 3]);
        let z = sweep_latents(&base, 1, 5, 2.0);
        assert_eq!(z.size(), vec![10, 3]);
        for s in 0..5 {
            let want = -2.0 + s as f64;
            for b in 0..2 {
                let row = s * 2 + b;
                assert!((z.double_value(&[row, 1]) - want).abs() < 1e-6);
                assert_eq!(z.double_value(&[row, 0]), base.double_value(&[b, 0]));
                assert_eq!(z.double_value(&[row, 2]), base.double_value(&[b, 2]));
            }
        }
    }
}
