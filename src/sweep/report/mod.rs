//! `deepres report` for a sweep: tables or training curves of its cells, as the grid file's
//! `report:` section ([`ReportSpec`]) says. Everything goes to `<grid.dir>/report/`.
//!
//! - `kind: table`: rows are the values of `spec.rows` (a grid key, e.g. `model.depth`), columns
//!   the variants; one table per combination of the other grid keys; seeds aggregated. For each
//!   table `<name>.md` (Markdown), `<name>.csv` (long form, one line per row × variant, numbers
//!   only) and `<name>.svg`/`.png` (best test error vs the row value, one line per variant;
//!   log-x when the row values span more than 10×) where the row values are numbers. The best
//!   column gives mean ± std and the 95 % Student t interval (n ≥ 2 seeds); the published
//!   number is marked inside or outside it. Variants whose configs differ in exactly one
//!   setting (e.g. BN vs BN + τ) get `<name>-paired.md`/`.csv`: the difference of their best
//!   errors paired by seed, its interval and the paired t-test's p-value.
//! - `kind: curves`: one two-panel figure (train loss | test error % per epoch, one line per
//!   variant and seed) per combination of the grid keys, `<name>.svg`/`.png`, and one long CSV
//!   `<grid name>.csv` (`epoch,variant,<grid keys...>,seed,train_loss,test_error`) of what was
//!   plotted, plus `<grid name>.md`.
//!
//! A cell never started shows as `missing`, never as an error.
use anyhow::{bail, Result};
use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::report::acceptance::{Acceptance, FigureOutput};
use crate::report::published;
use crate::report::stats::Estimate;
use crate::sweep::grid::{Cell, Expectation, Grid, ReportKind, ReportSpec};

mod curves;
mod expect;
mod paired;
mod table;

pub use expect::Judged;

use curves::render_curves;
use table::render_tables;

/// What a report needs from a grid (so it can be built without a grid file, e.g. in tests).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportContext {
    /// The sweep's name: the stem of the files written.
    pub name: String,
    /// The sweep's directory; the report goes to `<dir>/report/`.
    pub dir: PathBuf,
    pub spec: ReportSpec,
    /// Grid keys in file order (not variants, not seeds); empty: taken from the cells.
    pub keys: Vec<String>,
    /// Variant names in file order; empty: taken from the cells.
    pub variants: Vec<String>,
    /// The scale's name, for the expected result's line.
    pub scale: Option<String>,
    /// What the scale's runs should show (the grid file's `scales.<name>.expect:`).
    pub expect: Vec<Expectation>,
}

impl ReportContext {
    /// From a grid; without a `report:` section, a table over the grid's first key.
    pub fn from_grid(grid: &Grid) -> ReportContext {
        let spec = grid.report.clone().unwrap_or_else(|| ReportSpec {
            kind: ReportKind::Table,
            title: grid.name.clone(),
            rows: grid.keys.first().cloned(),
            published: None,
        });
        ReportContext {
            name: grid.name.clone(),
            dir: grid.dir.clone(),
            spec,
            keys: grid.keys.clone(),
            variants: grid.variants.clone(),
            scale: grid.scale.clone(),
            expect: grid.expect.clone(),
        }
    }

    /// `<dir>/report`.
    pub fn report_dir(&self) -> PathBuf {
        self.dir.join("report")
    }
}

/// Renders the grid's report into `<grid.dir>/report/`: its text (Markdown, also
/// `report/README.md`), ending with the expected result's checks and verdict when the scale
/// has `expect:`, and the checks (also `report/acceptance.csv`).
pub fn render(grid: &Grid, cells: &[Cell]) -> Result<FigureOutput> {
    render_with(&ReportContext::from_grid(grid), cells)
}

/// [`render`] from a [`ReportContext`].
pub fn render_with(ctx: &ReportContext, cells: &[Cell]) -> Result<FigureOutput> {
    let mut text = render_body(ctx, cells)?;
    let mut acceptance = Acceptance::default();
    match expect::judge(ctx, cells) {
        Some(Judged::Checks(a)) => {
            let at = ctx.scale.as_deref().map_or_else(String::new, |s| format!(" (scale {s})"));
            text += &format!("\nExpected result{at}: the checks below, on these runs.\n");
            acceptance = a;
        }
        Some(Judged::NotYet { waiting, cells }) => text += &format!(
            "\nAcceptance: not judged yet: {waiting} of {cells} cells have not finished (run the sweep, then the report)\n"
        ),
        None => {}
    }
    FigureOutput::write(text, acceptance, &ctx.report_dir())
}

/// The tables or curves, as Markdown.
fn render_body(ctx: &ReportContext, cells: &[Cell]) -> Result<String> {
    let mut ctx = ctx.clone();
    if ctx.keys.is_empty() {
        ctx.keys = first_seen(
            cells
                .iter()
                .flat_map(|c| c.values.iter().map(|(k, _)| k.clone())),
        );
    }
    if ctx.variants.is_empty() {
        ctx.variants = first_seen(cells.iter().filter_map(|c| c.variant.clone()));
    }
    if let Some(p) = &ctx.spec.published {
        if !published::is_known(p) {
            bail!(
                "report.published: unknown key {p:?}; known: {}",
                published::keys().join(", ")
            );
        }
    }
    std::fs::create_dir_all(ctx.report_dir()).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot create the directory: {e}",
            ctx.report_dir().display()
        )
    })?;
    match ctx.spec.kind {
        ReportKind::Table => render_tables(&ctx, cells),
        ReportKind::Curves => render_curves(&ctx, cells),
    }
}

/// A grid value as text: `110`, `0.5`, `cifar10`, `true`, `[1, 2]`.
pub fn value_label(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::Null => "null".into(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_else(|_| format!("{other:?}")),
    }
}

/// A file-name-safe form of `s` (letters, digits, `.`, `_`, `-`).
pub fn slug(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "x".into()
    } else {
        out
    }
}

/// Mean, sample standard deviation (n − 1; 0 when n = 1) and n.
pub fn mean_std(xs: &[f64]) -> Option<(f64, f64, usize)> {
    Estimate::of(xs).map(|e| (e.mean, e.std, e.n))
}

/// `7.12 ± 0.10 (2)`, or `7.12` when n = 1.
pub fn format_mean_std(xs: &[f64]) -> String {
    match mean_std(xs) {
        None => "–".into(),
        Some((m, _, 1)) => format!("{m:.2}"),
        Some((m, s, n)) => format!("{m:.2} ± {s:.2} ({n})"),
    }
}

/// The distinct items of `it` in the order first seen.
fn first_seen<T: Ord + Clone, I: IntoIterator<Item = T>>(it: I) -> Vec<T> {
    let mut seen = BTreeSet::new();
    it.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

fn cell_value(cell: &Cell, key: &str) -> String {
    cell.values
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| value_label(v))
        .unwrap_or_else(|| "–".into())
}

/// The values of `keys` in a cell.
fn combo_of(cell: &Cell, keys: &[String]) -> Vec<String> {
    keys.iter().map(|k| cell_value(cell, k)).collect()
}

/// `data.name = cifar10, model.depth = 110`.
fn combo_text(keys: &[String], combo: &[String]) -> String {
    keys.iter()
        .zip(combo)
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `<name>` alone, or `<name>-<values>` when there are several combinations.
fn combo_stem(name: &str, combo: &[String], several: bool) -> String {
    if several && !combo.is_empty() {
        format!("{}-{}", slug(name), slug(&combo.join("-")))
    } else {
        slug(name)
    }
}

/// `runs: data fashion-mnist; 2 epochs; seeds 0, 1` for the cells of a table or figure.
fn runs_note(cells: &[&Cell]) -> String {
    let data = first_seen(cells.iter().map(|c| {
        serde_yaml::to_value(c.config.data.name)
            .map(|v| value_label(&v))
            .unwrap_or_else(|_| "?".into())
    }));
    let epochs = first_seen(cells.iter().map(|c| c.config.train.epochs.to_string()));
    let seeds = first_seen(cells.iter().map(|c| c.seed.to_string()));
    format!(
        "runs: data {}; {} epochs; seeds {}\n",
        data.join(", "),
        epochs.join(", "),
        seeds.join(", ")
    )
}

fn file_list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| format!("`{}`", f.display()))
        .collect::<Vec<_>>()
        .join(", ")
}
