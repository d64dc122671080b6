//! Datasets from image folders and pix2pix pairs, `info`, `extract` and `bench`, through the library and the CLI
//! (docs/spec/progan_hp.md §4.5).

use hessian_gan::data::{images, Dataset};
use image::{GrayImage, Rgb, RgbImage, Rgba, RgbaImage};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hg-dsimg-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hessian-gan"))
}

/// Runs the CLI; returns (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pattern(w: u32, h: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 7 + seed as u32) as u8,
            (y * 5) as u8,
            ((x + y) as u8).wrapping_mul(seed),
        ])
    })
}

/// A folder with 16×16 images in every format and colour type, in nested directories.
fn image_folder(dir: &Path) -> Vec<RgbImage> {
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    let a = pattern(16, 16, 1);
    a.save(dir.join("a.png")).unwrap();
    let b = pattern(16, 16, 2);
    b.save(dir.join("sub/b.bmp")).unwrap();
    let grey = GrayImage::from_fn(16, 16, |x, y| image::Luma([(x * 16 + y) as u8]));
    grey.save(dir.join("sub/deeper/c.png")).unwrap();
    let rgba = RgbaImage::from_fn(16, 16, |x, y| {
        Rgba([x as u8 * 10, y as u8 * 10, 77, (x * y) as u8])
    });
    rgba.save(dir.join("d.png")).unwrap();
    std::fs::write(dir.join("notes.txt"), b"not an image").unwrap();
    // Expected RGB content in path order: a.png, d.png, sub/b.bmp, sub/deeper/c.png.
    let grey_rgb = RgbImage::from_fn(16, 16, |x, y| {
        let v = grey.get_pixel(x, y)[0];
        Rgb([v, v, v])
    });
    let rgba_rgb = RgbImage::from_fn(16, 16, |x, y| {
        let p = rgba.get_pixel(x, y);
        Rgb([p[0], p[1], p[2]])
    });
    vec![a, rgba_rgb, b, grey_rgb]
}

#[test]
fn create_from_images_reads_every_format_and_colour_type() {
    let base = tmp("formats");
    let want = image_folder(&base.join("in"));
    // A JPEG too (lossy: only its presence and size are checked).
    pattern(16, 16, 3).save(base.join("in/z.jpg")).unwrap();
    let out = base.join("ds");
    let (ok, stdout, stderr) = cli(&[
        "dataset",
        "create-from-images",
        base.join("in").to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("5 images at 16×16"), "{stdout}");
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(
        (ds.count(), ds.channels(), ds.meta().resolution),
        (5, 3, 16)
    );
    assert_eq!(ds.meta().name, "ds");
    assert!(ds.meta().command.contains("create-from-images"));
    for (i, img) in want.iter().enumerate() {
        assert_eq!(
            ds.level(4).unwrap().image(i),
            &images::rgb_to_chw(img)[..],
            "image {i}"
        );
    }
    // --shuffle stores the same images in a seeded order.
    let shuf = base.join("shuf");
    let opts = images::FromImagesOptions {
        shuffle: true,
        name: Some("mixed".into()),
        seed: 5,
        ..Default::default()
    };
    images::create_from_images(&base.join("in"), &shuf, &opts).unwrap();
    let s = Dataset::open(&shuf).unwrap();
    assert_eq!(s.meta().name, "mixed");
    let mut a: Vec<&[u8]> = (0..5).map(|i| ds.level(4).unwrap().image(i)).collect();
    let mut b: Vec<&[u8]> = (0..5).map(|i| s.level(4).unwrap().image(i)).collect();
    assert_ne!(a, b, "shuffled order differs");
    a.sort();
    b.sort();
    assert_eq!(a, b, "same images");
    // The output directory already exists now: refused, one line.
    let (ok, _, stderr) = cli(&[
        "dataset",
        "create-from-images",
        base.join("in").to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("already exists") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn corrupt_files_are_named_or_skipped() {
    let base = tmp("corrupt");
    image_folder(&base.join("in"));
    let bad = base.join("in/sub/broken.png");
    let mut bytes = std::fs::read(base.join("in/a.png")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&bad, &bytes).unwrap();
    let out = base.join("ds");
    let (ok, _, stderr) = cli(&[
        "dataset",
        "create-from-images",
        base.join("in").to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("broken.png") && stderr.contains("--skip-bad"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!out.exists(), "no half dataset left behind");
    let leftovers: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    // With --skip-bad the file is skipped and counted.
    let opts = images::FromImagesOptions {
        skip_bad: true,
        ..Default::default()
    };
    let r = images::create_from_images(&base.join("in"), &out, &opts).unwrap();
    assert_eq!(r.count, 4);
    assert_eq!(r.skipped, vec![bad.clone()]);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn sizes_must_agree_unless_resized() {
    let base = tmp("sizes");
    let dir = base.join("in");
    std::fs::create_dir_all(&dir).unwrap();
    pattern(32, 32, 1).save(dir.join("a.png")).unwrap();
    pattern(48, 32, 2).save(dir.join("b.png")).unwrap();
    let (ok, _, stderr) = cli(&[
        "dataset",
        "create-from-images",
        dir.to_str().unwrap(),
        base.join("x").to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("b.png is 48×32") && stderr.contains("--resolution"),
        "{stderr}"
    );
    std::fs::remove_file(dir.join("b.png")).unwrap();
    pattern(24, 24, 2).save(dir.join("b.png")).unwrap();
    let e = images::create_from_images(&dir, &base.join("x"), &Default::default()).unwrap_err();
    assert!(format!("{e:#}").contains("b.png is 24×24"), "{e:#}");
    pattern(16, 16, 2).save(dir.join("b.png")).unwrap();
    let e = images::create_from_images(&dir, &base.join("x"), &Default::default()).unwrap_err();
    assert!(format!("{e:#}").contains("same size"), "{e:#}");
    // With --resolution: centre crop and Lanczos resize.
    pattern(48, 32, 2).save(dir.join("b.png")).unwrap();
    let opts = images::FromImagesOptions {
        resolution: Some(8),
        ..Default::default()
    };
    let r = images::create_from_images(&dir, &base.join("x"), &opts).unwrap();
    assert_eq!((r.count, r.resolution), (2, 8));
    let ds = Dataset::open(&base.join("x")).unwrap();
    let want = images::crop_resize(&pattern(48, 32, 2), 8);
    assert_eq!(
        ds.level(3).unwrap().image(1),
        &images::rgb_to_chw(&want)[..]
    );
    // The crop is central: a 48×32 image whose centre 32×32 is one colour resizes to that colour.
    let framed = RgbImage::from_fn(48, 32, |x, _| {
        if (8..40).contains(&x) {
            Rgb([200, 10, 30])
        } else {
            Rgb([0, 255, 0])
        }
    });
    let r8 = images::crop_resize(&framed, 8);
    assert!(r8.pixels().all(|p| p.0 == [200, 10, 30]));
    assert!(
        images::create_from_images(&base.join("none"), &base.join("y"), &Default::default())
            .is_err()
    );
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn edges_and_shoes_splits_each_pair() {
    let base = tmp("e2s");
    let train = base.join("in/train");
    std::fs::create_dir_all(&train).unwrap();
    // Left half constant 10·k (the edge map), right half constant 100 + 10·k (the photo).
    let n = 5u8;
    for k in 0..n {
        let img = RgbaImage::from_fn(32, 16, |x, _| {
            let v = if x < 16 { 10 * k } else { 100 + 10 * k };
            Rgba([v, v, v, 255])
        });
        img.save(train.join(format!("{k}_AB.png"))).unwrap();
    }
    let out = base.join("ds");
    let opts = images::EdgesShoesOptions {
        resolution: 8,
        name: None,
        seed: 7,
        shuffle: true,
    };
    let r = images::create_edges_and_shoes(&base.join("in"), &out, &opts).unwrap();
    assert_eq!((r.count, r.resolution), (10, 8));
    let ds = Dataset::open(&out).unwrap();
    let order =
        hessian_gan::core::rng::permutation(10, hessian_gan::core::rng::derive_seed(7, &[0xe25]));
    let mut values = Vec::new();
    for (i, &k) in order.iter().enumerate() {
        let img = ds.level(3).unwrap().image(i);
        let want = if k >= 5 {
            10 * (k as u8 - 5)
        } else {
            100 + 10 * k as u8
        };
        assert!(img.iter().all(|&v| v == want), "entry {i} (k = {k})");
        values.push(want);
    }
    values.sort();
    assert_eq!(
        values,
        vec![0, 10, 20, 30, 40, 100, 110, 120, 130, 140],
        "every half exactly once"
    );
    // A file that is not a pair is named.
    pattern(20, 16, 1).save(train.join("z_bad.png")).unwrap();
    let e = images::create_edges_and_shoes(&base.join("in"), &base.join("ds2"), &opts).unwrap_err();
    assert!(format!("{e:#}").contains("z_bad.png is 20×16"), "{e:#}");
    assert!(
        images::create_edges_and_shoes(&base, &base.join("ds3"), &opts)
            .unwrap_err()
            .to_string()
            .contains("train/")
    );
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn info_extract_and_bench_commands() {
    let base = tmp("info");
    let ds = base.join("ds");
    let opts = hessian_gan::data::synth::SynthOptions {
        kind: hessian_gan::data::synth::Kind::ClevrSimple,
        count: 12,
        resolution: 16,
        seed: 1,
        name: None,
    };
    hessian_gan::data::synth::generate(&ds, &opts).unwrap();
    let grid = base.join("grid.png");
    let (ok, stdout, e) = cli(&[
        "dataset",
        "info",
        ds.to_str().unwrap(),
        "--grid",
        grid.to_str().unwrap(),
    ]);
    assert!(ok, "{e}");
    assert!(
        stdout.contains("images      12 × 3 channels at 16×16"),
        "{stdout}"
    );
    assert!(stdout.contains("levels      r02 r03 r04"), "{stdout}");
    assert!(
        stdout.contains("factor      shape") && stdout.contains("(3 values)"),
        "{stdout}"
    );
    let g = image::open(&grid).unwrap();
    // 8 columns × 2 rows of 16² tiles with 2-pixel padding.
    assert_eq!((g.width(), g.height()), (8 * 18 + 2, 2 * 18 + 2));
    let info = images::info(&Dataset::open(&ds).unwrap()).unwrap();
    let v = serde_json::to_value(&info).unwrap();
    assert_eq!(v["meta"]["factors"].as_array().unwrap().len(), 4);
    assert!(info
        .factors
        .iter()
        .all(|f| f.min >= f.declared_min && f.max <= f.declared_max));

    let pngs = base.join("pngs");
    let (ok, _, e) = cli(&[
        "-q",
        "dataset",
        "extract",
        ds.to_str().unwrap(),
        pngs.to_str().unwrap(),
        "--level",
        "3",
        "--max",
        "5",
    ]);
    assert!(ok, "{e}");
    let d = Dataset::open(&ds).unwrap();
    let first = image::open(pngs.join("000000.png")).unwrap().to_rgb8();
    assert_eq!(first.dimensions(), (8, 8));
    assert_eq!(images::rgb_to_chw(&first), d.level(3).unwrap().image(0));
    assert_eq!(std::fs::read_dir(&pngs).unwrap().count(), 5);

    let (ok, stdout, e) = cli(&[
        "dataset",
        "bench",
        ds.to_str().unwrap(),
        "--resolution",
        "16",
        "--batch",
        "4",
        "--batches",
        "20",
    ]);
    assert!(ok, "{e}");
    let b: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(b["images_per_s"].as_f64().unwrap() > 0.0);
    let d = std::sync::Arc::new(d);
    let e = hessian_gan::data::loader::bench(d, 1, 128, 4, 2, 2).unwrap_err();
    assert!(e.to_string().contains("not there"), "{e}");

    // A half-built directory is not a dataset.
    std::fs::remove_file(ds.join("dataset.json")).unwrap();
    let (ok, _, e) = cli(&["dataset", "info", ds.to_str().unwrap()]);
    assert!(
        !ok && e.contains("not a complete dataset") && e.trim().lines().count() == 1,
        "{e}"
    );
    std::fs::remove_dir_all(&base).unwrap();
}
