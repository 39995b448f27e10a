//! Link libtorch_cuda even though no symbol of ours references it, and set an rpath.
//!
//! On Linux the linker runs with `--as-needed`, drops `libtorch_cuda.so`, and CUDA then
//! silently reports "unavailable" at run time. `-Wl,--no-as-needed -ltorch_cuda` keeps it.
//! The rpath to libtorch's directory lets the binary run without LD_LIBRARY_PATH.
//!
//! It also compiles csrc/torch_ext.cpp, the few libtorch functions tch 0.24 does not expose
//! (bf16 autocast, fused SGD, allocator peaks, libtorch's profiler; see src/util/torch_ext.rs
//! and src/util/profile.rs), against libtorch's headers.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/torch_ext.cpp");
    println!("cargo:rerun-if-changed=csrc/cuda_graph.cpp");
    println!("cargo:rerun-if-changed=csrc/cuda_graph_stub.cpp");
    println!("cargo:rerun-if-env-changed=DEEPRES_CUDA_INCLUDE");
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

/// Builds csrc/torch_ext.cpp (and csrc/cuda_graph.cpp, or its stub without CUDA headers)
/// into a static library, with the C++ ABI torch-sys uses (LIBTORCH_CXX11_ABI, default 1, as
/// PyTorch's Linux wheels), and links libtorch after it.
fn compile_torch_ext(lib: &Path) {
    let include = lib.join("../include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("csrc/torch_ext.cpp")
        .include(&include)
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false)
        .opt_level(2);
    let cuda = lib.join("libtorch_cuda.so").exists() || lib.join("libtorch_cuda.dylib").exists();
    match cuda.then(|| cuda_include_dirs(lib)).flatten() {
        Some((dirs, cudart)) => {
            build.file("csrc/cuda_graph.cpp").includes(&dirs);
            // The CUDA headers' inline functions call the runtime (cudart) directly.
            println!("cargo:rustc-link-search=native={}", cudart.0.display());
            println!("cargo:rustc-link-arg=-l{}", cudart.1);
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", cudart.0.display());
        }
        None => {
            println!("cargo:warning=CUDA runtime headers not found (make setup installs them): CUDA graphs disabled");
            build.file("csrc/cuda_graph_stub.cpp");
        }
    }
    build.compile("deepres_torch_ext");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    if cuda {
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
}

/// Directories holding cuda_runtime_api.h and crt/host_config.h: $DEEPRES_CUDA_INCLUDE
/// (colon-separated), else pip's nvidia/cu13 (or cu12) include directory beside torch, else
/// $CUDA_HOME/include. None when either header is missing. Also the directory of the CUDA
/// runtime library beside the runtime headers (`../lib` or `../lib64`) and its link name.
type CudaDirs = (Vec<std::path::PathBuf>, (std::path::PathBuf, String));

fn cuda_include_dirs(lib: &Path) -> Option<CudaDirs> {
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    if let Ok(v) = std::env::var("DEEPRES_CUDA_INCLUDE") {
        candidates.extend(std::env::split_paths(&v));
    }
    for cu in ["cu13", "cu12"] {
        candidates.push(lib.join("../../nvidia").join(cu).join("include"));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Ok(v) = std::env::var(var) {
            candidates.push(Path::new(&v).join("include"));
        }
    }
    candidates.push("/usr/local/cuda/include".into());
    let find = |file: &str| candidates.iter().find(|d| d.join(file).exists()).cloned();
    let runtime = find("cuda_runtime_api.h")?;
    let crt = find("crt/host_config.h")?;
    let mut cudart = None;
    for sub in ["lib", "lib64"] {
        let dir = runtime.join("..").join(sub);
        // pip's wheel has only the versioned file (libcudart.so.13): link it by file name.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("libcudart.so"))
            .collect();
        names.sort();
        if let Some(name) = names.first() {
            let link = if name == "libcudart.so" {
                "cudart".to_string()
            } else {
                format!(":{name}")
            };
            cudart = Some((dir.canonicalize().unwrap_or(dir), link));
            break;
        }
    }
    let mut dirs = vec![runtime];
    if !dirs.contains(&crt) {
        dirs.push(crt);
    }
    Some((dirs, cudart?))
}
