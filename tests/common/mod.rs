//! Helpers shared by the integration tests. Each test crate uses a part of them.
#![allow(dead_code)]

pub mod http;

use hessian_gan::dataset::synth::{self, Kind as SynthKind, SynthOptions};
use hessian_gan::device::DeviceSpec;
use hessian_gan::Globals;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// CPU, default seed, quiet: what the tests run commands with.
pub fn globals() -> Globals {
    Globals {
        device: DeviceSpec::Cpu,
        seed: None,
        verbosity: -1,
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
    synth::generate(&out, &opts, -1).unwrap();
    out
}
