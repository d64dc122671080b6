//! Import of the reference's TF checkpoints (docs/spec/progan_hp.md §1.2, §1.7, §15.8) against the fixtures written by
//! `tests/fixtures/make_pkl_fixture.py`: pickles shaped like the reference's `network-snapshot-*.pkl`, and the
//! outputs of the reference's forward passes computed from the same TF-layout weights by an independent NumPy
//! transcription of the TF graph (fused up/down convolutions built as TF builds them).

mod common;

use hessian_gan::checkpoint::import::{
    hp_lambda_of, import_pkl, import_pkl_with, read_reference_pkl, ImportOptions, ImportReport,
};
use hessian_gan::checkpoint::load_snapshot;
use hessian_gan::checkpoint::reference::load_gs;
use hessian_gan::core::networks::{param_count, Discriminator, Generator};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
/// The file the malicious fixture's payload (and the fixtures' embedded build source) would create if executed.
const MARKER: &str = "/tmp/hessian-gan-malicious-pickle-ran";

fn fixture(rel: &str) -> PathBuf {
    Path::new(FIXTURES).join(rel)
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hg-import-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A little-endian float32, C-order `.npy` file (format 1.0 / 2.0).
fn read_npy(path: &Path) -> Tensor {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..6], b"\x93NUMPY", "{}", path.display());
    let (hlen, start) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&b[start..start + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let dims = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<i64> = dims
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let values: Vec<f32> = b[start + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Tensor::from_slice(&values).reshape(shape.as_slice())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a - b).abs().max().double_value(&[])
}

fn assert_marker_absent() {
    assert!(
        !Path::new(MARKER).exists(),
        "{MARKER} exists: something executed a payload from a pickle"
    );
}

fn import(pkl: &Path, dir: &Path) -> (ImportReport, PathBuf) {
    let out = dir.join("imported.safetensors");
    let report = import_pkl(pkl, &out, Device::Cpu)
        .unwrap_or_else(|e| panic!("import of {} failed: {e:#}", pkl.display()));
    (report, out)
}

#[test]
fn imported_gs_reproduces_the_reference_forward() {
    let dir = tmp_dir("tiny");
    let (report, out) = import(&fixture("tiny_progan.pkl"), &dir);
    assert_eq!(report.protocol, 4);
    assert_eq!(
        (
            report.net.resolution,
            report.net.nz,
            report.net.fmap_base,
            report.net.fmap_max,
            report.net.infogan_nz
        ),
        (16, 6, 32, 16, 2)
    );
    assert_eq!(report.config.infogan_lambda, 1.0);
    // No kimg in the name and lod 0 stored: the schedule is pinned at lod 0.
    assert_eq!(report.cur_nimg, 0);
    assert_eq!(report.lod, 0.0);
    assert_eq!(report.config.lod_initial_resolution, 16);
    for n in &report.networks {
        assert_eq!(n.lod, Some(0.0), "{}", n.role);
    }

    let gs = load_gs(&out, Device::Cpu).unwrap();
    assert_eq!(gs.lod, 0.0);
    let z = read_npy(&fixture("tiny_progan/latents.npy"));
    for (lod, file) in [(0.0, "images_lod0.npy"), (1.5, "images_lod1.5.npy")] {
        let want = read_npy(&fixture(&format!("tiny_progan/{file}")));
        let got = tch::no_grad(|| gs.g.forward(&z, lod, true));
        let d = max_abs_diff(&got, &want);
        assert!(d < 1e-5, "Gs at lod {lod}: max |ours − reference| = {d:e}");
        // The comparison has teeth: the images vary far more than the tolerance.
        assert!(want.std(true).double_value(&[]) > 0.1);
    }
    // The embedded build source (which would create the marker) was never executed.
    assert_marker_absent();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// D's score path and Q head, built from the snapshot's `D/…` tensors, against the reference's D on fixed inputs
/// (batch 8: two strided minibatch-stddev groups of 4).
#[test]
fn imported_d_and_q_head_reproduce_the_reference_forward() {
    let dir = tmp_dir("tiny-d");
    let (report, out) = import(&fixture("tiny_progan.pkl"), &dir);
    let snap = load_snapshot(&out).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let d = Discriminator::new(&vs.root(), &report.net);
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            var.copy_(&snap.tensors[&format!("D/{name}")]);
        }
    });
    let x = read_npy(&fixture("tiny_progan/d_input.npy"));
    for (lod, tag) in [(0.0, "lod0"), (1.5, "lod1.5")] {
        let (score, q) = tch::no_grad(|| d.forward(&x, lod, 1));
        let want_s = read_npy(&fixture(&format!("tiny_progan/d_scores_{tag}.npy")));
        let want_q = read_npy(&fixture(&format!("tiny_progan/q_{tag}.npy")));
        let ds = max_abs_diff(&score, &want_s);
        let dq = max_abs_diff(&q.expect("Q head"), &want_q);
        let scale = want_s.abs().max().double_value(&[]).max(1.0);
        assert!(ds < 1e-5 * scale, "D score at lod {lod}: {ds:e}");
        assert!(dq < 1e-5 * scale, "Q at lod {lod}: {dq:e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn parameter_counts_match_the_architecture() {
    let dir = tmp_dir("counts");
    let (report, out) = import(&fixture("tiny_progan.pkl"), &dir);
    // nf = [16, 16, 8, 4] (fmap_base 32, fmap_max 16), nz 6, resolution 16, infogan_nz 2:
    // G = dense 6·256+16 + conv 16·16·9+16 + 8²(16·8·9+8, 8·8·9+8) + 16²(8·4·9+4, 4·4·9+4) + ToRGB 51+27+15.
    let g_expected = 1552 + 2320 + 1160 + 584 + 292 + 148 + 51 + 27 + 15;
    // D = FromRGB 16+32+64 + 16²(148, 296) + 8²(584, 1168) + 4×4 conv 17·16·9+16 + dense 4112 + 17,
    //     Q = 2320 + 4112 + 16·2+2.
    let d_expected = 112 + 148 + 296 + 584 + 1168 + 2464 + 4112 + 17 + (2320 + 4112 + 34);
    let by_role = |r: &str| report.networks.iter().find(|n| n.role == r).unwrap();
    assert_eq!(by_role("G").params, g_expected);
    assert_eq!(by_role("Gs").params, g_expected);
    assert_eq!(by_role("D").params, d_expected);
    assert_eq!(by_role("G").variables, 18);
    assert_eq!(by_role("D").variables, 26);
    // And they are what our networks hold.
    let vs = nn::VarStore::new(Device::Cpu);
    let g = Generator::new(&(vs.root() / "G"), &report.net);
    let d = Discriminator::new(&(vs.root() / "D"), &report.net);
    assert_eq!(g.num_params(), g_expected);
    assert_eq!(d.num_params() + d.q_num_params(), d_expected);
    assert_eq!(param_count(&vs), g_expected + d_expected);
    // The snapshot resumes like any other: fresh optimiser state, every network present.
    let snap = load_snapshot(&out).unwrap();
    snap.config.validate().unwrap();
    assert!(
        !snap.tensors.contains_key("opt_G/step"),
        "an import carries no optimiser state"
    );
    let total = |prefix: &str| -> i64 {
        snap.tensors
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, t)| t.numel() as i64)
            .sum()
    };
    assert_eq!(total("G/"), g_expected);
    assert_eq!(total("Gs/"), g_expected);
    assert_eq!(total("D/"), d_expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Protocol 2 (bytes through `_codecs.encode`), NumPy 2's `numpy._core` names, a kimg in the file name and a
/// fractional stored lod that the default schedule reproduces at that kimg.
#[test]
fn protocol2_snapshot_with_fractional_lod() {
    let dir = tmp_dir("p2");
    let (report, out) = import(&fixture("p2/network-snapshot-000900.pkl"), &dir);
    assert_eq!(report.protocol, 2);
    assert_eq!(
        (report.net.resolution, report.net.nz, report.net.infogan_nz),
        (8, 4, 0)
    );
    assert_eq!(report.cur_nimg, 900_000);
    assert_eq!(report.lod, 0.5);
    assert_eq!(
        report.config.lod_initial_resolution, 4,
        "the default schedule is kept"
    );
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("latent_size 4 inferred")),
        "{:?}",
        report.notes
    );
    let gs = load_gs(&out, Device::Cpu).unwrap();
    assert_eq!(gs.lod, 0.5);
    let z = read_npy(&fixture("p2/latents.npy"));
    let want = read_npy(&fixture("p2/images_lod0.5.npy"));
    let got = tch::no_grad(|| gs.g.forward(&z, gs.lod, true));
    let d = max_abs_diff(&got, &want);
    assert!(d < 1e-5, "Gs at lod 0.5: max |ours − reference| = {d:e}");
    assert_marker_absent();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malicious_pickles_are_refused_without_running_anything() {
    let dir = tmp_dir("evil");
    let _ = std::fs::remove_file(MARKER);
    let out = dir.join("never.safetensors");
    let err = format!(
        "{:#}",
        import_pkl(&fixture("malicious_os_system.pkl"), &out, Device::Cpu).unwrap_err()
    );
    assert!(err.contains("os.system"), "{err}");
    assert!(err.contains("malicious_os_system.pkl"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    assert_marker_absent();
    assert!(!out.exists());

    // Protocol 4 spelling (STACK_GLOBAL from two strings) of builtins.eval and subprocess.Popen.
    for (module, name) in [("builtins", "eval"), ("subprocess", "Popen")] {
        let mut p = b"\x80\x04".to_vec();
        for s in [module, name] {
            p.push(0x8c);
            p.push(s.len() as u8);
            p.extend(s.as_bytes());
        }
        p.push(0x93);
        let cmd = format!("open('{MARKER}', 'w')");
        p.push(0x8c);
        p.push(cmd.len() as u8);
        p.extend(cmd.as_bytes());
        p.extend(b"\x85R.");
        let path = dir.join(format!("{module}.pkl"));
        std::fs::write(&path, &p).unwrap();
        let err = format!("{:#}", import_pkl(&path, &out, Device::Cpu).unwrap_err());
        assert!(err.contains(&format!("{module}.{name}")), "{err}");
        assert_marker_absent();
        assert!(!out.exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_pickle_is_a_clear_error() {
    let dir = tmp_dir("trunc");
    let bytes = std::fs::read(fixture("tiny_progan.pkl")).unwrap();
    let out = dir.join("never.safetensors");
    for frac in [0.01, 0.25, 0.5, 0.9, 0.999] {
        let cut = (bytes.len() as f64 * frac) as usize;
        let path = dir.join("cut.pkl");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = format!("{:#}", import_pkl(&path, &out, Device::Cpu).unwrap_err());
        assert!(err.contains("truncated"), "cut at {cut}: {err}");
        assert!(err.contains("cut.pkl"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        assert!(!out.exists());
    }
    let path = dir.join("empty.pkl");
    std::fs::write(&path, b"").unwrap();
    assert!(import_pkl(&path, &out, Device::Cpu).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A variable renamed in place (same length, so the pickle stays well-formed) is reported as unexpected, and the
/// parameter it should have filled as missing.
#[test]
fn unknown_variable_name_is_a_clear_error() {
    let dir = tmp_dir("rename");
    let mut bytes = std::fs::read(fixture("tiny_progan.pkl")).unwrap();
    let (from, to) = (b"ToRGB_lod0/bias", b"ToRGB_lod7/bias");
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the fixture names ToRGB_lod0/bias");
    bytes[at..at + from.len()].copy_from_slice(to);
    let path = dir.join("renamed.pkl");
    std::fs::write(&path, &bytes).unwrap();
    // The file still parses: only the mapping rejects it.
    let parsed = read_reference_pkl(&path).unwrap();
    assert!(parsed
        .g
        .variables
        .iter()
        .any(|(n, _)| n == "ToRGB_lod7/bias"));
    let out = dir.join("never.safetensors");
    let err = format!("{:#}", import_pkl(&path, &out, Device::Cpu).unwrap_err());
    assert!(
        err.contains("unexpected variables: ToRGB_lod7/bias"),
        "{err}"
    );
    assert!(err.contains("missing variables: ToRGB_lod0/bias"), "{err}");
    assert!(err.contains("renamed.pkl"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_recorded_hp_lambda_follows_the_reference_path_rule() {
    for (path, want) in [
        (
            "results/00003-progan_clevr_simple_nz-4/network-snapshot-000900.pkl",
            0.0,
        ),
        (
            "results/00007-infogan_clevr_simple_nz-12_inz-4/network-snapshot-000900.pkl",
            0.0,
        ),
        (
            "results/00004-hessian_penalty_clevr_simple_nz-12_w-0.05/network-snapshot-000900.pkl",
            0.05,
        ),
        ("runs/hessian_penalty_dsprites_nz-12_w-0.1/snap.pkl", 0.1),
        ("pretrained_models/clevr_simple_ft.pkl", 0.1),
        ("pretrained_models/clevr_simple_fs.pkl", 0.1),
        ("pretrained_models/clevr_simple_bl.pkl", 0.0),
        ("pretrained_models/clevr_simple_info.pkl", 0.0),
    ] {
        let (lambda, why) = hp_lambda_of(Path::new(path));
        assert_eq!(lambda, want, "{path}: {why}");
    }
}

#[test]
fn fine_tuning_an_imported_vanilla_pickle_ramps_the_penalty_from_zero() {
    use hessian_gan::core::schedule::hp_weight;
    use hessian_gan::data::Dataset;
    use hessian_gan::training::Trainer;
    let _g = common::lock();
    let dir = tmp_dir("finetune");
    let ds = std::sync::Arc::new(Dataset::open(&common::tiny_dataset(&dir)).unwrap());
    // The protocol-2 fixture (8², nz 4, 900 kimg) under the reference's run-directory names, and once with the
    // weight given at import.
    for (sub, given, recorded) in [
        ("00003-progan_tiny_nz-4", None, 0.0),
        ("00004-hessian_penalty_tiny_nz-4_w-0.1", None, 0.1),
        ("00005-progan_tiny_nz-4", Some(0.1), 0.1),
    ] {
        let pkl = dir.join(sub).join("network-snapshot-000900.pkl");
        std::fs::create_dir_all(pkl.parent().unwrap()).unwrap();
        std::fs::copy(fixture("p2/network-snapshot-000900.pkl"), &pkl).unwrap();
        let out = dir.join(format!("{sub}.safetensors"));
        let opts = ImportOptions {
            device: Device::Cpu,
            dataset: Some("tiny".into()),
            hp_lambda: given,
        };
        let report = import_pkl_with(&pkl, &out, &opts).unwrap();
        assert_eq!(report.config.hp_lambda, recorded, "{sub}");
        assert_eq!(load_snapshot(&out).unwrap().config.hp_lambda, recorded);

        // Fine-tune it with HP λ 0.1 over a 10 kimg ramp (docs/spec/progan_hp.md §2.6).
        let snap = load_snapshot(&out).unwrap();
        let mut cfg = snap.config.clone();
        cfg.hp_lambda = 0.1;
        cfg.warmup_kimg = 10.0;
        cfg.num_gpus = 2;
        cfg.minibatch = [(4, 8), (8, 8)].into_iter().collect();
        let run_dir = dir.join(format!("run-{sub}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let trainer = Trainer::new(cfg, Device::Cpu, ds.clone(), run_dir, Some(snap)).unwrap();
        let start = trainer.state().hp_start_kimg;
        let at_resume = hp_weight(0.1, start, 10.0, 900_000);
        let later = hp_weight(0.1, start, 10.0, 905_000);
        if recorded == 0.0 {
            // A vanilla checkpoint: the ramp starts at the resume point.
            assert_eq!(start, 900.0, "{sub}");
            assert_eq!(at_resume, 0.0);
            assert!((later - 0.05).abs() < 1e-12, "{later}");
        } else {
            // An HP checkpoint: absolute kimg, so the full weight at once.
            assert_eq!(start, 0.0, "{sub}");
            assert_eq!(at_resume, 0.1);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
