//! Small helpers shared by the figures: CSV files (written atomically), tensors to numbers, the
//! RMS error against the limit and cell means.
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

use crate::report::stats::Estimate;

/// The limit's colour in the plots.
pub(super) const RED: (u8, u8, u8) = (214, 39, 40);

/// Writes a CSV file of `header` and `rows` (one line each) atomically.
pub(super) fn write_csv(path: &Path, header: &str, rows: &[String]) -> Result<()> {
    let mut text = String::from(header);
    text.push('\n');
    for r in rows {
        text += r;
        text.push('\n');
    }
    crate::util::write_atomic(path, &text)
}

/// The values of `t`, flattened, as f64 (empty if it cannot be read).
pub(super) fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(
        t.to_kind(Kind::Double)
            .to_device(Device::Cpu)
            .flatten(0, -1),
    )
    .unwrap_or_default()
}

/// RMS over test points of (outputs − limit), per model: `[models, n]` vs `[n]` → `Vec<f64>`.
pub(super) fn rms_error(outputs: &Tensor, limit: &Tensor) -> Vec<f64> {
    to_vec(
        &(outputs - limit)
            .square()
            .mean_dim(1, false, Kind::Float)
            .sqrt(),
    )
}

/// Mean and sample standard deviation (n − 1; 0 for one model) of each (L, M) cell's errors.
pub(super) fn cell_means(rows: &[(i64, i64, f64)]) -> BTreeMap<(i64, i64), (f64, f64)> {
    let mut cells: BTreeMap<(i64, i64), Vec<f64>> = BTreeMap::new();
    for &(l, m, e) in rows {
        cells.entry((l, m)).or_default().push(e);
    }
    cells
        .into_iter()
        .map(|(k, v)| {
            let e = Estimate::of(&v).expect("a cell has at least one model");
            (k, (e.mean, e.std))
        })
        .collect()
}
