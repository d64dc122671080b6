//! `visualize`'s flags (the reference's `visualize.py` flags in kebab-case, docs/spec/progan_hp.md §4.2, plus ours).

use crate::checkpoint::reference;
use crate::cli::values::VideoFormatArg;
use crate::commands::visualize::VisualizeOptions;
use std::path::PathBuf;

/// Command-line flags of `visualize` (the reference's `visualize.py` flags in kebab-case, docs/spec/progan_hp.md §4.2, plus ours).
#[derive(clap::Args, Debug, Clone)]
pub struct VisualizeArgs {
    /// Models: snapshot files, run directories, results run numbers, or pretrained names
    /// (<dataset>_<ft|fs|info|bl>, downloaded into pretrained_models/ and converted once).
    #[arg(long, required = true, num_args = 1..)]
    pub models: Vec<String>,
    /// Snapshot of run numbers and run directories: `latest` or a kimg; one value for all models or one per model.
    #[arg(long, alias = "snapshot_kimgs", num_args = 1.., default_value = "latest")]
    pub snapshot_kimgs: Vec<String>,
    /// Where run numbers are looked up.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Where pretrained models are downloaded and converted.
    #[arg(long, default_value = reference::PRETRAINED_DIR)]
    pub pretrained_dir: PathBuf,
    /// Root of the outputs (visuals/<run dir>/<snapshot>/seed_<seed>/...).
    #[arg(long, default_value = "visuals")]
    pub out: PathBuf,
    /// NumPy seeds of the base latents, one set of outputs per seed (default: --seed, else 0).
    #[arg(long, num_args = 1..)]
    pub seeds: Option<Vec<u64>>,
    /// Components (rows) per video; capped at nz.
    #[arg(long, alias = "nz_per_vid", default_value_t = 12)]
    pub nz_per_vid: i64,
    /// Base latents (columns) per video.
    #[arg(long, default_value_t = 8)]
    pub samples: i64,
    /// Frames per sweep.
    #[arg(long, default_value_t = 90)]
    pub steps: i64,
    /// Sweep from −extent to +extent.
    #[arg(long, default_value_t = 2.0)]
    pub extent: f64,
    /// Latents per generator call.
    #[arg(long, alias = "minibatch_size", default_value_t = 100)]
    pub minibatch_size: i64,
    /// Sweep the raw z and let G normalise it (recommended for small nz such as CLEVR-U); by default the
    /// pixel-normalised z is swept and G's latent normalisation is off.
    #[arg(long, alias = "interpolate_pre_norm")]
    pub interpolate_pre_norm: bool,
    /// Play the sweep once (−extent → +extent) instead of forward and back.
    #[arg(long, alias = "no_loop")]
    pub no_loop: bool,
    /// Only write the still strips (needs --n-frames-to-save > 0).
    #[arg(long, alias = "stills_only", conflicts_with_all = ["grid", "z"])]
    pub stills_only: bool,
    /// Frames per component saved as a PNG strip flattened_frames/zNNN.png (0 = none).
    #[arg(long, alias = "n_frames_to_save", default_value_t = 0)]
    pub n_frames_to_save: usize,
    /// Rows = base latents, columns = components.
    #[arg(long)]
    pub transpose: bool,
    /// Black pixels between columns of a video frame.
    #[arg(long, alias = "pad_x", default_value_t = 0)]
    pub pad_x: usize,
    /// Black pixels between rows of a video frame.
    #[arg(long, alias = "pad_y", default_value_t = 0)]
    pub pad_y: usize,
    /// Nearest-neighbour enlargement of the stills and grids (a 32² model's tiles are hard to see at 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub zoom: u32,
    /// Frames per second of the videos.
    #[arg(long, default_value_t = 60)]
    pub fps: u32,
    /// Video container; mp4 needs ffmpeg on PATH, otherwise GIFs are written.
    #[arg(long, value_enum, default_value = "mp4")]
    pub format: VideoFormatArg,
    /// Memory for keeping the forward frames of a looped video; beyond it the reversed half is rendered again.
    #[arg(long, default_value_t = 2048)]
    pub loop_cache_mib: usize,
    /// Write a sample grid (grid/grid.png and grid/z.npy per seed) instead of videos.
    #[arg(long, conflicts_with = "z")]
    pub grid: bool,
    /// Images in the sample grid.
    #[arg(long, default_value_t = 64)]
    pub grid_count: i64,
    /// Columns of the sample grid and of --z renders.
    #[arg(long, default_value_t = 8)]
    pub grid_cols: usize,
    /// All models in one output per seed (models side by side in each frame or grid); they must share nz and
    /// image size.
    #[arg(long)]
    pub side_by_side: bool,
    /// Render these latents (float32 [N, nz] .npy) through each model: a PNG grid (and --raw images).
    #[arg(long)]
    pub z: Option<PathBuf>,
    /// With --z or --grid: also the float images as .npy [N, C, H, W] (G's output, not quantised or clipped).
    #[arg(long)]
    pub raw: bool,
    /// Walk directions instead of z's components (docs/spec/progan_hp.md §11): a .npy [k, nz] of directions, one per
    /// row (discover's A_<iter>.npy or directions.npy; also BigGAN G_ema.pth models), `coords` or `random`. Eight
    /// directions per video, --samples base latents per row, the eased path 0 → −extent → 0 → +extent → 0 over
    /// 2·--steps frames.
    #[arg(long)]
    pub directions: Option<String>,
    /// The class of a class-conditional generator (BigGAN) in --directions videos: a number (default 207) or random.
    #[arg(long, value_parser = crate::cli::discover::parse_class)]
    pub class: Option<crate::checkpoint::frozen::ClassChoice>,
}

impl From<VisualizeArgs> for VisualizeOptions {
    fn from(a: VisualizeArgs) -> Self {
        VisualizeOptions {
            models: a.models,
            snapshot_kimgs: a.snapshot_kimgs,
            results_dir: a.results_dir,
            pretrained_dir: a.pretrained_dir,
            out: a.out,
            seeds: a.seeds,
            nz_per_vid: a.nz_per_vid,
            samples: a.samples,
            steps: a.steps,
            extent: a.extent,
            minibatch_size: a.minibatch_size,
            interpolate_pre_norm: a.interpolate_pre_norm,
            no_loop: a.no_loop,
            stills_only: a.stills_only,
            n_frames_to_save: a.n_frames_to_save,
            transpose: a.transpose,
            pad_x: a.pad_x,
            pad_y: a.pad_y,
            zoom: a.zoom,
            fps: a.fps,
            format: a.format.into(),
            loop_cache_mib: a.loop_cache_mib,
            grid: a.grid,
            grid_count: a.grid_count,
            grid_cols: a.grid_cols,
            side_by_side: a.side_by_side,
            z: a.z,
            raw: a.raw,
            directions: a.directions,
            class: a.class,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: VisualizeArgs,
    }

    #[test]
    fn library_defaults_match_the_command_line_defaults() {
        let parsed: VisualizeOptions = Wrapper::parse_from(["x", "--models", "m"]).args.into();
        let want = VisualizeOptions {
            models: vec!["m".into()],
            ..Default::default()
        };
        assert_eq!(format!("{parsed:?}"), format!("{want:?}"));
    }
}
