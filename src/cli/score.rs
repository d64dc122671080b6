//! `score`'s flags and its table / JSON output.

use crate::checkpoint::reference;
use crate::cli::values::ScoreMethodArg;
use crate::commands::score::{ModelScoreOptions, ScoreOptions, ScoreReport, DHSIC_ROWS};
use crate::metrics::encoder::EncoderOptions;
use crate::metrics::encoder_free::EncoderFreeOptions;
use crate::metrics::predictor::PredictorOptions;
use std::path::PathBuf;

/// Command-line flags of `score`.
#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    /// Codes [n, D] (.npy): one row per image, e.g. an encoder's output.
    #[arg(long)]
    pub codes: Option<PathBuf>,
    /// Ground-truth factor values [n, K] (.npy) of the same images, e.g. a dataset's factors.npy.
    #[arg(long)]
    pub factors: Option<PathBuf>,
    /// Categorical factors (column indices, comma-separated): SAP fits a classifier for them.
    #[arg(long, value_delimiter = ',')]
    pub discrete_factors: Vec<usize>,
    /// Codes of groups of images that share one fixed factor, [groups, L, D] (.npy), for FactorVAE and BetaVAE.
    #[arg(long, requires = "group_labels")]
    pub group_codes: Option<PathBuf>,
    /// The factor index each group fixes, [groups] (.npy).
    #[arg(long, requires = "group_codes")]
    pub group_labels: Option<PathBuf>,
    /// Rows used by dHSIC (its cost grows with the square).
    #[arg(long, default_value_t = DHSIC_ROWS)]
    pub dhsic_rows: usize,
    /// Also write the scores as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Models to score (instead of --codes): snapshot files, run directories, results run numbers or pretrained
    /// names. Each needs a dataset with ground-truth factors (by default the one it was trained on).
    #[arg(long, alias = "model", num_args = 1.., conflicts_with_all = ["codes", "factors"])]
    pub models: Vec<String>,
    /// Snapshot of each run number / run directory: `latest` or a kimg number (one for all, or one per model).
    #[arg(long, aliases = ["snapshot_kimg", "snapshot_kimgs", "snapshot-kimg"], num_args = 1.., default_value = "latest")]
    pub snapshot_kimgs: Vec<String>,
    /// The dataset with factors: a name under --datasets-dir or a directory (default: each model's own).
    #[arg(long)]
    pub dataset: Option<String>,
    #[arg(long, default_value = "datasets")]
    pub datasets_dir: PathBuf,
    /// Where run numbers are looked up and scores.jsonl is appended.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    #[arg(long, default_value = reference::PRETRAINED_DIR)]
    pub pretrained_dir: PathBuf,
    /// Where the factor predictors are cached (one per dataset and resolution).
    #[arg(long, default_value = crate::metrics::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Which codes: encoder-free (z through the factor predictor), the Q head, or both where possible.
    #[arg(long, value_enum, default_value = "auto")]
    pub method: ScoreMethodArg,
    /// (z, factor) pairs (encoder-free) and images with factors (Q head); the reference: 73,728.
    #[arg(long, default_value_t = EncoderOptions::default().samples)]
    pub samples: usize,
    /// FactorVAE/BetaVAE groups and images per group; the reference: 500 × 100.
    #[arg(long, default_value_t = EncoderOptions::default().groups)]
    pub groups: usize,
    #[arg(long, default_value_t = EncoderOptions::default().group_size)]
    pub group_size: usize,
    /// Fraction of the dataset whose Q codes give FactorVAE's per-code scale; the reference: 0.1.
    #[arg(long, default_value_t = EncoderOptions::default().std_fraction)]
    pub std_fraction: f64,
    /// Effect matrix: base latents per component and steps per traversal over [−extent, extent].
    #[arg(long, default_value_t = EncoderFreeOptions::default().effect_bases)]
    pub effect_bases: usize,
    #[arg(long, default_value_t = EncoderFreeOptions::default().effect_steps)]
    pub effect_steps: usize,
    #[arg(long, default_value_t = EncoderFreeOptions::default().extent)]
    pub extent: f64,
    /// Images per generator / encoder call.
    #[arg(long, default_value_t = EncoderOptions::default().batch)]
    pub batch_size: usize,
    /// Training steps of a new factor predictor (a cached one is reused whatever its steps).
    #[arg(long, default_value_t = PredictorOptions::default().steps)]
    pub predictor_steps: usize,
    /// The chart comparing several models (default: <results-dir>/scores.png).
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl From<ScoreArgs> for ScoreOptions {
    fn from(a: ScoreArgs) -> Self {
        ScoreOptions {
            codes: a.codes,
            factors: a.factors,
            discrete_factors: a.discrete_factors,
            group_codes: a.group_codes,
            group_labels: a.group_labels,
            dhsic_rows: a.dhsic_rows,
            out: a.out,
            models: ModelScoreOptions {
                models: a.models,
                snapshot_kimgs: a.snapshot_kimgs,
                dataset: a.dataset,
                datasets_dir: a.datasets_dir,
                results_dir: a.results_dir,
                pretrained_dir: a.pretrained_dir,
                cache_dir: a.cache_dir,
                method: a.method.into(),
                free: EncoderFreeOptions {
                    samples: a.samples,
                    groups: a.groups,
                    group_size: a.group_size,
                    effect_bases: a.effect_bases,
                    effect_steps: a.effect_steps,
                    extent: a.extent,
                    batch: a.batch_size,
                    ..EncoderFreeOptions::default()
                },
                encoder: EncoderOptions {
                    samples: a.samples,
                    groups: a.groups,
                    group_size: a.group_size,
                    std_fraction: a.std_fraction,
                    batch: a.batch_size,
                    ..EncoderOptions::default()
                },
                predictor: PredictorOptions {
                    steps: a.predictor_steps,
                    ..PredictorOptions::default()
                },
                chart: a.chart,
            },
        }
    }
}

/// A table of the headline numbers per subject, then the notes; or one JSON object per line.
pub fn print(reports: &[ScoreReport], json: bool) -> anyhow::Result<()> {
    if json {
        for r in reports {
            println!("{}", r.record);
        }
        return Ok(());
    }
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    println!(
        "{:<40} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "subject",
        "method",
        "FactorVAE",
        "BetaVAE",
        "MIG",
        "SAP",
        "modular",
        "explicit",
        "DCI-D",
        "DCI-C",
        "RF-D",
        "RF-C",
        "dHSIC"
    );
    for r in reports {
        let s = &r.scores;
        let name: String = r
            .subject
            .chars()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        println!(
            "{name:<40} {:>12} {:>9} {:>9} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.2e}",
            r.method,
            opt(r.factor_vae),
            opt(s.beta_vae),
            s.mig,
            s.sap,
            s.modularity,
            s.explicitness,
            s.dci_lasso_disentanglement,
            s.dci_lasso_completeness,
            s.dci_forest_disentanglement,
            s.dci_forest_completeness,
            s.dhsic
        );
    }
    for note in reports.iter().flat_map(|r| &r.notes) {
        println!("{note}");
    }
    Ok(())
}
