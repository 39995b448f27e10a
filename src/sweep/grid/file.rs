//! The grid file's format: [`GridFile`] and its parts, parsed by serde (unknown keys refused,
//! missing or `null` keys defaulted), then checked for what serde cannot check (names, a
//! scale's grid keys). Errors are one line: `<file>: <key path>: <what is wrong>`.
use anyhow::{anyhow, bail, Result};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use crate::data::DatasetName;
use crate::util::overrides::explain_serde_error;

/// What `deepres report` makes of a sweep (the grid file's `report:` section).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    pub kind: ReportKind,
    /// Title of the table or figure, e.g. "Table Z1: CIFAR-10 test error (%), BN vs BN + τ".
    pub title: String,
    /// Tables: the grid key whose values are the rows (e.g. `model.depth`); columns are the
    /// variants; one table per combination of the other grid keys; seeds are aggregated.
    #[serde(default)]
    pub rows: Option<String>,
    /// Published numbers to print beside ours, a key of `report::published` (e.g. `zhang2022-table1`).
    #[serde(default)]
    pub published: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// Best and final test error per cell, mean ± std over seeds.
    Table,
    /// Per-epoch curves (train loss, test error) of every cell, one figure per grid point.
    Curves,
}

/// What a scale's runs should show (`scales.<name>.expect:`, one item per claim), judged by
/// `deepres report` as acceptance checks (the report's last line says whether this run shows
/// it; docs/cli.md). Errors are best test errors in %, a diverged cell counts as 100 %.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", try_from = "ExpectationFile")]
pub enum Expectation {
    /// Every cell of these variants trains: its best test error (mean over seeds) is below
    /// `below` %.
    Trains { variants: Vec<String>, below: f64 },
    /// At the last row of the table (the deepest depth), `variant` has the highest best test
    /// error of all variants, or diverged.
    Worst { variant: String },
    /// How `variant` compares with `than`, measured and said, not checked: the mean paired
    /// difference `variant − than` of best test errors (pairs: rows × seeds), its 95 %
    /// interval and what the interval says (better, worse, no clear difference).
    Compare { variant: String, than: String },
    /// Curves: in every run, each metric (`train_loss`, `test_error`) at the last epoch is at
    /// most `ratio` times its value at the first epoch.
    Falls {
        metrics: Vec<CurveMetric>,
        ratio: f64,
    },
}

/// An `expect:` item as written: a mapping with exactly one of the claims' names as its key
/// (`- trains: {variants: [a, b], below: 15}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExpectationFile {
    trains: Option<TrainsArgs>,
    worst: Option<WorstArgs>,
    compare: Option<CompareArgs>,
    falls: Option<FallsArgs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainsArgs {
    variants: Vec<String>,
    below: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorstArgs {
    variant: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareArgs {
    variant: String,
    than: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FallsArgs {
    metrics: Vec<CurveMetric>,
    ratio: f64,
}

impl TryFrom<ExpectationFile> for Expectation {
    type Error = String;

    fn try_from(f: ExpectationFile) -> Result<Expectation, String> {
        let mut found = Vec::new();
        if let Some(a) = f.trains {
            found.push(Expectation::Trains {
                variants: a.variants,
                below: a.below,
            });
        }
        if let Some(a) = f.worst {
            found.push(Expectation::Worst { variant: a.variant });
        }
        if let Some(a) = f.compare {
            found.push(Expectation::Compare {
                variant: a.variant,
                than: a.than,
            });
        }
        if let Some(a) = f.falls {
            found.push(Expectation::Falls {
                metrics: a.metrics,
                ratio: a.ratio,
            });
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            n => Err(format!(
                "expected one of trains, worst, compare, falls per item, got {n}"
            )),
        }
    }
}

/// A per-epoch metric of `metrics.csv` that an [`Expectation::Falls`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurveMetric {
    TrainLoss,
    TestError,
}

impl Expectation {
    /// The variants the claim names.
    pub fn variants(&self) -> Vec<&str> {
        match self {
            Expectation::Trains { variants, .. } => variants.iter().map(String::as_str).collect(),
            Expectation::Worst { variant } => vec![variant],
            Expectation::Compare { variant, than } => vec![variant, than],
            Expectation::Falls { .. } => vec![],
        }
    }
}

/// `(dotted key, value)` pairs in file order (`base:`, a variant, a scale's `set:`).
pub(super) type Sets = Vec<(String, Value)>;
/// `(dotted key, values)` pairs in file order (`grid:`, a scale's `grid:`).
pub(super) type GridLists = Vec<(String, Vec<Value>)>;

/// A grid file as written. A key left out or `null` takes its default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct GridFile {
    /// The sweep's name; the file's stem when left out.
    #[serde(deserialize_with = "optional_text")]
    pub name: Option<String>,
    /// Where the sweep's directory goes.
    #[serde(deserialize_with = "out_dir_or_runs")]
    pub out_dir: PathBuf,
    /// The base run config (nested or dotted keys).
    #[serde(deserialize_with = "sets")]
    pub base: Sets,
    /// Variant name → dotted-key overrides, in file order.
    #[serde(deserialize_with = "variants")]
    pub variants: Vec<(String, Sets)>,
    /// Dotted key → values, in file order.
    #[serde(deserialize_with = "grid_lists")]
    pub grid: GridLists,
    #[serde(deserialize_with = "seeds_or_zero")]
    pub seeds: Vec<u64>,
    /// Scale name → what it changes, in file order.
    #[serde(deserialize_with = "scales")]
    pub scales: Vec<(String, ScaleFile)>,
    pub report: Option<ReportSpec>,
}

impl Default for GridFile {
    fn default() -> GridFile {
        GridFile {
            name: None,
            out_dir: PathBuf::from("runs"),
            base: Vec::new(),
            variants: Vec::new(),
            grid: Vec::new(),
            seeds: vec![0],
            scales: Vec::new(),
            report: None,
        }
    }
}

/// One scale of the file (`scales.<name>:`): overrides of the base, the grid and the seeds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ScaleFile {
    /// Dotted keys set in every cell (after the base, before the variant).
    #[serde(deserialize_with = "sets")]
    pub set: Sets,
    /// New values for keys of the file's `grid:`.
    #[serde(deserialize_with = "grid_lists")]
    pub grid: GridLists,
    /// The scale's seeds, replacing the file's.
    #[serde(deserialize_with = "some_seeds")]
    pub seeds: Option<Vec<u64>>,
    /// Datasets that must be on disk before a cell runs.
    #[serde(deserialize_with = "datasets")]
    pub requires_data: Vec<DatasetName>,
    /// What the scale's runs should show, judged by `deepres report`.
    pub expect: Vec<Expectation>,
    /// The variants this scale runs (all of the file's when left out), by name.
    #[serde(deserialize_with = "some_names")]
    pub variants: Option<Vec<String>>,
}

impl GridFile {
    /// Reads and parses `path`; every error is one line naming the file and the key.
    pub fn read(path: &Path) -> Result<GridFile> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("{file}: cannot read the grid file: {e}"))?;
        let root: Value = if text.trim().is_empty() {
            Value::Mapping(Mapping::new())
        } else {
            serde_yaml::from_str(&text).map_err(|e| anyhow!("{file}: invalid YAML: {e}"))?
        };
        if !matches!(root, Value::Mapping(_) | Value::Null) {
            bail!(
                "{file}: expected a mapping of name, base, variants, grid, ... at the top, got {}",
                kind(&root)
            );
        }
        let parsed: GridFile = serde_path_to_error::deserialize(root).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            anyhow!("{file}: {}", serde_message(&path, &inner))
        })?;
        parsed.checked(&file)
    }

    /// The checks serde cannot make: the variant names (sanitized, non-empty, distinct) and
    /// every scale's grid keys (keys of `grid:`).
    fn checked(mut self, file: &str) -> Result<GridFile> {
        let mut seen: Vec<&str> = Vec::new();
        for (vname, _) in &mut self.variants {
            *vname = super::sanitize(vname);
        }
        for (vname, _) in &self.variants {
            if vname.is_empty() {
                bail!("{file}: variants: a variant has an empty name");
            }
            if seen.contains(&vname.as_str()) {
                bail!("{file}: variants: two variants are named `{vname}`");
            }
            seen.push(vname);
        }
        for (_, scale) in &mut self.scales {
            for name in scale.variants.iter_mut().flatten() {
                *name = super::sanitize(name);
            }
        }
        let all: Vec<&str> = self.variants.iter().map(|(v, _)| v.as_str()).collect();
        let listing = |names: &[&str]| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        for (sname, scale) in &self.scales {
            for name in scale.variants.iter().flatten() {
                if !all.contains(&name.as_str()) {
                    bail!(
                        "{file}: scales.{sname}.variants: `{name}` is not a variant (the file's variants: {})",
                        listing(&all)
                    );
                }
            }
            // The claims may name only the variants the scale runs.
            let runs: Vec<&str> = match &scale.variants {
                Some(v) => v.iter().map(String::as_str).collect(),
                None => all.clone(),
            };
            for name in scale.expect.iter().flat_map(Expectation::variants) {
                if !runs.contains(&name) {
                    bail!(
                        "{file}: scales.{sname}.expect: `{name}` is not a variant of this scale (its variants: {})",
                        listing(&runs)
                    );
                }
            }
            for (gk, _) in &scale.grid {
                if !self.grid.iter().any(|(k, _)| k == gk) {
                    let keys: Vec<&str> = self.grid.iter().map(|(k, _)| k.as_str()).collect();
                    let at = format!("scales.{sname}");
                    bail!(
                        "{file}: {at}.grid: {gk} is not a key of grid: (a scale replaces the values of grid keys; the grid's keys: {}); use {at}.set for a single value",
                        if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
                    );
                }
            }
        }
        Ok(self)
    }
}

/// `<key path>: <message>` in the form of deepres's errors: an unknown key is named once, by
/// the mapping that holds it (`scales.smoke: unknown key `sets`, ...`), and the sections are
/// described instead of serde's struct names.
fn serde_message(path: &str, inner: &str) -> String {
    let inner = inner
        .replace(
            "expected struct ScaleFile",
            "expected a mapping of set, grid, seeds, requires_data, expect, variants",
        )
        .replace(
            "expected struct ReportSpec",
            "expected a mapping of kind, title, rows, published",
        );
    let inner = explain_serde_error(&inner);
    let mut path = path;
    if let Some(key) = inner
        .strip_prefix("unknown key `")
        .and_then(|r| r.split('`').next())
    {
        if path == key {
            path = ".";
        } else if let Some(parent) = path.strip_suffix(&format!(".{key}")) {
            path = parent;
        }
    }
    if path == "." {
        inner
    } else {
        format!("{path}: {inner}")
    }
}

/// A key or value written as a scalar (string, number, bool), as text.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        let v = Value::deserialize(d)?;
        scalar(&v)
            .map(Text)
            .ok_or_else(|| de::Error::custom(format!("expected a string, got {}", kind(&v))))
    }
}

/// A dotted key (`model.depth`): a string without empty parts.
struct DottedKey(String);

impl<'de> Deserialize<'de> for DottedKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DottedKey, D::Error> {
        let v = Value::deserialize(d)?;
        let key = v
            .as_str()
            .ok_or_else(|| de::Error::custom(format!("key {} is not a string", render(&v))))?;
        check_key(key).map_err(de::Error::custom)?;
        Ok(DottedKey(key.to_string()))
    }
}

/// A mapping's entries in file order; `null` is an empty mapping. `expecting` says what the
/// mapping holds, for the error when it is something else.
struct Entries<K, V> {
    items: Vec<(K, V)>,
}

struct EntriesVisitor<K, V> {
    expecting: &'static str,
    kv: PhantomData<(K, V)>,
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<K, V> {
    type Value = Entries<K, V>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Entries { items: Vec::new() })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(kv) = map.next_entry::<K, V>()? {
            items.push(kv);
        }
        Ok(Entries { items })
    }
}

fn entries<'de, D, K, V>(d: D, expecting: &'static str) -> Result<Vec<(K, V)>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de>,
    V: Deserialize<'de>,
{
    let visitor = EntriesVisitor {
        expecting,
        kv: PhantomData,
    };
    Ok(d.deserialize_any(visitor)?.items)
}

fn sets<'de, D: Deserializer<'de>>(d: D) -> Result<Sets, D::Error> {
    let items: Vec<(DottedKey, Value)> = entries(
        d,
        "a mapping of dotted keys to values (e.g. {model.norm: bn})",
    )?;
    Ok(items.into_iter().map(|(k, v)| (k.0, v)).collect())
}

/// A variant's overrides: a mapping of dotted keys, or `null` for none.
struct VariantSets(Sets);

impl<'de> Deserialize<'de> for VariantSets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<VariantSets, D::Error> {
        sets(d).map(VariantSets)
    }
}

fn variants<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Sets)>, D::Error> {
    let items: Vec<(Text, VariantSets)> = entries(d, "a mapping of variant names to overrides")?;
    Ok(items.into_iter().map(|(k, v)| (k.0, v.0)).collect())
}

/// The values of one grid key: a list.
struct ValueList(Vec<Value>);

impl<'de> Deserialize<'de> for ValueList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ValueList, D::Error> {
        match Value::deserialize(d)? {
            Value::Sequence(s) => Ok(ValueList(s)),
            other => Err(de::Error::custom(format!(
                "expected a list of values (e.g. [20, 56]), got {}",
                kind(&other)
            ))),
        }
    }
}

fn grid_lists<'de, D: Deserializer<'de>>(d: D) -> Result<GridLists, D::Error> {
    let items: Vec<(DottedKey, ValueList)> =
        entries(d, "a mapping of dotted keys to lists of values")?;
    Ok(items.into_iter().map(|(k, v)| (k.0, v.0)).collect())
}

/// Seeds: a list of integers ≥ 0, or one.
struct Seeds(Vec<u64>);

impl<'de> Deserialize<'de> for Seeds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Seeds, D::Error> {
        let items = match Value::deserialize(d)? {
            Value::Sequence(s) => s,
            one @ Value::Number(_) => vec![one],
            other => {
                return Err(de::Error::custom(format!(
                    "expected a list of seeds (e.g. [0, 1, 2]), got {}",
                    kind(&other)
                )))
            }
        };
        items
            .iter()
            .map(|s| {
                s.as_u64().ok_or_else(|| {
                    de::Error::custom(format!("a seed must be an integer ≥ 0, got {}", render(s)))
                })
            })
            .collect::<Result<_, _>>()
            .map(Seeds)
    }
}

/// The file's seeds; `null` is the default, `[0]`.
fn seeds_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    Ok(Option::<Seeds>::deserialize(d)?.map_or_else(|| vec![0], |s| s.0))
}

/// A scale's seeds: present means a list (`null` is an error, as a list is expected).
fn some_seeds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u64>>, D::Error> {
    Ok(Some(Seeds::deserialize(d)?.0))
}

fn some_names<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let names: Vec<Text> = Vec::deserialize(d)?;
    Ok(Some(names.into_iter().map(|t| t.0).collect()))
}

fn optional_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Text>::deserialize(d)?.map(|t| t.0))
}

/// `out_dir:` as a path; `null` is the default, `runs`.
fn out_dir_or_runs<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(GridFile::default().out_dir),
        v => scalar(&v)
            .map(PathBuf::from)
            .ok_or_else(|| de::Error::custom(format!("expected a path, got {}", kind(&v)))),
    }
}

fn scales<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, ScaleFile)>, D::Error> {
    let items: Vec<(Text, Option<ScaleFile>)> = entries(
        d,
        "a mapping of scale names to {set, grid, seeds, requires_data}",
    )?;
    Ok(items
        .into_iter()
        .map(|(k, v)| (k.0, v.unwrap_or_default()))
        .collect())
}

/// `requires_data:`: dataset names, a list or one.
fn datasets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DatasetName>, D::Error> {
    let items = match Value::deserialize(d)? {
        Value::Sequence(s) => s,
        one @ Value::String(_) => vec![one],
        other => {
            return Err(de::Error::custom(format!(
                "expected a list of dataset names, got {}",
                kind(&other)
            )))
        }
    };
    items
        .iter()
        .map(|it| {
            let s = it.as_str().ok_or_else(|| {
                de::Error::custom(format!("expected dataset names, got {}", render(it)))
            })?;
            s.parse().map_err(|e: String| de::Error::custom(e))
        })
        .collect()
}

/// Refuses a dotted key with an empty part.
pub(super) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.split('.').any(str::is_empty) {
        bail!("empty part in key {key:?}; expected a dotted key like model.depth");
    }
    Ok(())
}

/// A scalar as text (strings, numbers, bools).
pub(super) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn render(v: &Value) -> String {
    serde_yaml::to_string(v)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("{v:?}"))
}
