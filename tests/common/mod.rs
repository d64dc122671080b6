//! Helpers shared by the integration tests. Each test crate uses a part of them.
#![allow(dead_code)]

pub mod http;

use hessian_gan::checkpoint::run_dir_of;
use hessian_gan::commands::train::{self, TrainRequest};
use hessian_gan::commands::Globals;
use hessian_gan::config::TrainConfig;
use hessian_gan::core::device::DeviceSpec;
use hessian_gan::data::synth::{self, Kind as SynthKind, SynthOptions};
use hessian_gan::data::Dataset;
use hessian_gan::training::Trainer;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// CPU and the default seed: what the tests run commands with. The console shows errors only.
pub fn globals() -> Globals {
    hessian_gan::io::log::init(log::LevelFilter::Error);
    Globals {
        device: DeviceSpec::Cpu,
        seed: None,
        base_url: None,
    }
}

/// A fresh, empty scratch folder named after the test crate, `name` and the process.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hg-{}-{name}-{}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// libtorch's global RNG is shared by the tests of a crate: tests that seed it hold this lock.
static TORCH: Mutex<()> = Mutex::new(());

pub fn lock() -> MutexGuard<'static, ()> {
    TORCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// A 64-image synthetic CLEVR-like dataset at 8² under `root/datasets/tiny` (what the tiny training tests use).
pub fn tiny_dataset(root: &Path) -> PathBuf {
    let out = root.join("datasets").join("tiny");
    let opts = SynthOptions {
        kind: SynthKind::ClevrSimple,
        count: 64,
        resolution: 8,
        seed: 5,
        name: Some("tiny".into()),
    };
    synth::generate(&out, &opts).unwrap();
    out
}

/// The one tiny training run every test builds on: the [`tiny_dataset`] under `root`, an 8² generator with nz 3
/// and fmap 16, HP λ 0.1 on layers 1–5 without ramp, lod fading over 0.5 kimg, batch 8 in 2 chunks, a tick and a
/// snapshot every kimg, 2 kimg, seed 7. Tests change what they need with [`TinyRun::with`].
pub struct TinyRun {
    root: PathBuf,
    settings: Map<String, Value>,
}

impl TinyRun {
    pub fn new(root: &Path) -> Self {
        let settings = json!({
            "dataset": "tiny",
            "datasets_dir": root.join("datasets"),
            "results_dir": root.join("results"),
            "resolution": 8,
            "nz": 3,
            "fmap_base": 32,
            "fmap_max": 16,
            "hp_lambda": 0.1,
            "warmup_kimg": 0,
            "layers_to_reg": [1, 2, 3, 4, 5],
            "num_gpus": 2,
            "lod_training_kimg": 0.5,
            "lod_transition_kimg": 0.5,
            "minibatch": {"4": 8, "8": 8},
            "tick_kimg": 1,
            "total_kimg": 2,
            "compute_interp_ticks": -1,
            "network_snapshot_ticks": 1,
            "seed": 7
        });
        TinyRun {
            root: root.to_path_buf(),
            settings: settings.as_object().unwrap().clone(),
        }
    }

    /// These settings (a JSON object named like `TrainConfig`'s fields) replace the defaults above.
    pub fn with(mut self, extra: Value) -> Self {
        self.settings
            .extend(extra.as_object().expect("settings object").clone());
        self
    }

    pub fn config(&self) -> TrainConfig {
        TrainConfig::resolve(TrainConfig::default(), None, self.settings.clone()).unwrap()
    }

    /// A `train` request whose preset (`root/tiny.json`) holds the resolved configuration.
    pub fn request(&self) -> TrainRequest {
        let preset = self.root.join("tiny.json");
        std::fs::write(&preset, serde_json::to_string(&self.config()).unwrap()).unwrap();
        TrainRequest {
            config: Some(preset),
            resume_snapshot: "latest".into(),
            ..Default::default()
        }
    }

    /// Trains through the `train` command (making the dataset first if needed); returns the run directory.
    pub fn train(&self) -> PathBuf {
        self.train_with(self.request())
    }

    /// Runs `request` through the `train` command; returns the new run directory.
    pub fn train_with(&self, request: TrainRequest) -> PathBuf {
        if !self
            .root
            .join("datasets")
            .join("tiny")
            .join("dataset.json")
            .exists()
        {
            tiny_dataset(&self.root);
        }
        match train::run(&globals(), &request).unwrap() {
            train::TrainOutcome::Trained { run_dir } => run_dir,
            train::TrainOutcome::DryRun { .. } => panic!("a dry run trains nothing"),
        }
    }

    /// A trainer on the tiny dataset writing into `run_dir` (created), for step-by-step tests.
    pub fn trainer(&self, run_dir: &Path) -> Trainer {
        let ds = Arc::new(Dataset::open(&self.root.join("datasets").join("tiny")).unwrap());
        std::fs::create_dir_all(run_dir).unwrap();
        Trainer::new(
            self.config(),
            tch::Device::Cpu,
            ds,
            run_dir.to_path_buf(),
            None,
        )
        .unwrap()
    }

    /// The run directory of results run number `exp`.
    pub fn run_dir(&self, exp: u32) -> PathBuf {
        run_dir_of(&self.root.join("results"), exp).unwrap()
    }
}

/// The bytes of the run's TensorBoard event file as (lossy) text, for checking which tags were written.
pub fn events_text(run_dir: &Path) -> String {
    let events = std::fs::read_dir(run_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("tfevents"))
        .unwrap_or_else(|| panic!("no TensorBoard file in {}", run_dir.display()));
    String::from_utf8_lossy(&std::fs::read(events).unwrap()).into_owned()
}

/// An integer setting of a drill from the environment (`DRILL_KILLS`, `FUZZ_INPUTS`…), or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Checks that every file under `dir` with a final name is whole (snapshots verify, JSON and JSONL parse; panics
/// otherwise) and returns the temporaries (`.<name>.partial-<pid>`) found: writes that were interrupted.
pub fn torn_files_check(dir: &Path) -> Vec<PathBuf> {
    let mut temporaries = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return temporaries;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".partial-") {
            temporaries.push(path);
        } else if path.is_dir() {
            temporaries.extend(torn_files_check(&path));
        } else if name.ends_with(".safetensors") {
            hessian_gan::io::safetensors::verify(&path)
                .unwrap_or_else(|e| panic!("torn snapshot: {e:#}"));
        } else if name.ends_with(".json") {
            let text = std::fs::read_to_string(&path).unwrap();
            serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|e| panic!("torn {}: {e}", path.display()));
        } else if name.ends_with(".jsonl") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                serde_json::from_str::<Value>(line)
                    .unwrap_or_else(|e| panic!("torn line in {}: {e}", path.display()));
            }
        }
    }
    temporaries
}

/// The project's Python with torch: $HESSIAN_GAN_PYTHON, `.venv/bin/python`, or the venv that `.libtorch` (or
/// $LIBTORCH) points into (`<venv>/lib/pythonX.Y/site-packages/torch`).
pub fn venv_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HESSIAN_GAN_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let direct = root.join(".venv/bin/python");
    if direct.exists() {
        return Some(direct);
    }
    let mut candidates = vec![root.join(".libtorch")];
    if let Some(l) = std::env::var_os("LIBTORCH") {
        candidates.push(PathBuf::from(l));
    }
    candidates.into_iter().find_map(|c| {
        let torch = std::fs::canonicalize(c).ok()?;
        let py = torch.ancestors().nth(4)?.join("bin/python");
        py.exists().then_some(py)
    })
}

/// Directory with `inception-2015-12-05.pt` and `vgg16.pt` made by tests/fixtures/make_detectors.py, or `None`
/// (with a message) when no Python with torch is available. They are kept under target/ keyed by the script's
/// hash, so the (slow) Python start-up runs once per script version.
pub fn detectors() -> Option<PathBuf> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_detectors.py");
        let hash = hessian_gan::io::download::sha256_file(&script).unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("detectors-{}", &hash[..12]));
        let complete = |d: &Path| d.join("inception-2015-12-05.pt").is_file() && d.join("vgg16.pt").is_file();
        if complete(&dir) {
            return Some(dir);
        }
        let Some(python) = venv_python() else {
            eprintln!(
                "SKIPPED: no Python venv with torch (run scripts/setup.sh, or set HESSIAN_GAN_PYTHON); the \
                 end-to-end metric tests need it to build TorchScript detectors"
            );
            return None;
        };
        let tmp = dir.with_extension(format!("partial-{}", std::process::id()));
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg(&tmp)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(
            out.status.success(),
            "{} {} failed: {}",
            python.display(),
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Another test process may have finished first; either copy is complete.
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        assert!(complete(&dir));
        Some(dir)
    })
    .clone()
}
