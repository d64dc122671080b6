//! The BigGAN generator (docs/spec/progan_hp.md §11) and the PyTorch state-dict reader under it, against
//! tests/fixtures/make_biggan_fixture.py: a tiny BigGAN (ch 4, 128², attention at 64) written independently in
//! PyTorch, saved in both `torch.save` formats, with its images for fixed z and classes; plus files the reader must
//! refuse without executing anything.
//!
//! Runs the venv's Python once per version of the script (the files are kept under target/).

mod common;

use hessian_gan::core::networks::biggan::{BigGan, BigGanConfig};
use hessian_gan::data::npy::read_f32;
use hessian_gan::io::torch_load::load_state_dict;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The file the malicious pickles would create if they ran.
fn marker() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("biggan-fixture-pickle-executed")
}

/// The fixture directory, made once per script version.
fn fixtures() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_biggan_fixture.py");
        let hash = hessian_gan::io::download::sha256_file(&script).unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("biggan-{}", &hash[..12]));
        if dir.join("info.json").is_file() {
            return dir;
        }
        let python = common::venv_python().expect(
            "no Python venv with torch: run `bash scripts/setup.sh` (the README's test command does)",
        );
        let tmp = dir.with_extension(format!("partial-{}", std::process::id()));
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg(&tmp)
            .arg(marker())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Another test process may have finished first; either copy is complete.
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        dir
    })
}

fn npy(path: &Path) -> Tensor {
    let (shape, values) = read_f32(path).unwrap();
    let shape: Vec<i64> = shape.iter().map(|&s| s as i64).collect();
    Tensor::from_slice(&values).reshape(shape.as_slice())
}

fn info() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("info.json")).unwrap()).unwrap()
}

fn tiny_config() -> BigGanConfig {
    BigGanConfig {
        ch: 4,
        n_classes: 10,
        ..BigGanConfig::biggan128()
    }
}

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn forward_matches_pytorch_for_zip_and_legacy_files() {
    let dir = fixtures();
    let z = npy(&dir.join("z.npy"));
    let classes = npy(&dir.join("classes.npy")).to_kind(Kind::Int64);
    let want = npy(&dir.join("images.npy"));
    let cfg = tiny_config();
    assert_eq!(
        serde_json::to_value(&cfg).unwrap(),
        info()["config"],
        "the fixture's settings"
    );
    assert_eq!((cfg.z_chunks(), cfg.chunk_size()), (6, 20));
    for file in ["biggan_zip.pth", "biggan_legacy.pth"] {
        let path = dir.join(file);
        let g = BigGan::load_inferring(&path, Device::Cpu).unwrap();
        assert_eq!(g.config(), &cfg, "{file}: inferred settings");
        let got = g.forward(&z, &classes);
        assert_eq!(got.size(), [3, 3, 128, 128]);
        let err = (&got - &want).abs().max().double_value(&[]);
        let rel = err / want.abs().max().double_value(&[]);
        eprintln!("{file}: max |ours − PyTorch| = {err:.3e}, relative {rel:.3e}");
        assert!(rel < 1e-4, "{file}: relative error {rel:e}");
        // Frozen and deterministic: no grad without a grad-requiring z, the same images twice.
        assert!(!got.requires_grad(), "{file}: a weight requires grad");
        assert!(
            got.equal(&g.forward(&z, &classes)),
            "{file}: not deterministic"
        );
        // Differentiable w.r.t. z.
        let zg = z.copy().set_requires_grad(true);
        g.forward(&zg, &classes)
            .square()
            .sum(Kind::Float)
            .backward();
        let grad = zg.grad();
        assert!(grad.defined() && grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        // The explicit configuration loads the same weights.
        let h = BigGan::load(&path, &cfg, Device::Cpu).unwrap();
        assert!(h.forward(&z, &classes).equal(&got));
    }
}

#[test]
fn state_dict_reader_handles_element_types_views_and_parameters() {
    let dir = fixtures();
    let kinds = info()["kinds"].clone();
    for file in ["kinds_zip.pth", "kinds_legacy.pth"] {
        let sd = load_state_dict(&dir.join(file)).unwrap();
        let names: Vec<&str> = sd.iter().map(|(n, _)| n.as_str()).collect();
        let want: Vec<String> = serde_json::from_value(info()["kind_names"].clone()).unwrap();
        assert_eq!(
            names, want,
            "{file}: names in file order, without _metadata"
        );
        for (name, t) in &sd {
            let shape: Vec<i64> = serde_json::from_value(kinds[name]["shape"].clone()).unwrap();
            let values: Vec<f64> = serde_json::from_value(kinds[name]["values"].clone()).unwrap();
            assert_eq!(t.size(), shape, "{file}: {name}");
            let expect_kind = if matches!(name.as_str(), "int64" | "bool") {
                Kind::Int64
            } else {
                Kind::Float
            };
            assert_eq!(t.kind(), expect_kind, "{file}: {name}");
            assert!(!t.requires_grad() && t.is_contiguous(), "{file}: {name}");
            let got: Vec<f64> = Vec::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
            assert_eq!(got, values, "{file}: {name}");
        }
    }
}

/// A pickle that calls `os.system("touch <marker>")`.
fn os_system_pickle() -> Vec<u8> {
    let cmd = format!("touch {}", marker().display());
    let mut p = b"\x80\x02cos\nsystem\nX".to_vec();
    p.extend((cmd.len() as u32).to_le_bytes());
    p.extend(cmd.as_bytes());
    p.extend(b"\x85R.");
    p
}

#[test]
fn code_in_a_checkpoint_is_refused_by_name_and_never_runs() {
    let scratch = common::scratch("refusals");
    // Hand-made: os.system in a zip archive and in the legacy format.
    let zip_path = scratch.join("os_system_zip.pth");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    zip.start_file("archive/data.pkl", zip::write::FileOptions::default())
        .unwrap();
    zip.write_all(&os_system_pickle()).unwrap();
    zip.finish().unwrap();
    let mut legacy = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    legacy.extend(b"\x80\x02M\xe9\x03.\x80\x02}.");
    legacy.extend(os_system_pickle());
    let legacy_path = scratch.join("os_system_legacy.pth");
    std::fs::write(&legacy_path, legacy).unwrap();
    // Made by torch.save of an object whose __reduce__ is os.system (pickled as posix.system).
    let dir = fixtures();
    for (path, global) in [
        (zip_path, "os.system"),
        (legacy_path, "os.system"),
        (dir.join("evil_zip.pth"), "posix.system"),
        (dir.join("evil_legacy.pth"), "posix.system"),
    ] {
        for err in [
            err_of(load_state_dict(&path)),
            err_of(BigGan::load_inferring(&path, Device::Cpu)),
        ] {
            assert!(err.contains(global) && err.contains("refused"), "{err}");
            assert!(
                err.contains(&*path.to_string_lossy()),
                "names the file: {err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
    // A whole pickled module is refused by its class, with the way out.
    let err = err_of(load_state_dict(&dir.join("whole_model.pth")));
    assert!(
        err.contains("torch.nn.modules.linear.Linear") && err.contains("model.state_dict()"),
        "{err}"
    );
    assert!(!marker().exists(), "a pickle ran a command");
}

#[test]
fn key_mismatches_are_named_together() {
    let path = fixtures().join("bad_keys.pth");
    let err = err_of(BigGan::load_inferring(&path, Device::Cpu));
    for part in [
        "bad_keys.pth",
        "1 missing (blocks.2.0.conv1.bias)",
        "1 unexpected (extra.weight)",
        "blocks.1.0.conv2.weight is [32, 32, 1, 1]",
        "expected [32, 32, 3, 3]",
    ] {
        assert!(err.contains(part), "{part:?} not in: {err}");
    }
    assert!(!err.contains('\n'), "one line: {err}");
    // The real settings against the tiny file: every tensor of another shape, the lists truncated.
    let err = err_of(BigGan::load(
        &fixtures().join("biggan_zip.pth"),
        &BigGanConfig::biggan128(),
        Device::Cpu,
    ));
    assert!(err.contains("ch 96") && err.contains("more"), "{err}");
    assert!(err.len() < 2000, "{} characters: {err}", err.len());
}

#[test]
fn truncated_and_foreign_files_give_clear_errors() {
    let dir = fixtures();
    let scratch = common::scratch("truncated");
    for file in ["biggan_zip.pth", "biggan_legacy.pth"] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        // Inside the pickle, inside the storages, just before the end.
        for cut in [700, bytes.len() / 2, bytes.len() - 3] {
            let path = scratch.join(format!("cut-{cut}-{file}"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = err_of(load_state_dict(&path));
            assert!(
                err.contains("truncated") && err.contains("re-download"),
                "{file} cut at {cut}: {err}"
            );
        }
    }
    // A zip archive whose central directory is intact but one storage is short.
    let mut src =
        zip::ZipArchive::new(std::fs::File::open(dir.join("biggan_zip.pth")).unwrap()).unwrap();
    let short = scratch.join("short_storage.pth");
    let mut out = zip::ZipWriter::new(std::fs::File::create(&short).unwrap());
    for i in 0..src.len() {
        let mut entry = src.by_index(i).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if entry.name().ends_with("/data/3") {
            bytes.truncate(bytes.len() - 4);
        }
        let stored =
            zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
        out.start_file(entry.name(), stored).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap();
    let err = err_of(load_state_dict(&short));
    assert!(
        err.contains("storage '3'") && err.contains("truncated"),
        "{err}"
    );
    let err = err_of(load_state_dict(&dir.join("list.pth")));
    assert!(
        err.contains("not a state dict") && err.contains("model.state_dict()"),
        "{err}"
    );
    let junk = scratch.join("junk.pth");
    std::fs::write(&junk, b"hello, not a checkpoint").unwrap();
    let err = err_of(load_state_dict(&junk));
    assert!(err.contains("not a PyTorch checkpoint"), "{err}");
    let err = err_of(load_state_dict(&scratch.join("absent.pth")));
    assert!(err.contains("absent.pth"), "{err}");
}

#[test]
fn discovery_and_direction_videos_run_on_biggan() {
    use hessian_gan::checkpoint::frozen::ClassChoice;
    use hessian_gan::commands::discover::{self, DiscoverOptions};
    use hessian_gan::commands::visualize::{self, VisualizeOptions};
    use hessian_gan::commands::Globals;
    use hessian_gan::core::discover::{orthonormality_error, SearchSpace};
    use hessian_gan::io::video::VideoFormat;
    let _lock = common::lock();
    let dir = common::scratch("biggan-discover");
    let model = fixtures().join("biggan_zip.pth");
    let globals = Globals {
        seed: Some(2),
        ..Globals::default()
    };
    let opts = DiscoverOptions {
        model: model.display().to_string(),
        out: dir.join("runs"),
        ndirs: Some(4),
        search_space: SearchSpace::Mid,
        class: ClassChoice::Random,
        iters: 2,
        batch: 2,
        save_every: 1,
        skip_compare: true,
        ..DiscoverOptions::default()
    };
    let report = discover::run(&globals, &opts).unwrap();
    assert!(report.final_penalty.is_finite() && report.final_penalty > 0.0);
    let a = Tensor::read_npy(report.run_dir.join("A_000002.npy")).unwrap();
    assert_eq!(a.size(), vec![4, 40], "mid: 40 components of BigGAN's z");
    assert!(orthonormality_error(&a) < 1e-6);
    let full = Tensor::read_npy(&report.directions).unwrap();
    assert_eq!(full.size(), vec![4, 120]);
    assert_eq!(full.narrow(1, 0, 40).abs().max().double_value(&[]), 0.0);
    // A class the model does not have is refused, naming the flag.
    let err = discover::run(
        &globals,
        &DiscoverOptions {
            class: ClassChoice::Fixed(10),
            ..opts
        },
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("--class 10"), "{err:#}");

    let sets = visualize::run(
        &globals,
        &VisualizeOptions {
            models: vec![model.display().to_string()],
            out: dir.join("vis"),
            samples: 2,
            steps: 2,
            format: VideoFormat::Gif,
            // The sub-space's own A (40 columns): its .json places it in z's 120 components.
            directions: Some(report.run_dir.join("A_000002.npy").display().to_string()),
            class: Some(ClassChoice::Fixed(3)),
            ..VisualizeOptions::default()
        },
    )
    .unwrap();
    assert!(sets[0].dir.join("d000_to_d004.gif").is_file());
    let still = image::open(sets[0].dir.join("directions.png")).unwrap();
    assert_eq!(still.height(), 4 * 128 + 5 * 2, "a row per direction");
}
