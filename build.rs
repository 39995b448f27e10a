//! Link libtorch_cuda even though no symbol of ours references it, and set an rpath.
//!
//! On Linux the linker runs with `--as-needed`, drops `libtorch_cuda.so`, and CUDA then
//! silently reports "unavailable" at run time. `-Wl,--no-as-needed -ltorch_cuda` keeps it.
//! The rpath to libtorch's directory lets the binary run without LD_LIBRARY_PATH.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB unset: no rpath, libtorch_cuda not forced");
        return;
    };
    // Record libtorch's version (PyTorch wheel: torch/version.py beside torch/lib) for `deepres info`.
    if let Ok(text) = std::fs::read_to_string(Path::new(&lib).join("../version.py")) {
        if let Some(line) = text.lines().find(|l| l.starts_with("__version__")) {
            let v = line.split(['\'', '"']).nth(1).unwrap_or("unknown");
            println!("cargo:rustc-env=DEEPRES_LIBTORCH_VERSION={v}");
        }
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "macos" {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    if os == "linux" && Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
