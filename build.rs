//! Link-time fixes for libtorch from PyPI (../shared/ENVIRONMENT.md):
//! - keep libtorch_cuda.so linked: nothing references its symbols directly, so `--as-needed` would drop it and CUDA
//!   would silently be unavailable at run time;
//! - a RUNPATH to libtorch's lib/ relative to the binary (`$ORIGIN/../../.libtorch/lib`, and the same from
//!   `deps/` for the test binaries) so that they run without LD_LIBRARY_PATH also from a moved or copied checkout;
//!   `$ORIGIN/libtorch/lib` too, for a binary shipped with libtorch beside it. A libtorch outside the checkout
//!   (LIBTORCH=/opt/libtorch) is linked by its absolute path;
//! - the linked libtorch's version, reported by `hessian-gan info`;
//! - csrc/precision.cpp, the TF32 and bfloat16-autocast switches that tch does not expose (src/core/precision.rs), and
//!   csrc/ops.cpp, the operators and the profiler that it does not expose either (src/core/native.rs), and
//!   csrc/distributed.cpp, torch.distributed's store, process groups and collectives (src/core/distributed.rs).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/precision.cpp");
    println!("cargo:rerun-if-changed=csrc/ops.cpp");
    println!("cargo:rerun-if-changed=csrc/distributed.cpp");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        println!("cargo:warning=LIBTORCH is not set; run scripts/setup.sh first");
        println!("cargo:rustc-env=HG_LIBTORCH_VERSION=unknown");
        return;
    };
    let root = Path::new(&libtorch);
    let lib = root.join("lib");
    println!("cargo:rustc-link-search=native={}", lib.display());
    for rpath in runpaths(&lib) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
    }
    let cuda = lib.join("libtorch_cuda.so").exists();
    if cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    // Same flags as torch-sys's own wrapper: C++17 and the pre-C++11 or C++11 string ABI of the PyPI wheels.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    if cuda {
        // csrc/distributed.cpp's NCCL process group lives in libtorch_cuda.
        build.define("HG_WITH_NCCL", None);
    }
    build
        .cpp(true)
        .file("csrc/precision.cpp")
        .file("csrc/ops.cpp")
        .file("csrc/distributed.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag_if_supported("-w")
        .compile("hg_precision");
    let version = std::fs::read_to_string(root.join("version.py"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("__version__"))
                .map(|rest| {
                    rest.trim_matches(|c: char| c == ' ' || c == '=' || c == '\'' || c == '"')
                        .to_string()
                })
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=HG_LIBTORCH_VERSION={version}");
}

/// RUNPATH entries for `lib`: relative to the binary (`target/<profile>/`) and to the test binaries
/// (`target/<profile>/deps/`) when `lib` lies inside the checkout, else its absolute path.
fn runpaths(lib: &Path) -> Vec<String> {
    let manifest =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    // OUT_DIR is target/<profile>/build/<pkg>-<hash>/out.
    let profile = out
        .ancestors()
        .nth(3)
        .expect("OUT_DIR below target/<profile>/build");
    if !lib.starts_with(&manifest) || !profile.starts_with(&manifest) {
        return vec![lib.display().to_string()];
    }
    let mut paths: Vec<String> = [profile.to_path_buf(), profile.join("deps")]
        .iter()
        .map(|from| format!("$ORIGIN/{}", relative(from, lib).display()))
        .collect();
    paths.push("$ORIGIN/libtorch/lib".to_string());
    paths
}

/// `to` as a path relative to the directory `from` (both absolute, neither resolved through symlinks, so that the
/// `.libtorch` link keeps working when the checkout moves).
fn relative(from: &Path, to: &Path) -> std::path::PathBuf {
    let common = from
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    let ups = from.components().count() - common;
    let mut rel: std::path::PathBuf = std::iter::repeat_n("..", ups).collect();
    rel.extend(to.components().skip(common));
    rel
}
