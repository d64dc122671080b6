//! `discover`'s flags and its table.

use crate::checkpoint::frozen::ClassChoice;
use crate::checkpoint::reference;
use crate::cli::values::{DirectionInitArg, SearchSpaceArg};
use crate::commands::discover::compare::CompareOptions;
use crate::commands::discover::{DiscoverOptions, DiscoverReport};
use std::path::PathBuf;

/// Command-line flags of `discover`.
#[derive(clap::Args, Debug)]
pub struct DiscoverArgs {
    /// The frozen generator: a snapshot, run directory, results run number or pretrained name; or BigGAN's
    /// G_ema.pth (BigGAN-PyTorch's 138k EMA generator, see pretrained_models/README.md).
    #[arg(long, alias = "model")]
    pub models: Option<String>,
    /// Snapshot of a run number / run directory: `latest` or a kimg.
    #[arg(long, default_value = "latest")]
    pub snapshot_kimg: String,
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    #[arg(long, default_value = reference::PRETRAINED_DIR)]
    pub pretrained_dir: PathBuf,
    /// Where discovery runs are made: <out>/<NNNNN>-discover-<model>-<space>-<ndirs>/.
    #[arg(long, default_value = "results/discover")]
    pub out: PathBuf,
    /// Continue the discovery run in this directory from its newest state (its settings are kept; --iters may grow).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Directions to learn (default: every component of the search space).
    #[arg(long)]
    pub ndirs: Option<i64>,
    /// Components of z searched: all, or BigGAN's coarse / mid / fine thirds (0–39, 40–79, 80–119).
    #[arg(long, value_enum, default_value = "all")]
    pub search_space: SearchSpaceArg,
    /// How A starts: random (Kaiming normal, orthonormalised) or coords (the coordinate axes).
    #[arg(long, value_enum, default_value = "random")]
    pub init: DirectionInitArg,
    /// Leave A free (no Gram–Schmidt after each step).
    #[arg(long)]
    pub no_ortho: bool,
    /// η: each sample moves along its direction by a distance from U[−η, η].
    #[arg(long, default_value_t = 5.0)]
    pub path_size: f64,
    /// Adam's learning rate on A (β 0.9 / 0.999).
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Latents per iteration.
    #[arg(long, default_value_t = 96)]
    pub batch: i64,
    #[arg(long, default_value_t = 50_000)]
    pub iters: u64,
    /// BigGAN's class for every sample (207 golden retriever, 497 church), or `random` per sample.
    #[arg(long, default_value = "207", value_parser = parse_class)]
    pub class: ClassChoice,
    /// Write A_<iter>.npy, its .json and the resumable state every this many iterations.
    #[arg(long, default_value_t = 1000)]
    pub save_every: u64,
    #[arg(long, default_value_t = 100)]
    pub log_every: u64,
    /// Traversal GIFs of the directions (vis/ and TensorBoard) every --vis-every iterations.
    #[arg(long)]
    pub vis_during_training: bool,
    #[arg(long, default_value_t = 1000)]
    pub vis_every: u64,
    /// Baselines written and scored beside the learned directions (comma-separated: coords, random, pca, geometry).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "coords,random,pca,geometry"
    )]
    pub baselines: Vec<String>,
    /// Skip the comparison with the baselines.
    #[arg(long)]
    pub no_compare: bool,
    /// Score the direction sets on this dataset (with factors) instead of the one the model trained on.
    #[arg(long)]
    pub dataset: Option<String>,
    #[arg(long, default_value = "datasets")]
    pub datasets_dir: PathBuf,
    #[arg(long, default_value = crate::metrics::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// (code, factor) samples of each set's encoder-free scores.
    #[arg(long, default_value_t = CompareOptions::default().samples)]
    pub score_samples: usize,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `--class`: a number or `random`.
pub fn parse_class(s: &str) -> Result<ClassChoice, String> {
    if s == "random" {
        return Ok(ClassChoice::Random);
    }
    s.parse::<i64>()
        .map(ClassChoice::Fixed)
        .map_err(|_| format!("give a class number (e.g. 207) or `random`, not {s:?}"))
}

impl DiscoverArgs {
    pub fn options(&self) -> anyhow::Result<DiscoverOptions> {
        let model = match (&self.models, &self.resume) {
            (Some(m), _) => m.clone(),
            (None, Some(_)) => String::new(),
            (None, None) => anyhow::bail!("--models: give the generator to discover directions in"),
        };
        Ok(DiscoverOptions {
            model,
            snapshot_kimg: self.snapshot_kimg.clone(),
            results_dir: self.results_dir.clone(),
            pretrained_dir: self.pretrained_dir.clone(),
            out: self.out.clone(),
            resume: self.resume.clone(),
            ndirs: self.ndirs,
            search_space: self.search_space.into(),
            init: self.init.into(),
            no_ortho: self.no_ortho,
            path_size: self.path_size,
            lr: self.lr,
            batch: self.batch,
            iters: self.iters,
            class: self.class,
            save_every: self.save_every,
            log_every: self.log_every,
            vis_during_training: self.vis_during_training,
            vis_every: self.vis_every,
            compare: CompareOptions {
                baselines: self.baselines.clone(),
                dataset: self.dataset.clone(),
                datasets_dir: self.datasets_dir.clone(),
                cache_dir: self.cache_dir.clone(),
                samples: self.score_samples,
                ..CompareOptions::default()
            },
            skip_compare: self.no_compare,
        })
    }
}

/// The run, then one row per direction set.
pub fn print(report: &DiscoverReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    println!(
        "{}: {} iterations in {:.0} s, final HP {:.5}; directions {}",
        report.run_dir.display(),
        report.iterations,
        report.seconds,
        report.final_penalty,
        report.directions.display()
    );
    let Some(c) = &report.comparison else {
        return Ok(());
    };
    if let Some(why) = &c.unscored {
        println!("not scored: {why}");
    }
    let f = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.3}"));
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "directions", "HP", "effect-D", "effect-C", "max", "FactorVAE", "MIG", "DCI-D"
    );
    for s in &c.sets {
        println!(
            "{:<12} {:>9.4} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
            s.name,
            s.penalty,
            f(s.effect_disentanglement),
            f(s.effect_completeness),
            f(s.effect_max),
            f(s.factor_vae),
            f(s.mig),
            f(s.dci_disentanglement)
        );
    }
    println!(
        "pictures, directions and compare.json in {}",
        c.dir.display()
    );
    Ok(())
}
