//! dSprites (Matthey et al. 2017): white 2-D shapes on black, 64×64 binary, on the full grid of
//! shape (square, ellipse, heart) × scale (6 values, 0.5–1) × orientation (40 values over [0, 2π]) ×
//! posX × posY (32 values each in [0, 1]) = 737,280 images, in the original's order (posY varies fastest).
//!
//! The shapes are drawn analytically (a pixel is on when its centre is inside), so their areas are known exactly:
//! at scale 1 a square of side 16 px, an ellipse with semi-axes 10.5 and 5.25 px, and a heart made of a square of
//! side 11 px turned 45° with two half-discs of diameter 11 px on its upper sides. Positions map [0, 1] to centres
//! 12 … 52 px. These sizes approximate the original sprites; the factor values are the original's.

use std::f32::consts::{PI, SQRT_2, TAU};

pub const SHAPES: [&str; 3] = ["square", "ellipse", "heart"];
pub const NUM_SCALES: usize = 6;
pub const NUM_ORIENTATIONS: usize = 40;
pub const NUM_POSITIONS: usize = 32;
/// Images in the full grid.
pub const GRID_SIZE: usize = 3 * NUM_SCALES * NUM_ORIENTATIONS * NUM_POSITIONS * NUM_POSITIONS;

pub const SQUARE_SIDE: f32 = 16.0;
pub const ELLIPSE_AXES: (f32, f32) = (10.5, 5.25);
pub const HEART_SIDE: f32 = 11.0;
const POS_LO: f32 = 12.0;
const POS_SPAN: f32 = 40.0;

pub fn scale_value(i: usize) -> f32 {
    0.5 + 0.5 * i as f32 / (NUM_SCALES - 1) as f32
}
pub fn orientation_value(i: usize) -> f32 {
    TAU * i as f32 / (NUM_ORIENTATIONS - 1) as f32
}
pub fn position_value(i: usize) -> f32 {
    i as f32 / (NUM_POSITIONS - 1) as f32
}

/// Factor values [shape, scale, orientation, posX, posY] of grid index `g` (0 … GRID_SIZE − 1).
pub fn grid_factors(g: usize) -> [f32; 5] {
    let py = g % NUM_POSITIONS;
    let px = (g / NUM_POSITIONS) % NUM_POSITIONS;
    let o = (g / (NUM_POSITIONS * NUM_POSITIONS)) % NUM_ORIENTATIONS;
    let s = (g / (NUM_POSITIONS * NUM_POSITIONS * NUM_ORIENTATIONS)) % NUM_SCALES;
    let sh = g / (NUM_POSITIONS * NUM_POSITIONS * NUM_ORIENTATIONS * NUM_SCALES);
    [
        sh as f32,
        scale_value(s),
        orientation_value(o),
        position_value(px),
        position_value(py),
    ]
}

/// Exact area (in pixels² at 64×64) of shape `shape` at `scale`.
pub fn analytic_area(shape: usize, scale: f32) -> f32 {
    match shape {
        0 => (SQUARE_SIDE * scale).powi(2),
        1 => PI * ELLIPSE_AXES.0 * ELLIPSE_AXES.1 * scale * scale,
        _ => (HEART_SIDE * scale).powi(2) * (1.0 + PI / 4.0),
    }
}

/// Whether the shape-frame point (x, y) (pixels, y up, shape centred at the origin, scale applied) is inside.
fn inside(shape: usize, x: f32, y: f32, scale: f32) -> bool {
    match shape {
        0 => {
            let h = SQUARE_SIDE * scale / 2.0;
            x.abs() <= h && y.abs() <= h
        }
        1 => {
            let (a, b) = (ELLIPSE_AXES.0 * scale, ELLIPSE_AXES.1 * scale);
            (x / a).powi(2) + (y / b).powi(2) <= 1.0
        }
        _ => {
            let d = HEART_SIDE * scale;
            let h = d / SQRT_2;
            // Centre the heart's bounding box: it spans y ∈ [−h, h/2 + d/2] before the shift.
            let y = y + (h / 2.0 + d / 2.0 - h) / 2.0;
            let r2 = (d / 2.0).powi(2);
            x.abs() + y.abs() <= h
                || (x + h / 2.0).powi(2) + (y - h / 2.0).powi(2) <= r2
                || (x - h / 2.0).powi(2) + (y - h / 2.0).powi(2) <= r2
        }
    }
}

/// Renders factor values [shape, scale, orientation, posX, posY] into a 1-channel `res`×`res` image with values
/// 0 and 255 (geometry defined at 64×64 and scaled with `res`).
pub fn render(factors: &[f32], res: usize) -> Vec<u8> {
    let shape = factors[0].round().clamp(0.0, 2.0) as usize;
    let scale = factors[1];
    // 2π is the same orientation as 0: reduce first so that both give bit-identical images.
    let mut theta = factors[2].rem_euclid(TAU);
    if (TAU - theta).abs() < 1e-5 {
        theta = 0.0;
    }
    let (c, s) = (theta.cos(), theta.sin());
    let k = res as f32 / 64.0;
    let cx = (POS_LO + POS_SPAN * factors[3]) * k;
    let cy = (POS_LO + POS_SPAN * factors[4]) * k;
    let mut out = vec![0u8; res * res];
    for py in 0..res {
        for px in 0..res {
            // Pixel centre relative to the shape centre, in 64-px units, y up; rotate by −θ into the shape frame.
            let dx = (px as f32 + 0.5 - cx) / k;
            let dy = -(py as f32 + 0.5 - cy) / k;
            let (x, y) = (c * dx + s * dy, -s * dx + c * dy);
            if inside(shape, x, y, scale) {
                out[py * res + px] = 255;
            }
        }
    }
    out
}
