//! Synthetic datasets: factor → image invariants, the dSprites geometry, and deterministic generation.

use hessian_gan::data::synth::{self, dsprites, Kind, SynthOptions};
use hessian_gan::data::Dataset;
use std::f32::consts::{PI, TAU};

/// Pixels whose colour is clearly not grey (the objects; floor and shadows are grey): (mask, centroid x, y).
fn object_mask(img: &[u8], res: usize) -> (Vec<bool>, f64, f64) {
    let n = res * res;
    let mut mask = vec![false; n];
    let (mut sx, mut sy, mut c) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (r, g, b) = (img[i] as i32, img[n + i] as i32, img[2 * n + i] as i32);
        if r.max(g).max(b) - r.min(g).min(b) > 40 {
            mask[i] = true;
            sx += (i % res) as f64;
            sy += (i / res) as f64;
            c += 1.0;
        }
    }
    assert!(c > 20.0, "no object visible");
    (mask, sx / c, sy / c)
}

fn mean_colour(img: &[u8], mask: &[bool]) -> [f64; 3] {
    let n = mask.len();
    let mut acc = [0.0; 3];
    let cnt = mask.iter().filter(|&&m| m).count() as f64;
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        for (c, a) in acc.iter_mut().enumerate() {
            *a += img[c * n + i] as f64 / cnt;
        }
    }
    acc
}

#[test]
fn moving_x_moves_the_object_right_at_constant_height() {
    for shape in 0..3 {
        let mut last = f64::MIN;
        let mut ys = Vec::new();
        for x in [0.0f32, 0.25, 0.5, 0.75, 1.0] {
            let img = synth::render(Kind::ClevrSimple, &[x, 0.4, 0.1, shape as f32], 64).unwrap();
            let (_, cx, cy) = object_mask(&img, 64);
            assert!(
                cx > last + 5.0,
                "shape {shape}: x {x} centroid {cx} after {last}"
            );
            last = cx;
            ys.push(cy);
        }
        let spread = ys.iter().cloned().fold(f64::MIN, f64::max)
            - ys.iter().cloned().fold(f64::MAX, f64::min);
        assert!(
            spread < 1.0,
            "shape {shape}: vertical centroid moved by {spread}"
        );
    }
    // The one factor of clevr-1fov is the same horizontal motion.
    let a = object_mask(&synth::render(Kind::Clevr1fov, &[0.1], 64).unwrap(), 64);
    let b = object_mask(&synth::render(Kind::Clevr1fov, &[0.9], 64).unwrap(), 64);
    assert!(b.1 - a.1 > 25.0 && (b.2 - a.2).abs() < 1.0);
}

#[test]
fn moving_y_moves_the_object_up_and_away() {
    let near = synth::render(Kind::ClevrSimple, &[0.5, 0.0, 0.6, 0.0], 64).unwrap();
    let far = synth::render(Kind::ClevrSimple, &[0.5, 1.0, 0.6, 0.0], 64).unwrap();
    let (mn, nx, ny) = object_mask(&near, 64);
    let (mf, fx, fy) = object_mask(&far, 64);
    assert!(ny - fy > 15.0, "far objects sit higher: {ny} vs {fy}");
    assert!((nx - fx).abs() < 1.0, "x = 0.5 stays centred: {nx} vs {fx}");
    let area = |m: &[bool]| m.iter().filter(|&&v| v).count();
    assert!(
        area(&mn) as f64 > 1.3 * area(&mf) as f64,
        "perspective: near objects are larger"
    );
}

#[test]
fn colour_changes_hue_not_position() {
    let render = |hue: f32| synth::render(Kind::ClevrSimple, &[0.3, 0.6, hue, 1.0], 64).unwrap();
    let imgs: Vec<Vec<u8>> = [0.0f32, 1.0 / 3.0, 2.0 / 3.0]
        .iter()
        .map(|&h| render(h))
        .collect();
    let masks: Vec<_> = imgs.iter().map(|i| object_mask(i, 64)).collect();
    for (k, m) in masks.iter().enumerate().skip(1) {
        assert!((m.1 - masks[0].1).abs() < 0.5 && (m.2 - masks[0].2).abs() < 0.5);
        let inter =
            m.0.iter()
                .zip(&masks[0].0)
                .filter(|(a, b)| **a && **b)
                .count();
        let union =
            m.0.iter()
                .zip(&masks[0].0)
                .filter(|(a, b)| **a || **b)
                .count();
        assert!(
            inter as f64 / union as f64 > 0.95,
            "hue {k}: silhouette changed"
        );
    }
    // Red, green, blue dominate at hues 0, 1/3, 2/3.
    for (k, (img, m)) in imgs.iter().zip(&masks).enumerate() {
        let c = mean_colour(img, &m.0);
        let top = (0..3).max_by(|&a, &b| c[a].total_cmp(&c[b])).unwrap();
        assert_eq!(top, k, "hue {k}: mean colour {c:?}");
    }
    // The floor away from the object is untouched by the colour.
    assert_eq!(imgs[0][..64 * 10], imgs[1][..64 * 10]);
}

#[test]
fn shapes_and_complex_objects_are_distinct() {
    let area = |f: &[f32]| {
        object_mask(&synth::render(Kind::ClevrSimple, f, 64).unwrap(), 64)
            .0
            .iter()
            .filter(|&&v| v)
            .count()
    };
    let (s, c, y) = (
        area(&[0.5, 0.5, 0.0, 0.0]),
        area(&[0.5, 0.5, 0.0, 1.0]),
        area(&[0.5, 0.5, 0.0, 2.0]),
    );
    assert!(
        s != c && c != y && s != y,
        "sphere {s}, cube {c}, cylinder {y}"
    );
    // clevr-complex: obj1_x moves only the left object, obj2's factors only the right one.
    let base = [0.5f32, 0.5, 0.0, 0.0, 0.5, 0.5, 0.5, 0.6, 1.0, 0.5];
    let mut moved = base;
    moved[0] = 1.0;
    let (a, b) = (
        synth::render(Kind::ClevrComplex, &base, 64).unwrap(),
        synth::render(Kind::ClevrComplex, &moved, 64).unwrap(),
    );
    let changed_cols: Vec<usize> = (0..64 * 64)
        .filter(|&i| a[i] != b[i] || a[4096 + i] != b[4096 + i])
        .map(|i| i % 64)
        .collect();
    assert!(!changed_cols.is_empty());
    assert!(
        changed_cols.iter().all(|&x| x < 40),
        "obj1 stays in the left part"
    );
}

#[test]
fn dsprites_areas_match_the_geometry() {
    // Rendered at 256×256 (the geometry scales with the resolution; 16 pixels per 64-grid pixel) and at an
    // orientation off the pixel axes, so that pixel counting measures the area to about 1 %.
    let count = |shape: f32, scale: f32| {
        dsprites::render(
            &[shape, scale, dsprites::orientation_value(3), 0.5, 0.5],
            256,
        )
        .iter()
        .filter(|&&v| v == 255)
        .count() as f32
            / 16.0
    };
    for scale in dsprites_scales() {
        let areas: Vec<f32> = (0..3).map(|s| count(s as f32, scale)).collect();
        for (s, &area) in areas.iter().enumerate() {
            let want = dsprites::analytic_area(s, scale);
            assert!(
                (area / want - 1.0).abs() < 0.02,
                "shape {s} scale {scale}: {area} vs {want}"
            );
        }
        // Ratios: heart / square = (11² (1 + π/4)) / 16², ellipse / square = π·10.5·5.25 / 16².
        let hs = areas[2] / areas[0];
        let es = areas[1] / areas[0];
        assert!(
            (hs - 121.0 * (1.0 + PI / 4.0) / 256.0).abs() < 0.02,
            "heart/square {hs}"
        );
        assert!(
            (es - PI * 10.5 * 5.25 / 256.0).abs() < 0.02,
            "ellipse/square {es}"
        );
    }
    // At the native 64×64 the largest square covers exactly its 16×16 pixels.
    let native = dsprites::render(&[0.0, 1.0, 0.0, 0.5, 0.5], 64);
    assert_eq!(native.iter().filter(|&&v| v == 255).count(), 256);
    // Area scales with scale².
    assert!((count(0.0, 0.5) / count(0.0, 1.0) - 0.25).abs() < 0.03);
    // Only 0 and 255 appear.
    assert!(dsprites::render(&[2.0, 0.8, 1.0, 0.3, 0.7], 64)
        .iter()
        .all(|&v| v == 0 || v == 255));
}

fn dsprites_scales() -> Vec<f32> {
    (0..dsprites::NUM_SCALES)
        .map(dsprites::scale_value)
        .collect()
}

#[test]
fn dsprites_orientation_wraps_and_rotates() {
    for shape in 0..3 {
        let at = |o: f32| dsprites::render(&[shape as f32, 1.0, o, 0.4, 0.6], 64);
        assert_eq!(
            at(0.0),
            at(dsprites::orientation_value(39)),
            "shape {shape}: 0 vs 2π"
        );
        assert_eq!(dsprites::orientation_value(39), TAU);
        if shape > 0 {
            assert_ne!(at(0.0), at(PI / 2.0), "shape {shape} turns");
        }
    }
    // The heart is not symmetric under a half turn; the square is under a quarter turn (a dSprites property).
    let h = |o: f32| dsprites::render(&[2.0, 1.0, o, 0.5, 0.5], 64);
    assert_ne!(h(0.0), h(PI));
    // posX moves right, posY moves down.
    let c = |f: [f32; 5]| {
        let img = dsprites::render(&f, 64);
        let on: Vec<usize> = (0..4096).filter(|&i| img[i] == 255).collect();
        let n = on.len() as f32;
        (
            on.iter().map(|&i| (i % 64) as f32).sum::<f32>() / n,
            on.iter().map(|&i| (i / 64) as f32).sum::<f32>() / n,
        )
    };
    let (a, b) = (c([0.0, 1.0, 0.0, 0.0, 0.5]), c([0.0, 1.0, 0.0, 1.0, 0.5]));
    assert!((b.0 - a.0 - 40.0).abs() < 0.6 && (b.1 - a.1).abs() < 0.1);
}

#[test]
fn dsprites_grid_order() {
    assert_eq!(dsprites::GRID_SIZE, 737_280);
    assert_eq!(dsprites::grid_factors(0), [0.0, 0.5, 0.0, 0.0, 0.0]);
    assert_eq!(dsprites::grid_factors(1)[4], 1.0 / 31.0);
    assert_eq!(dsprites::grid_factors(32)[3], 1.0 / 31.0);
    assert_eq!(dsprites::grid_factors(1024)[2], TAU / 39.0);
    assert_eq!(
        dsprites::grid_factors(dsprites::GRID_SIZE - 1),
        [2.0, 1.0, TAU, 1.0, 1.0]
    );
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hg-dssynth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn generation_is_deterministic_and_stores_factors() {
    let opts = |kind, count, seed| SynthOptions {
        kind,
        count,
        resolution: 16,
        seed,
        name: None,
    };
    for kind in [
        Kind::ClevrSimple,
        Kind::ClevrComplex,
        Kind::Clevr1fov,
        Kind::Dsprites,
    ] {
        let (a, b, c) = (tmp("a"), tmp("b"), tmp("c"));
        let (meta, report) = synth::generate(&a, &opts(kind, 40, 3)).unwrap();
        assert_eq!((meta.count, report.count), (40, 40));
        assert_eq!(meta.factors, synth::factor_specs(kind));
        assert_eq!(meta.channels, kind.channels());
        synth::generate(&b, &opts(kind, 40, 3)).unwrap();
        synth::generate(&c, &opts(kind, 40, 4)).unwrap();
        for f in ["r04.npy", "r02.npy", "factors.npy"] {
            let (x, y, z) = (
                std::fs::read(a.join(f)).unwrap(),
                std::fs::read(b.join(f)).unwrap(),
                std::fs::read(c.join(f)).unwrap(),
            );
            assert_eq!(x, y, "{kind:?} {f}: same seed, same bytes");
            assert_ne!(x, z, "{kind:?} {f}: another seed, other images");
        }
        // Image i is the rendering of its stored factors.
        let ds = Dataset::open(&a).unwrap();
        for i in [0, 17, 39] {
            let f = ds.factors_of(i);
            for (v, spec) in f.iter().zip(&ds.meta().factors) {
                assert!(*v >= spec.min && *v <= spec.max);
            }
            assert_eq!(
                ds.level(4).unwrap().image(i),
                &synth::render(kind, f, 16).unwrap()[..]
            );
        }
        for d in [a, b, c] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
    // dSprites subsets are distinct grid points.
    let d = tmp("dsub");
    synth::generate(&d, &opts(Kind::Dsprites, 300, 1)).unwrap();
    let ds = Dataset::open(&d).unwrap();
    let mut rows: Vec<Vec<u32>> = (0..300)
        .map(|i| ds.factors_of(i).iter().map(|v| v.to_bits()).collect())
        .collect();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), 300);
    std::fs::remove_dir_all(&d).unwrap();
    // Bad requests.
    assert!(synth::generate(&tmp("z"), &opts(Kind::ClevrSimple, 0, 1)).is_err());
    let e = synth::generate(&tmp("z"), &opts(Kind::Dsprites, 800_000, 1)).unwrap_err();
    assert!(e.to_string().contains("737280"), "{e}");
}
