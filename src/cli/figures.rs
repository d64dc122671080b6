//! `figures`'s flags (docs/spec/progan_hp.md §4.4; kebab-case versions of figures.py's).

use crate::checkpoint::reference;
use crate::cli::values::FigArg;
use crate::commands::figures::{FiguresOptions, FiguresReport};
use std::path::PathBuf;

/// Flags of `figures` (docs/spec/progan_hp.md §4.4; kebab-case versions of figures.py's).
#[derive(clap::Args, Clone, Debug)]
pub struct FiguresArgs {
    /// Models: snapshot files, run directories or results run numbers. For --fig active, ordered dataset-major
    /// (all models of the first dataset, then the next …).
    #[arg(long, num_args = 1.., required = true)]
    pub models: Vec<String>,
    /// Which figure.
    #[arg(long, value_enum)]
    pub fig: FigArg,
    /// Snapshot of each run-number / run-directory model: `latest` or a kimg number; one for all or one per model.
    #[arg(long, alias = "snapshot_kimgs", num_args = 1.., default_value = "latest")]
    pub snapshot_kimgs: Vec<String>,
    /// NumPy seeds of the latents; one figure per seed.
    #[arg(long, num_args = 1.., default_value = "0", conflicts_with = "z")]
    pub seeds: Vec<u64>,
    /// Number of base latents (default 8; the paper uses 100 for diag and 300 for active).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Give G the raw z and let it pixel-normalise (as training did) instead of normalising here first.
    #[arg(long, alias = "interpolate_pre_norm")]
    pub interpolate_pre_norm: bool,
    /// Legend names (active: one per model of a dataset) or row labels (other figures: one per model).
    #[arg(long, alias = "model_names", num_args = 1..)]
    pub model_names: Option<Vec<String>>,
    /// Subplot titles of --fig active, one per dataset.
    #[arg(long, alias = "dataset_names", num_args = 1..)]
    pub dataset_names: Option<Vec<String>>,
    /// Finite-difference step of the Hessians and Hessian Penalties.
    #[arg(long, default_value_t = 0.1)]
    pub epsilon: f64,
    /// The set values of --fig active are −extent, 0, +extent (the reference hard-codes 2).
    #[arg(long, default_value_t = 2.0)]
    pub extent: f64,
    /// Use these latents (a float .npy of shape [samples, nz], as written to z.npy) instead of seeded draws.
    #[arg(long)]
    pub z: Option<PathBuf>,
    /// Most latents per generator call.
    #[arg(long, alias = "minibatch_size", default_value_t = 100)]
    pub minibatch_size: usize,
    /// figures.py's `--nz_per_vid`, which figures.py declares but never uses; accepted so its command lines run.
    #[arg(long, alias = "nz_per_vid", hide = true)]
    pub nz_per_vid: Option<i64>,
    /// Root of the outputs.
    #[arg(long, default_value = "visuals")]
    pub out: PathBuf,
    /// Where run numbers are looked up.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Where pretrained models (`clevr_simple_ft`, …) are downloaded and converted.
    #[arg(long, default_value = reference::PRETRAINED_DIR)]
    pub pretrained_dir: PathBuf,
}

impl FiguresArgs {
    /// Notes on the reference's flags that have no effect here.
    pub fn warn_ignored(&self) {
        if let Some(n) = self.nz_per_vid {
            log::warn!("--nz-per-vid {n} has no effect on figures (figures.py ignores it too)");
        }
    }
}

impl From<FiguresArgs> for FiguresOptions {
    fn from(a: FiguresArgs) -> Self {
        FiguresOptions {
            models: a.models,
            fig: a.fig.into(),
            snapshot_kimgs: a.snapshot_kimgs,
            seeds: a.seeds,
            samples: a.samples,
            interpolate_pre_norm: a.interpolate_pre_norm,
            model_names: a.model_names,
            dataset_names: a.dataset_names,
            epsilon: a.epsilon,
            extent: a.extent,
            z: a.z,
            minibatch_size: a.minibatch_size,
            out: a.out,
            results_dir: a.results_dir,
            pretrained_dir: a.pretrained_dir,
        }
    }
}

/// Table 2's numbers of `--fig diag`, one table per seed. Printed even with `--quiet`: they are the result
/// (docs/spec/progan_hp.md §9.3 prints them to the console).
pub fn print_diag(report: &FiguresReport) {
    let width = report
        .diag
        .iter()
        .map(|(_, label, _)| label.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut last_seed = None;
    for (seed, label, d) in &report.diag {
        if last_seed != Some(*seed) {
            println!(
                "{:<width$}  {:>26}  {:>26}  {:>10}",
                "model", "fraction max on diagonal", "relative diagonal strength", "matrices"
            );
            last_seed = Some(*seed);
        }
        println!(
            "{label:<width$}  {:>26.4}  {:>26.4}  {:>10}",
            d.fraction_max_on_diagonal, d.relative_diagonal_strength, d.matrices
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::figures::Fig;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: FiguresArgs,
    }

    #[test]
    fn library_defaults_match_the_command_line_defaults() {
        let parsed: FiguresOptions = Wrapper::parse_from(["x", "--models", "m", "--fig", "diag"])
            .args
            .into();
        let want = FiguresOptions::new(vec!["m".into()], Fig::Diag);
        assert_eq!(format!("{parsed:?}"), format!("{want:?}"));
    }
}
