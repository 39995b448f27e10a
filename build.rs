//! Link libtorch_cuda even though no symbol of ours references it, and set an rpath.
//!
//! On Linux the linker runs with `--as-needed`, drops `libtorch_cuda.so`, and CUDA then
//! silently reports "unavailable" at run time. `-Wl,--no-as-needed -ltorch_cuda` keeps it.
//! The rpath to libtorch's directory lets the binary run without LD_LIBRARY_PATH.
//!
//! It also compiles csrc/torch_ext.cpp, the few libtorch functions tch 0.24 does not expose
//! (bf16 autocast, fused SGD, allocator peaks; see src/torch_ext.rs), against libtorch's headers.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/torch_ext.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("DEP_TCH_LIBTORCH_LIB unset: torch-sys found no libtorch (run `make build`)");
    compile_torch_ext(Path::new(&lib));
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

/// Builds csrc/torch_ext.cpp into a static library, with the C++ ABI torch-sys uses
/// (LIBTORCH_CXX11_ABI, default 1, as PyTorch's Linux wheels), and links libtorch after it.
fn compile_torch_ext(lib: &Path) {
    let include = lib.join("../include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("csrc/torch_ext.cpp")
        .include(&include)
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false)
        .opt_level(2)
        .compile("deepres_torch_ext");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
