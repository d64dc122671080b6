//! `visualize --directions A.npy|coords|random` (docs/spec/progan_hp.md §11 `vis_directions`): for each direction a
//! row of `--samples` images, each base latent walked along the direction — its own component along it removed,
//! then set to η·s with s on the eased path centre → −1 → centre → +1 → centre (`--steps` frames per half, η =
//! `--extent`) — 8 directions per video, MP4 when ffmpeg exists, else GIF.
//!
//! Where we differ from the reference: the easing reaches ±1 and 0 (the reference's stops near ±0.98 and 0.01), and
//! the frames play in the path's order (its writer popped them from the end, so it played +1 first). The latents
//! are G's raw z, which G normalises, as in discovery; directions saved with `--no-ortho` are orthonormalised
//! first (with a note), since a walk removes the component along each direction.

use super::{video_format, OutputSet, VideoSettings, VisualizeOptions, SIDE_BY_SIDE_GAP};
use crate::checkpoint::frozen::{ClassChoice, FrozenGenerator};
use crate::checkpoint::reference::Resolver;
use crate::commands::discover::compare::eased_path;
use crate::commands::discover::DirectionsMeta;
use crate::commands::Globals;
use crate::core::discover::{complete_basis, embed, gram_schmidt, orthonormality_error};
use crate::core::latents::{self, LatentConvention};
use crate::core::traversal::{self, GenerateFn};
use crate::io::video::{self, VideoWriter};
use crate::io::{imageio, progress};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Directions per video (the reference stacks 8).
pub const PER_VIDEO: i64 = 8;

/// Where the directions come from.
#[derive(Clone, Debug, PartialEq)]
pub enum DirectionSource {
    /// A `.npy` of directions `[k, nz]`, one per row (`discover`'s `A_<iter>.npy` / `directions.npy`).
    File(PathBuf),
    /// The coordinate axes (the reference's `coord` baseline).
    Coords,
    /// Random orthonormal directions (the reference's `random` baseline), from the seed.
    Random,
}

impl DirectionSource {
    pub fn parse(s: &str) -> Self {
        match s {
            "coords" | "coord" => DirectionSource::Coords,
            "random" => DirectionSource::Random,
            path => DirectionSource::File(PathBuf::from(path)),
        }
    }

    fn tag(&self) -> String {
        match self {
            DirectionSource::Coords => "coords".into(),
            DirectionSource::Random => "random".into(),
            DirectionSource::File(p) => {
                let stem = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!("directions_{stem}")
            }
        }
    }
}

/// Orthonormal directions `[k, nz]` for a generator of `nz` components.
pub fn load_directions(src: &DirectionSource, nz: i64, seed: u64) -> Result<Tensor> {
    let q = match src {
        DirectionSource::Coords => Tensor::eye(nz, (Kind::Float, tch::Device::Cpu)),
        DirectionSource::Random => {
            tch::manual_seed(seed as i64);
            gram_schmidt(&Tensor::randn([nz, nz], (Kind::Float, tch::Device::Cpu)))?
        }
        DirectionSource::File(path) => {
            let mut a = latents::read_z(path).with_context(|| {
                format!(
                    "--directions {}: directions [k, nz], one per row",
                    path.display()
                )
            })?;
            // discover's A_<iter>.npy of a sub-space search holds only that space's components; its .json says
            // which, so the rows are placed into z's full width.
            let meta = std::fs::read(path.with_extension("json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<DirectionsMeta>(&b).ok());
            if let Some(m) = meta {
                let [start, end] = m.components;
                if a.size()[1] == end - start && m.nz == nz && a.size()[1] != nz {
                    a = embed(&a, &(start..end), nz);
                }
            }
            ensure!(
                a.size()[1] == nz && a.size()[0] <= nz,
                "--directions {}: shape {:?} does not fit a generator with nz = {nz} (at most {nz} rows of width \
                 {nz}); were they learned on another model?",
                path.display(),
                a.size()
            );
            if orthonormality_error(&a) > 1e-4 {
                log::info!(
                    "note: the rows of {} are not orthonormal (--no-ortho?); showing them after Gram–Schmidt",
                    path.display()
                );
                gram_schmidt(&a)?
            } else {
                a
            }
        }
    };
    Ok(q)
}

/// The direction videos of every model, one output set per model and seed.
pub fn run(
    globals: &Globals,
    resolver: &Resolver,
    args: &VisualizeOptions,
    src: &DirectionSource,
) -> Result<Vec<OutputSet>> {
    let device = globals.device.resolve()?;
    let (fmt, ffmpeg) = video_format(args.format);
    let mut outputs = Vec::new();
    for model in &args.models {
        let (path, subdir) = if crate::checkpoint::frozen::is_pytorch_checkpoint(Path::new(model)) {
            let p = PathBuf::from(model);
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            (
                p.clone(),
                PathBuf::from(stem.unwrap_or_else(|| "biggan".into())),
            )
        } else {
            let r = resolver.resolve(model, &args.snapshot_kimgs[0])?;
            (r.path, r.visuals_subdir)
        };
        let class = args.class.unwrap_or(ClassChoice::Fixed(207));
        let g = FrozenGenerator::load(&path, class, device)
            .with_context(|| format!("cannot load model {model}"))?;
        let nz = g.nz();
        let seeds = args
            .seeds
            .clone()
            .unwrap_or_else(|| vec![globals.seed.unwrap_or(0)]);
        for seed in seeds {
            let q = load_directions(src, nz, seed)?;
            let k = q.size()[0];
            let basis = complete_basis(&q)?.to_device(device);
            let dir = args
                .out
                .join(&subdir)
                .join(src.tag())
                .join(format!("seed_{seed}"));
            let base = latents::seeded_normal(seed, args.samples, nz)?;
            latents::write_npy(&base, &dir.join("z.npy"))?;
            // In the basis' coordinates, setting coordinate j walks direction j (`discover::compare::walk`).
            let coords = base.matmul(&basis.to_device(tch::Device::Cpu).tr());
            tch::manual_seed(seed as i64);
            let classes = g.classes(1);
            let mut generate = |c: &Tensor| -> Result<Tensor> {
                let _guard = tch::no_grad_guard();
                let z = c.to_device(device).matmul(&basis);
                Ok(g.forward(&z, &classes.repeat([z.size()[0]])))
            };
            let values: Vec<f64> = eased_path(2 * args.steps as usize)
                .into_iter()
                .map(|s| s * args.extent)
                .collect();
            let blocks: Vec<(i64, i64)> = (0..k)
                .step_by(PER_VIDEO as usize)
                .map(|s| (s, (s + PER_VIDEO).min(k)))
                .collect();
            let bar = progress::bar(
                Some((blocks.len() * values.len()) as u64),
                &format!("seed {seed}: direction frames"),
            );
            let mut files = vec![PathBuf::from("z.npy")];
            for &(start, end) in &blocks {
                let name = format!("d{start:03}_to_d{end:03}.{}", fmt.extension());
                let mut writer: Option<VideoWriter> = None;
                let mut gens: [&mut GenerateFn; 1] = [&mut generate];
                traversal::render_sweep(
                    &mut gens,
                    &coords,
                    start..end,
                    &values,
                    args.minibatch_size,
                    &mut |_, tiles| {
                        let frame = traversal::compose_frame(&tiles[0], false, 2, 2)?;
                        let frame = if fmt == video::VideoFormat::Mp4 {
                            video::pad_to_even(frame, 0)
                        } else {
                            frame
                        };
                        if writer.is_none() {
                            writer = Some(VideoWriter::create(
                                &dir.join(&name),
                                fmt,
                                frame.width(),
                                frame.height(),
                                args.fps,
                                ffmpeg.as_deref(),
                            )?);
                        }
                        writer.as_mut().expect("created").push(&frame)?;
                        bar.inc(1);
                        Ok(())
                    },
                )?;
                writer.context("no frames rendered")?.finish()?;
                files.push(PathBuf::from(name));
            }
            // A still: each direction's row at −η, 0 and +η, side by side.
            let still = still_strip(&mut generate, &coords, k, args.extent)?;
            imageio::save_png(
                &imageio::zoom(&still, args.zoom),
                &dir.join("directions.png"),
            )?;
            files.push(PathBuf::from("directions.png"));
            bar.finish_and_clear();
            outputs.push(OutputSet {
                mode: "directions",
                dir,
                models: vec![model.clone()],
                snapshots: vec![path.clone()],
                seed: Some(seed),
                z_file: None,
                convention: LatentConvention::from_pre_norm(true),
                files,
                video: Some(VideoSettings {
                    format: Some(fmt),
                    samples: args.samples,
                    steps: values.len() as i64,
                    extent: args.extent,
                    nz_per_vid: PER_VIDEO.min(k),
                    looped: false,
                    fps: args.fps,
                    transpose: false,
                    stills_at: Vec::new(),
                }),
            });
        }
    }
    Ok(outputs)
}

/// Rows = directions; three panels (coefficient −η, 0, +η), each a row of the base latents.
fn still_strip(
    generate: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    coords: &Tensor,
    k: i64,
    extent: f64,
) -> Result<image::RgbImage> {
    let mut panels = Vec::new();
    for v in [-extent, 0.0, extent] {
        let z = traversal::block_latents(coords, 0..k, &[v]);
        let img = imageio::float_to_u8(&generate(&z)?.clamp(-1.0, 1.0)).to_device(tch::Device::Cpu);
        panels.push(imageio::grid(&img, coords.size()[0] as usize, 2, 0)?);
    }
    Ok(imageio::hstack(&panels, SIDE_BY_SIDE_GAP, 255))
}
