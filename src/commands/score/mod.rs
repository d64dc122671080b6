//! `hessian-gan score`: how disentangled a representation is, against ground-truth factors
//! (docs/spec/geometry_infogancr.md §B.3, `metrics::disentanglement`).
//!
//! - On given codes: `--codes C.npy --factors F.npy` (row i of both describes image i), with FactorVAE/BetaVAE
//!   groups from `--group-codes G.npy` (`[groups, L, D]`) and `--group-labels L.npy` (the factor each group fixes).
//! - On models (`--models M…`, [`models`]): every generator without an encoder through the factor predictor
//!   (`metrics::encoder_free`), and an InfoGAN's Q head on real images (`metrics::encoder`).

mod models;

use crate::commands::Globals;
use crate::io::fs;
use crate::metrics::disentanglement::{self, Groups, Scores};
use anyhow::{ensure, Context, Result};
use ndarray::{Array2, Array3, Axis};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

pub use models::{ModelScoreOptions, ScoreMethod};

/// Settings of `score` (the command line: `cli::score::ScoreArgs`).
#[derive(Clone, Debug, Default)]
pub struct ScoreOptions {
    /// Codes `[n, D]` (.npy, any float or integer type).
    pub codes: Option<PathBuf>,
    /// Factor values `[n, K]` for the same rows.
    pub factors: Option<PathBuf>,
    /// Indices of the categorical factors (SAP fits a classifier for them, a correlation for the others).
    pub discrete_factors: Vec<usize>,
    /// Codes of groups that fix one factor `[G, L, D]`, and the index of the factor each group fixes `[G]`.
    pub group_codes: Option<PathBuf>,
    pub group_labels: Option<PathBuf>,
    /// Rows used by dHSIC (the reference: 5000).
    pub dhsic_rows: usize,
    /// Also write the result here (JSON).
    pub out: Option<PathBuf>,
    /// Models to score instead of given codes.
    pub models: ModelScoreOptions,
}

/// The reference's dHSIC sample size.
pub const DHSIC_ROWS: usize = 5000;

/// What `score` measured for one representation.
#[derive(Debug)]
pub struct ScoreReport {
    /// What was scored (a file or a model).
    pub subject: String,
    /// How its codes were obtained: `codes` (given), `encoder-free` (z through the factor predictor) or `q-head`.
    pub method: &'static str,
    pub scores: Scores,
    /// FactorVAE as the table shows it (encoder-free: on z groups).
    pub factor_vae: Option<f64>,
    /// The whole record (what `--json` prints).
    pub record: Value,
    /// Lines printed under the table (effect-matrix DCI, predictor quality, files written).
    pub notes: Vec<String>,
}

/// An .npy array as float64, with its shape; the error names the flag and the file.
fn read_array(path: &Path, flag: &str) -> Result<(Vec<i64>, Vec<f64>)> {
    let t = Tensor::read_npy(path).map_err(|e| {
        anyhow::anyhow!("{flag} {}: not a readable .npy array ({e})", path.display())
    })?;
    let shape = t.size();
    let values = Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1))
        .with_context(|| format!("{flag} {}", path.display()))?;
    Ok((shape, values))
}

fn read_matrix(path: &Path, flag: &str) -> Result<Array2<f64>> {
    let (shape, values) = read_array(path, flag)?;
    let (rows, cols) = match shape.as_slice() {
        [n] => (*n as usize, 1),
        [n, d] => (*n as usize, *d as usize),
        _ => anyhow::bail!(
            "{flag} {} has shape {shape:?}; expected [rows, columns]",
            path.display()
        ),
    };
    Ok(Array2::from_shape_vec((rows, cols), values)?)
}

fn read_groups(codes: &Path, labels: &Path) -> Result<Groups> {
    let (shape, values) = read_array(codes, "--group-codes")?;
    let [g, l, d] = shape.as_slice() else {
        anyhow::bail!(
            "--group-codes {} has shape {shape:?}; expected [groups, codes per group, code size]",
            codes.display()
        );
    };
    let all = Array3::from_shape_vec((*g as usize, *l as usize, *d as usize), values)?;
    let (lshape, lvalues) = read_array(labels, "--group-labels")?;
    ensure!(
        lshape == [*g],
        "--group-labels {} has shape {lshape:?}; expected [{g}], one factor index per group",
        labels.display()
    );
    let labels = lvalues
        .iter()
        .map(|&v| {
            ensure!(
                v >= 0.0 && v.fract() == 0.0,
                "--group-labels {}: {v} is not a factor index",
                labels.display()
            );
            Ok(v as usize)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Groups {
        codes: all.axis_iter(Axis(0)).map(|g| g.to_owned()).collect(),
        labels,
        std_codes: None,
    })
}

/// Entry point of `hessian-gan score`.
pub fn run(globals: &Globals, opts: &ScoreOptions) -> Result<Vec<ScoreReport>> {
    let given = opts.codes.is_some() || opts.factors.is_some();
    let mut reports = match (given, opts.models.models.is_empty()) {
        (true, false) => {
            anyhow::bail!("give either --codes/--factors or --models, not both")
        }
        (false, false) => models::run(globals, &opts.models, opts.dhsic_rows)?,
        _ => run_codes(opts)?,
    };
    if let Some(out) = &opts.out {
        let value = match reports.as_slice() {
            [one] => one.record.clone(),
            all => Value::Array(all.iter().map(|r| r.record.clone()).collect()),
        };
        fs::write_bytes_atomic(out, serde_json::to_string_pretty(&value)?.as_bytes())?;
        if let Some(last) = reports.last_mut() {
            last.notes.push(format!("wrote {}", out.display()));
        }
    }
    Ok(reports)
}

fn run_codes(opts: &ScoreOptions) -> Result<Vec<ScoreReport>> {
    let (Some(codes_path), Some(factors_path)) = (&opts.codes, &opts.factors) else {
        anyhow::bail!(
            "give --codes C.npy and --factors F.npy (the same rows: one image each), or --models M with a dataset \
             that has factors"
        );
    };
    let codes = read_matrix(codes_path, "--codes")?;
    let factors = read_matrix(factors_path, "--factors")?;
    ensure!(
        codes.nrows() == factors.nrows(),
        "--codes {} has {} rows but --factors {} has {}: row i of both must describe the same image",
        codes_path.display(),
        codes.nrows(),
        factors_path.display(),
        factors.nrows()
    );
    let k = factors.ncols();
    if let Some(&bad) = opts.discrete_factors.iter().find(|&&j| j >= k) {
        anyhow::bail!(
            "--discrete-factors {bad}: the factors have only {k} columns (0..{})",
            k - 1
        );
    }
    let discrete: Vec<bool> = (0..k).map(|j| opts.discrete_factors.contains(&j)).collect();
    let groups = match (&opts.group_codes, &opts.group_labels) {
        (Some(c), Some(l)) => Some(read_groups(c, l)?),
        (None, None) => None,
        _ => anyhow::bail!("--group-codes and --group-labels go together"),
    };
    let scores = disentanglement::score(
        codes.view(),
        factors.view(),
        &discrete,
        groups.as_ref(),
        opts.dhsic_rows,
    )
    .with_context(|| format!("--codes {}", codes_path.display()))?;
    let mut record = serde_json::to_value(&scores)?;
    record["subject"] = serde_json::json!(codes_path.display().to_string());
    Ok(vec![ScoreReport {
        subject: codes_path.display().to_string(),
        method: "codes",
        factor_vae: scores.factor_vae,
        scores,
        record,
        notes: Vec::new(),
    }])
}
