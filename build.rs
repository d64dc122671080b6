//! Link-time fixes for libtorch from PyPI (../shared/ENVIRONMENT.md):
//! - keep libtorch_cuda.so linked: nothing references its symbols directly, so `--as-needed` would drop it and CUDA
//!   would silently be unavailable at run time;
//! - an rpath to libtorch's lib/ so the binary and the test binaries run without LD_LIBRARY_PATH;
//! - the linked libtorch's version, reported by `hessian-gan info`;
//! - csrc/precision.cpp, the TF32 and bfloat16-autocast switches that tch does not expose (src/precision.rs).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/precision.cpp");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        println!("cargo:warning=LIBTORCH is not set; run scripts/setup.sh first");
        println!("cargo:rustc-env=HG_LIBTORCH_VERSION=unknown");
        return;
    };
    let root = Path::new(&libtorch);
    let lib = root.join("lib");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    // Same flags as torch-sys's own wrapper: C++17 and the pre-C++11 or C++11 string ABI of the PyPI wheels.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("csrc/precision.cpp")
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
