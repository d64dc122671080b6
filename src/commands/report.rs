//! `report`: the summary of a study (scripts/study.sh). It reads a manifest of runs, one JSON object per line
//! (`{"dataset", "arm", "seed", "run", "parent"}`), collects every score tick that `train --score-ticks` left in
//! the runs' snapshot metrics JSON, and writes, per dataset, a table of each arm's last tick as mean ± std over
//! seeds, plots of every measure against kimg, and the traversal stills the study saved; as `study.md`,
//! `study.json` and `study-<dataset>.png/.svg` under `--out`.
//!
//! It trains and generates nothing: re-running it after more runs finished refreshes the summary.

use crate::commands::figures::charts::{self, Curve, LinePanel};
use crate::io::fs;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `report`'s inputs.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    pub manifest: PathBuf,
    pub out: PathBuf,
    /// `figures --fig diag` outputs (diag.json) whose models are runs of the manifest: Table 2's numbers join
    /// the table.
    pub diag: Vec<PathBuf>,
}

/// One line of the manifest.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ManifestRun {
    pub dataset: String,
    pub arm: String,
    pub seed: u64,
    /// The run directory.
    pub run: PathBuf,
    /// The run it was resumed from ("" or absent: trained from scratch); its ticks up to the resume point extend
    /// the curves.
    #[serde(default)]
    pub parent: Option<PathBuf>,
}

/// A measure of the table and the plots: where it sits in a score tick's metrics JSON.
pub struct Measure {
    pub key: &'static str,
    pub label: &'static str,
    /// JSON pointer into the metrics document.
    pub pointer: &'static str,
    /// Plotted as log10 (the predictor's Fréchet distance spans 10 to 10⁴ when a run is briefly broken).
    pub log_plot: bool,
}

/// What the study reports for every score tick (README, "Disentanglement scores").
pub const MEASURES: [Measure; 7] = [
    Measure {
        key: "factor_vae_z",
        label: "FactorVAE (z groups) ↑",
        pointer: "/scores/factor_vae_z",
        log_plot: false,
    },
    Measure {
        key: "mig",
        label: "MIG ↑",
        pointer: "/scores/scores/mig",
        log_plot: false,
    },
    Measure {
        key: "dci_disentanglement",
        label: "DCI-Lasso D ↑",
        pointer: "/scores/scores/dci_lasso_disentanglement",
        log_plot: false,
    },
    Measure {
        key: "effect_disentanglement",
        label: "effect DCI-D ↑",
        pointer: "/scores/effect_disentanglement",
        log_plot: false,
    },
    Measure {
        key: "effect_max",
        label: "effect_max",
        pointer: "/scores/effect_max",
        log_plot: false,
    },
    Measure {
        key: "predictor_frechet_distance",
        label: "predictor FD ↓",
        pointer: "/scores/predictor_frechet_distance",
        log_plot: true,
    },
    Measure {
        key: "diversity_ratio",
        label: "diversity (fakes/reals)",
        pointer: "/diversity_ratio",
        log_plot: false,
    },
];

/// One score tick of one run: kimg and a value per measure (None where the tick lacks it).
#[derive(Clone, Debug, Serialize)]
pub struct Tick {
    pub kimg: f64,
    pub values: Vec<Option<f64>>,
}

/// Mean, sample std and count of some values.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Stat {
    /// None for no values; the std of one value is 0.
    pub fn of(values: &[f64]) -> Option<Stat> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Stat { mean, std, n })
    }

    /// `0.525 ± 0.031` with a precision that suits the value's size.
    pub fn format(&self) -> String {
        let digits = if self.mean.abs() >= 10.0 { 1 } else { 3 };
        format!("{:.*} ± {:.*}", digits, self.mean, digits, self.std)
    }
}

/// An arm's summary on one dataset.
#[derive(Clone, Debug, Serialize)]
pub struct ArmSummary {
    pub arm: String,
    pub seeds: Vec<u64>,
    /// The last tick's kimg of each seed.
    pub kimg: Vec<f64>,
    /// Per measure (MEASURES order): the seeds' last-tick values and their statistic.
    pub last: Vec<(Vec<f64>, Option<Stat>)>,
    /// Table 2 (`figures --fig diag`), when given: fraction of Hessians with their max on the diagonal, and the
    /// relative diagonal strength, over the seeds' snapshots found in the diag files.
    pub diag_fraction: Option<Stat>,
    pub diag_strength: Option<Stat>,
    /// Per measure: (kimg, mean, std) over the seeds that have a tick there.
    pub curves: Vec<Vec<(f64, f64, f64)>>,
    /// Traversal stills of the study's first seed, relative to the output directory.
    pub traversals: Vec<String>,
}

/// What `report` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct StudyReport {
    pub datasets: BTreeMap<String, Vec<ArmSummary>>,
    pub files: Vec<PathBuf>,
}

/// Reads the manifest (later lines for the same run replace earlier ones).
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestRun>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the study manifest {}", path.display()))?;
    let mut runs: Vec<ManifestRun> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut r: ManifestRun = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: not a run record ({{\"dataset\", \"arm\", \"seed\", \"run\", \"parent\"}})",
                path.display(),
                i + 1
            )
        })?;
        if r.parent.as_deref() == Some(Path::new("")) {
            r.parent = None;
        }
        runs.retain(|o| o.run != r.run);
        runs.push(r);
    }
    if runs.is_empty() {
        bail!(
            "{} lists no runs: run scripts/study.sh first",
            path.display()
        );
    }
    Ok(runs)
}

/// Every score tick of a run at full resolution (lod 0), by kimg.
pub fn run_ticks(run: &Path) -> Result<Vec<Tick>> {
    let entries = std::fs::read_dir(run)
        .with_context(|| format!("cannot list the run directory {}", run.display()))?;
    let mut ticks = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("network-snapshot-") && name.ends_with("-metrics.json")) {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        if doc.get("scores").is_none() {
            continue;
        }
        let Some(kimg) = doc.get("kimg").and_then(Value::as_f64) else {
            continue;
        };
        // Ticks while the networks still grow score upsampled low-resolution images (a Fréchet distance in the
        // thousands): a different regime, left out.
        if doc.get("lod").and_then(Value::as_f64).unwrap_or(0.0) > 1e-6 {
            continue;
        }
        let values = MEASURES
            .iter()
            .map(|m| doc.pointer(m.pointer).and_then(Value::as_f64))
            .collect();
        ticks.push(Tick { kimg, values });
    }
    ticks.sort_by(|a, b| a.kimg.total_cmp(&b.kimg));
    Ok(ticks)
}

/// A run's curve: its parent's ticks before its own first tick, then its own.
fn curve_ticks(run: &ManifestRun) -> Result<Vec<Tick>> {
    let own = run_ticks(&run.run)?;
    let mut all = match &run.parent {
        Some(p) => {
            let first = own.first().map_or(f64::INFINITY, |t| t.kimg);
            run_ticks(p)?
                .into_iter()
                .filter(|t| t.kimg < first - 1e-6)
                .collect()
        }
        None => Vec::new(),
    };
    all.extend(own);
    Ok(all)
}

/// Table 2's numbers per snapshot path, from `figures --fig diag` outputs.
fn read_diag(files: &[PathBuf]) -> Result<Vec<(PathBuf, f64, f64)>> {
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let doc: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", f.display()))?;
        for m in doc["models"].as_array().into_iter().flatten() {
            if let (Some(p), Some(fr), Some(st)) = (
                m["path"].as_str(),
                m["fraction_max_on_diagonal"].as_f64(),
                m["relative_diagonal_strength"].as_f64(),
            ) {
                out.push((PathBuf::from(p), fr, st));
            }
        }
    }
    Ok(out)
}

/// Groups ticks of several seeds by kimg (rounded to 0.1) into (kimg, mean, std).
fn mean_curve(per_seed: &[Vec<Tick>], measure: usize) -> Vec<(f64, f64, f64)> {
    let mut by: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for ticks in per_seed {
        for t in ticks {
            if let Some(v) = t.values[measure].filter(|v| v.is_finite()) {
                by.entry((t.kimg * 10.0).round() as i64)
                    .or_default()
                    .push(v);
            }
        }
    }
    by.into_iter()
        .filter_map(|(k, v)| Stat::of(&v).map(|s| (k as f64 / 10.0, s.mean, s.std)))
        .collect()
}

/// A (kimg, mean, std) curve on a log10 axis: the mean's log, and half the log-width of mean ± std as the band
/// (the lower edge clamped above 0).
fn log10_curve(curve: &[(f64, f64, f64)]) -> Vec<(f64, f64, f64)> {
    curve
        .iter()
        .filter(|p| p.1 > 0.0)
        .map(|&(x, m, s)| {
            let lo = (m - s).max(m * 1e-3);
            (x, m.log10(), ((m + s).log10() - lo.log10()) / 2.0)
        })
        .collect()
}

/// Summarises the manifest's runs and writes the report files.
pub fn run(opts: &ReportOptions) -> Result<StudyReport> {
    let runs = read_manifest(&opts.manifest)?;
    let diag = read_diag(&opts.diag)?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut datasets: BTreeMap<String, Vec<ArmSummary>> = BTreeMap::new();
    // Arms in the manifest's order of first appearance (the study's order), per dataset.
    let mut order: Vec<(String, String)> = Vec::new();
    for r in &runs {
        let key = (r.dataset.clone(), r.arm.clone());
        if !order.contains(&key) {
            order.push(key);
        }
    }
    for (dataset, arm) in &order {
        let mut members: Vec<&ManifestRun> = runs
            .iter()
            .filter(|r| &r.dataset == dataset && &r.arm == arm)
            .collect();
        members.sort_by_key(|r| r.seed);
        let per_seed: Vec<Vec<Tick>> = members
            .iter()
            .map(|r| curve_ticks(r))
            .collect::<Result<_>>()?;
        let mut kimg = Vec::new();
        let mut last: Vec<Vec<f64>> = vec![Vec::new(); MEASURES.len()];
        for ticks in &per_seed {
            if let Some(t) = ticks.last() {
                kimg.push(t.kimg);
                for (m, v) in t.values.iter().enumerate() {
                    if let Some(v) = v.filter(|v| v.is_finite()) {
                        last[m].push(v);
                    }
                }
            }
        }
        let in_run = |p: &Path| members.iter().any(|r| p.starts_with(&r.run));
        let (fractions, strengths): (Vec<f64>, Vec<f64>) = diag
            .iter()
            .filter(|d| in_run(&d.0))
            .map(|d| (d.1, d.2))
            .unzip();
        let traversal_dir = opts.out.join("traversals").join(dataset).join(arm);
        let mut traversals: Vec<String> = match std::fs::read_dir(&traversal_dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.ends_with(".png"))
                .map(|n| format!("traversals/{dataset}/{arm}/{n}"))
                .collect(),
            Err(_) => Vec::new(),
        };
        traversals.sort();
        datasets
            .entry(dataset.clone())
            .or_default()
            .push(ArmSummary {
                arm: arm.clone(),
                seeds: members.iter().map(|r| r.seed).collect(),
                kimg,
                curves: (0..MEASURES.len())
                    .map(|m| mean_curve(&per_seed, m))
                    .collect(),
                last: last
                    .into_iter()
                    .map(|v| {
                        let s = Stat::of(&v);
                        (v, s)
                    })
                    .collect(),
                diag_fraction: Stat::of(&fractions),
                diag_strength: Stat::of(&strengths),
                traversals,
            });
    }

    let mut files = Vec::new();
    for (dataset, arms) in &datasets {
        let panels: Vec<LinePanel> = MEASURES
            .iter()
            .enumerate()
            .map(|(m, measure)| LinePanel {
                title: if measure.log_plot {
                    format!("log10 {}", measure.label)
                } else {
                    measure.label.to_string()
                },
                x_desc: "kimg".into(),
                y_desc: String::new(),
                curves: arms
                    .iter()
                    .map(|a| Curve {
                        name: a.arm.clone(),
                        points: if measure.log_plot {
                            log10_curve(&a.curves[m])
                        } else {
                            a.curves[m].clone()
                        },
                        band: None,
                    })
                    .collect(),
            })
            .collect();
        let png = opts.out.join(format!("study-{dataset}.png"));
        let svg = opts.out.join(format!("study-{dataset}.svg"));
        charts::save_line_panels(&panels, 3, &png, &svg)?;
        files.extend([png, svg]);
    }
    let json_path = opts.out.join("study.json");
    let doc = serde_json::json!({
        "manifest": opts.manifest,
        "measures": MEASURES.iter().map(|m| m.key).collect::<Vec<_>>(),
        "datasets": datasets,
    });
    fs::write_bytes_atomic(&json_path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    files.push(json_path);
    let md_path = opts.out.join("study.md");
    fs::write_bytes_atomic(&md_path, markdown(opts, &datasets).as_bytes())?;
    files.push(md_path);
    Ok(StudyReport { datasets, files })
}

/// The generated page: per dataset the table, the plots and the traversal stills.
fn markdown(opts: &ReportOptions, datasets: &BTreeMap<String, Vec<ArmSummary>>) -> String {
    let mut s = String::new();
    s.push_str(
        "# Study tables (generated)\n\n\
         Written by `hessian-gan report` from the runs of `scripts/study.sh`; do not edit by hand, re-run the \
         script. Each cell is the mean ± sample std over seeds of the run's last score tick (n seeds in the \
         `seeds` column). Arms and their commands: the header of `scripts/study.sh`; what the numbers say: \
         `docs/results.md`.\n\n",
    );
    s.push_str(&format!("Manifest: `{}`.\n\n", opts.manifest.display()));
    for (dataset, arms) in datasets {
        s.push_str(&format!("## {dataset}\n\n| arm | seeds | kimg |"));
        for m in &MEASURES {
            s.push_str(&format!(" {} |", m.label));
        }
        let with_diag = arms.iter().any(|a| a.diag_fraction.is_some());
        if with_diag {
            s.push_str(" Table 2: max on diagonal | Table 2: rel. diag. strength |");
        }
        s.push_str("\n|---|---|---|");
        s.push_str(&"---|".repeat(MEASURES.len() + if with_diag { 2 } else { 0 }));
        s.push('\n');
        for a in arms {
            let kimg = Stat::of(&a.kimg).map_or("–".into(), |k| format!("{:.0}", k.mean));
            s.push_str(&format!("| {} | {} | {kimg} |", a.arm, a.seeds.len()));
            for (_, stat) in &a.last {
                s.push_str(&format!(" {} |", stat.map_or("–".into(), |st| st.format())));
            }
            if with_diag {
                for stat in [a.diag_fraction, a.diag_strength] {
                    s.push_str(&format!(" {} |", stat.map_or("–".into(), |st| st.format())));
                }
            }
            s.push('\n');
        }
        s.push_str(&format!(
            "\nEvery measure against kimg (mean over seeds, band ± std; fine-tuning arms continue their vanilla \
             run's curve; ticks at full resolution only):\n\n![{dataset}](study-{dataset}.png)\n\n"
        ));
        if opts.out.join(format!("active-{dataset}.png")).exists() {
            s.push_str(&format!(
                "Activeness of each z component (`figures --fig active`, first seed, sorted):\n\n\
                 ![activeness](active-{dataset}.png)\n\n"
            ));
        }
        if arms.iter().any(|a| !a.traversals.is_empty()) {
            s.push_str(
                "Traversals of the first seed's last snapshot: one image per z component, each row a sample, \
                 the component swept from −2 to 2 across the columns.\n\n",
            );
            for a in arms.iter().filter(|a| !a.traversals.is_empty()) {
                s.push_str(&format!("**{}**\n\n", a.arm));
                for (i, t) in a.traversals.iter().enumerate() {
                    s.push_str(&format!("![{} z{i}]({t}) ", a.arm));
                }
                s.push_str("\n\n");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_the_mean_and_the_sample_std() {
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(s.mean, 2.5);
        assert!((s.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(s.n, 4);
        assert_eq!(Stat::of(&[7.0]).unwrap().std, 0.0);
        assert!(Stat::of(&[]).is_none());
        assert_eq!(
            Stat {
                mean: 73.26,
                std: 2.04,
                n: 3
            }
            .format(),
            "73.3 ± 2.0"
        );
        assert_eq!(Stat::of(&[0.5, 0.55]).unwrap().format(), "0.525 ± 0.035");
    }

    #[test]
    fn curves_average_the_seeds_that_reach_a_kimg() {
        let tick = |kimg: f64, v: f64| Tick {
            kimg,
            values: vec![Some(v)],
        };
        let c = mean_curve(
            &[
                vec![tick(2.0, 1.0), tick(4.0, 3.0)],
                vec![tick(2.04, 3.0), tick(6.0, 5.0)],
            ],
            0,
        );
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].0, c[0].1), (2.0, 2.0));
        assert!((c[0].2 - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(c[1], (4.0, 3.0, 0.0));
        assert_eq!(c[2], (6.0, 5.0, 0.0));
    }
}
