//! Device selection (`--device auto|cpu|cuda|cuda:N`) and `deepres info`.
use anyhow::{bail, Result};
use tch::{Cuda, Device};

/// A device request as written in a config or on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda(usize),
}

pub fn parse_device(s: &str) -> Result<DeviceRequest> {
    let s = s.trim();
    Ok(match s {
        "auto" => DeviceRequest::Auto,
        "cpu" => DeviceRequest::Cpu,
        "cuda" | "gpu" => DeviceRequest::Cuda(0),
        _ => match s.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => DeviceRequest::Cuda(n),
            None => bail!("unknown device {s:?}; accepted: auto, cpu, cuda, cuda:N"),
        },
    })
}

/// Resolves a request to a tch device; CUDA asked for and absent is an error, never a silent
/// fallback. Turns cuDNN's autotuner on for CUDA.
pub fn select_device(s: &str) -> Result<Device> {
    let dev = match parse_device(s)? {
        DeviceRequest::Cpu => Device::Cpu,
        DeviceRequest::Auto => Device::cuda_if_available(),
        DeviceRequest::Cuda(n) => {
            if !Cuda::is_available() {
                bail!(
                    "device {s}: CUDA is not available here (no GPU, no driver, or libtorch without CUDA); use --device cpu or auto"
                );
            }
            let count = Cuda::device_count() as usize;
            if n >= count {
                bail!(
                    "device {s}: only {count} CUDA device(s) (cuda:0..cuda:{}); pick one of those",
                    count - 1
                );
            }
            Device::Cuda(n)
        }
    };
    if dev.is_cuda() {
        Cuda::cudnn_set_benchmark(true);
    }
    Ok(dev)
}

/// Name and total memory (bytes) of each CUDA GPU, read from the driver (libcuda) directly,
/// since libtorch's C API, which tch wraps, exposes neither.
pub fn gpu_properties() -> Vec<(String, u64)> {
    cuda_driver::properties().unwrap_or_default()
}

mod cuda_driver {
    use libloading::{Library, Symbol};
    use std::os::raw::{c_char, c_int, c_uint};

    pub fn properties() -> Option<Vec<(String, u64)>> {
        // SAFETY: the CUDA driver API's C signatures, stable since CUDA 3.2 (the _v2 symbols).
        unsafe {
            let lib = Library::new("libcuda.so.1").ok()?;
            let init: Symbol<unsafe extern "C" fn(c_uint) -> c_int> = lib.get(b"cuInit").ok()?;
            let count: Symbol<unsafe extern "C" fn(*mut c_int) -> c_int> =
                lib.get(b"cuDeviceGetCount").ok()?;
            let get: Symbol<unsafe extern "C" fn(*mut c_int, c_int) -> c_int> =
                lib.get(b"cuDeviceGet").ok()?;
            let name: Symbol<unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int> =
                lib.get(b"cuDeviceGetName").ok()?;
            let mem: Symbol<unsafe extern "C" fn(*mut usize, c_int) -> c_int> =
                lib.get(b"cuDeviceTotalMem_v2").ok()?;
            if init(0) != 0 {
                return None;
            }
            let mut n: c_int = 0;
            if count(&mut n) != 0 {
                return None;
            }
            let mut out = Vec::new();
            for i in 0..n {
                let mut dev: c_int = 0;
                if get(&mut dev, i) != 0 {
                    continue;
                }
                let mut buf = [0 as c_char; 256];
                let nm = if name(buf.as_mut_ptr(), 256, dev) == 0 {
                    std::ffi::CStr::from_ptr(buf.as_ptr())
                        .to_string_lossy()
                        .into_owned()
                } else {
                    "unknown".into()
                };
                let mut bytes: usize = 0;
                mem(&mut bytes, dev);
                out.push((nm, bytes as u64));
            }
            Some(out)
        }
    }
}

/// The lines `deepres info` prints.
pub fn info_lines() -> Vec<String> {
    let mut l = vec![
        format!("deepres: {}", env!("CARGO_PKG_VERSION")),
        "tch: 0.24.0".to_string(),
        format!("libtorch: {}", libtorch_version()),
        format!("threads: {} (intra-op)", tch::get_num_threads()),
        format!("mkldnn: {}", tch::utils::has_mkldnn()),
        format!("cuda_available: {}", Cuda::is_available()),
        format!("cudnn_available: {}", Cuda::cudnn_is_available()),
    ];
    if Cuda::is_available() {
        l.push(format!("cuda_devices: {}", Cuda::device_count()));
        l.push(format!("cudnn_version: {}", tch::utils::version_cudnn()));
        l.push(format!("cudart_version: {}", tch::utils::version_cudart()));
        for (i, (name, mem)) in gpu_properties().iter().enumerate() {
            l.push(format!(
                "gpu{i}: {name}, {:.1} GiB",
                *mem as f64 / (1u64 << 30) as f64
            ));
        }
    }
    l
}

/// The libtorch version, from the build (torch-sys reads it from the PyTorch install).
fn libtorch_version() -> String {
    option_env!("DEEPRES_LIBTORCH_VERSION")
        .unwrap_or("unknown (not recorded at build time)")
        .to_string()
}

/// Makes glibc keep freed host memory instead of returning it to the system at every free.
///
/// libtorch's CPU tensors come from malloc; by default glibc serves blocks of a few hundred KB
/// and up with a fresh mmap and unmaps them when freed, so every training step page-faults its
/// activations in anew (on Marion's M9, 50 models at L = 1000: 36 s of 78 s were system time).
/// Blocks up to 32 MB (glibc's maximum) now come from the heap, which is never trimmed and grows
/// 1 GB at a time — a caching allocator for the host, as CUDA has one for the GPU. Measured
/// (BENCHMARKS.md): that M9 slice 77.8 s → 60.5–61.7 s, ResNet-20 `deepres bench` on CPU
/// 397.6 → 475.8 images/s. Call once at start-up; the MALLOC_* environment variables still
/// override these.
pub fn keep_freed_host_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |param: libc::c_int, env: &str, value: libc::c_int| {
            if std::env::var_os(env).is_none() {
                // SAFETY: mallopt only changes allocator parameters; called before threads start.
                unsafe { libc::mallopt(param, value) };
            }
        };
        set(libc::M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", 32 << 20);
        set(libc::M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", -1); // never trim
        set(libc::M_TOP_PAD, "MALLOC_TOP_PAD_", 1 << 30);
    }
}
