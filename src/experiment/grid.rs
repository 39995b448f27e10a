//! Grid YAML → cells. (Interface fixed; bodies being written.)
use anyhow::Result;
use std::path::{Path, PathBuf};

use crate::config::RunConfig;

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
    // (parsed content: private fields)
}

impl Grid {
    /// Reads a grid file, picks `scale` (an error names the scales the file has), applies
    /// `overrides` (`key=value`, dotted run-config keys) to every cell.
    pub fn load(path: &Path, scale: Option<&str>, overrides: &[String]) -> Result<Grid> {
        let _ = (path, scale, overrides);
        todo!()
    }

    /// The cells, in order; every cell's config is validated (an error names the cell).
    pub fn cells(&self) -> Result<Vec<Cell>> {
        todo!()
    }
}
