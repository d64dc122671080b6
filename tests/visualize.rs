//! `visualize` (docs/spec/progan_hp.md §4.2, §6, §7.1; issues 5 and 9): the latent grid of the traversal videos, the frame
//! layout, model references (run numbers, pretrained names through a local HTTP server), and end-to-end outputs of a
//! tiny model trained here: videos, stills, grids and the `--z` round trip.

mod common;
use common::{globals, scratch, tiny_dataset, TinyRun};

use common::http::TestServer;
use hessian_gan::checkpoint;
use hessian_gan::checkpoint::reference;
use hessian_gan::commands::visualize::{self, VisualizeOptions};
use hessian_gan::commands::Globals;
use hessian_gan::core::latents::{self, LatentConvention};
use hessian_gan::core::traversal::{self, GenerateFn};
use hessian_gan::io::imageio;
use hessian_gan::io::video::{self, VideoFormat};
use serde_json::json;
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{Kind as TKind, Tensor};

/// A results directory with one tiny run (8², nz 3), trained here for a few iterations at full resolution, with
/// snapshots named 1 and 2 kimg (after 4 and 8 iterations); built once per test binary.
fn trained_results() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = scratch("trained");
        tiny_dataset(&root);
        // lod reaches 0 after 20 images, so the snapshots load at full resolution.
        let tiny = TinyRun::new(&root).with(json!({
            "hp_lambda": 0.0, "lod_training_kimg": 0.01, "lod_transition_kimg": 0.01
        }));
        let cfg = tiny.config();
        let run_dir = root.join("results").join("00000-tiny");
        let mut t = tiny.trainer(&run_dir);
        for kimg in 1..=2 {
            for _ in 0..4 {
                t.iteration(0.0, 8, 8).unwrap();
            }
            let path = run_dir.join(format!("network-snapshot-{kimg:06}.safetensors"));
            checkpoint::save_snapshot(&path, t.models(), &cfg, t.state(), true).unwrap();
        }
        root.join("results")
    })
}

fn latest_snapshot() -> PathBuf {
    let run = checkpoint::run_dir_of(trained_results(), 0).unwrap();
    checkpoint::find_snapshot(&run, "latest").unwrap()
}

fn args(models: &[&str], out: &Path) -> VisualizeOptions {
    VisualizeOptions {
        models: models.iter().map(|s| s.to_string()).collect(),
        results_dir: trained_results().to_path_buf(),
        out: out.to_path_buf(),
        samples: 3,
        steps: 5,
        minibatch_size: 7,
        format: VideoFormat::Gif,
        ..Default::default()
    }
}

fn rgb(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// Decoded frames of a GIF.
fn gif_frames(path: &Path) -> Vec<image::RgbaImage> {
    use image::AnimationDecoder;
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    image::codecs::gif::GifDecoder::new(file)
        .unwrap()
        .into_frames()
        .map(|f| f.unwrap().into_buffer())
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// The latent grid

#[test]
fn interp_latents_follow_the_reference_order() {
    // base[b][k] = 10·b + k + 0.5, so every entry is distinct and far from the sweep values.
    let base = Tensor::arange(15, (TKind::Float, tch::Device::Cpu)).reshape([3, 5]) * 1.0
        + Tensor::from_slice(&[0.0f32, 5.0, 10.0]).reshape([3, 1]) * 1.0
        + 0.5;
    let (steps, extent) = (7i64, 2.0);
    let values = traversal::sweep_values(steps, extent);
    assert_eq!(values.len(), 7);
    assert_eq!(values[0], -2.0, "first endpoint included");
    assert_eq!(values[6], 2.0, "last endpoint included");
    assert!((values[3]).abs() < 1e-15);
    let z = traversal::interp_latents(&base, 1..4, steps, extent);
    assert_eq!(z.size(), vec![3 * 3 * 7, 5]);
    // Component-major, then column (base row), then step; only the swept component differs from the base row.
    for (ci, c) in (1..4).enumerate() {
        for b in 0..3 {
            for (s, value) in values.iter().enumerate() {
                let row = ((ci * 3 + b) * 7 + s) as i64;
                for k in 0..5 {
                    let got = z.double_value(&[row, k]);
                    let want = if k == c {
                        *value as f32 as f64
                    } else {
                        base.double_value(&[b as i64, k])
                    };
                    assert_eq!(got, want, "component {c}, column {b}, step {s}, entry {k}");
                }
            }
        }
    }
    // The frame-major order used for rendering is a permutation of the same latents.
    let fm = traversal::block_latents(&base, 1..4, &values);
    let back = fm
        .reshape([7, 3, 3, 5])
        .permute([1, 2, 0, 3])
        .reshape([-1, 5]);
    assert!(back.equal(&z));
}

#[test]
fn loop_order_and_still_frames() {
    assert_eq!(
        traversal::frame_steps(4, true),
        vec![0, 1, 2, 3, 3, 2, 1, 0]
    );
    // Without the loop the video plays forward (the reference's non-looped videos played backwards, docs/spec/progan_hp.md §13.11).
    assert_eq!(traversal::frame_steps(4, false), vec![0, 1, 2, 3]);
    // round(linspace(0, 89, 5)) = round(0, 22.25, 44.5, 66.75, 89) with halves to even.
    assert_eq!(traversal::still_steps(90, 5), vec![0, 22, 44, 67, 89]);
    assert_eq!(traversal::still_steps(90, 1), vec![0]);
    assert_eq!(traversal::still_steps(3, 3), vec![0, 1, 2]);
    assert_eq!(
        visualize::component_blocks(12, 12),
        vec![(0, 12)],
        "default: one video of 12 rows"
    );
    assert_eq!(
        visualize::component_blocks(10, 4),
        vec![(0, 4), (4, 8), (8, 10)]
    );
    assert_eq!(visualize::component_blocks(3, 12), vec![(0, 3)]);
    assert_eq!(
        visualize::video_name(0, 12, VideoFormat::Mp4),
        "z000_to_z012.mp4"
    );
    assert_eq!(video::gif_delay_cs(60), 2);
    assert_eq!(video::gif_delay_cs(24), 4);
}

/// A fake generator whose 1-pixel-high image shows z: pixel k of the output = z[k] / 4 (grey), so a frame can be
/// read back into the latents that made each tile.
fn encode_z(z: &Tensor) -> anyhow::Result<Tensor> {
    let n = z.size()[0];
    let nz = z.size()[1];
    Ok((z / 4.0).reshape([n, 1, 1, nz]))
}

/// The latent that `encode_z` shows in the tile at pixel (x0, y0), width nz.
fn decode_tile(img: &image::RgbImage, x0: u32, y0: u32, nz: u32) -> Vec<f64> {
    (0..nz)
        .map(|k| (img.get_pixel(x0 + k, y0).0[0] as f64 / 127.5 - 1.0) * 4.0)
        .collect()
}

#[test]
fn frames_put_components_on_rows_and_base_latents_on_columns() {
    let nz = 4i64;
    let base = latents::seeded_normal(3, 2, nz).unwrap() * 0.5;
    let values = traversal::sweep_values(5, 2.0);
    let render = |minibatch: i64, transpose: bool| -> Vec<image::RgbImage> {
        let mut frames = Vec::new();
        let mut g = encode_z;
        let mut gens: Vec<&mut GenerateFn> = vec![&mut g];
        traversal::render_sweep(
            &mut gens,
            &base,
            1..4,
            &values,
            minibatch,
            &mut |i, tiles| {
                assert_eq!(i, frames.len(), "frames arrive in order");
                assert_eq!(tiles[0].size(), vec![3, 2, 1, 1, nz]);
                frames.push(traversal::compose_frame(&tiles[0], transpose, 2, 1)?);
                Ok(())
            },
        )
        .unwrap();
        frames
    };
    // Batches of 5 latents cut across frames of 6 latents; the frames must not depend on it.
    let frames = render(5, false);
    assert_eq!(frames, render(1000, false));
    assert_eq!(frames.len(), 5);
    let tol = 4.0 / 127.5; // one grey level
    for (s, frame) in frames.iter().enumerate() {
        // 3 rows (components 1, 2, 3) × 2 columns (base rows), 2 px between columns, 1 px between rows.
        assert_eq!(frame.dimensions(), (2 * 4 + 2, 3 + 2));
        for (r, comp) in (1..4).enumerate() {
            for b in 0..2 {
                let z = decode_tile(frame, b as u32 * (4 + 2), r as u32 * 2, nz as u32);
                for (k, got) in z.iter().enumerate() {
                    let want = if k == comp {
                        values[s]
                    } else {
                        base.double_value(&[b, k as i64])
                    };
                    assert!(
                        (got - want).abs() <= tol,
                        "frame {s}, row {r}, column {b}, entry {k}: {got} vs {want}"
                    );
                }
            }
        }
        // Padding is black.
        assert_eq!(frame.get_pixel(4, 0).0, [0, 0, 0]);
    }
    // Transposed: rows are base latents, columns components.
    let t = render(7, true);
    assert_eq!(t[4].dimensions(), (3 * 4 + 2 * 2, 2 + 1));
    let z = decode_tile(&t[4], 2 * (4 + 2), 2, nz as u32); // row 1 = base row 1, column 2 = component 3
    assert!((z[3] - 2.0).abs() <= tol);
    assert!((z[0] - base.double_value(&[1, 0])).abs() <= tol);
}

// ---------------------------------------------------------------------------------------------------------------
// Model references

#[test]
fn snapshot_kimgs_one_for_all_or_one_per_model() {
    let one = vec!["latest".to_string()];
    assert_eq!(reference::snapshot_kimg_for(&one, 2, 3).unwrap(), "latest");
    let per = vec!["1".to_string(), "latest".to_string()];
    assert_eq!(reference::snapshot_kimg_for(&per, 0, 2).unwrap(), "1");
    assert_eq!(reference::snapshot_kimg_for(&per, 1, 2).unwrap(), "latest");
    let err = reference::snapshot_kimg_for(&per, 0, 3)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 values for 3 models"), "{err}");
    let bad = vec!["newest".to_string()];
    assert!(reference::snapshot_kimg_for(&bad, 0, 1)
        .unwrap_err()
        .to_string()
        .contains("'newest'"));

    // Run number + kimg, run directory, snapshot file.
    let g = globals();
    let r = g.resolver(trained_results());
    let by_number = r
        .resolve_all(&["0".into(), "0".into()], &["1".into(), "latest".into()])
        .unwrap();
    assert!(by_number[0]
        .path
        .ends_with("network-snapshot-000001.safetensors"));
    assert_eq!(by_number[1].path, latest_snapshot());
    let run_dir = checkpoint::run_dir_of(trained_results(), 0).unwrap();
    let run_name = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        by_number[1].visuals_subdir,
        Path::new(&run_name).join("000002")
    );
    assert_eq!(
        r.resolve(run_dir.to_str().unwrap(), "latest").unwrap().path,
        latest_snapshot()
    );
    let err = r
        .resolve("clevr_simple_xx", "latest")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("clevr_simple_ft") && err.contains("edges_and_shoes_bl"),
        "{err}"
    );
}

#[test]
fn pretrained_names_download_once_and_convert_once() {
    let root = scratch("pretrained");
    let server = TestServer::start();
    let pkl_bytes = b"stand-in for the reference's pickle".to_vec();
    let remote = "pretrained_models/clevr_simple/simple_ft.pkl";
    server.add_file(remote, pkl_bytes.clone());
    let g = Globals {
        base_url: Some(server.base()),
        ..globals()
    };
    let conversions = Cell::new(0);
    // The fake converter checks it got the downloaded file, then "converts" it into a real snapshot.
    let convert = |pkl: &Path, out: &Path| -> anyhow::Result<()> {
        assert_eq!(std::fs::read(pkl).unwrap(), pkl_bytes);
        assert_eq!(pkl.file_name().unwrap(), "clevr_simple_ft.pkl");
        conversions.set(conversions.get() + 1);
        std::fs::copy(latest_snapshot(), out)?;
        Ok(())
    };
    let dir = root.join("pretrained_models");
    let path = reference::pretrained_path("clevr_simple_ft", &dir, g.base_url.as_deref(), convert)
        .unwrap();
    assert_eq!(path, dir.join("clevr_simple_ft.safetensors"));
    assert!(
        dir.join("clevr_simple_ft.pkl").is_file(),
        "the download is kept"
    );
    let again = reference::pretrained_path("clevr_simple_ft", &dir, g.base_url.as_deref(), convert)
        .unwrap();
    assert_eq!(again, path);
    assert_eq!(server.log_for(remote).len(), 1, "downloaded once");
    assert_eq!(conversions.get(), 1, "converted once");
    // A failed conversion leaves no snapshot behind, and the kept .pkl is not downloaded again.
    server.add_file("pretrained_models/clevr_u/underparam_bl.pkl", b"x".to_vec());
    let failing = |_: &Path, out: &Path| -> anyhow::Result<()> {
        std::fs::write(out, b"half")?;
        anyhow::bail!("not a pickle")
    };
    let err =
        reference::pretrained_path("clevr_u_bl", &dir, g.base_url.as_deref(), failing).unwrap_err();
    assert!(format!("{err:#}").contains("not a pickle"), "{err:#}");
    assert!(!dir.join("clevr_u_bl.safetensors").exists());
    // Unknown names list the valid ones without touching the network.
    let err = reference::pretrained_path("clevr_simple_hp", &dir, g.base_url.as_deref(), convert)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("clevr_u_info") && err.contains("clevr_simple_hp"),
        "{err}"
    );

    // Through visualize: the pretrained model's outputs go to visuals/pretrained_models/<name>/seed_0/.
    let mut resolver = g.resolver(root.join("results"));
    resolver.pretrained_dir = dir.clone();
    resolver.convert = Box::new(|_: &Path, _: &Path| anyhow::bail!("must not convert again"));
    let out = root.join("visuals");
    let a = VisualizeOptions {
        grid: true,
        grid_count: 4,
        ..args(&["clevr_simple_ft"], &out)
    };
    let sets = visualize::run_with(&g, &resolver, &a).unwrap();
    let want = out.join("pretrained_models/clevr_simple_ft/seed_0/grid");
    assert_eq!(sets[0].dir, want);
    assert_eq!(rgb(&want.join("grid.png")).dimensions(), (4 * 8, 8));
    assert_eq!(server.log_for(remote).len(), 1);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn pretrained_name_imports_the_reference_pickle_and_renders_its_images() {
    // The fixture pickle has the reference's structure (tests/fixtures/make_pkl_fixture.py) and comes with the images
    // its G gives for fixed latents, computed independently in NumPy (G normalises the raw z, as in training).
    let root = scratch("pretrained_import");
    let server = TestServer::start();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let remote = "pretrained_models/clevr_1fov/1fov_info.pkl";
    server.add_file(
        remote,
        std::fs::read(fixtures.join("tiny_progan.pkl")).unwrap(),
    );
    let g = Globals {
        base_url: Some(server.base()),
        ..globals()
    };
    let mut resolver = g.resolver(root.join("results"));
    resolver.pretrained_dir = root.join("pretrained_models");
    let out = root.join("visuals");
    let a = VisualizeOptions {
        z: Some(fixtures.join("tiny_progan/latents.npy")),
        raw: true,
        interpolate_pre_norm: true,
        ..args(&["clevr_1fov_info"], &out)
    };
    let sets = visualize::run_with(&g, &resolver, &a).unwrap();
    let snapshot = resolver.pretrained_dir.join("clevr_1fov_info.safetensors");
    let loaded = checkpoint::load_snapshot(&snapshot).unwrap();
    assert_eq!(
        loaded.config.dataset, "clevr_1fov",
        "the dataset comes from the name"
    );
    let got = Tensor::read_npy(sets[0].dir.join("images.npy")).unwrap();
    let want = Tensor::read_npy(fixtures.join("tiny_progan/images_lod0.npy"))
        .unwrap()
        .to_kind(TKind::Float);
    assert_eq!(got.size(), want.size());
    let err = (got - &want).abs().max().double_value(&[]);
    assert!(err < 1e-4, "max |difference| {err}");
    assert_eq!(server.log_for(remote).len(), 1);
    std::fs::remove_dir_all(&root).unwrap();
}

// ---------------------------------------------------------------------------------------------------------------
// End to end on a trained snapshot

#[test]
fn videos_and_stills_of_a_trained_snapshot() {
    let out = scratch("videos");
    let a = VisualizeOptions {
        nz_per_vid: 2,
        n_frames_to_save: 3,
        ..args(&["0"], &out)
    };
    let sets = visualize::run_with(&globals(), &globals().resolver(trained_results()), &a).unwrap();
    assert_eq!(sets.len(), 1);
    let dir = &sets[0].dir;
    let run_name = checkpoint::run_dir_of(trained_results(), 0)
        .unwrap()
        .file_name()
        .unwrap()
        .to_owned();
    assert_eq!(dir, &out.join(run_name).join("000002").join("seed_0"));
    // nz 3 in blocks of 2: z000_to_z002 (2 rows) and z002_to_z003 (1 row); 3 columns of 8² images; 5 steps looped.
    let v1 = gif_frames(&dir.join("z000_to_z002.gif"));
    let v2 = gif_frames(&dir.join("z002_to_z003.gif"));
    assert_eq!(v1.len(), 10);
    assert_eq!(v1[0].dimensions(), (3 * 8, 2 * 8));
    assert_eq!(v2[0].dimensions(), (3 * 8, 8));
    // Looped: frame i and frame 9 − i show the same step.
    for i in 0..5 {
        assert_eq!(v1[i], v1[9 - i], "frame {i}");
    }
    assert_ne!(v1[0], v1[4], "the sweep changes the images");
    // The base latents are NumPy's randn(3, 3) for seed 0, written raw.
    let z = latents::read_z(&dir.join("z.npy")).unwrap();
    assert!(z.equal(&latents::seeded_normal(0, 3, 3).unwrap()));
    // Stills: per component a strip of 3 rows (base latents) × 3 frames (steps 0, 2, 4), 2 px padding.
    for c in 0..3 {
        let strip = rgb(&dir.join(format!("flattened_frames/z{c:03}.png")));
        assert_eq!(strip.dimensions(), (3 * 8 + 4 * 2, 3 * 8 + 4 * 2));
    }
    // The stills and the video show the same images: for every component of the first video and every base z, the
    // still at step 0 (−extent) matches the tile of the first frame and the still at step 4 (+extent) the tile of
    // frame 4, each far better than the other endpoint does (the GIF palette costs a few grey levels).
    let tile_diff =
        |strip: &image::RgbImage, b: u32, col: u32, frame: &image::RgbaImage, row: u32| {
            let mut d = 0.0;
            for y in 0..8 {
                for x in 0..8 {
                    let p = strip.get_pixel(2 + col * 10 + x, 2 + b * 10 + y).0;
                    let q = frame.get_pixel(b * 8 + x, row * 8 + y).0;
                    for ch in 0..3 {
                        d += (p[ch] as f64 - q[ch] as f64).abs();
                    }
                }
            }
            d / 192.0
        };
    for c in 0..2u32 {
        let strip = rgb(&dir.join(format!("flattened_frames/z{c:03}.png")));
        for b in 0..3 {
            let start = tile_diff(&strip, b, 0, &v1[0], c);
            let end = tile_diff(&strip, b, 2, &v1[4], c);
            assert!(
                start < 16.0 && end < 16.0,
                "component {c}, column {b}: {start}, {end}"
            );
            assert!(tile_diff(&strip, b, 2, &v1[0], c) > 1.5 * start);
            assert!(tile_diff(&strip, b, 0, &v1[4], c) > 1.5 * end);
        }
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("visualize.json")).unwrap()).unwrap();
    assert_eq!(meta["convention"], "post-norm");
    assert_eq!(meta["video"]["stills_at"], json!([0, 2, 4]));

    // Rendering the reversed half again (no frame cache) gives the same file; --no-loop plays forward only.
    let b = VisualizeOptions {
        loop_cache_mib: 0,
        ..a.clone()
    };
    let out_b = scratch("videos-b");
    let sets_b = visualize::run_with(
        &globals(),
        &globals().resolver(trained_results()),
        &VisualizeOptions {
            out: out_b.clone(),
            ..b
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::read(dir.join("z000_to_z002.gif")).unwrap(),
        std::fs::read(sets_b[0].dir.join("z000_to_z002.gif")).unwrap()
    );
    let c = VisualizeOptions {
        no_loop: true,
        n_frames_to_save: 0,
        transpose: true,
        out: scratch("videos-c"),
        ..a.clone()
    };
    let sets_c =
        visualize::run_with(&globals(), &globals().resolver(trained_results()), &c).unwrap();
    let fwd = gif_frames(&sets_c[0].dir.join("z000_to_z002.gif"));
    assert_eq!(fwd.len(), 5);
    assert_eq!(fwd[0].dimensions(), (2 * 8, 3 * 8), "transposed");
    assert!(!sets_c[0].dir.join("flattened_frames").exists());
    for d in [out, out_b, c.out] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn stills_only_side_by_side_and_mp4() {
    let out = scratch("stills");
    let snap1 =
        checkpoint::find_snapshot(&checkpoint::run_dir_of(trained_results(), 0).unwrap(), "1")
            .unwrap();
    let latest = latest_snapshot();
    let a = VisualizeOptions {
        stills_only: true,
        n_frames_to_save: 2,
        side_by_side: true,
        ..args(&[snap1.to_str().unwrap(), latest.to_str().unwrap()], &out)
    };
    let sets = visualize::run_with(&globals(), &globals().resolver(trained_results()), &a).unwrap();
    assert_eq!(sets.len(), 1);
    assert!(sets[0].dir.starts_with(out.join("side_by_side")));
    let strip = rgb(&sets[0].dir.join("flattened_frames/z000.png"));
    let one = 2 * 8 + 3 * 2;
    assert_eq!(strip.dimensions(), (2 * one + 8, 3 * 8 + 4 * 2));
    assert!(!sets[0]
        .files
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "gif")));

    // --stills-only without frames is refused.
    let err = visualize::run_with(
        &globals(),
        &globals().resolver(trained_results()),
        &VisualizeOptions {
            n_frames_to_save: 0,
            ..a.clone()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--n-frames-to-save"), "{err}");

    // MP4 through ffmpeg when it is installed: 2 columns of 8 px + 1 px padding = 17 wide, padded to an even 18
    // for yuv420p; 3 rows of 8 = 24 high.
    match video::find_ffmpeg() {
        None => eprintln!("ffmpeg not on PATH: MP4 output not exercised"),
        Some(ffmpeg) => {
            let m = VisualizeOptions {
                format: VideoFormat::Mp4,
                stills_only: false,
                n_frames_to_save: 0,
                side_by_side: false,
                pad_x: 1,
                samples: 2,
                out: out.join("mp4"),
                ..args(&[latest.to_str().unwrap()], &out)
            };
            let sets = visualize::run_with(&globals(), &globals().resolver(trained_results()), &m)
                .unwrap();
            let mp4 = sets[0].dir.join("z000_to_z003.mp4");
            let png = out.join("frame0.png");
            let st = std::process::Command::new(ffmpeg)
                .args(["-v", "error", "-y", "-i"])
                .arg(&mp4)
                .args(["-frames:v", "1"])
                .arg(&png)
                .status()
                .unwrap();
            assert!(st.success());
            assert_eq!(rgb(&png).dimensions(), (18, 24));
            let probe = std::process::Command::new("ffprobe")
                .args(["-v", "error", "-count_frames", "-show_entries"])
                .args([
                    "stream=codec_name,pix_fmt,nb_read_frames,r_frame_rate",
                    "-of",
                    "csv=p=0",
                ])
                .arg(&mp4)
                .output();
            if let Ok(p) = probe {
                let text = String::from_utf8_lossy(&p.stdout).to_string();
                assert_eq!(text.trim(), "h264,yuv420p,60/1,10", "{text}");
            }
        }
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn grid_round_trip_through_z_npy_gives_identical_pixels() {
    let out = scratch("roundtrip");
    let latest = latest_snapshot();
    let g = globals();
    let resolver = g.resolver(trained_results());
    for pre_norm in [false, true] {
        let a = VisualizeOptions {
            grid: true,
            grid_count: 10,
            grid_cols: 4,
            raw: true,
            seeds: Some(vec![11]),
            interpolate_pre_norm: pre_norm,
            out: out.join(format!("pre{pre_norm}")),
            ..args(&[latest.to_str().unwrap()], &out)
        };
        let sets = visualize::run_with(&g, &resolver, &a).unwrap();
        let gdir = &sets[0].dir;
        assert!(gdir.ends_with("seed_11/grid"));
        let grid = rgb(&gdir.join("grid.png"));
        assert_eq!(grid.dimensions(), (4 * 8, 3 * 8), "10 images in 4 columns");
        let z = latents::read_z(&gdir.join("z.npy")).unwrap();
        assert!(z.equal(&latents::seeded_normal(11, 10, 3).unwrap()));

        let b = VisualizeOptions {
            grid: false,
            z: Some(gdir.join("z.npy")),
            ..a.clone()
        };
        let sets = visualize::run_with(&g, &resolver, &b).unwrap();
        let zdir = &sets[0].dir;
        assert!(zdir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("z_z_"));
        assert_eq!(rgb(&zdir.join("grid.png")), grid, "identical pixels");
        let raw_a = Tensor::read_npy(gdir.join("images.npy")).unwrap();
        let raw_b = Tensor::read_npy(zdir.join("images.npy")).unwrap();
        assert_eq!(raw_a.size(), vec![10, 3, 8, 8]);
        assert_eq!(raw_a.kind(), TKind::Float);
        assert!(raw_a.equal(&raw_b));
        // The raw images are G's output for these latents under the convention, unquantised.
        let g = reference::load_gs(&latest, tch::Device::Cpu).unwrap();
        let conv = LatentConvention::from_pre_norm(pre_norm);
        let direct = tch::no_grad(|| g.g.forward(&conv.prepare(&z), g.lod, conv.g_normalizes()));
        assert!(
            (&direct - &raw_a).abs().max().double_value(&[]) < 1e-5,
            "raw images differ from G"
        );
        let q = imageio::float_to_u8(&raw_a);
        assert!(
            (raw_a - (q.to_kind(TKind::Float) / 127.5 - 1.0))
                .abs()
                .max()
                .double_value(&[])
                > 0.0,
            "not quantised"
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn mismatched_latent_width_is_a_clear_error() {
    let out = scratch("width");
    let bad = out.join("wide.npy");
    Tensor::zeros([4, 5], (TKind::Float, tch::Device::Cpu))
        .write_npy(&bad)
        .unwrap();
    let latest = latest_snapshot();
    let a = VisualizeOptions {
        z: Some(bad.clone()),
        ..args(&[latest.to_str().unwrap()], &out)
    };
    let err = visualize::run_with(&globals(), &globals().resolver(trained_results()), &a)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("width 5") && err.contains("nz = 3") && err.contains("wide.npy"),
        "{err}"
    );
    assert!(!err.contains('\n'));
    // Integer arrays and 1-d arrays are refused too.
    let ints = out.join("ints.npy");
    Tensor::zeros([4, 3], (TKind::Int64, tch::Device::Cpu))
        .write_npy(&ints)
        .unwrap();
    let err = latents::read_z(&ints).unwrap_err().to_string();
    assert!(err.contains("float32"), "{err}");
    let flat = out.join("flat.npy");
    Tensor::zeros([3], (TKind::Float, tch::Device::Cpu))
        .write_npy(&flat)
        .unwrap();
    let err = latents::read_z(&flat).unwrap_err().to_string();
    assert!(err.contains("[N, nz]"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}
