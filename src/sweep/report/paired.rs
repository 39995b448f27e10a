//! The paired comparisons of a table: for two variants whose configs differ in exactly one
//! setting (BN vs BN + τ at a depth: `model.tau.rule`), the difference of their best test
//! errors paired by seed, its 95 % interval and the paired t-test's p-value
//! ([`crate::report::stats::paired`]).
use std::collections::BTreeMap;

use crate::report::stats::paired;
use crate::report::table::Table;
use crate::sweep::grid::Cell;

/// (row, variant, (seed, best test error) of its finished seeds) of one table.
pub(super) type BySeed = Vec<(String, Option<String>, Vec<(u64, f64)>)>;

/// A pair of variants (a, b) and the one setting they differ in.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct VariantPair {
    pub a: String,
    pub b: String,
    pub key: String,
}

/// The leaves of a YAML tree as dotted key → value text.
fn leaves(v: &serde_yaml::Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &key, out);
            }
        }
        other => {
            let text = serde_yaml::to_string(other).unwrap_or_default();
            out.insert(prefix.to_string(), text.trim().to_string());
        }
    }
}

/// The settings in which two cells' configs differ (the run name aside).
fn differences(a: &Cell, b: &Cell) -> Vec<String> {
    let tree = |c: &Cell| {
        let mut m = BTreeMap::new();
        if let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(&c.config.to_yaml()) {
            leaves(&v, "", &mut m);
        }
        m.remove("name");
        m
    };
    let (ta, tb) = (tree(a), tree(b));
    let keys: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
    keys.into_iter()
        .filter(|k| ta.get(*k) != tb.get(*k))
        .cloned()
        .collect()
}

/// The variant pairs of `cells` that differ in exactly one setting, judged on cells with the
/// same grid values and seed (the first such couple found).
pub(super) fn variant_pairs(cells: &[Cell], variants: &[Option<String>]) -> Vec<VariantPair> {
    let mut pairs = Vec::new();
    let names: Vec<&String> = variants.iter().flatten().collect();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let of = |v: &String| -> Vec<&Cell> {
                cells
                    .iter()
                    .filter(|c| c.variant.as_ref() == Some(v))
                    .collect()
            };
            let (ofa, ofb) = (of(a), of(b));
            let twin = ofa.iter().find_map(|ca| {
                ofb.iter()
                    .find(|cb| cb.values == ca.values && cb.seed == ca.seed)
                    .map(|cb| (*ca, *cb))
            });
            if let Some((ca, cb)) = twin {
                if let [key] = differences(ca, cb).as_slice() {
                    pairs.push(VariantPair {
                        a: (*a).clone(),
                        b: (*b).clone(),
                        key: key.clone(),
                    });
                }
            }
        }
    }
    pairs
}

/// The table of paired differences b − a per row: n pairs, mean, interval, p-value.
/// `by_seed`: (row, variant, (seed, best test error)) as the main table collected them.
pub(super) fn paired_table(
    title: &str,
    row_header: &str,
    pairs: &[VariantPair],
    by_seed: &BySeed,
) -> Table {
    let headers = [
        row_header,
        "b − a",
        "differs in",
        "pairs",
        "mean Δ best error",
        "95 % CI",
        "p",
    ];
    let mut t = Table::new(
        format!("{title}: paired by seed"),
        headers.iter().map(|s| s.to_string()).collect(),
    );
    let rows: Vec<&String> = {
        let mut seen = Vec::new();
        for (r, _, _) in by_seed {
            if !seen.contains(&r) {
                seen.push(r);
            }
        }
        seen
    };
    let get = |row: &String, v: &String| {
        by_seed
            .iter()
            .find(|(r, var, _)| r == row && var.as_ref() == Some(v))
            .map(|(_, _, xs)| xs.as_slice())
            .unwrap_or(&[])
    };
    for row in rows {
        for p in pairs {
            let (a, b) = (get(row, &p.a), get(row, &p.b));
            let mut line = vec![row.clone(), format!("{} − {}", p.b, p.a), p.key.clone()];
            match paired(a, b) {
                None => line.extend(["0".into(), "–".into(), "–".into(), "–".into()]),
                Some(d) => {
                    line.push(d.diff.n.to_string());
                    line.push(format!("{:+.2}", d.diff.mean));
                    line.push(d.diff.ci.map_or_else(
                        || "n = 1: no interval".into(),
                        |(lo, hi)| format!("[{lo:+.2}, {hi:+.2}]"),
                    ));
                    line.push(d.p.map_or_else(|| "–".into(), |p| format!("{p:.3}")));
                }
            }
            t.push(line);
        }
    }
    t
}
