//! Drawing the figures (docs/spec/progan_hp.md §9.2, §9.4, §9.5): heatmap grids with one shared colour scale and a colour
//! bar, and grouped bar charts, as PNG (and SVG for the bar charts).
//!
//! Pixels of the heatmaps are painted directly; text, axes and bars go through plotters with an embedded DejaVu Sans
//! (so no system font library is needed). This is display code on small host arrays, not a hot path.

use crate::io::fs;
use anyhow::{anyhow, ensure, Result};
use image::{Rgb, RgbImage};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Makes "sans-serif" available to plotters' text rendering (idempotent).
pub(super) fn ensure_font() {
    REGISTER.call_once(|| {
        // The embedded file is a valid TTF; a failure here would be a build problem, caught by the tests.
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            log::warn!("the embedded font could not be loaded; figure labels will be missing");
        }
    });
}

/// ColorBrewer's 9-class YlGnBu, the stops matplotlib interpolates for the `YlGnBu` colormap.
const YLGNBU: [[u8; 3]; 9] = [
    [0xff, 0xff, 0xd9],
    [0xed, 0xf8, 0xb1],
    [0xc7, 0xe9, 0xb4],
    [0x7f, 0xcd, 0xbb],
    [0x41, 0xb6, 0xc4],
    [0x1d, 0x91, 0xc0],
    [0x22, 0x5e, 0xa8],
    [0x25, 0x34, 0x94],
    [0x08, 0x1d, 0x58],
];

/// Plotly's qualitative "Pastel" palette (the bar colours of docs/spec/progan_hp.md §9.5), cycled.
pub const PASTEL: [[u8; 3]; 11] = [
    [102, 197, 204],
    [246, 207, 113],
    [248, 156, 116],
    [220, 176, 242],
    [135, 197, 95],
    [158, 185, 243],
    [254, 136, 177],
    [201, 219, 116],
    [139, 224, 164],
    [180, 151, 231],
    [179, 179, 179],
];

/// The YlGnBu colour of `t` ∈ [0, 1] (clamped; NaN maps to 0), linearly interpolated between the stops.
pub fn ylgnbu(t: f64) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (YLGNBU.len() - 1) as f64;
    let i = (x.floor() as usize).min(YLGNBU.len() - 2);
    let f = x - i as f64;
    let (a, b) = (YLGNBU[i], YLGNBU[i + 1]);
    std::array::from_fn(|c| (a[c] as f64 + (b[c] as f64 - a[c] as f64) * f).round() as u8)
}

/// A short tick label: 3 significant digits without trailing zeros, scientific outside [0.01, 10⁴).
pub fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if !(0.01..10_000.0).contains(&a) {
        format!("{v:.2e}")
    } else {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

/// The pixel layout of a heatmap grid: title, then per row a label line and the panels; the colour bar and its
/// tick labels on the right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridLayout {
    /// Side of one square panel.
    pub panel: u32,
    /// Space between panels (both directions).
    pub gap: u32,
    pub margin: u32,
    pub title_h: u32,
    pub row_label_h: u32,
    /// Space between the last column and the colour bar.
    pub bar_gap: u32,
    pub bar_w: u32,
    /// Room for the colour bar's tick labels.
    pub bar_label_w: u32,
}

impl GridLayout {
    pub fn new(panel: u32) -> Self {
        Self {
            panel,
            gap: 8,
            margin: 12,
            title_h: 30,
            row_label_h: 22,
            bar_gap: 16,
            bar_w: 18,
            bar_label_w: 86,
        }
    }

    /// (width, height) of the whole figure for `rows` × `cols` panels.
    pub fn size(&self, rows: u32, cols: u32) -> (u32, u32) {
        let w = 2 * self.margin
            + cols * self.panel
            + cols.saturating_sub(1) * self.gap
            + self.bar_gap
            + self.bar_w
            + self.bar_label_w;
        let h = 2 * self.margin
            + self.title_h
            + rows * (self.row_label_h + self.panel)
            + rows.saturating_sub(1) * self.gap;
        (w, h)
    }

    /// Top-left corner of panel (row, col).
    pub fn panel_origin(&self, row: u32, col: u32) -> (u32, u32) {
        (
            self.margin + col * (self.panel + self.gap),
            self.margin
                + self.title_h
                + row * (self.row_label_h + self.panel + self.gap)
                + self.row_label_h,
        )
    }

    fn bar_rect(&self, rows: u32, cols: u32) -> (u32, u32, u32, u32) {
        let (_, h) = self.size(rows, cols);
        let x0 = self.margin + cols * self.panel + cols.saturating_sub(1) * self.gap + self.bar_gap;
        let y0 = self.margin + self.title_h + self.row_label_h;
        let y1 = h - self.margin;
        (x0, y0, x0 + self.bar_w, y1)
    }
}

/// One heatmap panel: `values` row-major `[height, width]`, optionally an RGB image of the same size blended on
/// top.
pub struct HeatPanel {
    pub values: Vec<f64>,
    pub height: usize,
    pub width: usize,
    pub overlay: Option<RgbImage>,
}

/// A grid of heatmaps sharing one colour scale (docs/spec/progan_hp.md §9.2, §9.4): `panels[row][col]`.
pub struct HeatmapGrid {
    pub title: String,
    pub row_labels: Vec<String>,
    pub panels: Vec<Vec<HeatPanel>>,
    pub layout: GridLayout,
    /// How strongly the overlay's brightness shades the colour: `colour·(1 − s + s·luma)`, with the luma stretched
    /// to [0, 1] per panel. The hue stays the colour map's, so the scale remains readable, while the image shows as
    /// light and shadow.
    pub overlay_shade: f64,
}

/// The shared colour range of all panels (min, max); a constant field gets a unit-wide range.
pub fn value_range(panels: &[Vec<HeatPanel>]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in panels.iter().flatten().flat_map(|p| p.values.iter()) {
        if v.is_finite() {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    (lo, hi)
}

pub(super) fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the figure failed: {e:?}")
}

/// Renders a [`HeatmapGrid`]: nearest-neighbour panels, shared scale, a colour bar with 6 ticks.
pub fn render_heatmap_grid(grid: &HeatmapGrid) -> Result<RgbImage> {
    let rows = grid.panels.len() as u32;
    let cols = grid.panels.iter().map(Vec::len).max().unwrap_or(0) as u32;
    ensure!(rows > 0 && cols > 0, "heatmap grid: nothing to draw");
    ensure!(
        grid.row_labels.len() == rows as usize,
        "heatmap grid: {} row labels for {rows} rows",
        grid.row_labels.len()
    );
    let l = grid.layout;
    let (w, h) = l.size(rows, cols);
    // A few narrow panels (small nz, few samples) would cut the title: widen the figure to hold it.
    ensure_font();
    let title_w = ("sans-serif", 18)
        .into_font()
        .box_size(&grid.title)
        .map_or(0, |(tw, _)| tw);
    let w = w.max(2 * l.margin + title_w);
    let (vmin, vmax) = value_range(&grid.panels);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let p = l.panel as usize;
    let shade = grid.overlay_shade.clamp(0.0, 1.0);
    for (r, row) in grid.panels.iter().enumerate() {
        for (c, panel) in row.iter().enumerate() {
            ensure!(
                panel.values.len() == panel.height * panel.width && panel.height > 0,
                "heatmap panel ({r}, {c}): {} values for {}×{}",
                panel.values.len(),
                panel.height,
                panel.width
            );
            let (ox, oy) = l.panel_origin(r as u32, c as u32);
            // The overlay's brightness, stretched to [0, 1] within the panel so that its brightest pixel shows
            // the colour bar's exact colour and the shading spans the whole `shade` range.
            let luma = panel.overlay.as_ref().map(|ov| {
                let l: Vec<f64> = ov
                    .pixels()
                    .map(|p| {
                        let [r, g, b] = p.0;
                        0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64
                    })
                    .collect();
                let lo = l.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let span = if hi > lo { hi - lo } else { 1.0 };
                (ov.width() as usize, ov.height() as usize, l, lo, span)
            });
            for py in 0..p {
                let sy = py * panel.height / p;
                for px in 0..p {
                    let sx = px * panel.width / p;
                    let v = panel.values[sy * panel.width + sx];
                    let mut rgb = ylgnbu((v - vmin) / (vmax - vmin));
                    if let Some((ow, oh, l, lo, span)) = &luma {
                        let v = l[(py * oh / p) * ow + px * ow / p];
                        let f = 1.0 - shade + shade * (v - lo) / span;
                        rgb = rgb.map(|c| (c as f64 * f).round() as u8);
                    }
                    img.put_pixel(ox + px as u32, oy + py as u32, Rgb(rgb));
                }
            }
        }
    }
    // Colour bar: vmax at the top, as matplotlib draws it.
    let (bx0, by0, bx1, by1) = l.bar_rect(rows, cols);
    let span = (by1 - by0).max(2) - 1;
    for y in by0..by1 {
        let t = 1.0 - (y - by0) as f64 / span as f64;
        for x in bx0..bx1 {
            img.put_pixel(x, y, Rgb(ylgnbu(t)));
        }
    }
    draw_grid_text(&mut img, grid, (vmin, vmax), (bx0, by0, bx1, by1))?;
    Ok(img)
}

fn draw_grid_text(
    img: &mut RgbImage,
    grid: &HeatmapGrid,
    (vmin, vmax): (f64, f64),
    (bx0, by0, bx1, by1): (u32, u32, u32, u32),
) -> Result<()> {
    ensure_font();
    let (w, h) = img.dimensions();
    let l = grid.layout;
    let root = BitMapBackend::with_buffer(img.as_mut(), (w, h)).into_drawing_area();
    let title = ("sans-serif", 18).into_font().color(&BLACK);
    root.draw(&Text::new(
        grid.title.clone(),
        (l.margin as i32, l.margin as i32 + 4),
        title,
    ))
    .map_err(plot_err)?;
    let label = ("sans-serif", 15).into_font().color(&BLACK);
    for (r, text) in grid.row_labels.iter().enumerate() {
        let (ox, oy) = l.panel_origin(r as u32, 0);
        root.draw(&Text::new(
            text.clone(),
            (ox as i32, oy as i32 - l.row_label_h as i32 + 3),
            label.clone(),
        ))
        .map_err(plot_err)?;
    }
    root.draw(&Rectangle::new(
        [(bx0 as i32, by0 as i32), (bx1 as i32 - 1, by1 as i32 - 1)],
        BLACK.stroke_width(1),
    ))
    .map_err(plot_err)?;
    let tick = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for i in 0..6 {
        let f = i as f64 / 5.0;
        let v = vmin + (vmax - vmin) * f;
        let y = by1 as f64 - 1.0 - f * (by1 - by0 - 1) as f64;
        let y = y.round() as i32;
        root.draw(&PathElement::new(
            vec![(bx1 as i32, y), (bx1 as i32 + 4, y)],
            BLACK.stroke_width(1),
        ))
        .map_err(plot_err)?;
        root.draw(&Text::new(tick_label(v), (bx1 as i32 + 7, y), tick.clone()))
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// One subplot of a grouped bar chart: a title and, per model, its values. Without `categories` (the activeness
/// figure) each series is sorted descending when drawn and the axes read "Z Component" / "Activeness"; with
/// `categories` the bars stay in order, each group is labelled, and `y_desc` names the values.
pub struct BarPanel {
    pub title: String,
    pub series: Vec<(String, Vec<f64>)>,
    pub categories: Option<Vec<String>>,
    pub y_desc: String,
}

/// Pixel size of one bar-chart subplot.
pub const BAR_PANEL: (u32, u32) = (720, 460);

/// (width, height) of the activeness figure with `panels` subplots on a ⌈n/2⌉ × 2 grid (one column for one panel).
pub fn bar_figure_size(panels: usize) -> (u32, u32) {
    let cols = panels.clamp(1, 2) as u32;
    let rows = panels.div_ceil(2).max(1) as u32;
    (cols * BAR_PANEL.0, rows * BAR_PANEL.1)
}

/// Draws the activeness bar charts (docs/spec/progan_hp.md §9.5) on any plotters backend: one subplot per panel, each model's scores
/// sorted descending as one bar series, a legend, axis titles "Z Component" / "Activeness".
pub fn draw_bar_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[BarPanel],
) -> Result<()> {
    ensure_font();
    root.fill(&WHITE).map_err(plot_err)?;
    let cols = panels.len().clamp(1, 2);
    let rows = panels.len().div_ceil(2).max(1);
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let nz = panel
            .series
            .iter()
            .map(|s| s.1.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let top = panel
            .series
            .iter()
            .flat_map(|s| s.1.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        // Head room above the tallest bar keeps the legend (upper right) clear of the bars.
        let top = if top > 0.0 { top * 1.3 } else { 1.0 };
        let categories = panel.categories.as_deref();
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 26))
            .margin(12)
            .x_label_area_size(if categories.is_some() { 48 } else { 36 })
            .y_label_area_size(78)
            .build_cartesian_2d(-0.5f64..(nz as f64 - 0.5), 0.0f64..top)
            .map_err(plot_err)?;
        let category_label = |v: &f64| {
            let i = v.round();
            match categories {
                Some(c) if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < c.len() => {
                    c[i as usize].clone()
                }
                _ => String::new(),
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(0)
            .x_labels(if categories.is_some() { nz } else { 0 })
            .x_label_formatter(&category_label)
            .y_labels(6)
            .y_label_formatter(&|v| tick_label(*v))
            .x_desc(if categories.is_some() {
                ""
            } else {
                "Z Component"
            })
            .y_desc(panel.y_desc.as_str())
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
        let m = panel.series.len().max(1) as f64;
        let width = 0.8 / m;
        for (s, (name, scores)) in panel.series.iter().enumerate() {
            let [r, g, b] = PASTEL[s % PASTEL.len()];
            let color = RGBColor(r, g, b);
            let mut sorted: Vec<f64> = scores.clone();
            if categories.is_none() {
                sorted.sort_by(|a, b| b.total_cmp(a));
            }
            let x0 = -0.4 + s as f64 * width;
            chart
                .draw_series(sorted.iter().enumerate().map(|(i, v)| {
                    let x = i as f64 + x0;
                    Rectangle::new([(x, 0.0), (x + width, v.max(0.0))], color.filled())
                }))
                .map_err(plot_err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 16))
            .draw()
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// A labelled matrix heatmap (rows × columns, YlGnBu from `range.0` to `range.1`), each cell printed with its
/// value: `score`'s effect and mutual-information matrices.
pub fn save_matrix_heatmap(
    title: &str,
    row_labels: &[String],
    col_labels: &[String],
    values: &[Vec<f64>],
    range: (f64, f64),
    png: &Path,
) -> Result<()> {
    ensure_font();
    let (rows, cols) = (row_labels.len(), col_labels.len());
    ensure!(
        rows > 0 && cols > 0 && values.len() == rows && values.iter().all(|r| r.len() == cols),
        "matrix heatmap {title}: {rows} × {cols} labels do not fit the values"
    );
    let cell = 64u32;
    // Wide enough for the title (about 10 px per character at 20 px).
    let w = (cols as u32 * cell + 200).max(title.chars().count() as u32 * 10 + 40);
    let h = rows as u32 * cell + 150;
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    {
        let root = BitMapBackend::with_buffer(img.as_mut(), (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(70)
            .y_label_area_size(100)
            .build_cartesian_2d(0f64..cols as f64, 0f64..rows as f64)
            .map_err(plot_err)?;
        let label = |labels: &[String], v: f64, flip: bool| {
            let i = v - 0.5;
            if (i - i.round()).abs() > 1e-6 || i < 0.0 || i as usize >= labels.len() {
                return String::new();
            }
            let i = i.round() as usize;
            labels[if flip { labels.len() - 1 - i } else { i }].clone()
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(cols * 2 + 1)
            .y_labels(rows * 2 + 1)
            .x_label_formatter(&|v| label(col_labels, *v, false))
            .y_label_formatter(&|v| label(row_labels, *v, true))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(plot_err)?;
        let (lo, hi) = range;
        let span = if hi > lo { hi - lo } else { 1.0 };
        for (r, row) in values.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let t = (v - lo) / span;
                let [cr, cg, cb] = ylgnbu(t);
                let y = (rows - 1 - r) as f64;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(c as f64, y), (c as f64 + 1.0, y + 1.0)],
                        RGBColor(cr, cg, cb).filled(),
                    )))
                    .map_err(plot_err)?;
                let ink = if t > 0.55 { WHITE } else { BLACK };
                let style = TextStyle::from(("sans-serif", 14).into_font())
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart
                    .draw_series(std::iter::once(Text::new(
                        tick_label(v),
                        (c as f64 + 0.5, y + 0.5),
                        style,
                    )))
                    .map_err(plot_err)?;
            }
        }
        root.present().map_err(plot_err)?;
    }
    crate::io::imageio::save_png(&img, png)
}

/// The activeness figure as PNG (`path`) and SVG (`svg`).
pub fn save_bar_panels(panels: &[BarPanel], png: &Path, svg: &Path) -> Result<()> {
    ensure!(!panels.is_empty(), "activeness figure: no panels");
    save_png_svg(
        bar_figure_size(panels.len()),
        png,
        svg,
        |r| draw_bar_panels(r, panels),
        |r| draw_bar_panels(r, panels),
    )
}

/// Draws one figure twice, as a PNG and as an SVG of the same pixel size (one drawing function per backend).
pub(super) fn save_png_svg(
    (w, h): (u32, u32),
    png: &Path,
    svg: &Path,
    draw_png: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
    draw_svg: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<()> {
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    {
        let root = BitMapBackend::with_buffer(img.as_mut(), (w, h)).into_drawing_area();
        draw_png(&root)?;
    }
    crate::io::imageio::save_png(&img, png)?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (w, h)).into_drawing_area();
        draw_svg(&root)?;
    }
    fs::write_bytes_atomic(svg, text.as_bytes())
}
