//! Cells from a parsed grid: the expansion (variants × grid points × seeds), each cell's name
//! and its config (base → scale `set` → variant → grid values → `seed` → `name` → `out_dir` →
//! the user's `--set`), parsed and validated like any run config.
use anyhow::{anyhow, bail, Result};
use serde_yaml::{Mapping, Value};
use std::collections::HashMap;
use std::path::PathBuf;

use super::file::{check_key, GridLists, Sets};
use super::{sanitize, Cell};
use crate::train::config::RunConfig;
use crate::util::one_line;
use crate::util::overrides::apply_override;

/// Everything the cells are made of (at the chosen scale, the user's overrides included).
#[derive(Debug, Clone)]
pub(super) struct Expansion {
    pub file: String,
    pub base: Sets,
    pub set: Sets,
    pub variants: Vec<(String, Sets)>,
    pub grid: GridLists,
    pub seeds: Vec<u64>,
    pub dir: PathBuf,
    pub user: Vec<String>,
}

impl Expansion {
    /// The cells in order: variants, then grid points (last key fastest), then seeds; an
    /// error names the cell (two cells with one name, a config that does not parse).
    pub fn cells(&self) -> Result<Vec<Cell>> {
        let labels = key_labels(&self.grid);
        let unnamed = [(String::new(), Vec::new())];
        let variants: &[(String, Sets)] = if self.variants.is_empty() {
            &unnamed
        } else {
            &self.variants
        };
        let points: usize = self.grid.iter().map(|(_, v)| v.len()).product();
        let mut cells: Vec<Cell> = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (vname, vsets) in variants {
            for p in 0..points {
                let values = self.point(p);
                for &seed in &self.seeds {
                    let index = cells.len();
                    let name = cell_name(vname, &values, &labels, seed);
                    if let Some(&other) = names.get(&name) {
                        bail!(
                            "{}: cells {other} and {index} are both named `{name}` (repeated seeds or grid values, or values that differ only in characters outside [A-Za-z0-9._-]); make them distinct",
                            self.file
                        );
                    }
                    names.insert(name.clone(), index);
                    let config = self.config(&name, vname, vsets, &values, seed)?;
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

    /// The grid values of point `p` (mixed radix, last key fastest).
    fn point(&self, p: usize) -> Vec<(String, Value)> {
        let mut rest = p;
        let mut idx = vec![0; self.grid.len()];
        for (i, (_, vals)) in self.grid.iter().enumerate().rev() {
            idx[i] = rest % vals.len();
            rest /= vals.len();
        }
        self.grid
            .iter()
            .zip(&idx)
            .map(|((k, vals), &i)| (k.clone(), vals[i].clone()))
            .collect()
    }

    /// A cell's run config: the layers set in order, then parsed and validated.
    fn config(
        &self,
        name: &str,
        vname: &str,
        vsets: &Sets,
        values: &[(String, Value)],
        seed: u64,
    ) -> Result<RunConfig> {
        let file = self.file.as_str();
        let at = |what: &str| format!("{file}: cell {name}: {what}");
        let mut tree = Value::Mapping(Mapping::new());
        let layers: [(&[(String, Value)], String); 4] = [
            (&self.base, at("base")),
            (&self.set, at("scale set")),
            (vsets, at(&format!("variant {vname}"))),
            (values, at("grid")),
        ];
        for (sets, what) in layers {
            for (k, v) in sets {
                set_path(&mut tree, k, v.clone()).map_err(|e| anyhow!("{what}: {e}"))?;
            }
        }
        set_path(&mut tree, "seed", Value::Number(seed.into()))?;
        set_path(&mut tree, "name", Value::String(name.to_string()))?;
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
        RunConfig::from_yaml_str(&text, &format!("{file}: cell {name}"), &[])
            .map_err(|e| anyhow!("{}", one_line(&format!("{e:#}"))))
    }
}

/// `<variant>_<label><value>..._s<seed>`, sanitized.
fn cell_name(vname: &str, values: &[(String, Value)], labels: &[String], seed: u64) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !vname.is_empty() {
        parts.push(vname.to_string());
    }
    for ((_, v), label) in values.iter().zip(labels) {
        parts.push(value_label(label, v));
    }
    parts.push(format!("s{seed}"));
    sanitize(&parts.join("_"))
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
