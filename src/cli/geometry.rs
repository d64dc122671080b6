//! `geometry`'s flags and its tables.

use crate::checkpoint::reference;
use crate::commands::geometry::{GeometryOptions, GeometryReport};
use std::path::PathBuf;

/// Command-line flags of `geometry`.
#[derive(clap::Args, Debug)]
pub struct GeometryArgs {
    /// Models: snapshot files, run directories, results run numbers or pretrained names.
    #[arg(long, alias = "model", num_args = 1.., required = true)]
    pub models: Vec<String>,
    /// Snapshot of each run number / run directory: `latest` or a kimg (one for all, or one per model).
    #[arg(long, num_args = 1.., default_value = "latest")]
    pub snapshot_kimgs: Vec<String>,
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    #[arg(long, default_value = reference::PRETRAINED_DIR)]
    pub pretrained_dir: PathBuf,
    /// The image distance pulled back through G: l2 (mean squared difference of [0, 1] images), lpips (PPL's
    /// VGG16 LPIPS) or layer:K (squared L2 of G's HP layer K, 1-based).
    #[arg(long, default_value = "l2")]
    pub distance: String,
    /// LPIPS-VGG16 TorchScript for `--distance lpips` (PPL's network): a local file or an http(s) URL (default:
    /// <cache-dir>/vgg16.pt, downloaded when missing).
    #[arg(long)]
    pub ppl_detector: Option<String>,
    #[arg(long, default_value = crate::metrics::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Feed LPIPS G's own resolution instead of upsampling to 256² as PPL does.
    #[arg(long)]
    pub lpips_native: bool,
    /// Differentiate with respect to the pixel-normalised z with G's own latent normalisation off (visualize's
    /// default convention; H then has full rank) instead of the raw z that G normalises.
    #[arg(long)]
    pub post_norm: bool,
    /// How H is computed, comma-separated, all run at the same codes: bp (full matrix), backward-iter (exact
    /// products + Lanczos), forward-iter (finite differences + Lanczos), auto (bp up to n = 1024). The first is drawn.
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    pub methods: Vec<String>,
    /// Reference codes per model, drawn from N(0, I) with --seed.
    #[arg(long, default_value_t = 10)]
    pub num_points: usize,
    /// Eigenpairs of the iterative methods (default n/2 − 1, as the reference).
    #[arg(long)]
    pub cutoff: Option<usize>,
    /// Lanczos tolerance: residual ‖Hv − λv‖ ≤ tol·λ_max.
    #[arg(long, default_value_t = 1e-6)]
    pub tol: f64,
    /// Lanczos restarts (default 20 for backward-iter, 200 for forward-iter, as the reference).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// forward-iter's finite-difference step, relative to ‖z0‖.
    #[arg(long, default_value_t = 1e-3)]
    pub eps: f64,
    /// Axes to draw, comma-separated: k is the (k+1)-th largest eigenvector of the averaged H.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4")]
    pub eig_list: Vec<usize>,
    /// Extent of the explorations: L2 distance in latent space (radians with --sphere).
    #[arg(long, default_value_t = 2.0)]
    pub max_dist: f64,
    /// Images per axis in the montages.
    #[arg(long, default_value_t = 7)]
    pub steps: usize,
    /// Spherical exploration (keeps ‖z‖) instead of linear.
    #[arg(long)]
    pub sphere: bool,
    /// Codes in the eigenvector-action montage.
    #[arg(long, default_value_t = 6)]
    pub action_codes: usize,
    /// Points per distance curve.
    #[arg(long, default_value_t = 19)]
    pub dist_steps: usize,
    /// Codes per generator call when rendering.
    #[arg(long, default_value_t = 32)]
    pub batch: i64,
    /// Root of the outputs: <out>/<run dir>/<snapshot>/<distance>/ and <out>/geometry.json.
    #[arg(long, default_value = "geometry")]
    pub out: PathBuf,
    /// Print the report as JSON instead of the tables.
    #[arg(long)]
    pub json: bool,
}

impl From<&GeometryArgs> for GeometryOptions {
    fn from(a: &GeometryArgs) -> Self {
        GeometryOptions {
            models: a.models.clone(),
            snapshot_kimgs: a.snapshot_kimgs.clone(),
            results_dir: a.results_dir.clone(),
            pretrained_dir: a.pretrained_dir.clone(),
            distance: a.distance.clone(),
            ppl_detector: a.ppl_detector.clone(),
            cache_dir: a.cache_dir.clone(),
            lpips_native: a.lpips_native,
            post_norm: a.post_norm,
            methods: a.methods.clone(),
            num_points: a.num_points,
            cutoff: a.cutoff,
            tol: a.tol,
            max_steps: a.max_steps,
            eps: a.eps,
            eig_list: a.eig_list.clone(),
            max_dist: a.max_dist,
            steps: a.steps,
            sphere: a.sphere,
            action_codes: a.action_codes,
            dist_steps: a.dist_steps,
            batch: a.batch,
            out: a.out.clone(),
        }
    }
}

/// Timings, then the spectrum / consistency / alignment table, one row per model and method.
pub fn print(report: &GeometryReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    println!(
        "{:<36} {:<13} {:>3} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7}",
        "model",
        "method",
        "n",
        "s/point",
        "HVPs",
        "top |λ|",
        "corr_log",
        "corr_lin",
        "offdiag",
        "diagstr",
        "maxcomp"
    );
    for m in &report.models {
        for s in &m.methods {
            let c = s.consistency.as_ref();
            println!(
                "{:<36} {:<13} {:>3} {:>8.3} {:>8.0} {:>9.3e} {:>9} {:>9} {:>7.3} {:>7.2} {:>7.3}",
                m.name,
                s.method.name(),
                m.nz,
                s.seconds_per_point,
                s.products_per_point,
                s.average_eigenvalues.first().copied().unwrap_or(f64::NAN),
                c.map_or("–".into(), |c| format!("{:.3}", c.log_mean)),
                c.map_or("–".into(), |c| format!("{:.3}", c.lin_mean)),
                s.alignment.off_diagonal_share,
                s.alignment.diagonalness.relative_diagonal_strength,
                s.alignment.mean_top_max_component,
            );
        }
        for c in &m.comparisons {
            println!(
                "  {} vs {}: corr(H) {:.4}, top eigenvalues within {:.2e} of λ_max, CCA {:.3}",
                c.method.name(),
                c.against.name(),
                c.h_correlation,
                c.max_relative_eigenvalue_error,
                c.cca_mean
            );
        }
        println!(
            "  {}: averaged H of {} codes; maxcomp chance level {:.3}; wrote {}",
            m.name,
            m.methods.first().map_or(0, |s| s.points),
            m.chance_max_component,
            m.dir.display()
        );
    }
    println!(
        "offdiag: share of |H_avg| off the diagonal; diagstr: Table 2's relative diagonal strength; maxcomp: mean \
         largest |component| of the top eigenvectors (1 = coordinate axes)"
    );
    println!("wrote {}", report.json.display());
    Ok(())
}
