//! Grid YAML → cells.
//!
//! A grid file holds a base run config, named variants (dotted-key overrides), a grid (dotted
//! key → list of values, cartesian product), seeds and scales (named overrides of the above).
//! Cells are variants × grid points × seeds, in that nesting order; each cell's config is
//! base → scale `set` → variant → grid values → `seed` → `name` → `out_dir` → the user's
//! `--set` overrides, then parsed and validated like any run config.
use anyhow::{anyhow, bail, Result};
use serde_yaml::{Mapping, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::train::config::RunConfig;
use crate::util::overrides::apply_override;
use crate::data::DatasetName;

/// One cell of a sweep: a resolved run config and where it came from.
#[derive(Debug, Clone)]
pub struct Cell {
    /// 0-based position in the sweep's deterministic order (variants × grid × seeds).
    pub index: usize,
    /// Directory name of the run, e.g. `bn-tau_depth110_s0`; also `config.name`.
    pub name: String,
    /// The variant's name, if the grid has variants.
    pub variant: Option<String>,
    /// The grid values of this cell: (dotted key, value as YAML), in the grid's key order.
    pub values: Vec<(String, serde_yaml::Value)>,
    pub seed: u64,
    /// The resolved config (out_dir = the sweep's directory, name = `name`).
    pub config: RunConfig,
}

impl Cell {
    /// The run directory.
    pub fn dir(&self) -> PathBuf {
        self.config.run_dir()
    }
}

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

/// A parsed grid file at one scale.
#[derive(Debug, Clone)]
pub struct Grid {
    /// The sweep's name (file's `name:`), the scale appended when one was chosen.
    pub name: String,
    /// The grid file.
    pub path: PathBuf,
    /// The chosen scale, if any.
    pub scale: Option<String>,
    /// Where the cells' run directories go: `<out_dir>/<name>`.
    pub dir: PathBuf,
    /// The file's `report:` section, if any.
    pub report: Option<ReportSpec>,
    /// The grid's dotted keys in file order (not counting variants and seeds).
    pub keys: Vec<String>,
    /// The variant names in file order (empty if the file has none).
    pub variants: Vec<String>,
    /// The expanded, validated cells (expanded once, by `load`).
    cells: Vec<Cell>,
    /// The chosen scale's `requires_data`.
    requires_data: Vec<DatasetName>,
    /// What the cells are expanded from.
    expansion: Expansion,
}

const TOP_KEYS: [&str; 8] = [
    "name", "out_dir", "base", "variants", "grid", "seeds", "scales", "report",
];
const SCALE_KEYS: [&str; 4] = ["set", "grid", "seeds", "requires_data"];

/// One scale of the file, parsed.
struct Scale {
    set: Vec<(String, Value)>,
    grid: Vec<(String, Vec<Value>)>,
    seeds: Option<Vec<u64>>,
    requires_data: Vec<DatasetName>,
}

impl Grid {
    /// Reads a grid file, picks `scale` (an error names the scales the file has), applies
    /// `overrides` (`key=value`, dotted run-config keys) to every cell.
    ///
    /// The cells are expanded and validated here, so a bad file or override fails before
    /// anything runs. `requires_data` is *not* checked here (so `--status` works without the
    /// data): [`run_sweep`](super::run_sweep) checks it before running any cell, and
    /// [`Grid::check_data`] does it on demand.
    ///
    /// Overrides are applied last to every cell, except three keys that belong to the sweep:
    /// `out_dir=DIR` moves the sweep (cells go to `DIR/<name>/<cell>`), and `name` and `seed`
    /// are refused (cells are named by the grid, seeds come from `seeds:`).
    pub fn load(path: &Path, scale: Option<&str>, overrides: &[String]) -> Result<Grid> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("{file}: cannot read the grid file: {e}"))?;
        let root: Value = if text.trim().is_empty() {
            Value::Mapping(Mapping::new())
        } else {
            serde_yaml::from_str(&text).map_err(|e| anyhow!("{file}: invalid YAML: {e}"))?
        };
        let root = match root {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            other => {
                bail!("{file}: expected a mapping of name, base, variants, grid, ... at the top, got {}", kind(&other))
            }
        };
        let mut top: HashMap<&str, Value> = HashMap::new();
        for (k, v) in root {
            let key = k
                .as_str()
                .ok_or_else(|| anyhow!("{file}: top-level key {} is not a string", render(&k)))?;
            let known = TOP_KEYS.iter().find(|&&t| t == key).ok_or_else(|| {
                anyhow!(
                    "{file}: unknown top-level key `{key}` (expected one of {})",
                    TOP_KEYS.join(", ")
                )
            })?;
            top.insert(known, v);
        }

        let name = match top.remove("name") {
            None | Some(Value::Null) => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .ok_or_else(|| anyhow!("{file}: no `name:` and no file name to take it from"))?,
            Some(v) => scalar(&v)
                .ok_or_else(|| anyhow!("{file}: name: expected a string, got {}", kind(&v)))?,
        };
        if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
            bail!("{file}: name: must be a non-empty name without '/', got {name:?}");
        }
        let mut out_dir = match top.remove("out_dir") {
            None | Some(Value::Null) => PathBuf::from("runs"),
            Some(v) => PathBuf::from(
                scalar(&v)
                    .ok_or_else(|| anyhow!("{file}: out_dir: expected a path, got {}", kind(&v)))?,
            ),
        };
        let base = match top.remove("base") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(m)) => entries(&file, "base", m)?,
            Some(v) => bail!(
                "{file}: base: expected a mapping (a run config), got {}",
                kind(&v)
            ),
        };
        let mut variants: Vec<(String, Vec<(String, Value)>)> = Vec::new();
        match top.remove("variants") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let vname = scalar(&k).ok_or_else(|| {
                        anyhow!("{file}: variants: name {} is not a string", render(&k))
                    })?;
                    let vname = sanitize(&vname);
                    if vname.is_empty() {
                        bail!("{file}: variants: a variant has an empty name");
                    }
                    let sets = match v {
                        Value::Null => Vec::new(),
                        Value::Mapping(m) => entries(&file, &format!("variants.{vname}"), m)?,
                        other => bail!(
                            "{file}: variants.{vname}: expected a mapping of dotted keys to values (e.g. {{model.norm: bn}}), got {}",
                            kind(&other)
                        ),
                    };
                    if variants.iter().any(|(n, _)| *n == vname) {
                        bail!("{file}: variants: two variants are named `{vname}`");
                    }
                    variants.push((vname, sets));
                }
            }
            Some(v) => bail!(
                "{file}: variants: expected a mapping of variant names to overrides, got {}",
                kind(&v)
            ),
        }
        let mut grid = match top.remove("grid") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => grid_lists(&file, "grid", v)?,
        };
        let mut seeds = match top.remove("seeds") {
            None | Some(Value::Null) => vec![0],
            Some(v) => seed_list(&file, "seeds", v)?,
        };
        let mut scales: Vec<(String, Scale)> = Vec::new();
        match top.remove("scales") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let sname =
                        scalar(&k).ok_or_else(|| anyhow!("{file}: scales: name {} is not a string", render(&k)))?;
                    let parsed = parse_scale(&file, &sname, v, &grid)?;
                    scales.push((sname, parsed));
                }
            }
            Some(v) => bail!(
                "{file}: scales: expected a mapping of scale names to {{set, grid, seeds, requires_data}}, got {}",
                kind(&v)
            ),
        }
        let report = match top.remove("report") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_yaml::from_value::<ReportSpec>(v)
                    .map_err(|e| anyhow!("{file}: report: {e}"))?,
            ),
        };

        // The scale.
        let mut set = Vec::new();
        let mut requires_data = Vec::new();
        let mut from_scale: Vec<String> = Vec::new();
        let grid_name = match scale {
            None => name,
            Some(s) => {
                let Some(pos) = scales.iter().position(|(n, _)| n == s) else {
                    let have: Vec<&str> = scales.iter().map(|(n, _)| n.as_str()).collect();
                    if have.is_empty() {
                        bail!("{file}: unknown scale `{s}` (the file has no scales:)");
                    }
                    bail!(
                        "{file}: unknown scale `{s}` (the file's scales: {})",
                        have.join(", ")
                    );
                };
                let sc = scales.swap_remove(pos).1;
                set = sc.set;
                for (key, values) in sc.grid {
                    let slot = grid
                        .iter_mut()
                        .find(|(k, _)| *k == key)
                        .expect("checked by parse_scale");
                    slot.1 = values;
                    from_scale.push(key);
                }
                if let Some(s) = sc.seeds {
                    seeds = s;
                }
                requires_data = sc.requires_data;
                format!("{name}-{s}")
            }
        };

        // The user's overrides: syntax checked once; out_dir moves the sweep.
        let mut user = Vec::new();
        for ov in overrides {
            let mut scratch = Value::Mapping(Mapping::new());
            apply_override(&mut scratch, ov).map_err(|e| anyhow!("--set {ov}: {e:#}"))?;
            let key = ov
                .split_once('=')
                .map(|(k, _)| k.trim())
                .unwrap_or_default();
            match key {
                "name" => {
                    bail!("--set {ov}: a sweep names its cells itself (change `name:` in {file} to rename the sweep)")
                }
                "seed" => {
                    bail!("--set {ov}: a sweep sets each cell's seed from `seeds:` in {file} (edit it or add a scale)")
                }
                "out_dir" => {
                    let v = scratch.get("out_dir").cloned().unwrap_or(Value::Null);
                    out_dir = PathBuf::from(
                        scalar(&v).ok_or_else(|| anyhow!("--set {ov}: expected a path"))?,
                    );
                }
                _ => user.push(ov.clone()),
            }
        }

        // Empty expansions.
        for (key, values) in &grid {
            if values.is_empty() {
                let at = match scale {
                    Some(s) if from_scale.contains(key) => format!(" at scale {s}"),
                    _ => String::new(),
                };
                bail!("{file}: the grid expands to no cell (grid key {key} has no values{at})");
            }
        }
        if seeds.is_empty() {
            bail!("{file}: the grid expands to no cell (seeds is empty)");
        }

        let dir = out_dir.join(&grid_name);
        let keys: Vec<String> = grid.iter().map(|(k, _)| k.clone()).collect();
        let variant_names = variants.iter().map(|(n, _)| n.clone()).collect();
        let expansion = Expansion {
            file,
            base,
            set,
            variants,
            grid,
            seeds,
            dir: dir.clone(),
            user,
        };
        let cells = expansion.cells()?;
        Ok(Grid {
            name: grid_name,
            path: path.to_path_buf(),
            scale: scale.map(str::to_string),
            dir,
            report,
            keys,
            variants: variant_names,
            cells,
            requires_data,
            expansion,
        })
    }

    /// The same grid with its seeds replaced (`deepres sweep --seeds 0,1,2`): the cells are
    /// expanded again; an empty or repeated seed list is an error.
    pub fn with_seeds(mut self, seeds: &[u64]) -> Result<Grid> {
        if seeds.is_empty() {
            bail!(
                "{}: the grid expands to no cell (--seeds is empty)",
                self.path.display()
            );
        }
        self.expansion.seeds = seeds.to_vec();
        self.cells = self.expansion.cells()?;
        Ok(self)
    }

    /// The same grid with its cells in `dir` instead of [`Grid::dir`] (`--force-new`,
    /// `--sweep-dir`).
    pub fn relocated(&self, dir: &Path) -> Result<Grid> {
        let mut g = self.clone();
        g.expansion.dir = dir.to_path_buf();
        g.dir = dir.to_path_buf();
        g.cells = g.expansion.cells()?;
        Ok(g)
    }

    /// The seeds of the cells (the file's, the scale's or [`Grid::with_seeds`]'s), in order.
    pub fn seeds(&self) -> &[u64] {
        &self.expansion.seeds
    }

    /// The cells, in order; every cell's config is validated (an error names the cell).
    pub fn cells(&self) -> Result<Vec<Cell>> {
        Ok(self.cells.clone())
    }

    /// The cell at position `index` (as listed by `--status`); an error gives the valid range.
    pub fn cell(&self, index: usize) -> Result<Cell> {
        self.cells.get(index).cloned().ok_or_else(|| {
            anyhow!(
                "{}: no cell {index}: the sweep has {} cells (0..={})",
                self.path.display(),
                self.cells.len(),
                self.cells.len().saturating_sub(1)
            )
        })
    }

    /// The datasets the chosen scale says must be on disk (`requires_data:`).
    pub fn requires_data(&self) -> &[DatasetName] {
        &self.requires_data
    }

    /// Checks that every dataset of the scale's `requires_data` is on disk under each cell's
    /// data root; the error is one line naming the file, the scale, the dataset, what is
    /// missing and how to get it. [`run_sweep`](super::run_sweep) calls this before running
    /// any cell.
    pub fn check_data(&self) -> Result<()> {
        let mut roots: Vec<&Path> = Vec::new();
        for c in &self.cells {
            if !roots.contains(&c.config.data.root.as_path()) {
                roots.push(&c.config.data.root);
            }
        }
        for &ds in &self.requires_data {
            for root in &roots {
                if let Some(missing) = missing_data(ds, root) {
                    bail!(
                        "{}: scale {} needs {ds} on disk ({missing} missing); run `make data-{ds}` or {}",
                        self.path.display(),
                        self.scale.as_deref().unwrap_or("(none)"),
                        crate::data::fetch::hint(ds, root)
                    );
                }
            }
        }
        Ok(())
    }
}

/// What is missing of dataset `name` under `root` (a directory or a file), if anything.
fn missing_data(name: DatasetName, root: &Path) -> Option<String> {
    use crate::data::{default_dir, dir_name, idx};
    let files: Vec<String> = match name {
        DatasetName::Synthetic => return None,
        DatasetName::Cifar10 => (1..=5)
            .map(|i| format!("data_batch_{i}.bin"))
            .chain(["test_batch.bin".to_string()])
            .collect(),
        DatasetName::Cifar100 => vec!["train.bin".into(), "test.bin".into()],
        DatasetName::Mnist | DatasetName::FashionMnist => {
            if idx::idx_dir_complete(&default_dir(name, root)) {
                return None;
            }
            let dir = root.join(dir_name(name));
            if !dir.is_dir() {
                return Some(format!("{}/", dir.display()));
            }
            let base = idx::IDX_FILES
                .iter()
                .find(|f| idx::find_idx_file(&dir, f).is_none())?;
            return Some(format!("{}[.gz]", dir.join(base).display()));
        }
    };
    let dir = default_dir(name, root);
    if !dir.is_dir() {
        return Some(format!("{}/", dir.display()));
    }
    files
        .iter()
        .map(|f| dir.join(f))
        .find(|p| !p.is_file())
        .map(|p| p.display().to_string())
}

/// Everything the cells are made of (at the chosen scale, the user's overrides included).
#[derive(Debug, Clone)]
struct Expansion {
    file: String,
    base: Vec<(String, Value)>,
    set: Vec<(String, Value)>,
    variants: Vec<(String, Vec<(String, Value)>)>,
    grid: Vec<(String, Vec<Value>)>,
    seeds: Vec<u64>,
    dir: PathBuf,
    user: Vec<String>,
}

impl Expansion {
    fn cells(&self) -> Result<Vec<Cell>> {
        let file = self.file.as_str();
        let labels = key_labels(&self.grid);
        let unnamed = [(String::new(), Vec::new())];
        let variants: &[(String, Vec<(String, Value)>)] = if self.variants.is_empty() {
            &unnamed
        } else {
            &self.variants
        };
        let points: usize = self.grid.iter().map(|(_, v)| v.len()).product();
        let mut cells: Vec<Cell> = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (vname, vsets) in variants {
            for p in 0..points {
                // Mixed radix, last key fastest.
                let mut rest = p;
                let mut idx = vec![0; self.grid.len()];
                for (i, (_, vals)) in self.grid.iter().enumerate().rev() {
                    idx[i] = rest % vals.len();
                    rest /= vals.len();
                }
                let values: Vec<(String, Value)> = self
                    .grid
                    .iter()
                    .zip(&idx)
                    .map(|((k, vals), &i)| (k.clone(), vals[i].clone()))
                    .collect();
                for &seed in &self.seeds {
                    let index = cells.len();
                    let mut parts: Vec<String> = Vec::new();
                    if !vname.is_empty() {
                        parts.push(vname.clone());
                    }
                    for ((_, v), label) in values.iter().zip(&labels) {
                        parts.push(value_label(label, v));
                    }
                    parts.push(format!("s{seed}"));
                    let name = sanitize(&parts.join("_"));
                    if let Some(&other) = names.get(&name) {
                        bail!(
                            "{file}: cells {other} and {index} are both named `{name}` (repeated seeds or grid values, or values that differ only in characters outside [A-Za-z0-9._-]); make them distinct"
                        );
                    }
                    names.insert(name.clone(), index);
                    let at = |what: &str| format!("{file}: cell {name}: {what}");
                    let mut tree = Value::Mapping(Mapping::new());
                    for (k, v) in &self.base {
                        set_path(&mut tree, k, v.clone())
                            .map_err(|e| anyhow!("{}: {e}", at("base")))?;
                    }
                    for (k, v) in &self.set {
                        set_path(&mut tree, k, v.clone())
                            .map_err(|e| anyhow!("{}: {e}", at("scale set")))?;
                    }
                    for (k, v) in vsets {
                        set_path(&mut tree, k, v.clone())
                            .map_err(|e| anyhow!("{}: {e}", at(&format!("variant {vname}"))))?;
                    }
                    for (k, v) in &values {
                        set_path(&mut tree, k, v.clone())
                            .map_err(|e| anyhow!("{}: {e}", at("grid")))?;
                    }
                    set_path(&mut tree, "seed", Value::Number(seed.into()))?;
                    set_path(&mut tree, "name", Value::String(name.clone()))?;
                    set_path(
                        &mut tree,
                        "out_dir",
                        Value::String(self.dir.display().to_string()),
                    )?;
                    for ov in &self.user {
                        apply_override(&mut tree, ov)
                            .map_err(|e| anyhow!("{}: {e:#}", at(&format!("--set {ov}"))))?;
                    }
                    let text = serde_yaml::to_string(&tree)
                        .map_err(|e| anyhow!("{}: {e}", at("cannot serialize the config")))?;
                    let config =
                        RunConfig::from_yaml_str(&text, &format!("{file}: cell {name}"), &[])
                            .map_err(|e| anyhow!("{}", one_line(&format!("{e:#}"))))?;
                    cells.push(Cell {
                        index,
                        name,
                        variant: (!vname.is_empty()).then(|| vname.clone()),
                        values: values.clone(),
                        seed,
                        config,
                    });
                }
            }
        }
        Ok(cells)
    }
}

/// The name label of each grid key: its last segment, or the whole key (dots → '-') when
/// two keys share a last segment.
fn key_labels(grid: &[(String, Vec<Value>)]) -> Vec<String> {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    grid.iter()
        .map(|(k, _)| {
            let l = last(k);
            if grid.iter().filter(|(o, _)| last(o) == l).count() > 1 {
                k.replace('.', "-")
            } else {
                l
            }
        })
        .collect()
}

/// `depth110` for numbers, `name-cifar100` for anything else.
fn value_label(label: &str, v: &Value) -> String {
    match v {
        Value::Number(n) => format!("{label}{n}"),
        other => format!("{label}-{}", bare(other)),
    }
}

/// A value's text in a cell name: scalars as written, lists and maps joined with '-'.
fn bare(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(s) => s.iter().map(bare).collect::<Vec<_>>().join("-"),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| format!("{}-{}", bare(k), bare(v)))
            .collect::<Vec<_>>()
            .join("-"),
        Value::Tagged(t) => bare(&t.value),
    }
}

/// Keeps [A-Za-z0-9._-]; every other character becomes '-'.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A scalar as text (strings, numbers, bools).
fn scalar(v: &Value) -> Option<String> {
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

/// A mapping's (key, value) pairs with string keys, in file order.
fn entries(file: &str, at: &str, m: Mapping) -> Result<Vec<(String, Value)>> {
    m.into_iter()
        .map(|(k, v)| {
            let key = k
                .as_str()
                .ok_or_else(|| anyhow!("{file}: {at}: key {} is not a string", render(&k)))?;
            check_key(key).map_err(|e| anyhow!("{file}: {at}: {e}"))?;
            Ok((key.to_string(), v))
        })
        .collect()
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.split('.').any(str::is_empty) {
        bail!("empty part in key {key:?}; expected a dotted key like model.depth");
    }
    Ok(())
}

/// `key: [values]` pairs of a `grid:` section.
fn grid_lists(file: &str, at: &str, v: Value) -> Result<Vec<(String, Vec<Value>)>> {
    let m = match v {
        Value::Mapping(m) => m,
        other => bail!(
            "{file}: {at}: expected a mapping of dotted keys to lists of values, got {}",
            kind(&other)
        ),
    };
    entries(file, at, m)?
        .into_iter()
        .map(|(k, v)| match v {
            Value::Sequence(s) => Ok((k, s)),
            other => bail!(
                "{file}: {at}.{k}: expected a list of values (e.g. [20, 56]), got {}",
                kind(&other)
            ),
        })
        .collect()
}

fn seed_list(file: &str, at: &str, v: Value) -> Result<Vec<u64>> {
    let items = match v {
        Value::Sequence(s) => s,
        one @ Value::Number(_) => vec![one],
        other => bail!(
            "{file}: {at}: expected a list of seeds (e.g. [0, 1, 2]), got {}",
            kind(&other)
        ),
    };
    let mut seeds = Vec::new();
    for s in &items {
        let n = s.as_u64().ok_or_else(|| {
            anyhow!(
                "{file}: {at}: a seed must be an integer ≥ 0, got {}",
                render(s)
            )
        })?;
        seeds.push(n);
    }
    Ok(seeds)
}

fn parse_scale(file: &str, name: &str, v: Value, grid: &[(String, Vec<Value>)]) -> Result<Scale> {
    let at = format!("scales.{name}");
    let m = match v {
        Value::Null => Mapping::new(),
        Value::Mapping(m) => m,
        other => bail!(
            "{file}: {at}: expected a mapping of set, grid, seeds, requires_data, got {}",
            kind(&other)
        ),
    };
    let mut scale = Scale {
        set: Vec::new(),
        grid: Vec::new(),
        seeds: None,
        requires_data: Vec::new(),
    };
    for (k, v) in m {
        let key = k
            .as_str()
            .ok_or_else(|| anyhow!("{file}: {at}: key {} is not a string", render(&k)))?;
        match key {
            "set" => {
                scale.set = match v {
                    Value::Null => Vec::new(),
                    Value::Mapping(m) => entries(file, &format!("{at}.set"), m)?,
                    other => {
                        bail!(
                            "{file}: {at}.set: expected a mapping of dotted keys to values, got {}",
                            kind(&other)
                        )
                    }
                }
            }
            "grid" => {
                if v.is_null() {
                    continue;
                }
                scale.grid = grid_lists(file, &format!("{at}.grid"), v)?;
                for (gk, _) in &scale.grid {
                    if !grid.iter().any(|(k, _)| k == gk) {
                        let keys: Vec<&str> = grid.iter().map(|(k, _)| k.as_str()).collect();
                        bail!(
                            "{file}: {at}.grid: {gk} is not a key of grid: (a scale replaces the values of grid keys; the grid's keys: {}); use {at}.set for a single value",
                            if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
                        );
                    }
                }
            }
            "seeds" => scale.seeds = Some(seed_list(file, &format!("{at}.seeds"), v)?),
            "requires_data" => {
                let items = match v {
                    Value::Sequence(s) => s,
                    one @ Value::String(_) => vec![one],
                    other => {
                        bail!(
                            "{file}: {at}.requires_data: expected a list of dataset names, got {}",
                            kind(&other)
                        )
                    }
                };
                for it in &items {
                    let s = it.as_str().ok_or_else(|| {
                        anyhow!(
                            "{file}: {at}.requires_data: expected dataset names, got {}",
                            render(it)
                        )
                    })?;
                    let ds: DatasetName = s
                        .parse()
                        .map_err(|e: String| anyhow!("{file}: {at}.requires_data: {e}"))?;
                    scale.requires_data.push(ds);
                }
            }
            other => bail!(
                "{file}: {at}: unknown key `{other}` (expected one of {})",
                SCALE_KEYS.join(", ")
            ),
        }
    }
    Ok(scale)
}

/// Sets a dotted key in a YAML tree; a mapping value is merged into a mapping already there
/// (so `model: {norm: none}` keeps the other `model` keys), anything else replaces.
fn set_path(root: &mut Value, key: &str, value: Value) -> Result<()> {
    check_key(key)?;
    let mut node = root;
    for part in key.split('.') {
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let Some(map) = node.as_mapping_mut() else {
            bail!("{key}: {part:?} is inside a value that is not a mapping");
        };
        let k = Value::String(part.to_string());
        node = map.entry(k).or_insert(Value::Null);
    }
    merge(node, value);
    Ok(())
}

fn merge(node: &mut Value, value: Value) {
    match (node, value) {
        (Value::Mapping(dst), Value::Mapping(src)) => {
            for (k, v) in src {
                match dst.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        dst.insert(k, v);
                    }
                }
            }
        }
        (node, value) => *node = value,
    }
}
