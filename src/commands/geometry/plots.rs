//! `geometry`'s pictures (docs/spec/geometry_infogancr.md §A.3 figures, §A.4 visualisations): the spectrum, the
//! consistency matrices, histograms and example scatters, montages along the top eigenvectors of the averaged H,
//! one eigenvector at many codes, and image-distance curves along each axis.

use super::{Distance, GeometryOptions};
use crate::checkpoint::reference::LoadedGenerator;
use crate::commands::figures::charts::{
    save_line_panels, save_scatter_panels, Curve, LinePanel, ScatterPanel,
};
use crate::commands::figures::render::save_matrix_heatmap;
use crate::core::geometry::analysis::{
    cross_quadratic, off_diagonal_stats, pearson, Frame, SpectrumRank,
};
use crate::core::geometry::{FeatureMap, PulledMetric};
use crate::core::latents::{self, LatentConvention};
use crate::io::imageio;
use anyhow::Result;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// A feature map of the model's distance, made fresh for each use.
pub type PhiFactory<'a> = dyn Fn() -> FeatureMap<'a> + 'a;

/// The consistency matrices corr_log and corr_lin.
pub type ConsistencyMats = (Vec<Vec<f64>>, Vec<Vec<f64>>);

pub struct Inputs<'a> {
    pub g: &'a LoadedGenerator,
    pub name: &'a str,
    pub distance: Distance,
    pub phi: &'a PhiFactory<'a>,
    pub dir: &'a Path,
    /// The reference codes `[P, n]`.
    pub zs: &'a Tensor,
    pub spectrum: &'a [SpectrumRank],
    /// Each code's eigenpairs (values ascending, vectors as columns).
    pub frames: &'a [(Vec<f64>, Tensor)],
    /// corr_log and corr_lin.
    pub consistency: Option<&'a ConsistencyMats>,
    /// The averaged H's eigenpairs, descending.
    pub avg_vals: &'a [f64],
    pub avg_vecs: &'a Tensor,
    pub opts: &'a GeometryOptions,
    pub convention: LatentConvention,
    pub device: Device,
}

/// Draws everything into `inputs.dir`; returns the files written.
pub fn draw(inputs: &Inputs) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    files.extend(spectrum(inputs)?);
    if let Some(mats) = inputs.consistency {
        files.extend(consistency(inputs, mats)?);
    }
    files.extend(montages(inputs)?);
    files.extend(distance_curves(inputs)?);
    Ok(files)
}

fn spectrum(inputs: &Inputs) -> Result<Vec<PathBuf>> {
    let s = inputs.spectrum;
    let log = |x: f64| x.max(1e-300).log10();
    let panels = vec![
        LinePanel {
            title: "Hessian spectrum".into(),
            x_desc: "rank".into(),
            y_desc: "|eigenvalue|".into(),
            curves: vec![Curve {
                name: "mean, 5-95% band".into(),
                points: s.iter().map(|r| (r.rank as f64, r.mean, 0.0)).collect(),
                band: Some(s.iter().map(|r| (r.p5, r.p95)).collect()),
            }],
        },
        LinePanel {
            title: "Hessian spectrum, log scale".into(),
            x_desc: "rank".into(),
            y_desc: "log10 |eigenvalue|".into(),
            curves: vec![Curve {
                name: "mean, 5-95% band".into(),
                points: s
                    .iter()
                    .map(|r| (r.rank as f64, log(r.mean), 0.0))
                    .collect(),
                band: Some(s.iter().map(|r| (log(r.p5), log(r.p95))).collect()),
            }],
        },
    ];
    let (png, svg) = (
        inputs.dir.join("spectrum.png"),
        inputs.dir.join("spectrum.svg"),
    );
    save_line_panels(&panels, 2, &png, &svg)?;
    Ok(vec![png, svg])
}

/// A density histogram of `values` over `bins` equal bins, as (bin centre, density) points.
fn histogram(values: &[f64], bins: usize) -> Vec<(f64, f64)> {
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if values.is_empty() || hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return values.first().map(|&v| vec![(v, 1.0)]).unwrap_or_default();
    }
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in values {
        counts[(((v - lo) / w) as usize).min(bins - 1)] += 1;
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            (
                lo + (i as f64 + 0.5) * w,
                c as f64 / (values.len() as f64 * w),
            )
        })
        .collect()
}

fn consistency(inputs: &Inputs, mats: &ConsistencyMats) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let p = mats.0.len();
    let labels: Vec<String> = (0..p).map(|i| i.to_string()).collect();
    let mut hist_panels = Vec::new();
    for (kind, m) in [("log", &mats.0), ("lin", &mats.1)] {
        let (mean, median) = off_diagonal_stats(m);
        let off: Vec<f64> = m
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                r.iter()
                    .enumerate()
                    .filter(move |(j, _)| *j != i)
                    .map(|(_, v)| *v)
            })
            .filter(|v| v.is_finite())
            .collect();
        let lo = off.iter().copied().fold(f64::INFINITY, f64::min).min(0.0);
        let png = inputs.dir.join(format!("consistency_{kind}.png"));
        save_matrix_heatmap(
            &format!(
                "corr_{kind} of {}: off-diagonal mean {mean:.3}, median {median:.3}",
                inputs.name
            ),
            &labels,
            &labels,
            m,
            (lo, 1.0),
            &png,
        )?;
        files.push(png);
        let hist = histogram(&off, 30);
        let top = hist.iter().map(|p| p.1).fold(0.0, f64::max);
        hist_panels.push(LinePanel {
            title: format!("corr_{kind} off the diagonal"),
            x_desc: "correlation".into(),
            y_desc: "density".into(),
            curves: vec![
                Curve::line("histogram", hist),
                Curve::line(format!("mean {mean:.3}"), [(mean, 0.0), (mean, top)]),
                Curve::line(
                    format!("median {median:.3}"),
                    [(median, 0.0), (median, top)],
                ),
            ],
        });
    }
    let (png, svg) = (
        inputs.dir.join("consistency_hist.png"),
        inputs.dir.join("consistency_hist.svg"),
    );
    save_line_panels(&hist_panels, 2, &png, &svg)?;
    files.extend([png, svg]);

    // Examples: code i's eigenvectors measured by code j's H against code j's own eigenvalues.
    let shown = p.min(3);
    let mut panels = Vec::new();
    for i in 0..shown {
        for j in 0..shown {
            if i == j {
                continue;
            }
            let (fi, fj) = (&inputs.frames[i], &inputs.frames[j]);
            let vhv = cross_quadratic(
                &Frame {
                    values: &fi.0,
                    vectors: &fi.1,
                },
                &Frame {
                    values: &fj.0,
                    vectors: &fj.1,
                },
            );
            let x: Vec<f64> = fj.0.iter().map(|v| v.log10()).collect();
            let y: Vec<f64> = vhv.iter().map(|v| v.log10()).collect();
            panels.push(ScatterPanel {
                title: format!(
                    "code {i} axes under H of code {j} (r {:.3})",
                    pearson(&x, &y)
                ),
                x_desc: format!("log10 eigenvalue of code {j}"),
                y_desc: format!("log10 v'Hv, v of code {i}"),
                points: x.into_iter().zip(y).collect(),
            });
        }
    }
    if !panels.is_empty() {
        let (png, svg) = (
            inputs.dir.join("consistency_examples.png"),
            inputs.dir.join("consistency_examples.svg"),
        );
        save_scatter_panels(&panels, shown.max(2), &png, &svg)?;
        files.extend([png, svg]);
    }
    Ok(files)
}

/// Codes `[steps, n]` along unit direction `v` from `z0` (both `[n]`, CPU float64): `z0 + t·v` for t in
/// [−max, max], or with `sphere` the great circle through z0 tangent to v, `‖z0‖(cos θ ẑ0 + sin θ û)` (§A.4).
pub fn exploration(z0: &Tensor, v: &Tensor, max: f64, steps: usize, sphere: bool) -> Tensor {
    let ts: Vec<f64> = (0..steps)
        .map(|s| -max + 2.0 * max * s as f64 / (steps - 1) as f64)
        .collect();
    let z0 = z0.to_kind(Kind::Double);
    let v = v.to_kind(Kind::Double);
    let rows: Vec<Tensor> = if sphere {
        let r = z0.norm().double_value(&[]);
        let zhat = &z0 / r.max(1e-300);
        let u = &v - &zhat * v.dot(&zhat).double_value(&[]);
        let u = &u / u.norm().double_value(&[]).max(1e-300);
        ts.iter()
            .map(|&t| (&zhat * t.cos() + &u * t.sin()) * r)
            .collect()
    } else {
        ts.iter().map(|&t| &z0 + &v * t).collect()
    };
    Tensor::stack(&rows, 0).to_kind(Kind::Float)
}

/// G's images of CPU codes `[N, n]`, on the CPU in [−1, 1].
fn render(inputs: &Inputs, codes: &Tensor) -> Tensor {
    let _guard = tch::no_grad_guard();
    let parts: Vec<Tensor> = codes
        .split(inputs.opts.batch, 0)
        .iter()
        .map(|c| {
            inputs
                .g
                .g
                .forward(
                    &c.to_device(inputs.device),
                    inputs.g.lod,
                    inputs.convention.g_normalizes(),
                )
                .to_device(Device::Cpu)
        })
        .collect();
    Tensor::cat(&parts, 0)
}

fn save_montage(inputs: &Inputs, codes: &Tensor, cols: usize, path: &Path) -> Result<()> {
    let images = imageio::float_to_u8(&render(inputs, codes));
    let grid = imageio::grid(&images, cols, 2, 255)?;
    let zoom = (128 / inputs.g.net.resolution.max(1)).max(1) as u32;
    imageio::save_png(&imageio::zoom(&grid, zoom), path)
}

fn montages(inputs: &Inputs) -> Result<Vec<PathBuf>> {
    let o = inputs.opts;
    let z0 = inputs.zs.get(0).to_kind(Kind::Double);
    // One row per listed axis of the averaged H, one column per step.
    let rows: Vec<Tensor> = o
        .eig_list
        .iter()
        .map(|&k| {
            exploration(
                &z0,
                &inputs.avg_vecs.select(1, k as i64),
                o.max_dist,
                o.steps,
                o.sphere,
            )
        })
        .collect();
    let mode = if o.sphere { "sphere" } else { "linear" };
    let explore = inputs.dir.join(format!("eig_explore_{mode}.png"));
    save_montage(inputs, &Tensor::cat(&rows, 0), o.steps, &explore)?;
    // The first listed axis at many codes, one row per code.
    let n = inputs.g.net.nz;
    let codes = inputs.convention.prepare(&latents::seeded_normal(
        inputs.opts.action_codes as u64 + 7919,
        o.action_codes as i64,
        n,
    )?);
    let v = inputs.avg_vecs.select(1, o.eig_list[0] as i64);
    let rows: Vec<Tensor> = (0..o.action_codes as i64)
        .map(|i| exploration(&codes.get(i), &v, o.max_dist, o.steps, o.sphere))
        .collect();
    let action = inputs
        .dir
        .join(format!("eig_action_{}_{mode}.png", o.eig_list[0]));
    save_montage(inputs, &Tensor::cat(&rows, 0), o.steps, &action)?;
    Ok(vec![explore, action])
}

fn distance_curves(inputs: &Inputs) -> Result<Vec<PathBuf>> {
    let o = inputs.opts;
    let z0 = inputs.zs.get(0);
    let metric = PulledMetric::new(
        (inputs.phi)(),
        inputs.distance.reduction(),
        &z0,
        inputs.device,
    )?;
    let _guard = tch::no_grad_guard();
    let ts: Vec<f64> = (0..o.dist_steps)
        .map(|s| -o.max_dist + 2.0 * o.max_dist * s as f64 / (o.dist_steps - 1) as f64)
        .collect();
    let mut curves = Vec::new();
    for &k in &o.eig_list {
        let codes = exploration(
            &z0.to_kind(Kind::Double),
            &inputs.avg_vecs.select(1, k as i64),
            o.max_dist,
            o.dist_steps,
            o.sphere,
        );
        let d = Vec::<f64>::try_from(
            &metric
                .distances(&codes.to_device(inputs.device))?
                .to_device(Device::Cpu)
                .to_kind(Kind::Double),
        )?;
        curves.push(Curve::line(
            format!("eig{} {:.2e}", k + 1, inputs.avg_vals[k]),
            ts.iter().copied().zip(d),
        ));
    }
    let panels = vec![LinePanel {
        title: format!(
            "{} along the top axes of {}",
            inputs.distance.tag(),
            inputs.name
        ),
        x_desc: if o.sphere {
            "angle (rad)".into()
        } else {
            "L2 in latent space".into()
        },
        y_desc: format!("{} distance to G(z0)", inputs.distance.tag()),
        curves,
    }];
    let (png, svg) = (
        inputs.dir.join("distance_curves.png"),
        inputs.dir.join("distance_curves.svg"),
    );
    save_line_panels(&panels, 1, &png, &svg)?;
    Ok(vec![png, svg])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explorations_move_as_documented() {
        let z0 = Tensor::from_slice(&[3.0, 4.0, 0.0]);
        let v = Tensor::from_slice(&[0.0, 0.0, 1.0]);
        let lin = exploration(&z0, &v, 2.0, 5, false);
        assert_eq!(
            Vec::<f32>::try_from(&lin.select(1, 2)).unwrap(),
            vec![-2.0, -1.0, 0.0, 1.0, 2.0]
        );
        let sph = exploration(&z0, &v, 1.0, 3, true);
        for i in 0..3 {
            assert!((sph.get(i).norm().double_value(&[]) - 5.0).abs() < 1e-5);
        }
        assert!((sph.get(2).double_value(&[2]) - 5.0 * 1f64.sin()).abs() < 1e-5);
        let h = histogram(&[0.0, 0.5, 1.0, 1.0], 2);
        assert_eq!(h, vec![(0.25, 0.5), (0.75, 1.5)]);
    }
}
