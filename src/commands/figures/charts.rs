//! Line charts and scatter plots, as PNG and SVG: `report`'s score-against-kimg panels, `geometry`'s spectra,
//! histograms, distance curves and consistency scatters. The heatmaps and bar charts live in `render.rs`.

use super::render::{ensure_font, plot_err, save_png_svg, tick_label};
use anyhow::{ensure, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One curve of a line chart: a name and (x, mean, std) points; a band of ± std is shaded where std > 0, or the
/// given `band` (low, high per point, e.g. percentiles) when there is one.
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
    pub band: Option<Vec<(f64, f64)>>,
}

impl Curve {
    /// A curve without a band.
    pub fn line(name: impl Into<String>, xy: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Curve {
            name: name.into(),
            points: xy.into_iter().map(|(x, y)| (x, y, 0.0)).collect(),
            band: None,
        }
    }

    /// (x, y, low, high) of the finite points.
    fn spans(&self) -> Vec<(f64, f64, f64, f64)> {
        self.points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.1.is_finite())
            .map(|(i, p)| match self.band.as_ref().and_then(|b| b.get(i)) {
                Some(&(lo, hi)) => (p.0, p.1, lo, hi),
                None => {
                    let s = if p.2.is_finite() { p.2 } else { 0.0 };
                    (p.0, p.1, p.1 - s, p.1 + s)
                }
            })
            .collect()
    }
}

/// One subplot of a line chart: `report`'s score-against-kimg panels, `geometry`'s spectra and distance curves.
pub struct LinePanel {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub curves: Vec<Curve>,
}

/// Pixel size of one line-chart subplot.
pub const LINE_PANEL: (u32, u32) = (560, 400);

/// Distinct line colours (Tableau 10), cycled.
const TABLEAU: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Draws line-chart panels on a grid of `cols` columns; the legend sits in the first panel.
pub fn draw_line_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[LinePanel],
    cols: usize,
) -> Result<()> {
    ensure_font();
    root.fill(&WHITE).map_err(plot_err)?;
    let cols = cols.clamp(1, panels.len().max(1));
    let areas = root.split_evenly((panels.len().div_ceil(cols).max(1), cols));
    for (p, (panel, area)) in panels.iter().zip(areas.iter()).enumerate() {
        let spans: Vec<Vec<(f64, f64, f64, f64)>> = panel.curves.iter().map(Curve::spans).collect();
        let all = || spans.iter().flatten();
        let (mut x0, mut x1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
        let (mut y0, mut y1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.2.min(p.1)), b.max(p.3.max(p.1)))
        });
        if x0 > x1 {
            (x0, x1) = (0.0, 1.0);
        }
        if x1 - x0 < 1e-9 {
            x1 = x0 + 1.0;
        }
        if y0 > y1 {
            (y0, y1) = (0.0, 1.0);
        }
        let pad = ((y1 - y0) * 0.08).max(1e-6);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 22))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .max_light_lines(0)
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|v| tick_label(*v))
            .y_label_formatter(&|v| tick_label(*v))
            .x_desc(panel.x_desc.as_str())
            .y_desc(panel.y_desc.as_str())
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(plot_err)?;
        for (c, (curve, pts)) in panel.curves.iter().zip(&spans).enumerate() {
            let [r, g, b] = TABLEAU[c % TABLEAU.len()];
            let color = RGBColor(r, g, b);
            if pts.iter().any(|p| p.3 > p.2) {
                let mut band: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.3)).collect();
                band.extend(pts.iter().rev().map(|p| (p.0, p.2)));
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        band,
                        color.mix(0.15).filled(),
                    )))
                    .map_err(plot_err)?;
            }
            // Markers only where they stay readable.
            if pts.len() <= 40 {
                chart
                    .draw_series(
                        pts.iter()
                            .map(|p| Circle::new((p.0, p.1), 3, color.filled())),
                    )
                    .map_err(plot_err)?;
            }
            let series = chart
                .draw_series(std::iter::once(PathElement::new(
                    pts.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
                    color.stroke_width(2),
                )))
                .map_err(plot_err)?;
            if p == 0 {
                series.label(curve.name.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3))
                });
            }
        }
        if p == 0 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(plot_err)?;
        }
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Line-chart panels as PNG and SVG, `cols` panels per row.
pub fn save_line_panels(panels: &[LinePanel], cols: usize, png: &Path, svg: &Path) -> Result<()> {
    ensure!(!panels.is_empty(), "line chart: no panels");
    let cols = cols.clamp(1, panels.len());
    let size = (
        cols as u32 * LINE_PANEL.0,
        panels.len().div_ceil(cols) as u32 * LINE_PANEL.1,
    );
    save_png_svg(
        size,
        png,
        svg,
        |r| draw_line_panels(r, panels, cols),
        |r| draw_line_panels(r, panels, cols),
    )
}

/// One scatter subplot with labelled axes: `geometry`'s consistency examples.
pub struct ScatterPanel {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws scatter panels on a grid of `cols` columns.
pub fn draw_scatter_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[ScatterPanel],
    cols: usize,
) -> Result<()> {
    ensure_font();
    root.fill(&WHITE).map_err(plot_err)?;
    let cols = cols.clamp(1, panels.len().max(1));
    let areas = root.split_evenly((panels.len().div_ceil(cols).max(1), cols));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let pts: Vec<(f64, f64)> = panel
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        let range = |f: fn(&(f64, f64)) -> f64| {
            let (lo, hi) = pts
                .iter()
                .map(f)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(v), b.max(v))
                });
            if lo > hi {
                (0.0, 1.0)
            } else {
                let pad = ((hi - lo) * 0.05).max(1e-6);
                (lo - pad, hi + pad)
            }
        };
        let (x0, x1) = range(|p| p.0);
        let (y0, y1) = range(|p| p.1);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .max_light_lines(0)
            .x_labels(5)
            .y_labels(5)
            .x_label_formatter(&|v| tick_label(*v))
            .y_label_formatter(&|v| tick_label(*v))
            .x_desc(panel.x_desc.as_str())
            .y_desc(panel.y_desc.as_str())
            .axis_desc_style(("sans-serif", 14))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(plot_err)?;
        let [r, g, b] = TABLEAU[0];
        chart
            .draw_series(
                pts.iter()
                    .map(|p| Circle::new(*p, 2, RGBColor(r, g, b).mix(0.7).filled())),
            )
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Scatter panels as PNG and SVG, `cols` panels per row.
pub fn save_scatter_panels(
    panels: &[ScatterPanel],
    cols: usize,
    png: &Path,
    svg: &Path,
) -> Result<()> {
    ensure!(!panels.is_empty(), "scatter chart: no panels");
    let cols = cols.clamp(1, panels.len());
    let size = (cols as u32 * 420, panels.len().div_ceil(cols) as u32 * 400);
    save_png_svg(
        size,
        png,
        svg,
        |r| draw_scatter_panels(r, panels, cols),
        |r| draw_scatter_panels(r, panels, cols),
    )
}
