//! `figures` (docs/spec/progan_hp.md §9): the statistics on analytic generators with known Hessians, the rendering, the
//! latents, argument errors, and all four figures end to end on a tiny trained snapshot.

mod common;
use common::{globals, lock, scratch, TinyRun};

use hessian_gan::checkpoint;
use hessian_gan::commands::figures::render::{self, GridLayout, HeatPanel, HeatmapGrid};
use hessian_gan::commands::figures::stats::{self, DiagonalnessAccumulator};
use hessian_gan::commands::figures::{self, Fig, FiguresOptions};
use hessian_gan::core::latents::{self, LatentConvention};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn f64s(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).contiguous().view([-1])).unwrap()
}

/// Float64 latents `[n, nz]` from a fixed NumPy seed.
fn z64(n: usize, nz: i64) -> Tensor {
    latents::seeded_normal(3, n as i64, nz)
        .unwrap()
        .to_kind(Kind::Double)
}

/// `G(z)_e = ½ zᵀ A_e z` for symmetric `a` `[E, nz, nz]`, shaped `[n, 1, 2, E/2]`: Hessian `A_e` everywhere.
fn quadratic(a: &Tensor) -> impl Fn(&Tensor) -> Tensor + '_ {
    move |z: &Tensor| {
        let e = a.size()[0];
        let out = Tensor::einsum("ni,eij,nj->ne", &[z, a, z], None::<i64>) * 0.5;
        out.reshape([-1, 1, 2, e / 2])
    }
}

#[test]
fn numpy_latents_match_the_reference_draws() {
    // The bit-exact NumPy stream itself is tested in src/latents.rs; here the figures' draw for seed 7.
    let z = latents::seeded_normal(7, 1, 5).unwrap();
    assert_eq!(z.size(), vec![1, 5]);
    assert_eq!(z.kind(), Kind::Float);
    assert!((z.double_value(&[0, 0]) - 1.690525703800356).abs() < 1e-6);
    assert!((z.double_value(&[0, 4]) + 0.7889230286257386).abs() < 1e-6);

    // The convention: pixel-normalised rows with G's normalisation off, or the raw rows with it on.
    let raw = latents::seeded_normal(0, 4, 12).unwrap();
    let post_c = LatentConvention::from_pre_norm(false);
    let (post, normalize) = (post_c.prepare(&raw), post_c.g_normalizes());
    assert!(!normalize);
    let rms = f64s(&post.square().mean_dim(1, false, Kind::Float).sqrt());
    assert!(rms.iter().all(|r| (r - 1.0).abs() < 1e-5), "{rms:?}");
    let pre_c = LatentConvention::from_pre_norm(true);
    let (pre, normalize) = (pre_c.prepare(&raw), pre_c.g_normalizes());
    assert!(normalize && pre.equal(&raw));
}

#[test]
fn z_files_round_trip_and_bad_files_are_clear() {
    let dir = scratch("zfile");
    let z = latents::seeded_normal(1, 3, 4).unwrap();
    let path = dir.join("z.npy");
    latents::write_npy(&z, &path).unwrap();
    assert!(latents::read_z(&path).unwrap().equal(&z));
    // float64 files are accepted (as NumPy writes them) and become float32.
    let p64 = dir.join("z64.npy");
    z.to_kind(Kind::Double).write_npy(&p64).unwrap();
    assert!(latents::read_z(&p64).unwrap().equal(&z));
    let err = latents::read_z(&dir.join("missing.npy"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing.npy") && err.contains("no such file"),
        "{err}"
    );
    let p3 = dir.join("z3.npy");
    Tensor::zeros([2, 2, 2], (Kind::Float, Device::Cpu))
        .write_npy(&p3)
        .unwrap();
    let err = latents::read_z(&p3).unwrap_err().to_string();
    assert!(err.contains("[2, 2, 2]"), "{err}");
    let bad = dir.join("bad.npy");
    std::fs::write(&bad, b"not an array").unwrap();
    let err = format!("{:#}", latents::read_z(&bad).unwrap_err());
    assert!(err.contains("bad.npy") && err.contains(".npy"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn additive_generator_has_every_maximum_on_the_diagonal() {
    // G_e(z) = Σ_i (a_ei z_i² + b_ei z_i³): every Hessian is diagonal (a_ei > 0 keeps the diagonal away from 0).
    let a = Tensor::from_slice(&[0.5, 1.0, 2.0, 1.5, 0.7, 0.9, 3.0, 0.2, 1.1, 0.4, 2.5, 0.8])
        .to_kind(Kind::Double)
        .reshape([4, 3]);
    let b = Tensor::from_slice(&[
        0.1, -0.3, 0.2, 0.05, 0.4, -0.2, 0.3, 0.1, -0.1, 0.2, 0.0, 0.6,
    ])
    .to_kind(Kind::Double)
    .reshape([4, 3]);
    let g = |z: &Tensor| {
        let sq = z.square().matmul(&a.tr());
        let cube = z.pow_tensor_scalar(3).matmul(&b.tr());
        (sq + cube).reshape([-1, 1, 2, 2])
    };
    let d = stats::diagonalness(&g, &z64(5, 3), 0.1, 7, None).unwrap();
    assert_eq!(d.fraction_max_on_diagonal, 1.0);
    assert_eq!(d.matrices, 5 * 4);
    // Off-diagonal finite differences vanish up to rounding, so the strength is huge (÷ ~1e-8).
    assert!(d.relative_diagonal_strength > 1e6, "{d:?}");
}

#[test]
fn known_cross_terms_give_the_exact_strength_ratio() {
    let nz = 3i64;
    // Four symmetric Hessians: max on the diagonal for the first two, off the diagonal for the last two.
    #[rustfmt::skip]
    let mats: [[f64; 9]; 4] = [
        [4.0, 1.0, 0.0,   1.0, 2.0, 0.5,   0.0, 0.5, -1.0],
        [-3.0, 0.2, 0.1,  0.2, 1.0, 0.0,   0.1, 0.0, 0.5],
        [0.5, 2.0, 0.0,   2.0, 1.0, 0.0,   0.0, 0.0, 0.1],
        [0.0, -1.0, 3.0,  -1.0, 0.0, 0.25, 3.0, 0.25, 1.0],
    ];
    let flat: Vec<f64> = mats.iter().flatten().copied().collect();
    let a = Tensor::from_slice(&flat).reshape([4, nz, nz]);
    let g = quadratic(&a);
    // The ratio of docs/spec/progan_hp.md §9.3 computed by hand for each matrix.
    let mut want = 0.0;
    for m in &mats {
        let diag: f64 = (0..3).map(|i| m[i * 4].abs()).sum();
        let off: f64 = m.iter().map(|v| v.abs()).sum::<f64>() - diag;
        want += (diag / 3.0) / (off / 6.0 + 1e-8);
    }
    want /= 4.0;
    for epsilon in [0.1, 0.37] {
        let d = stats::diagonalness(&g, &z64(6, nz), epsilon, 5, None).unwrap();
        assert_eq!(d.matrices, 24);
        assert_eq!(d.fraction_max_on_diagonal, 0.5);
        assert!(
            (d.relative_diagonal_strength - want).abs() < 1e-9 * want,
            "{} vs {want}",
            d.relative_diagonal_strength
        );
    }
    // The full Hessian itself is A_e at every sample.
    let h = hessian_gan::core::hessian::full_hessian(&g, &z64(2, nz), 0.1, 3).unwrap();
    assert_eq!(h.size(), vec![2, 1, 2, 2, 3, 3]);
    let diff = (h.reshape([2, 4, 3, 3]) - a.unsqueeze(0))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff < 1e-9, "{diff}");
}

#[test]
fn ties_count_as_diagonal_and_small_nz_is_refused() {
    let mut acc = DiagonalnessAccumulator::default();
    // |H| with the max (2) both on and off the diagonal; then one with the max only off it; then all zeros.
    let h = Tensor::from_slice(&[
        2.0, -2.0, -2.0, 1.0, //
        1.0, 3.0, 3.0, 1.0, //
        0.0, 0.0, 0.0, 0.0,
    ])
    .reshape([3, 2, 2]);
    acc.add(&h).unwrap();
    let d = acc.finish().unwrap();
    assert_eq!(d.matrices, 3);
    assert!((d.fraction_max_on_diagonal - 2.0 / 3.0).abs() < 1e-15);
    let want = (1.5 / (2.0 + 1e-8) + 1.0 / (3.0 + 1e-8) + 0.0) / 3.0;
    assert!((d.relative_diagonal_strength - want).abs() < 1e-12);
    let err = DiagonalnessAccumulator::default()
        .add(&Tensor::ones([4, 1, 1], (Kind::Double, Device::Cpu)))
        .unwrap_err();
    assert!(err.to_string().contains("nz ≥ 2"), "{err}");
    assert!(DiagonalnessAccumulator::default().finish().is_err());
}

#[test]
fn activeness_is_zero_for_an_ignored_component_and_4a2_for_a_linear_one() {
    // G = z W (+ a nonlinear term in z0, z2 only): component 1 never reaches the output.
    let w = Tensor::from_slice(&[
        1.0, -2.0, 0.5, 3.0, 0.0, 0.0, 0.0, 0.0, 0.25, 1.0, -1.0, 2.0,
    ])
    .reshape([3, 4]);
    let g_linear = |z: &Tensor| z.matmul(&w).reshape([-1, 2, 1, 2]);
    let z = z64(7, 3);
    let act = f64s(&stats::activeness(&g_linear, &z, 2.0, 5, None).unwrap());
    // Var({c − 2a, c, c + 2a}) with ddof 1 = 4a², averaged over the 4 elements.
    let want: Vec<f64> = (0..3)
        .map(|i| {
            (0..4)
                .map(|e| 4.0 * w.double_value(&[i, e]).powi(2))
                .sum::<f64>()
                / 4.0
        })
        .collect();
    for (a, b) in act.iter().zip(&want) {
        assert!((a - b).abs() < 1e-9, "{act:?} vs {want:?}");
    }
    assert_eq!(act[1], 0.0);
    let g_nonlinear = |z: &Tensor| {
        let z0 = z.select(1, 0);
        let z2 = z.select(1, 2);
        Tensor::stack(&[z0.square() * &z2, z2.sin(), z0.exp()], 1).reshape([-1, 3, 1, 1])
    };
    let act = f64s(&stats::activeness(&g_nonlinear, &z, 2.0, 4, None).unwrap());
    assert_eq!(act[1], 0.0);
    assert!(act[0] > 0.1 && act[2] > 0.1, "{act:?}");
    // The extent scales a linear component's activeness quadratically.
    let act1 = f64s(&stats::activeness(&g_linear, &z, 1.0, 64, None).unwrap());
    assert!((act1[0] * 4.0 - want[0]).abs() < 1e-9);
}

#[test]
fn largest_hp_element_and_its_hessian_are_found() {
    let _g = lock();
    tch::manual_seed(11);
    // Elements: z0·z1 (HP ≈ 4), 5·z0·z2 (HP ≈ 100), z1² (HP 0), 0.
    let g = |z: &Tensor| {
        let (z0, z1, z2) = (z.select(1, 0), z.select(1, 1), z.select(1, 2));
        Tensor::stack(
            &[&z0 * &z1, &z0 * &z2 * 5.0, z1.square(), z0.zeros_like()],
            1,
        )
        .reshape([-1, 1, 2, 2])
    };
    let z = z64(3, 3);
    let r = stats::hessian_at_largest_hp(&g, &z, 200, 0.1, 50, None).unwrap();
    assert_eq!(r.elements, vec![vec![0, 0, 1]; 3]);
    assert_eq!(r.hessians.size(), vec![3, 3, 3]);
    let mut want = [0.0; 9];
    want[2] = 5.0;
    want[6] = 5.0;
    for s in 0..3 {
        let h = f64s(&r.hessians.get(s));
        for (a, b) in h.iter().zip(&want) {
            assert!((a - b).abs() < 1e-9, "{h:?}");
        }
        // Var(±2·5) with ddof 1 over 200 directions: 100 on average.
        assert!((r.hp[s as usize] - 100.0).abs() < 20.0, "{:?}", r.hp);
    }
    // The heatmap (k 2) is the max over channels: a channel with no cross term does not lower it.
    let g2 = |z: &Tensor| {
        let cross = (z.select(1, 0) * z.select(1, 1)).view([-1, 1, 1, 1]) * 3.0;
        Tensor::cat(&[z.select(1, 2).square().view([-1, 1, 1, 1]), cross], 1)
    };
    let map = stats::hp_heatmap(&g2, &z, 400, 0.1, 1000, None).unwrap();
    assert_eq!(map.size(), vec![3, 1, 1]);
    for v in f64s(&map) {
        assert!((v - 36.0).abs() < 8.0, "{v}");
    }
}

#[test]
fn heatmap_grid_has_the_layout_size_and_the_colour_scale() {
    let layout = GridLayout::new(40);
    let panels = vec![
        vec![
            HeatPanel {
                values: vec![0.0, 1.0, 2.0, 3.0],
                height: 2,
                width: 2,
                overlay: None,
            },
            HeatPanel {
                values: vec![6.0],
                height: 1,
                width: 1,
                overlay: None,
            },
        ],
        vec![HeatPanel {
            values: vec![3.0; 9],
            height: 3,
            width: 3,
            overlay: Some(image::RgbImage::from_fn(3, 3, |x, y| {
                // Black with a grey centre: stretched per panel, the centre counts as the brightest.
                image::Rgb(if (x, y) == (1, 1) {
                    [90, 90, 90]
                } else {
                    [10, 10, 10]
                })
            })),
        }],
    ];
    let grid = HeatmapGrid {
        title: "test".into(),
        row_labels: vec!["a".into(), "b".into()],
        panels,
        layout,
        overlay_shade: 0.5,
    };
    let img = render::render_heatmap_grid(&grid).unwrap();
    let (w, h) = layout.size(2, 2);
    assert_eq!(img.dimensions(), (w, h));
    assert_eq!(
        (w, h),
        (
            12 * 2 + 2 * 40 + 8 + 16 + 18 + 86,
            12 * 2 + 30 + 2 * (22 + 40) + 8
        )
    );
    // Shared scale 0 … 6: the cell centres carry YlGnBu(v / 6).
    let (ox, oy) = layout.panel_origin(0, 0);
    assert_eq!(img.get_pixel(ox + 10, oy + 10).0, render::ylgnbu(0.0));
    assert_eq!(img.get_pixel(ox + 30, oy + 30).0, render::ylgnbu(0.5));
    let (ox, oy) = layout.panel_origin(0, 1);
    assert_eq!(img.get_pixel(ox + 20, oy + 20).0, render::ylgnbu(1.0));
    // Shading at strength 0.5: the overlay's darkest pixels halve the colour, its brightest keep it exact.
    let (ox, oy) = layout.panel_origin(1, 0);
    let want = render::ylgnbu(0.5).map(|c| (c as f64 * 0.5).round() as u8);
    assert_eq!(img.get_pixel(ox + 5, oy + 5).0, want);
    assert_eq!(img.get_pixel(ox + 20, oy + 20).0, render::ylgnbu(0.5));
    // Endpoints of the map are ColorBrewer's first and last YlGnBu colours.
    assert_eq!(render::ylgnbu(0.0), [0xff, 0xff, 0xd9]);
    assert_eq!(render::ylgnbu(1.0), [0x08, 0x1d, 0x58]);
    assert_eq!(render::tick_label(0.125), "0.125");
    assert_eq!(render::tick_label(0.4), "0.4");
    assert_eq!(render::tick_label(100.0), "100");
    assert_eq!(render::tick_label(12.5), "12.5");
    assert_eq!(render::tick_label(25000.0), "2.50e4");
    // A title longer than the panels widens the figure (same height, panels where they were).
    let long = HeatmapGrid {
        title: "a title much longer than two forty-pixel panels and a colour bar".into(),
        ..grid
    };
    let wide = render::render_heatmap_grid(&long).unwrap();
    assert!(wide.width() > w + 100, "{}", wide.width());
    assert_eq!(wide.height(), h);
    let (ox, oy) = layout.panel_origin(0, 1);
    assert_eq!(wide.get_pixel(ox + 20, oy + 20).0, render::ylgnbu(1.0));
}

/// Trains an 8², nz-3 model for a few iterations (one snapshot); returns the run directory.
fn tiny_run(root: &Path) -> PathBuf {
    TinyRun::new(root)
        .with(json!({
            "layers_to_reg": [1, 2, 3],
            "minibatch": {"4": 16, "8": 16}, "tick_kimg": 0.064, "total_kimg": 0.064
        }))
        .train()
}

fn png_size(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A heatmap grid has the layout's height, and its width unless the title needs more (then it is widened).
fn assert_grid_size(path: &Path, layout: GridLayout, rows: u32, cols: u32) {
    let (w, h) = png_size(path);
    let (lw, lh) = layout.size(rows, cols);
    assert_eq!(h, lh, "{}", path.display());
    assert!(
        w >= lw && w < lw + 400,
        "{}: width {w} for layout {lw}",
        path.display()
    );
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn all_four_figures_from_a_trained_snapshot() {
    let _g = lock();
    let root = scratch("e2e");
    let run = tiny_run(&root);
    let results = root.join("results");
    let out = root.join("visuals");
    // The snapshot as run number 0 and as the run directory's latest: two rows.
    let args = |fig: Fig| FiguresOptions {
        samples: Some(3),
        out: out.clone(),
        results_dir: results.clone(),
        minibatch_size: 16,
        ..FiguresOptions::new(vec!["0".into(), run.display().to_string()], fig)
    };
    let run_name = run.file_name().unwrap().to_string_lossy().into_owned();
    let snap = checkpoint::find_snapshot(&run, "latest").unwrap();
    let kimg = snap
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .replace("network-snapshot-", "");
    let folder = format!("{run_name}-{kimg}_{run_name}-{kimg}");

    let rep = figures::run(&globals(), &args(Fig::Hessians)).unwrap();
    let dir = out.join("figure_hessians").join(&folder).join("seed_0");
    assert_eq!(rep.dirs, vec![dir.clone()]);
    // nz 3: panels of 3·40 px; 2 rows × 3 samples.
    assert_grid_size(
        &dir.join("hessians_largest_hp.png"),
        GridLayout::new(120),
        2,
        3,
    );
    let j = read_json(&dir.join("hessians_largest_hp.json"));
    assert_eq!(j["k"], 200);
    let h = &j["models"][0]["samples"][0];
    assert_eq!(h["hessian"].as_array().unwrap().len(), 3);
    let e = h["element"].as_array().unwrap();
    assert!(e[0].as_i64().unwrap() < 3 && e[1].as_i64().unwrap() < 8);
    assert!(h["hp"].as_f64().unwrap() > 0.0);
    // z.npy holds the seed-0 draws as float32.
    let z = latents::read_z(&dir.join("z.npy")).unwrap();
    assert!(z.equal(&latents::seeded_normal(0, 3, 3).unwrap()));

    let rep = figures::run(&globals(), &args(Fig::Diag)).unwrap();
    let dir = out.join("figure_diag").join(&folder).join("seed_0");
    let j = read_json(&dir.join("diag.json"));
    assert_eq!(rep.diag.len(), 2);
    for (_, _, d) in &rep.diag {
        assert_eq!(d.matrices, 3 * 3 * 8 * 8);
        assert!((0.0..=1.0).contains(&d.fraction_max_on_diagonal));
        assert!(d.relative_diagonal_strength > 0.0);
    }
    assert_eq!(
        j["models"][1]["fraction_max_on_diagonal"].as_f64().unwrap(),
        rep.diag[1].2.fraction_max_on_diagonal
    );
    // Feeding the written latents back reproduces the numbers exactly.
    let again = figures::run(
        &globals(),
        &FiguresOptions {
            z: Some(dir.join("z.npy")),
            samples: None,
            ..args(Fig::Diag)
        },
    )
    .unwrap();
    assert_eq!(
        again.dirs,
        vec![out.join("figure_diag").join(&folder).join("z_z")]
    );
    assert_eq!(again.diag[0].2, rep.diag[0].2);
    assert_eq!(again.diag[1].2, rep.diag[1].2);

    let heat = FiguresOptions {
        model_names: Some(vec!["early".into(), "late".into()]),
        seeds: vec![0, 5],
        interpolate_pre_norm: true,
        ..args(Fig::Heatmaps)
    };
    let rep = figures::run(&globals(), &heat).unwrap();
    assert_eq!(rep.dirs.len(), 2);
    for dir in &rep.dirs {
        // 8² images are shown on 128-px panels.
        assert_grid_size(&dir.join("heatmaps.png"), GridLayout::new(128), 2, 3);
        let j = read_json(&dir.join("heatmaps.json"));
        assert!(j["vmax"].as_f64().unwrap() > j["vmin"].as_f64().unwrap());
        assert_eq!(j["interpolate_pre_norm"], true);
    }

    let active = FiguresOptions {
        model_names: Some(vec!["tiny HP".into()]),
        dataset_names: Some(vec!["first".into(), "second".into()]),
        samples: Some(4),
        ..args(Fig::Active)
    };
    let rep = figures::run(&globals(), &active).unwrap();
    let dir = &rep.dirs[0];
    assert_eq!(
        png_size(&dir.join("activeness.png")),
        render::bar_figure_size(2)
    );
    assert_eq!(render::bar_figure_size(2), (1440, 460));
    assert_eq!(render::bar_figure_size(3), (1440, 920));
    let svg = std::fs::read_to_string(dir.join("activeness.svg")).unwrap();
    assert!(svg.contains("Activeness") && svg.contains("Z Component") && svg.contains("tiny HP"));
    let j = read_json(&dir.join("activeness.json"));
    let scores = j["models"][1]["activeness"].as_array().unwrap();
    assert_eq!(scores.len(), 3);
    assert!(scores.iter().all(|s| s.as_f64().unwrap() >= 0.0));
    assert_eq!(j["models"][1]["dataset"], "second");
    let csv = std::fs::read_to_string(dir.join("activeness.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 3);
    assert!(csv.starts_with("dataset,model,snapshot,component,activeness,rank\nfirst,tiny HP,"));

    // Bad arguments are clear errors.
    let err = |a: FiguresOptions| format!("{:#}", figures::run(&globals(), &a).unwrap_err());
    let e = err(FiguresOptions {
        model_names: Some(vec!["a".into(), "b".into(), "c".into()]),
        ..args(Fig::Active)
    });
    assert!(
        e.contains("3 --model-names") || e.contains("do not split"),
        "{e}"
    );
    let e = err(FiguresOptions {
        model_names: Some(vec!["only one".into()]),
        ..args(Fig::Hessians)
    });
    assert!(e.contains("--model-names: 1 names for 2 --models"), "{e}");
    let e = err(FiguresOptions {
        dataset_names: Some(vec!["d".into()]),
        ..args(Fig::Diag)
    });
    assert!(
        e.contains("--dataset-names applies to --fig active only"),
        "{e}"
    );
    let wide = root.join("wide.npy");
    latents::write_npy(&latents::seeded_normal(0, 2, 5).unwrap(), &wide).unwrap();
    let e = err(FiguresOptions {
        z: Some(wide.clone()),
        samples: None,
        ..args(Fig::Diag)
    });
    assert!(e.contains("5 components") && e.contains("nz 3"), "{e}");
    let e = err(FiguresOptions {
        z: Some(wide),
        samples: Some(3),
        ..args(Fig::Diag)
    });
    assert!(e.contains("--samples 3") && e.contains("2 latents"), "{e}");
    let e = err(FiguresOptions {
        snapshot_kimgs: vec!["latest".into(), "latest".into(), "latest".into()],
        ..args(Fig::Diag)
    });
    assert!(e.contains("--snapshot-kimgs: 3 values for 2 models"), "{e}");
    let e = err(FiguresOptions {
        epsilon: 0.0,
        ..args(Fig::Diag)
    });
    assert!(e.contains("--epsilon 0"), "{e}");
    let e = err(FiguresOptions::new(
        vec!["nowhere.safetensors".into()],
        Fig::Diag,
    ));
    assert!(e.contains("nowhere.safetensors"), "{e}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_command_line_rejects_an_unknown_figure() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hessian-gan"))
        .args(["figures", "--models", "1", "--fig", "bogus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'bogus'") && err.contains("hessians") && err.contains("active"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hessian-gan"))
        .args([
            "figures", "--models", "1", "--fig", "diag", "--z", "a.npy", "--seeds", "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
