//! Latent traversals: one component of z swept while the others stay fixed, laid out as video frames (docs/spec/progan_hp.md
//! §7.1 for `visualize`, §7.2 for the training-time GIFs).

use crate::io::imageio;
use crate::io::video::{VideoFormat, VideoWriter};
use anyhow::{ensure, Result};
use std::ops::Range;
use std::path::Path;
use tch::{Device, Tensor};

/// The `steps` sweep values `−extent + s·2·extent/(steps−1)`, s = 0 … steps−1: both endpoints included (docs/spec/progan_hp.md §7.1).
pub fn sweep_values(steps: i64, extent: f64) -> Vec<f64> {
    if steps == 1 {
        return vec![-extent];
    }
    (0..steps)
        .map(|s| -extent + s as f64 * 2.0 * extent / (steps - 1) as f64)
        .collect()
}

/// For each value and each base z (row of `base`), a copy of z with component `component` set to the value.
/// Value-major: `[values·n, nz]`, on `base`'s device.
pub fn sweep_latents_at(base: &Tensor, component: i64, values: &[f64]) -> Tensor {
    let n = base.size()[0];
    let steps = values.len() as i64;
    let values = Tensor::from_slice(values)
        .to_kind(base.kind())
        .to_device(base.device());
    let z = base.unsqueeze(0).repeat([steps, 1, 1]); // [steps, n, nz]
    let col = values.unsqueeze(1).expand([steps, n], false);
    z.select(2, component).copy_(&col);
    z.reshape([steps * n, -1])
}

/// Latents for one component: for each base z (row of `base`) and each of `steps` values from −extent to +extent
/// (endpoints included), a copy of z with component `component` replaced. Step-major: `[steps·n, nz]`.
pub fn sweep_latents(base: &Tensor, component: i64, steps: i64, extent: f64) -> Tensor {
    sweep_latents_at(base, component, &sweep_values(steps, extent))
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

/// The latents of the frames of a block of components, frame-major: for each value v, for each component c of
/// `comps`, for each base row b: `base[b]` with component c set to v. `[values·|comps|·n, nz]`.
pub fn block_latents(base: &Tensor, comps: Range<i64>, values: &[f64]) -> Tensor {
    let (n, nz) = (base.size()[0], base.size()[1]);
    let per_comp: Vec<Tensor> = comps
        .clone()
        .map(|c| sweep_latents_at(base, c, values).reshape([values.len() as i64, n, nz]))
        .collect();
    Tensor::stack(&per_comp, 1).reshape([-1, nz])
}

/// The reference's `sample_interp_zs` order for a block: component-major, then base row (column), then step;
/// `[|comps|·n·steps, nz]` (docs/spec/progan_hp.md §7.1).
pub fn interp_latents(base: &Tensor, comps: Range<i64>, steps: i64, extent: f64) -> Tensor {
    let (n, nz) = (base.size()[0], base.size()[1]);
    let ncomp = comps.end - comps.start;
    block_latents(base, comps, &sweep_values(steps, extent))
        .reshape([steps, ncomp, n, nz])
        .permute([1, 2, 0, 3])
        .reshape([-1, nz])
}

/// The step shown by each frame of a video: forward, then (when looping) the forward sweep reversed, so a looped
/// video has 2·steps frames and plays −extent → +extent → −extent (docs/spec/progan_hp.md §7.1; without the loop it plays forward, not in
/// the reverse order the reference's frame callback produced, quirk docs/spec/progan_hp.md §13.11).
pub fn frame_steps(steps: usize, looped: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..steps).collect();
    if looped {
        order.extend((0..steps).rev());
    }
    order
}

/// The frames saved as stills: `round(linspace(0, steps−1, count))` with NumPy's round-half-to-even (docs/spec/progan_hp.md §7.1).
pub fn still_steps(steps: usize, count: usize) -> Vec<usize> {
    if count == 1 {
        return vec![0];
    }
    (0..count)
        .map(|i| {
            let x = i as f64 * (steps as f64 - 1.0) / (count as f64 - 1.0);
            x.round_ties_even() as usize
        })
        .collect()
}

/// A generator as the renderer sees it: CPU latents in, images `[N, C, H, W]` in [−1, 1] out (any device).
pub type GenerateFn<'a> = dyn FnMut(&Tensor) -> Result<Tensor> + 'a;

/// Renders the frames of the components `comps` swept through `values`, for one or more generators on the same
/// latents, in batches of at most `minibatch` latents (a batch may span frames). Calls `on_frame(i, tiles)` for
/// every value in order, where `tiles[m]` holds generator m's uint8 images `[|comps|, n, C, H, W]` on the CPU.
pub fn render_sweep(
    generators: &mut [&mut GenerateFn],
    base: &Tensor,
    comps: Range<i64>,
    values: &[f64],
    minibatch: i64,
    on_frame: &mut dyn FnMut(usize, &[Tensor]) -> Result<()>,
) -> Result<()> {
    ensure!(minibatch > 0, "--minibatch-size must be positive");
    ensure!(!generators.is_empty(), "nothing to render");
    let n = base.size()[0];
    let ncomp = comps.end - comps.start;
    let per_frame = ncomp * n;
    let z = block_latents(&base.to_device(Device::Cpu), comps, values);
    let mut pending: Vec<Option<Tensor>> = (0..generators.len()).map(|_| None).collect();
    let mut next = 0usize;
    for chunk in z.split(minibatch, 0) {
        for (m, g) in generators.iter_mut().enumerate() {
            let img = imageio::float_to_u8(&g(&chunk)?).to_device(Device::Cpu);
            pending[m] = Some(match pending[m].take() {
                Some(p) => Tensor::cat(&[p, img], 0),
                None => img,
            });
        }
        while pending[0].as_ref().map_or(0, |p| p.size()[0]) >= per_frame {
            let mut tiles = Vec::with_capacity(pending.len());
            for p in pending.iter_mut() {
                let t = p.take().expect("pending images");
                let s = t.size();
                tiles.push(
                    t.narrow(0, 0, per_frame)
                        .reshape([ncomp, n, s[1], s[2], s[3]]),
                );
                *p = Some(t.narrow(0, per_frame, s[0] - per_frame).contiguous());
            }
            on_frame(next, &tiles)?;
            next += 1;
        }
    }
    ensure!(
        next == values.len(),
        "rendered {next} frames of {}",
        values.len()
    );
    Ok(())
}

/// One video frame from `tiles` `[ncomp, n, C, H, W]` (uint8): a row per component and a column per base z, or the
/// transpose; `pad_x`/`pad_y` black pixels between columns/rows (the reference pads with −1, docs/spec/progan_hp.md §7.1).
pub fn compose_frame(
    tiles: &Tensor,
    transpose: bool,
    pad_x: usize,
    pad_y: usize,
) -> Result<image::RgbImage> {
    let t = if transpose {
        tiles.transpose(0, 1)
    } else {
        tiles.shallow_clone()
    };
    let s = t.size();
    let flat = t.contiguous().reshape([s[0] * s[1], s[2], s[3], s[4]]);
    imageio::tile(&flat, s[1] as usize, pad_x, pad_y, 0, 0)
}

/// Writes `[frames, n, C, H, W]` images in [−1, 1] as a looping GIF, each frame a row of `cols`-wide grid.
pub fn save_gif(frames: &Tensor, cols: usize, fps: u32, path: &Path) -> Result<()> {
    let count = frames.size()[0];
    let u8_frames = imageio::float_to_u8(frames).to_device(Device::Cpu);
    let mut writer: Option<VideoWriter> = None;
    for f in 0..count {
        let rgb = imageio::grid(&u8_frames.get(f), cols, 0, 0)?;
        if writer.is_none() {
            writer = Some(VideoWriter::create(
                path,
                VideoFormat::Gif,
                rgb.width(),
                rgb.height(),
                fps,
                None,
            )?);
        }
        writer.as_mut().expect("created").push(&rgb)?;
    }
    ensure!(count > 0, "{}: no frames", path.display());
    writer.expect("created").finish().map(|_| ())
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
