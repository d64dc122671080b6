//! `hessian-gan visualize`: latent-traversal videos and stills (docs/spec/progan_hp.md §4.2, §7.1), sample grids, and
//! renders of given latents (`--z FILE.npy`, issue 9), for one or more models.
//!
//! Layouts follow the reference's `visualize.py`: per block of `--nz-per-vid` components one video whose frame s
//! shows a row per component and a column per base z, that component set to the s-th of `--steps` values from
//! −extent to +extent. Every set of outputs comes with the raw latents it used (`z.npy`) and a `visualize.json`.

pub mod directions;

use crate::checkpoint::frozen::ClassChoice;
use crate::checkpoint::reference::{self, LoadedGenerator, ModelRef, Resolver};
use crate::commands::Globals;
use crate::core::latents::{self, LatentConvention};
use crate::core::traversal::{self, GenerateFn};
use crate::io::fs;
use crate::io::imageio;
use crate::io::progress;
use crate::io::video::{self, VideoFormat, VideoWriter};
use anyhow::{ensure, Context, Result};
use image::RgbImage;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Black gap between models in `--side-by-side` outputs.
pub const SIDE_BY_SIDE_GAP: u32 = 8;
/// Padding of the still strips (torchvision `save_image`'s default, docs/spec/progan_hp.md §7.1).
pub const STILL_PAD: usize = 2;

/// Settings of `visualize` (the command line: `cli::visualize::VisualizeOptions`).
#[derive(Clone, Debug)]
pub struct VisualizeOptions {
    /// Models: snapshot files, run directories, results run numbers, or pretrained names
    /// (<dataset>_<ft|fs|info|bl>, downloaded into pretrained_models/ and converted once).
    pub models: Vec<String>,
    /// Snapshot of run numbers and run directories: `latest` or a kimg; one value for all models or one per model.
    pub snapshot_kimgs: Vec<String>,
    /// Where run numbers are looked up.
    pub results_dir: PathBuf,
    /// Where pretrained models are downloaded and converted.
    pub pretrained_dir: PathBuf,
    /// Root of the outputs (visuals/<run dir>/<snapshot>/seed_<seed>/...).
    pub out: PathBuf,
    /// NumPy seeds of the base latents, one set of outputs per seed (default: --seed, else 0).
    pub seeds: Option<Vec<u64>>,
    /// Components (rows) per video; capped at nz.
    pub nz_per_vid: i64,
    /// Base latents (columns) per video.
    pub samples: i64,
    /// Frames per sweep.
    pub steps: i64,
    /// Sweep from −extent to +extent.
    pub extent: f64,
    /// Latents per generator call.
    pub minibatch_size: i64,
    /// Sweep the raw z and let G normalise it (recommended for small nz such as CLEVR-U); by default the
    /// pixel-normalised z is swept and G's latent normalisation is off.
    pub interpolate_pre_norm: bool,
    /// Play the sweep once (−extent → +extent) instead of forward and back.
    pub no_loop: bool,
    /// Only write the still strips (needs --n-frames-to-save > 0).
    pub stills_only: bool,
    /// Frames per component saved as a PNG strip flattened_frames/zNNN.png (0 = none).
    pub n_frames_to_save: usize,
    /// Rows = base latents, columns = components.
    pub transpose: bool,
    /// Black pixels between columns of a video frame.
    pub pad_x: usize,
    /// Black pixels between rows of a video frame.
    pub pad_y: usize,
    /// Nearest-neighbour enlargement factor of the stills and grids (1 = none).
    pub zoom: u32,
    /// Frames per second of the videos.
    pub fps: u32,
    /// Video container; mp4 needs ffmpeg on PATH, otherwise GIFs are written.
    pub format: VideoFormat,
    /// Memory for keeping the forward frames of a looped video; beyond it the reversed half is rendered again.
    pub loop_cache_mib: usize,
    /// Write a sample grid (grid/grid.png and grid/z.npy per seed) instead of videos.
    pub grid: bool,
    /// Images in the sample grid.
    pub grid_count: i64,
    /// Columns of the sample grid and of --z renders.
    pub grid_cols: usize,
    /// All models in one output per seed (models side by side in each frame or grid); they must share nz and
    /// image size.
    pub side_by_side: bool,
    /// Render these latents (float32 [N, nz] .npy) through each model: a PNG grid (and --raw images).
    pub z: Option<PathBuf>,
    /// With --z or --grid: also the float images as .npy [N, C, H, W] (G's output, not quantised or clipped).
    pub raw: bool,
    /// Walk these directions instead of z's components: a `.npy` `[k, nz]` (discover's A), `coords` or `random`.
    pub directions: Option<String>,
    /// The class of a class-conditional generator (BigGAN) in `--directions` videos (default 207).
    pub class: Option<ClassChoice>,
}

impl Default for VisualizeOptions {
    fn default() -> Self {
        VisualizeOptions {
            models: Vec::new(),
            snapshot_kimgs: vec!["latest".into()],
            results_dir: "results".into(),
            pretrained_dir: reference::PRETRAINED_DIR.into(),
            out: "visuals".into(),
            seeds: None,
            nz_per_vid: 12,
            samples: 8,
            steps: 90,
            extent: 2.0,
            minibatch_size: 100,
            interpolate_pre_norm: false,
            no_loop: false,
            stills_only: false,
            n_frames_to_save: 0,
            transpose: false,
            pad_x: 0,
            pad_y: 0,
            zoom: 1,
            fps: 60,
            format: VideoFormat::Mp4,
            loop_cache_mib: 2048,
            grid: false,
            grid_count: 64,
            grid_cols: 8,
            side_by_side: false,
            z: None,
            raw: false,
            directions: None,
            class: None,
        }
    }
}

/// One folder of outputs; also written there as `visualize.json`.
#[derive(Clone, Debug, Serialize)]
pub struct OutputSet {
    /// `videos`, `stills`, `grid` or `z`.
    pub mode: &'static str,
    pub dir: PathBuf,
    /// Model names (several with --side-by-side, left to right) and their snapshot files.
    pub models: Vec<String>,
    pub snapshots: Vec<PathBuf>,
    /// The NumPy seed of the latents (absent for --z).
    pub seed: Option<u64>,
    /// The latents file given with --z.
    pub z_file: Option<PathBuf>,
    pub convention: LatentConvention,
    /// Files written, relative to `dir`.
    pub files: Vec<PathBuf>,
    /// Video settings (videos and stills only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoSettings>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VideoSettings {
    pub format: Option<VideoFormat>,
    pub samples: i64,
    pub steps: i64,
    pub extent: f64,
    pub nz_per_vid: i64,
    pub looped: bool,
    pub fps: u32,
    pub transpose: bool,
    pub stills_at: Vec<usize>,
}

/// Entry point of `hessian-gan visualize`: resolves the models (pretrained names through the default converter)
/// and writes the outputs.
pub fn run(globals: &Globals, args: &VisualizeOptions) -> Result<Vec<OutputSet>> {
    let mut resolver = globals.resolver(&args.results_dir);
    resolver.pretrained_dir = args.pretrained_dir.clone();
    run_with(globals, &resolver, args)
}

/// [`run`] with a given resolver (tests pass their own converter).
pub fn run_with(
    globals: &Globals,
    resolver: &Resolver,
    args: &VisualizeOptions,
) -> Result<Vec<OutputSet>> {
    validate(args)?;
    if let Some(d) = &args.directions {
        let outputs = directions::run(
            globals,
            resolver,
            args,
            &directions::DirectionSource::parse(d),
        )?;
        write_records(&outputs)?;
        return Ok(outputs);
    }
    let device = globals.device.resolve()?;
    // Read given latents first: a bad file fails before any model is downloaded or loaded.
    let given_z = args.z.as_deref().map(latents::read_z).transpose()?;
    let refs = resolver.resolve_all(&args.models, &args.snapshot_kimgs)?;
    let mut loaded = Vec::with_capacity(refs.len());
    for r in &refs {
        let g = reference::load_gs(&r.path, device)
            .with_context(|| format!("cannot load model {}", r.name))?;
        loaded.push((r.clone(), g));
    }
    let convention = LatentConvention::from_pre_norm(args.interpolate_pre_norm);
    let groups: Vec<Vec<usize>> = if args.side_by_side {
        check_comparable(&loaded)?;
        vec![(0..loaded.len()).collect()]
    } else {
        (0..loaded.len()).map(|i| vec![i]).collect()
    };
    let seeds = args
        .seeds
        .clone()
        .unwrap_or_else(|| vec![globals.seed.unwrap_or(0)]);
    let mut outputs = Vec::new();
    if let Some(z) = &given_z {
        let path = args.z.as_deref().expect("--z given");
        for group in &groups {
            for &i in group {
                let (r, g) = &loaded[i];
                latents::check_width(z, g.net.nz, path, &r.name)?;
            }
        }
        let tag = z_tag(path)?;
        for group in &groups {
            let dir = group_dir(&args.out, &loaded, group).join(&tag);
            let set = render_grid_set(&loaded, group, z, &dir, convention, args)?;
            outputs.push(OutputSet {
                mode: "z",
                seed: None,
                z_file: Some(path.to_path_buf()),
                ..set
            });
        }
    } else if args.grid {
        for group in &groups {
            let nz = loaded[group[0]].1.net.nz;
            for &seed in &seeds {
                let z = latents::seeded_normal(seed, args.grid_count, nz)?;
                let dir = group_dir(&args.out, &loaded, group)
                    .join(format!("seed_{seed}"))
                    .join("grid");
                let set = render_grid_set(&loaded, group, &z, &dir, convention, args)?;
                outputs.push(OutputSet {
                    mode: "grid",
                    seed: Some(seed),
                    ..set
                });
            }
        }
    } else {
        let format = if args.stills_only {
            None
        } else {
            Some(video_format(args.format))
        };
        if !args.interpolate_pre_norm {
            if let Some((r, g)) = loaded.iter().find(|(_, g)| g.net.nz < 12) {
                log::info!(
                    "note: {} has nz = {} < 12; the reference recommends --interpolate-pre-norm for small nz",
                    r.name, g.net.nz
                );
            }
        }
        for group in &groups {
            for &seed in &seeds {
                outputs.push(render_videos(
                    &loaded,
                    group,
                    seed,
                    format.clone(),
                    convention,
                    args,
                )?);
            }
        }
    }
    write_records(&outputs)?;
    Ok(outputs)
}

/// `visualize.json` in every output folder.
fn write_records(outputs: &[OutputSet]) -> Result<()> {
    for set in outputs {
        let json = serde_json::to_string_pretty(set)?;
        fs::write_bytes_atomic(&set.dir.join("visualize.json"), json.as_bytes())?;
    }
    Ok(())
}

fn validate(args: &VisualizeOptions) -> Result<()> {
    ensure!(!args.models.is_empty(), "--models: give at least one model");
    ensure!(
        args.steps >= 2,
        "--steps {} must be at least 2 (the sweep includes both endpoints)",
        args.steps
    );
    ensure!(
        args.extent.is_finite() && args.extent > 0.0,
        "--extent {} must be a positive number",
        args.extent
    );
    ensure!(args.samples >= 1, "--samples must be at least 1");
    ensure!(args.nz_per_vid >= 1, "--nz-per-vid must be at least 1");
    ensure!(
        args.minibatch_size >= 1,
        "--minibatch-size must be at least 1"
    );
    ensure!(args.fps >= 1, "--fps must be at least 1");
    ensure!(
        args.grid_count >= 1 && args.grid_cols >= 1,
        "--grid-count and --grid-cols must be at least 1"
    );
    ensure!(
        !args.stills_only || args.n_frames_to_save > 0,
        "--stills-only needs --n-frames-to-save > 0"
    );
    ensure!(
        !(args.z.is_some() && (args.grid || args.stills_only)),
        "--z renders the given latents; it cannot be combined with --grid or --stills-only"
    );
    ensure!(
        !args.raw || args.z.is_some() || args.grid,
        "--raw applies to --z and --grid renders"
    );
    ensure!(
        args.directions.is_none()
            || !(args.z.is_some() || args.grid || args.stills_only || args.side_by_side),
        "--directions writes direction videos; it cannot be combined with --z, --grid, --stills-only or \
         --side-by-side"
    );
    ensure!(
        args.class.is_none() || args.directions.is_some(),
        "--class applies to --directions videos of a class-conditional generator (BigGAN)"
    );
    Ok(())
}

/// MP4 when asked for and ffmpeg is on PATH, else GIF with a note.
fn video_format(asked: VideoFormat) -> (VideoFormat, Option<PathBuf>) {
    match asked {
        VideoFormat::Gif => (VideoFormat::Gif, None),
        VideoFormat::Mp4 => match video::find_ffmpeg() {
            Some(p) => (VideoFormat::Mp4, Some(p)),
            None => {
                log::info!("note: ffmpeg is not on PATH; writing GIFs instead of MP4 videos");
                (VideoFormat::Gif, None)
            }
        },
    }
}

/// Side-by-side models must take the same latents and produce the same image size.
fn check_comparable(loaded: &[(ModelRef, LoadedGenerator)]) -> Result<()> {
    let (r0, g0) = &loaded[0];
    for (r, g) in &loaded[1..] {
        ensure!(
            g.net.nz == g0.net.nz,
            "--side-by-side needs models with the same nz: {} has {}, {} has {}",
            r0.name,
            g0.net.nz,
            r.name,
            g.net.nz
        );
        ensure!(
            g.net.resolution == g0.net.resolution,
            "--side-by-side needs models with the same resolution: {} makes {}², {} makes {}²",
            r0.name,
            g0.net.resolution,
            r.name,
            g.net.resolution
        );
    }
    Ok(())
}

/// Output folder of a group: `<out>/<visuals subdir>` for one model, `<out>/side_by_side/<a>__<b>...` for several.
fn group_dir(out: &Path, loaded: &[(ModelRef, LoadedGenerator)], group: &[usize]) -> PathBuf {
    if let [i] = group {
        return out.join(&loaded[*i].0.visuals_subdir);
    }
    let names: Vec<String> = group
        .iter()
        .map(|&i| {
            loaded[i]
                .0
                .visuals_subdir
                .to_string_lossy()
                .replace(['/', '\\'], "-")
        })
        .collect();
    out.join("side_by_side").join(names.join("__"))
}

/// Folder name of a `--z` render: the file's stem and the start of its SHA-256, so different files named `z.npy`
/// never share a folder.
fn z_tag(path: &Path) -> Result<String> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "z".into());
    let hash = crate::io::download::sha256_file(path)?;
    Ok(format!("z_{stem}_{}", &hash[..8]))
}

/// A closure that runs Gs of `g` on CPU latents, on the model's device, without gradients.
fn generator(
    g: &LoadedGenerator,
    convention: LatentConvention,
) -> impl FnMut(&Tensor) -> Result<Tensor> + '_ {
    let device = g.vs.device();
    move |z: &Tensor| {
        let _guard = tch::no_grad_guard();
        Ok(g.g.forward(&z.to_device(device), g.lod, convention.g_normalizes()))
    }
}

/// Images of `g` for raw latents `z` under `convention`, in batches; float `[N, C, H, W]` on the CPU.
pub fn render_latents(
    g: &LoadedGenerator,
    z: &Tensor,
    convention: LatentConvention,
    minibatch: i64,
    bar: &indicatif::ProgressBar,
) -> Result<Tensor> {
    let prepared = convention.prepare(z);
    let mut generate = generator(g, convention);
    let mut parts = Vec::new();
    for chunk in prepared.split(minibatch, 0) {
        parts.push(generate(&chunk)?.to_device(Device::Cpu));
        bar.inc(chunk.size()[0] as u64);
    }
    Ok(Tensor::cat(&parts, 0))
}

/// A grid of raw latents `z` through every model of `group`: `grid.png` (side by side for several models),
/// `z.npy`, and with `--raw` the float images.
fn render_grid_set(
    loaded: &[(ModelRef, LoadedGenerator)],
    group: &[usize],
    z: &Tensor,
    dir: &Path,
    convention: LatentConvention,
    args: &VisualizeOptions,
) -> Result<OutputSet> {
    let n = z.size()[0];
    let bar = progress::bar(Some((n as usize * group.len()) as u64), "rendering");
    let mut grids = Vec::new();
    let mut files = Vec::new();
    for (k, &i) in group.iter().enumerate() {
        let (_, g) = &loaded[i];
        let images = render_latents(g, z, convention, args.minibatch_size, &bar)?;
        grids.push(imageio::grid(
            &imageio::float_to_u8(&images),
            args.grid_cols,
            0,
            0,
        )?);
        if args.raw {
            let name = if group.len() == 1 {
                "images.npy".to_string()
            } else {
                format!("images_{k}.npy")
            };
            latents::write_npy(&images, &dir.join(&name))?;
            files.push(PathBuf::from(name));
        }
    }
    bar.finish_and_clear();
    imageio::save_png(
        &imageio::zoom(&imageio::hstack(&grids, SIDE_BY_SIDE_GAP, 0), args.zoom),
        &dir.join("grid.png"),
    )?;
    latents::write_npy(z, &dir.join("z.npy"))?;
    files.splice(0..0, [PathBuf::from("grid.png"), PathBuf::from("z.npy")]);
    Ok(OutputSet {
        mode: "grid",
        dir: dir.to_path_buf(),
        models: group.iter().map(|&i| loaded[i].0.name.clone()).collect(),
        snapshots: group.iter().map(|&i| loaded[i].0.path.clone()).collect(),
        seed: None,
        z_file: None,
        convention,
        files,
        video: None,
    })
}

/// Blocks of components `[start, end)` covering `0..nz`, `per_vid` at a time.
pub fn component_blocks(nz: i64, per_vid: i64) -> Vec<(i64, i64)> {
    let per = per_vid.clamp(1, nz.max(1));
    (0..nz)
        .step_by(per as usize)
        .map(|s| (s, (s + per).min(nz)))
        .collect()
}

/// Video file name of a block: `z000_to_z012.mp4` (the end is exclusive, as in the reference).
pub fn video_name(start: i64, end: i64, format: VideoFormat) -> String {
    format!("z{start:03}_to_z{end:03}.{}", format.extension())
}

/// The videos (and stills) of one seed for the models of `group`.
#[allow(clippy::too_many_arguments)]
fn render_videos(
    loaded: &[(ModelRef, LoadedGenerator)],
    group: &[usize],
    seed: u64,
    format: Option<(VideoFormat, Option<PathBuf>)>,
    convention: LatentConvention,
    args: &VisualizeOptions,
) -> Result<OutputSet> {
    let nz = loaded[group[0]].1.net.nz;
    let dir = group_dir(&args.out, loaded, group).join(format!("seed_{seed}"));
    let base = latents::seeded_normal(seed, args.samples, nz)?;
    latents::write_npy(&base, &dir.join("z.npy"))?;
    let mut files = vec![PathBuf::from("z.npy")];
    let prepared = convention.prepare(&base);
    let values = traversal::sweep_values(args.steps, args.extent);
    let steps = args.steps as usize;
    let looped = !args.no_loop;
    let stills_at = if args.n_frames_to_save > 0 {
        traversal::still_steps(steps, args.n_frames_to_save)
    } else {
        Vec::new()
    };
    let blocks = component_blocks(nz, args.nz_per_vid);
    let mut unique_stills = stills_at.clone();
    unique_stills.dedup();
    let frames_per_block = match format {
        None => unique_stills.len(),
        Some(_) => steps * if looped { 2 } else { 1 },
    };
    let bar = progress::bar(
        Some((blocks.len() * frames_per_block) as u64),
        &format!("seed {seed}: frames"),
    );
    let mut gens: Vec<Box<GenerateFn>> = group
        .iter()
        .map(|&i| Box::new(generator(&loaded[i].1, convention)) as Box<GenerateFn>)
        .collect();
    let mut gen_refs: Vec<&mut GenerateFn> = gens.iter_mut().map(|b| &mut **b).collect();
    for &(start, end) in &blocks {
        // Tiles of the still frames by step, one tensor per model: [ncomp, n, C, H, W].
        let mut still_tiles: BTreeMap<usize, Vec<Tensor>> = BTreeMap::new();
        match &format {
            None => {
                let still_values: Vec<f64> = unique_stills.iter().map(|&s| values[s]).collect();
                traversal::render_sweep(
                    &mut gen_refs,
                    &prepared,
                    start..end,
                    &still_values,
                    args.minibatch_size,
                    &mut |i, tiles| {
                        still_tiles.insert(
                            unique_stills[i],
                            tiles.iter().map(Tensor::shallow_clone).collect(),
                        );
                        bar.inc(1);
                        Ok(())
                    },
                )?;
            }
            Some((fmt, ffmpeg)) => {
                let name = video_name(start, end, *fmt);
                let path = dir.join(&name);
                let mut writer: Option<VideoWriter> = None;
                let mut kept: Vec<RgbImage> = Vec::new();
                let mut keep = looped;
                let budget = args.loop_cache_mib as u64 * (1 << 20);
                let compose = |tiles: &[Tensor]| -> Result<RgbImage> {
                    let parts = tiles
                        .iter()
                        .map(|t| {
                            traversal::compose_frame(t, args.transpose, args.pad_x, args.pad_y)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let frame = imageio::hstack(&parts, SIDE_BY_SIDE_GAP, 0);
                    Ok(if *fmt == VideoFormat::Mp4 {
                        video::pad_to_even(frame, 0)
                    } else {
                        frame
                    })
                };
                traversal::render_sweep(
                    &mut gen_refs,
                    &prepared,
                    start..end,
                    &values,
                    args.minibatch_size,
                    &mut |i, tiles| {
                        let frame = compose(tiles)?;
                        if writer.is_none() {
                            writer = Some(VideoWriter::create(
                                &path,
                                *fmt,
                                frame.width(),
                                frame.height(),
                                args.fps,
                                ffmpeg.as_deref(),
                            )?);
                            keep = looped && frame.as_raw().len() as u64 * steps as u64 <= budget;
                        }
                        writer.as_mut().expect("created").push(&frame)?;
                        if keep {
                            kept.push(frame);
                        }
                        if stills_at.binary_search(&i).is_ok() {
                            still_tiles
                                .insert(i, tiles.iter().map(Tensor::shallow_clone).collect());
                        }
                        bar.inc(1);
                        Ok(())
                    },
                )?;
                let mut writer = writer.context("no frames rendered")?;
                if looped {
                    if keep {
                        for frame in kept.iter().rev() {
                            writer.push(frame)?;
                            bar.inc(1);
                        }
                    } else {
                        // Too large to keep: render the reversed sweep again (same latents, same frames).
                        let reversed: Vec<f64> = values.iter().rev().copied().collect();
                        traversal::render_sweep(
                            &mut gen_refs,
                            &prepared,
                            start..end,
                            &reversed,
                            args.minibatch_size,
                            &mut |_, tiles| {
                                writer.push(&compose(tiles)?)?;
                                bar.inc(1);
                                Ok(())
                            },
                        )?;
                    }
                }
                writer.finish()?;
                files.push(PathBuf::from(name));
            }
        }
        if !stills_at.is_empty() {
            for (c, comp) in (start..end).enumerate() {
                let strips = (0..group.len())
                    .map(|m| {
                        // [n, F, C, H, W]: a row per base z, a column per saved frame.
                        let cols: Vec<Tensor> = stills_at
                            .iter()
                            .map(|s| still_tiles[s][m].get(c as i64))
                            .collect();
                        let strip = Tensor::stack(&cols, 1);
                        let s = strip.size();
                        let flat = strip.reshape([s[0] * s[1], s[2], s[3], s[4]]);
                        imageio::grid(&flat, stills_at.len(), STILL_PAD, 0)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let name = Path::new("flattened_frames").join(format!("z{comp:03}.png"));
                imageio::save_png(
                    &imageio::zoom(&imageio::hstack(&strips, SIDE_BY_SIDE_GAP, 0), args.zoom),
                    &dir.join(&name),
                )?;
                files.push(name);
            }
        }
    }
    bar.finish_and_clear();
    Ok(OutputSet {
        mode: if format.is_some() { "videos" } else { "stills" },
        dir,
        models: group.iter().map(|&i| loaded[i].0.name.clone()).collect(),
        snapshots: group.iter().map(|&i| loaded[i].0.path.clone()).collect(),
        seed: Some(seed),
        z_file: None,
        convention,
        files,
        video: Some(VideoSettings {
            format: format.map(|(f, _)| f),
            samples: args.samples,
            steps: args.steps,
            extent: args.extent,
            nz_per_vid: args.nz_per_vid.min(nz),
            looped,
            fps: args.fps,
            transpose: args.transpose,
            stills_at,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn bad_flags_are_refused() {
        let ok = VisualizeOptions {
            models: vec!["m".into()],
            ..Default::default()
        };
        validate(&ok).unwrap();
        let cases: [(VisualizeOptions, &str); 5] = [
            (
                VisualizeOptions {
                    steps: 1,
                    ..ok.clone()
                },
                "--steps",
            ),
            (
                VisualizeOptions {
                    extent: 0.0,
                    ..ok.clone()
                },
                "--extent",
            ),
            (
                VisualizeOptions {
                    stills_only: true,
                    ..ok.clone()
                },
                "--n-frames-to-save",
            ),
            (
                VisualizeOptions {
                    raw: true,
                    ..ok.clone()
                },
                "--raw",
            ),
            (
                VisualizeOptions {
                    z: Some("z.npy".into()),
                    grid: true,
                    ..ok.clone()
                },
                "--z",
            ),
        ];
        for (a, flag) in cases {
            let err = validate(&a).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
    }
}
