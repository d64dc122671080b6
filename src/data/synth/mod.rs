//! Built-in synthetic datasets with ground-truth factors (`dataset synth`): CLEVR-like scenes rendered by a small
//! ray tracer (clevr-simple, clevr-complex, clevr-1fov) and dSprites. Every image's factor values are stored in
//! `factors.npy`; names and ranges in `dataset.json`. Image i's factors come from its own seeded stream, so the
//! output depends only on (kind, count, resolution, seed), not on the number of threads.

pub mod clevr;
pub mod dsprites;

use super::format::{DatasetMeta, FactorSpec};
use super::writer::{prepare_image, DatasetWriter, PreparedImage};
use crate::core::rng::Rng;
use crate::io::fs;
use crate::io::progress;
use anyhow::{bail, ensure, Result};
use clevr::{Object, Shape};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

/// The synthetic dataset kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// One object; factors x, y, colour, shape (the reference's infogan_nz 4).
    ClevrSimple,
    /// Two objects; per object x, y, colour, shape, size (10 factors, infogan_nz 10).
    ClevrComplex,
    /// One object moving horizontally: one factor.
    #[serde(rename = "clevr-1fov")]
    Clevr1fov,
    /// dSprites: shape, scale, orientation, posX, posY; 64×64 binary.
    Dsprites,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::ClevrSimple => "clevr-simple",
            Kind::ClevrComplex => "clevr-complex",
            Kind::Clevr1fov => "clevr-1fov",
            Kind::Dsprites => "dsprites",
        }
    }
    pub fn channels(self) -> u32 {
        match self {
            Kind::Dsprites => 1,
            _ => 3,
        }
    }
    pub fn default_resolution(self) -> u32 {
        match self {
            Kind::Dsprites => 64,
            _ => 128,
        }
    }
    /// Every kind.
    pub const ALL: [Kind; 4] = [
        Kind::ClevrSimple,
        Kind::ClevrComplex,
        Kind::Clevr1fov,
        Kind::Dsprites,
    ];

    /// The kind that rendered a dataset made by `dataset synth` (read from its `source`), so that more images with
    /// chosen factor values can be rendered for it; None for any other dataset.
    pub fn of_dataset(meta: &DatasetMeta) -> Option<Kind> {
        let rest = meta.source.strip_prefix("synthetic ")?;
        let name = rest.split(' ').next()?;
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == name && factor_specs(*k) == meta.factors)
    }

    fn tag(self) -> u64 {
        match self {
            Kind::ClevrSimple => 1,
            Kind::ClevrComplex => 2,
            Kind::Clevr1fov => 3,
            Kind::Dsprites => 4,
        }
    }
}

// Placement of the CLEVR factors (see clevr.rs for the camera): y ∈ [0, 1] → world y from near to far; x ∈ [0, 1] →
// world x in ±X_RANGE scaled with the depth of y, so that x is the object's image column whatever its depth.
pub(crate) const X_RANGE: f32 = 1.5;
pub(crate) const Y_NEAR: f32 = -1.9;
pub(crate) const Y_FAR: f32 = 2.4;
const SIMPLE_SIZE: f32 = 0.7;
const SIZE_MIN: f32 = 0.45;
pub(crate) const SIZE_MAX: f32 = 0.7;
/// In clevr-complex the first object stays left of −GAP and the second right of +GAP, so they never intersect.
const GAP: f32 = 0.85;
const CUBE_YAW: f32 = 0.55;
const ONE_FOV_HUE: f32 = 0.58;

/// Names and ranges of the factors of `kind`.
pub fn factor_specs(kind: Kind) -> Vec<FactorSpec> {
    let obj = |prefix: &str, with_size: bool| {
        let mut v = vec![
            FactorSpec::continuous(&format!("{prefix}x"), 0.0, 1.0),
            FactorSpec::continuous(&format!("{prefix}y"), 0.0, 1.0),
            FactorSpec::continuous(&format!("{prefix}hue"), 0.0, 1.0),
            FactorSpec::categorical(&format!("{prefix}shape"), &Shape::NAMES),
        ];
        if with_size {
            v.push(FactorSpec::continuous(&format!("{prefix}size"), 0.0, 1.0));
        }
        v
    };
    match kind {
        Kind::ClevrSimple => obj("", false),
        Kind::ClevrComplex => [obj("obj1_", true), obj("obj2_", true)].concat(),
        Kind::Clevr1fov => vec![FactorSpec::continuous("x", 0.0, 1.0)],
        Kind::Dsprites => vec![
            FactorSpec::categorical("shape", &dsprites::SHAPES),
            FactorSpec::discrete(
                "scale",
                dsprites::scale_value(0),
                dsprites::scale_value(dsprites::NUM_SCALES - 1),
                dsprites::NUM_SCALES as u32,
            ),
            FactorSpec::discrete(
                "orientation",
                0.0,
                dsprites::orientation_value(dsprites::NUM_ORIENTATIONS - 1),
                dsprites::NUM_ORIENTATIONS as u32,
            ),
            FactorSpec::discrete("posX", 0.0, 1.0, dsprites::NUM_POSITIONS as u32),
            FactorSpec::discrete("posY", 0.0, 1.0, dsprites::NUM_POSITIONS as u32),
        ],
    }
}

/// Factor values of image `index` (uniform draws from the image's own stream; dSprites: a uniform grid point).
pub fn sample_factors(kind: Kind, seed: u64, index: u64) -> Vec<f32> {
    let mut r = Rng::stream(seed, &[0x5e17, kind.tag(), index]);
    let mut u = || r.uniform() as f32;
    match kind {
        Kind::ClevrSimple => vec![u(), u(), u(), (u() * 3.0).floor().min(2.0)],
        Kind::ClevrComplex => {
            let mut v = Vec::with_capacity(10);
            for _ in 0..2 {
                v.extend([u(), u(), u(), (u() * 3.0).floor().min(2.0), u()]);
            }
            v
        }
        Kind::Clevr1fov => vec![u()],
        Kind::Dsprites => {
            let g = (u() as f64 * dsprites::GRID_SIZE as f64) as usize;
            dsprites::grid_factors(g.min(dsprites::GRID_SIZE - 1)).to_vec()
        }
    }
}

fn shape_of(v: f32) -> Shape {
    Shape::ALL[(v.round().clamp(0.0, 2.0)) as usize]
}

/// The objects of a CLEVR scene for factor values `f` of `kind`.
pub fn clevr_objects(kind: Kind, f: &[f32]) -> Vec<Object> {
    let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
    let y = |t: f32| lerp(Y_NEAR, Y_FAR, t);
    let x = |t: f32, wy: f32| lerp(-X_RANGE, X_RANGE, t) * clevr::depth_scale(wy);
    match kind {
        Kind::ClevrSimple => vec![Object {
            shape: shape_of(f[3]),
            x: x(f[0], y(f[1])),
            y: y(f[1]),
            size: SIMPLE_SIZE,
            hue: f[2],
            yaw: CUBE_YAW,
        }],
        Kind::ClevrComplex => (0..2)
            .map(|k| {
                let g = &f[5 * k..5 * k + 5];
                // GAP is not scaled with depth: the objects stay apart at every depth.
                let edge = X_RANGE * clevr::depth_scale(y(g[1]));
                let (lo, hi) = if k == 0 { (-edge, -GAP) } else { (GAP, edge) };
                Object {
                    shape: shape_of(g[3]),
                    x: lerp(lo, hi, g[0]),
                    y: y(g[1]),
                    size: lerp(SIZE_MIN, SIZE_MAX, g[4]),
                    hue: g[2],
                    yaw: CUBE_YAW,
                }
            })
            .collect(),
        Kind::Clevr1fov => vec![Object {
            shape: Shape::Cylinder,
            x: x(f[0], y(0.45)),
            y: y(0.45),
            size: SIMPLE_SIZE,
            hue: ONE_FOV_HUE,
            yaw: CUBE_YAW,
        }],
        Kind::Dsprites => Vec::new(),
    }
}

/// Renders one image (CHW uint8; 3 channels for CLEVR kinds, 1 for dSprites) from its factor values.
pub fn render(kind: Kind, factors: &[f32], resolution: usize) -> Result<Vec<u8>> {
    let n = factor_specs(kind).len();
    ensure!(
        factors.len() == n,
        "{} takes {n} factor values, got {}",
        kind.name(),
        factors.len()
    );
    ensure!(
        resolution.is_power_of_two() && resolution >= 4,
        "resolution {resolution} is not a power of two ≥ 4"
    );
    Ok(match kind {
        Kind::Dsprites => dsprites::render(factors, resolution),
        _ => clevr::render(&clevr_objects(kind, factors), resolution),
    })
}

/// What `dataset synth` makes.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub kind: Kind,
    /// Number of images; 0 with dSprites = the full grid (in grid order).
    pub count: usize,
    pub resolution: u32,
    pub seed: u64,
    pub name: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SynthReport {
    pub kind: Kind,
    pub count: u64,
    pub resolution: u32,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// Generates a synthetic dataset into the new directory `out` (built atomically).
pub fn generate(out: &Path, opts: &SynthOptions) -> Result<(DatasetMeta, SynthReport)> {
    let kind = opts.kind;
    let res = opts.resolution;
    ensure!(
        res.is_power_of_two() && res >= 4,
        "--resolution {res} is not a power of two ≥ 4"
    );
    let full_grid = kind == Kind::Dsprites && opts.count == 0;
    let count = if full_grid {
        dsprites::GRID_SIZE
    } else {
        opts.count
    };
    if count == 0 {
        bail!("--count must be at least 1 for {}", kind.name());
    }
    // dSprites: the full grid in the original's order, or distinct grid points in a seeded random order (a partial
    // Fisher–Yates shuffle: a sample without replacement).
    let grid_points: Option<Vec<u32>> = if kind == Kind::Dsprites {
        ensure!(
            count <= dsprites::GRID_SIZE,
            "--count {count} exceeds the {} images of the dSprites grid",
            dsprites::GRID_SIZE
        );
        let mut all: Vec<u32> = (0..dsprites::GRID_SIZE as u32).collect();
        if !full_grid {
            let mut r = Rng::stream(opts.seed, &[0x5e17, kind.tag(), u64::MAX]);
            for i in 0..count {
                let j = i + r.below((all.len() - i) as u64) as usize;
                all.swap(i, j);
            }
            all.truncate(count);
        }
        Some(all)
    } else {
        None
    };
    let factors_of = |i: usize| -> Vec<f32> {
        match &grid_points {
            Some(g) => dsprites::grid_factors(g[i] as usize).to_vec(),
            None => sample_factors(kind, opts.seed, i as u64),
        }
    };
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| kind.name().replace('-', "_"));
    let source = if full_grid {
        format!("synthetic {} (full grid)", kind.name())
    } else {
        format!("synthetic {} (seed {})", kind.name(), opts.seed)
    };
    let t0 = std::time::Instant::now();
    let mut meta = None;
    fs::build_dir_atomic(out, |tmp| {
        let mut w = DatasetWriter::create(tmp, &name, res, kind.channels(), factor_specs(kind))?;
        let pb = progress::bar(Some(count as u64), "rendering");
        const CHUNK: usize = 1024;
        for start in (0..count).step_by(CHUNK) {
            let end = (start + CHUNK).min(count);
            let rendered: Vec<(Vec<f32>, PreparedImage)> = (start..end)
                .into_par_iter()
                .map(|i| {
                    let f = factors_of(i);
                    let img = render(kind, &f, res as usize)?;
                    Ok((
                        f,
                        prepare_image(&img, kind.channels() as usize, res as usize)?,
                    ))
                })
                .collect::<Result<_>>()?;
            for (f, img) in &rendered {
                w.push_prepared(img, Some(f))?;
            }
            pb.set_position(end as u64);
        }
        pb.finish_and_clear();
        meta = Some(w.finish(&source, &super::command_line())?);
        Ok(())
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    let meta = meta.expect("set by the build");
    let report = SynthReport {
        kind,
        count: meta.count,
        resolution: res,
        seconds,
        images_per_s: meta.count as f64 / seconds,
    };
    Ok((meta, report))
}
