//! Published numbers to print beside ours, keyed by a name that grid files use in
//! `report: {published: KEY}`.
//!
//! - `zhang2022-table1`: Zhang et al. 2022 (the τ paper, arXiv:1903.07120), CIFAR-10 test error (%) of
//!   BN (our variant `bn`) and BN + τ (our variant `bn-tau`) for ResNet-20/32/56/110/1202
//!   (no number for ResNet-44). Row values are depths.

/// One published number: (variant, row value, test error %).
type Entry = (&'static str, &'static str, f64);

const ZHANG2022_TABLE1: &[Entry] = &[
    ("bn", "20", 8.08),
    ("bn-tau", "20", 7.89),
    ("bn", "32", 7.39),
    ("bn-tau", "32", 7.16),
    ("bn", "56", 6.73),
    ("bn-tau", "56", 6.18),
    ("bn", "110", 6.61),
    ("bn-tau", "110", 5.83),
    ("bn", "1202", 6.93),
    ("bn-tau", "1202", 5.01),
];

/// (key, description, dataset the numbers were measured on, entries).
const SOURCES: &[(&str, &str, &str, &[Entry])] = &[(
    "zhang2022-table1",
    "Zhang et al. 2022 (arXiv 1903.07120), CIFAR-10 test error (%): BN = `bn`, BN + τ = `bn-tau`",
    "cifar10",
    ZHANG2022_TABLE1,
)];

/// The dataset (our name, e.g. `cifar10`) the numbers of `key` were measured on: a difference
/// with our runs means something only on the same dataset.
pub fn dataset(key: &str) -> Option<&'static str> {
    SOURCES.iter().find(|s| s.0 == key).map(|s| s.2)
}

/// The known keys.
pub fn keys() -> Vec<&'static str> {
    SOURCES.iter().map(|s| s.0).collect()
}

/// Whether `key` names a set of published numbers.
pub fn is_known(key: &str) -> bool {
    SOURCES.iter().any(|s| s.0 == key)
}

/// One line saying where the numbers of `key` come from.
pub fn describe(key: &str) -> Option<&'static str> {
    SOURCES.iter().find(|s| s.0 == key).map(|s| s.1)
}

/// The published number of `variant` at row value `row_value` (e.g. a depth, "110"), if any.
pub fn lookup(key: &str, variant: &str, row_value: &str) -> Option<f64> {
    let (_, _, _, entries) = SOURCES.iter().find(|s| s.0 == key)?;
    entries
        .iter()
        .find(|e| e.0 == variant && e.1 == row_value.trim())
        .map(|e| e.2)
}

/// Whether `key` has any number for `variant`.
pub fn has_variant(key: &str, variant: &str) -> bool {
    SOURCES
        .iter()
        .find(|s| s.0 == key)
        .is_some_and(|s| s.3.iter().any(|e| e.0 == variant))
}
