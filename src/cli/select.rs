//! `select`'s flags and its ranked table.

use crate::checkpoint::reference;
use crate::commands::select::{SelectOptions, SelectReport};
use crate::metrics::encoder::EncoderOptions;
use std::path::PathBuf;

/// Command-line flags of `select`.
#[derive(clap::Args, Debug)]
pub struct SelectArgs {
    /// Runs of one configuration to choose from: run numbers, run directories or snapshot files (each with an
    /// encoder: InfoGAN's Q head or InfoGAN-CR's).
    #[arg(long, alias = "models", num_args = 1.., required = true)]
    pub runs: Vec<String>,
    /// Snapshot of each run number / directory: latest, or a number (kimg for ProGAN, iterations for InfoGAN-CR).
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// Real images for UDR and the own scores: a dataset name under --datasets-dir or a directory (default: the
    /// first run's).
    #[arg(long)]
    pub dataset: Option<String>,
    #[arg(long, default_value = "datasets")]
    pub datasets_dir: PathBuf,
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    #[arg(long, default_value = reference::PRETRAINED_DIR)]
    pub pretrained_dir: PathBuf,
    /// Groups of each probe set (group g fixes code g mod K); the reference: 500.
    #[arg(long, default_value_t = 500)]
    pub groups: usize,
    /// Images per group; the reference: 100.
    #[arg(long, default_value_t = 100)]
    pub group_size: usize,
    /// Images of random codes for FactorVAE's per-code scale; the reference: 73,728.
    #[arg(long, default_value_t = 73_728)]
    pub std_samples: usize,
    /// Real images every encoder reads for UDR.
    #[arg(long, default_value_t = 10_000)]
    pub udr_samples: usize,
    /// Images per generator / encoder call.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Skip the ground-truth scores of each model (and the regret).
    #[arg(long)]
    pub no_own_scores: bool,
    /// Images with factors and FactorVAE groups of the own scores (the reference: 73,728 and 500).
    #[arg(long, default_value_t = EncoderOptions::default().samples)]
    pub own_samples: usize,
    #[arg(long, default_value_t = EncoderOptions::default().groups)]
    pub own_groups: usize,
    /// The JSON report (default <results-dir>/select.json; select.png/.svg beside it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl From<&SelectArgs> for SelectOptions {
    fn from(a: &SelectArgs) -> Self {
        SelectOptions {
            runs: a.runs.clone(),
            snapshot: a.snapshot.clone(),
            dataset: a.dataset.clone(),
            datasets_dir: a.datasets_dir.clone(),
            results_dir: a.results_dir.clone(),
            pretrained_dir: a.pretrained_dir.clone(),
            groups: a.groups,
            group_size: a.group_size,
            std_samples: a.std_samples,
            udr_samples: a.udr_samples,
            batch: a.batch,
            own_scores: !a.no_own_scores,
            encoder: EncoderOptions {
                samples: a.own_samples,
                groups: a.own_groups,
                ..EncoderOptions::default()
            },
            out: a.out.clone(),
        }
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.3}"))
}

/// The models by decreasing ModelCentrality, then each selector's pick.
pub fn print(report: &SelectReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    println!(
        "{:>4}  {:<40} {:>7} {:>7} {:>7} {:>9} {:>6} {:>6}",
        "rank", "model", "MC", "UDR-L", "UDR-S", "FactorVAE", "MIG", "DCI"
    );
    for (rank, &i) in report.ranking.iter().enumerate() {
        let m = &report.models[i];
        let own = m.own.as_ref();
        println!(
            "{:>4}  {:<40} {:>7.3} {:>7.3} {:>7.3} {:>9} {:>6} {:>6}",
            rank + 1,
            m.name,
            m.model_centrality,
            m.udr_lasso,
            m.udr_spearman,
            cell(own.and_then(|o| o.factor_vae)),
            cell(own.map(|o| o.mig)),
            cell(own.map(|o| o.dci))
        );
    }
    for p in &report.picks {
        let truth = match (
            p.factor_vae,
            p.best_factor_vae,
            p.median_factor_vae,
            p.regret,
        ) {
            (Some(f), Some(b), Some(med), Some(r)) => {
                format!(": FactorVAE {f:.3} (best {b:.3}, median {med:.3}, regret {r:.3})")
            }
            _ => String::new(),
        };
        println!("{} picks {}{truth}", p.selector, p.name);
    }
    println!(
        "wrote {} and {}",
        report.json.display(),
        report.figure.display()
    );
    Ok(())
}
