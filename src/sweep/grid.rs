//! Grid YAML → cells.
//!
//! A grid file holds a base run config, named variants (dotted-key overrides), a grid (dotted
//! key → list of values, cartesian product), seeds and scales (named overrides of the above).
//! Cells are variants × grid points × seeds, in that nesting order; each cell's config is
//! base → scale `set` → variant → grid values → `seed` → `name` → `out_dir` → the user's
//! `--set` overrides, then parsed and validated like any run config.
use anyhow::{anyhow, bail, Result};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

use crate::data::DatasetName;
use crate::train::config::RunConfig;
use crate::util::overrides::{apply_override, keys_overlap};

mod expand;
mod file;

use expand::Expansion;
use file::{scalar, GridFile, GridLists, ScaleFile, Sets};
pub use file::{CurveMetric, Expectation, ReportKind, ReportSpec};

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
    /// What the chosen scale's runs should show (`scales.<name>.expect:`).
    pub expect: Vec<Expectation>,
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

/// What the chosen scale changes, taken out of the file.
struct Picked {
    set: Sets,
    requires_data: Vec<DatasetName>,
    expect: Vec<Expectation>,
    /// The variants the scale runs (None: all).
    variants: Option<Vec<String>>,
    /// The grid keys whose values come from the scale.
    from_scale: Vec<String>,
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
        let f = GridFile::read(path)?;
        let name = sweep_name(path, &file, f.name)?;
        let (mut grid, mut seeds, mut variants) = (f.grid, f.seeds, f.variants);
        let picked = pick_scale(&file, scale, f.scales, &mut grid, &mut seeds)?;
        if let Some(names) = &picked.variants {
            variants.retain(|(v, _)| names.contains(v));
        }
        let (out_dir, user) = sweep_overrides(&file, overrides, f.out_dir)?;
        check_user_keys(&file, &user, &grid, &variants)?;
        check_not_empty(&file, scale, &grid, &picked.from_scale, &seeds)?;

        let grid_name = match scale {
            None => name,
            Some(s) => format!("{name}-{s}"),
        };
        let dir = out_dir.join(&grid_name);
        let keys: Vec<String> = grid.iter().map(|(k, _)| k.clone()).collect();
        let variant_names = variants.iter().map(|(n, _)| n.clone()).collect();
        let expansion = Expansion {
            file,
            base: f.base,
            set: picked.set,
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
            report: f.report,
            expect: picked.expect,
            keys,
            variants: variant_names,
            cells,
            requires_data: picked.requires_data,
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
    crate::data::layout::missing(name, root)
}

/// The sweep's name: the file's `name:`, else the file's stem; a single path component.
fn sweep_name(path: &Path, file: &str, name: Option<String>) -> Result<String> {
    let name = match name {
        Some(n) => n,
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow!("{file}: no `name:` and no file name to take it from"))?,
    };
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        bail!("{file}: name: must be a non-empty name without '/', got {name:?}");
    }
    Ok(name)
}

/// Takes the chosen scale out of `scales`: its grid values replace the file's, its seeds
/// the file's; an unknown scale is an error naming the file's scales.
fn pick_scale(
    file: &str,
    scale: Option<&str>,
    mut scales: Vec<(String, ScaleFile)>,
    grid: &mut GridLists,
    seeds: &mut Vec<u64>,
) -> Result<Picked> {
    let mut picked = Picked {
        set: Vec::new(),
        requires_data: Vec::new(),
        expect: Vec::new(),
        variants: None,
        from_scale: Vec::new(),
    };
    let Some(s) = scale else {
        return Ok(picked);
    };
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
    picked.set = sc.set;
    for (key, values) in sc.grid {
        let slot = grid
            .iter_mut()
            .find(|(k, _)| *k == key)
            .expect("checked by GridFile::read");
        slot.1 = values;
        picked.from_scale.push(key);
    }
    if let Some(s) = sc.seeds {
        *seeds = s;
    }
    picked.requires_data = sc.requires_data;
    picked.expect = sc.expect;
    picked.variants = sc.variants;
    Ok(picked)
}

/// The user's overrides, syntax checked once: `out_dir` moves the sweep (the new out_dir is
/// returned), `name` and `seed` are refused, the rest is returned for every cell.
fn sweep_overrides(
    file: &str,
    overrides: &[String],
    mut out_dir: PathBuf,
) -> Result<(PathBuf, Vec<String>)> {
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
    Ok((out_dir, user))
}

/// Refuses a `--set` of a key the grid or a variant sets: every cell would take the override
/// while its name, and the report's columns, still said the grid's value (`--set
/// model.depth=8` on a grid over depths would train ResNet-8s named `depth20`).
fn check_user_keys(
    file: &str,
    user: &[String],
    grid: &GridLists,
    variants: &[(String, Sets)],
) -> Result<()> {
    for ov in user {
        let key = ov.split_once('=').map_or(ov.as_str(), |(k, _)| k.trim());
        if let Some((k, _)) = grid.iter().find(|(k, _)| keys_overlap(k, key)) {
            bail!("--set {ov}: {file} varies `{k}` in its grid, which names the cells; change the grid's values there (or add a scale) instead");
        }
        for (name, sets) in variants {
            if let Some((k, _)) = sets.iter().find(|(k, _)| keys_overlap(k, key)) {
                bail!("--set {ov}: variant `{name}` of {file} sets `{k}`, which the variant's name stands for; change the variant there (or add a scale) instead");
            }
        }
    }
    Ok(())
}

/// Refuses a grid key without values and an empty seed list (the grid would have no cell).
fn check_not_empty(
    file: &str,
    scale: Option<&str>,
    grid: &GridLists,
    from_scale: &[String],
    seeds: &[u64],
) -> Result<()> {
    for (key, values) in grid {
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
    Ok(())
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
