//! libtorch's profiler (Kineto, through csrc/torch_ext.cpp) around a few steps: where the
//! device's time goes, kernel by kernel (`deepres bench --profile`). On CUDA it reports the kernels and
//! copies (their device time: what bounds a step once launches are not the limit); on the CPU
//! the operators, each with its nested operators' time included.
use anyhow::{anyhow, Result};
use std::ffi::{c_char, c_int, CStr};

use super::torch_ext::check;

extern "C" {
    fn deepres_profile_start(cuda: c_int) -> c_int;
    fn deepres_profile_stop(cuda: c_int, text: *mut *const c_char) -> c_int;
}

/// One event name's total over the recorded steps.
#[derive(Debug, Clone, PartialEq)]
pub struct EventTime {
    pub name: String,
    pub count: u64,
    pub total_ns: u64,
}

/// Starts recording (CUDA kernels too when `cuda`).
pub fn start(cuda: bool) -> Result<()> {
    check(
        unsafe { deepres_profile_start(cuda as c_int) },
        "starting the profiler",
    )
}

/// Stops recording: the CUDA kernels' (or the CPU operators') totals by name, the largest
/// first.
pub fn stop(cuda: bool) -> Result<Vec<EventTime>> {
    let mut text: *const c_char = std::ptr::null();
    check(
        unsafe { deepres_profile_stop(cuda as c_int, &mut text) },
        "stopping the profiler",
    )?;
    // SAFETY: set by a successful call: NUL-terminated, valid until the next call; copied.
    let text = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    let mut rows = parse(&text)?;
    rows.sort_by(|a, b| b.total_ns.cmp(&a.total_ns).then(a.name.cmp(&b.name)));
    Ok(rows)
}

/// The shim's lines `count<TAB>nanoseconds<TAB>name`.
fn parse(text: &str) -> Result<Vec<EventTime>> {
    text.lines()
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let (Some(c), Some(ns), Some(name)) = (f.next(), f.next(), f.next()) else {
                return Err(anyhow!("profiler line {l:?}: expected count, ns, name"));
            };
            Ok(EventTime {
                name: name.to_string(),
                count: c.parse()?,
                total_ns: ns.parse()?,
            })
        })
        .collect()
}

/// The report of `rows` (largest first) over `steps` steps: a total line, then the `top`
/// largest, each with its share of the total, as `key: value` lines.
pub fn report(rows: &[EventTime], steps: i64, top: usize, cuda: bool) -> Vec<String> {
    let total: u64 = rows.iter().map(|r| r.total_ns).sum();
    let count: u64 = rows.iter().map(|r| r.count).sum();
    let what = match cuda {
        true => "device time of the CUDA kernels and copies",
        false => "CPU operators, nested ones included in their callers",
    };
    let mut out = vec![format!(
        "profile_total_ms: {:.3} ({what}: {count} events over {steps} steps, {:.3} ms per step)",
        total as f64 / 1e6,
        total as f64 / 1e6 / steps.max(1) as f64
    )];
    for r in rows.iter().take(top) {
        let name: String = r.name.chars().take(120).collect();
        out.push(format!(
            "profile_event: {:5.1} % {:10.3} ms {:7}x {name}",
            100.0 * r.total_ns as f64 / total.max(1) as f64,
            r.total_ns as f64 / 1e6,
            r.count
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    /// On the CPU the profiler sees each operator as often as it ran: 7 matrix products and
    /// 3 additions are 7 `aten::mm` and 3 `aten::add` (a closed count, not the profiler's own
    /// report), and the report ranks and shares them.
    #[test]
    fn the_profiler_counts_the_operators_that_ran() {
        let a = Tensor::randn([64, 64], (Kind::Float, Device::Cpu));
        start(false).unwrap();
        let mut x = a.shallow_clone();
        for _ in 0..7 {
            x = x.mm(&a);
        }
        for _ in 0..3 {
            x = &x + &a;
        }
        let rows = stop(false).unwrap();
        let count = |n: &str| rows.iter().find(|r| r.name == n).map_or(0, |r| r.count);
        assert_eq!(count("aten::mm"), 7, "{rows:?}");
        assert_eq!(count("aten::add"), 3, "{rows:?}");
        assert!(rows.windows(2).all(|w| w[0].total_ns >= w[1].total_ns));
        let lines = report(&rows, 1, 2, false);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("profile_total_ms: "), "{lines:?}");
        assert!(lines[1].starts_with("profile_event: "), "{lines:?}");
    }

    #[test]
    fn a_bad_line_of_the_shim_is_an_error() {
        assert!(parse("3\t100\tname with\ttab\n").is_ok());
        assert!(parse("3\tname\n").is_err());
    }
}
