//! General helpers used by every layer above: the one atomic writer ([`atomic`]), resume and
//! cache keys ([`key`]), `--set` overrides of YAML ([`overrides`]), least-squares fits
//! ([`fit`]), device selection ([`device`]), safetensors files with metadata
//! ([`safetensors_file`]), thread counts ([`threads`]) and the libtorch functions tch lacks
//! ([`torch_ext`]). Nothing here imports another module of the crate.
pub mod atomic;
pub mod device;
pub mod fit;
pub mod key;
pub mod overrides;
pub mod safetensors_file;
pub mod threads;
pub mod torch_ext;

pub use atomic::write_atomic;

/// A multi-line message (an error chain, a panic) as one line: lines trimmed, blanks dropped.
pub fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
