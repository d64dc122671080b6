//! `score`'s flags and its table / JSON output.

use crate::commands::score::{ScoreOptions, ScoreReport, DHSIC_ROWS};
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
        }
    }
}

/// A table of the headline numbers per subject, or one JSON object per line.
pub fn print(reports: &[ScoreReport], json: bool) -> anyhow::Result<()> {
    if json {
        for r in reports {
            let mut v = serde_json::to_value(&r.scores)?;
            v["subject"] = serde_json::json!(r.subject);
            println!("{v}");
        }
        return Ok(());
    }
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    println!(
        "{:<40} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "subject",
        "FactorVAE",
        "BetaVAE",
        "MIG",
        "SAP",
        "modular",
        "explicit",
        "DCI-D",
        "DCI-C",
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
            "{name:<40} {:>9} {:>9} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.2e}",
            opt(s.factor_vae),
            opt(s.beta_vae),
            s.mig,
            s.sap,
            s.modularity,
            s.explicitness,
            s.dci_lasso_disentanglement,
            s.dci_lasso_completeness,
            s.dhsic
        );
    }
    Ok(())
}
