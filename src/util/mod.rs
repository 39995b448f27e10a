//! General helpers used by every layer above: the one atomic writer ([`atomic`]), typed CSV
//! rows ([`csv_rows`]), resume and cache keys ([`key`]), `--set` overrides of YAML
//! ([`overrides`]), least-squares fits ([`fit`]), device selection ([`device`]), every
//! safetensors file read or written ([`safetensors_file`]), thread counts ([`threads`]), the
//! libtorch functions tch lacks ([`torch_ext`]) and libtorch's profiler ([`profile`]). Nothing
//! here imports another module of the crate.
pub mod atomic;
pub mod csv_rows;
pub mod device;
pub mod fit;
pub mod key;
pub mod overrides;
pub mod profile;
pub mod safetensors_file;
pub mod threads;
pub mod torch_ext;

pub use atomic::write_atomic;

/// Writes `line` and a newline to stderr in one `write`: the lines of processes that share
/// a stderr (`deepres sweep --jobs N` and its children) do not interleave inside a line (a
/// pipe write of up to 4 KiB is atomic), as `eprintln!`'s piecewise writes do.
pub fn eprint_line(line: &str) {
    use std::io::Write;
    let mut whole = String::with_capacity(line.len() + 1);
    whole.push_str(line);
    whole.push('\n');
    let _ = std::io::stderr().lock().write_all(whole.as_bytes());
}

/// `eprintln!` in one write ([`eprint_line`]).
macro_rules! eprintln_whole {
    ($($arg:tt)*) => {
        $crate::util::eprint_line(&format!($($arg)*))
    };
}
pub(crate) use eprintln_whole;

/// The message of a caught panic (`catch_unwind`'s payload).
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// A multi-line message (an error chain, a panic) as one line: lines trimmed, blanks dropped.
pub fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
