//! `deepres report` for a sweep: tables or training curves of its cells, as the grid file's
//! `report:` section ([`ReportSpec`]) says. Everything goes to `<grid.dir>/report/`.
//!
//! - `kind: table`: rows are the values of `spec.rows` (a grid key, e.g. `model.depth`), columns
//!   the variants; one table per combination of the other grid keys; seeds aggregated. For each
//!   table `<name>.md` (Markdown), `<name>.csv` (long form, one line per row × variant, numbers
//!   only) and `<name>.svg`/`.png` (best test error vs the row value, one line per variant;
//!   log-x when the row values span more than 10×) where the row values are numbers.
//! - `kind: curves`: one two-panel figure (train loss | test error % per epoch, one line per
//!   variant and seed) per combination of the grid keys, `<name>.svg`/`.png`, and one long CSV
//!   `<grid name>.csv` (`epoch,variant,<grid keys...>,seed,train_loss,test_error`) of what was
//!   plotted, plus `<grid name>.md`.
//!
//! A cell never started shows as `missing`, never as an error.
use anyhow::{bail, Result};
use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::report::plot::{self, Panel, PlotSpec, Series};
use crate::report::published;
use crate::report::runs::RunRecord;
use crate::train::RunStatus;
use crate::report::table::Table;
use crate::sweep::grid::{Cell, Grid, ReportKind, ReportSpec};

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
        }
    }

    /// `<dir>/report`.
    pub fn report_dir(&self) -> PathBuf {
        self.dir.join("report")
    }
}

/// Renders the grid's report into `<grid.dir>/report/` and returns it as Markdown.
pub fn render(grid: &Grid, cells: &[Cell]) -> Result<String> {
    render_with(&ReportContext::from_grid(grid), cells)
}

/// [`render`] from a [`ReportContext`].
pub fn render_with(ctx: &ReportContext, cells: &[Cell]) -> Result<String> {
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
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let std = if n > 1 {
        (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt()
    } else {
        0.0
    };
    Some((mean, std, n))
}

/// `7.12 ± 0.10 (2)`, or `7.12` when n = 1.
pub fn format_mean_std(xs: &[f64]) -> String {
    match mean_std(xs) {
        None => "–".into(),
        Some((m, _, 1)) => format!("{m:.2}"),
        Some((m, s, n)) => format!("{m:.2} ± {s:.2} ({n})"),
    }
}

fn first_seen<I: IntoIterator<Item = String>>(it: I) -> Vec<String> {
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

/// What the seeds of one (row, variant) did.
#[derive(Debug, Default)]
struct Agg {
    seeds: usize,
    best: Vec<f64>,
    fin: Vec<f64>,
    diverged: Vec<i64>,
    running: Vec<(i64, i64)>,
    missing: usize,
}

impl Agg {
    fn of(records: &[RunRecord]) -> Agg {
        let mut a = Agg {
            seeds: records.len(),
            ..Default::default()
        };
        for r in records {
            match r.status() {
                RunStatus::Finished => match (r.best_test_error(), r.final_test_error()) {
                    (Some(b), Some(f)) => {
                        a.best.push(b);
                        a.fin.push(f);
                    }
                    // Finished but with no test accuracy on record: treat as not there.
                    _ => a.missing += 1,
                },
                RunStatus::Diverged => a.diverged.push(r.diverged_at().unwrap_or(0)),
                RunStatus::Running => a
                    .running
                    .push((r.epochs_done(), r.epochs_planned().unwrap_or(0))),
                RunStatus::Missing => a.missing += 1,
            }
        }
        a
    }

    fn seeds_note(&self, k: usize) -> String {
        if self.seeds > 1 {
            format!(" ({k}/{} seeds)", self.seeds)
        } else {
            String::new()
        }
    }

    fn diverged_text(&self) -> String {
        let lo = self.diverged.iter().min().copied().unwrap_or(0);
        let hi = self.diverged.iter().max().copied().unwrap_or(0);
        let at = if lo == hi {
            format!("{lo}")
        } else {
            format!("{lo}–{hi}")
        };
        format!(
            "diverged at epoch {at}{}",
            self.seeds_note(self.diverged.len())
        )
    }

    fn running_text(&self) -> String {
        let (e, total) = self.running.iter().copied().min().unwrap_or((0, 0));
        let of = if total > 0 {
            format!("{e}/{total}")
        } else {
            format!("{e}")
        };
        format!("running ({of}){}", self.seeds_note(self.running.len()))
    }

    /// What is not finished, for a cell that has finished seeds: `; 1 diverged, 1 missing`.
    fn others(&self) -> String {
        let mut parts = Vec::new();
        if !self.diverged.is_empty() {
            parts.push(format!("{} diverged", self.diverged.len()));
        }
        if !self.running.is_empty() {
            parts.push(format!("{} running", self.running.len()));
        }
        if self.missing > 0 {
            parts.push(format!("{} missing", self.missing));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("; {}", parts.join(", "))
        }
    }

    /// The text of a best/final column: numbers when some seed finished, else the state.
    fn text(&self, xs: &[f64]) -> String {
        if self.seeds == 0 {
            "–".into()
        } else if !xs.is_empty() {
            format_mean_std(xs) + &self.others()
        } else if !self.diverged.is_empty() {
            self.diverged_text()
        } else if !self.running.is_empty() {
            self.running_text()
        } else {
            "missing".into()
        }
    }

    /// The status column of the CSV.
    fn status(&self) -> String {
        if self.seeds == 0 {
            "not in grid".into()
        } else if !self.best.is_empty() {
            format!(
                "finished{}{}",
                self.seeds_note(self.best.len()),
                self.others()
            )
        } else {
            self.text(&[])
        }
    }
}

fn render_tables(ctx: &ReportContext, cells: &[Cell]) -> Result<String> {
    let spec = &ctx.spec;
    if let Some(r) = &spec.rows {
        if !ctx.keys.contains(r) {
            bail!(
                "report.rows: {r:?} is not a grid key (the grid's keys: {})",
                ctx.keys.join(", ")
            );
        }
    }
    let other: Vec<String> = ctx
        .keys
        .iter()
        .filter(|k| Some(*k) != spec.rows.as_ref())
        .cloned()
        .collect();
    let row_header = spec.rows.clone().unwrap_or_else(|| "cells".into());
    let row_of = |c: &Cell| {
        spec.rows
            .as_ref()
            .map_or_else(|| "all".to_string(), |k| cell_value(c, k))
    };
    let row_values = first_seen(cells.iter().map(row_of));
    let combos: Vec<Vec<String>> = {
        let mut v: Vec<Vec<String>> = Vec::new();
        for c in cells {
            let combo = combo_of(c, &other);
            if !v.contains(&combo) {
                v.push(combo);
            }
        }
        if v.is_empty() {
            v.push(other.iter().map(|_| "–".to_string()).collect());
        }
        v
    };
    // Columns: the variants, or one unnamed set.
    let variants: Vec<Option<String>> = if ctx.variants.is_empty() {
        vec![None]
    } else {
        ctx.variants.iter().cloned().map(Some).collect()
    };
    let pub_key = spec.published.as_deref();
    let with_pub = |v: &Option<String>| match (pub_key, v) {
        (Some(k), Some(v)) => published::has_variant(k, v),
        _ => false,
    };

    let several = combos.len() > 1;
    let mut md = if several {
        format!("## {}\n\n", spec.title)
    } else {
        String::new()
    };
    for combo in &combos {
        let stem_name = combo_stem(&ctx.name, combo, several);
        let title = if other.is_empty() {
            spec.title.clone()
        } else {
            format!("{} ({})", spec.title, combo_text(&other, combo))
        };
        let mut headers = vec![row_header.clone()];
        for v in &variants {
            let l = v.clone().unwrap_or_else(|| "ours".into());
            headers.push(format!("{l} best"));
            headers.push(format!("{l} final"));
            if with_pub(v) {
                headers.push(format!("{l} published"));
                headers.push(format!("{l} Δ"));
            }
        }
        let mut table = Table::new(title.clone(), headers);
        let mut long_headers = vec![row_header.clone(), "variant".to_string()];
        long_headers.extend(other.iter().cloned());
        long_headers.extend(
            [
                "seeds",
                "finished",
                "best_mean",
                "best_std",
                "final_mean",
                "final_std",
                "status",
                "published",
                "delta",
            ]
            .map(String::from),
        );
        let mut long = Table::new(title.clone(), long_headers);
        // Points of the plot: best test error vs the row value, per variant.
        let mut series: Vec<Series> = variants
            .iter()
            .map(|v| Series::new(v.clone().unwrap_or_else(|| "ours".into()), Vec::new()))
            .collect();
        let mut numeric_rows = spec.rows.is_some();
        // Δ only against runs on the dataset the published numbers come from.
        let in_table: Vec<&Cell> = cells
            .iter()
            .filter(|c| &combo_of(c, &other) == combo)
            .collect();
        let pub_dataset = pub_key.and_then(published::dataset);
        let same_dataset = pub_dataset
            .is_some_and(|d| in_table.iter().all(|c| c.config.data.name.to_string() == d));
        for rv in &row_values {
            let in_row: Vec<&Cell> = cells
                .iter()
                .filter(|c| &row_of(c) == rv && &combo_of(c, &other) == combo)
                .collect();
            if in_row.is_empty() {
                continue;
            }
            let x = rv.parse::<f64>().ok();
            numeric_rows &= x.is_some();
            let mut line = vec![rv.clone()];
            for (vi, v) in variants.iter().enumerate() {
                let group: Vec<RunRecord> = in_row
                    .iter()
                    .filter(|c| &c.variant == v)
                    .map(|c| RunRecord::load(&c.dir()))
                    .collect();
                let agg = Agg::of(&group);
                line.push(agg.text(&agg.best));
                line.push(agg.text(&agg.fin));
                let best = mean_std(&agg.best);
                let publ = match (pub_key, v) {
                    (Some(k), Some(v)) => published::lookup(k, v, rv),
                    _ => None,
                };
                let delta = match (best, publ) {
                    (Some((m, _, _)), Some(p)) if same_dataset => Some(m - p),
                    _ => None,
                };
                if with_pub(v) {
                    line.push(publ.map_or_else(|| "–".into(), |p| format!("{p:.2}")));
                    line.push(delta.map_or_else(|| "–".into(), |d| format!("{d:+.2}")));
                }
                let num = |o: Option<f64>| o.map_or_else(String::new, |x| format!("{x:.4}"));
                let fin = mean_std(&agg.fin);
                let mut l = vec![rv.clone(), v.clone().unwrap_or_default()];
                l.extend(combo.iter().cloned());
                l.extend([
                    agg.seeds.to_string(),
                    agg.best.len().to_string(),
                    num(best.map(|b| b.0)),
                    num(best.map(|b| b.1)),
                    num(fin.map(|f| f.0)),
                    num(fin.map(|f| f.1)),
                    agg.status(),
                    num(publ),
                    num(delta),
                ]);
                long.push(l);
                if let (Some(x), Some((m, _, _))) = (x, best) {
                    series[vi].points.push((x, m));
                }
            }
            table.push(line);
        }

        let dir = ctx.report_dir();
        let mut body = table.to_markdown();
        body += "\nbest: lowest test error (%) over the epochs; final: at the last epoch; mean ± sample std (n \
                 finished seeds) over seeds.\n";
        body += &runs_note(&in_table);
        if let Some(d) = pub_key.and_then(published::describe) {
            body += &format!("published: {d}; Δ = ours best − published.\n");
            if !same_dataset {
                body += &format!(
                    "Δ is left out: these runs are not on {} (the published numbers' dataset), so they are not comparable.\n",
                    pub_dataset.unwrap_or("the published dataset")
                );
            }
        }
        let md_path = dir.join(format!("{stem_name}.md"));
        crate::util::write_atomic(&md_path, &body)?;
        let csv_path = dir.join(format!("{stem_name}.csv"));
        long.write_csv(&csv_path)?;
        let mut files = vec![md_path, csv_path];
        if numeric_rows && series.iter().any(|s| !s.points.is_empty()) {
            let xs: Vec<f64> = series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0))
                .collect();
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let pspec = PlotSpec::new(title.clone(), row_header.clone(), "best test error (%)")
                .log_x(lo > 0.0 && hi / lo > 10.0)
                .markers(true);
            files.extend(plot::line_plot(&dir.join(&stem_name), &pspec, &series)?);
        }
        md += &body;
        md += &format!("\nfiles: {}\n\n", file_list(&files));
    }
    Ok(md)
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

/// Final values of one plotted run, for the Markdown.
fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        Some(v) => format!("{v}"),
        None => "–".into(),
    }
}

fn state_text(r: &RunRecord) -> String {
    let (done, planned) = (r.epochs_done(), r.epochs_planned().unwrap_or(0));
    match r.status() {
        RunStatus::Diverged => format!("diverged at epoch {}", r.diverged_at().unwrap_or(0)),
        RunStatus::Running if planned > 0 => format!("running ({done}/{planned})"),
        RunStatus::Running => format!("running ({done})"),
        s => s.to_string(),
    }
}

fn render_curves(ctx: &ReportContext, cells: &[Cell]) -> Result<String> {
    let spec = &ctx.spec;
    let keys = &ctx.keys;
    let mut combos: Vec<Vec<String>> = Vec::new();
    for c in cells {
        let combo = combo_of(c, keys);
        if !combos.contains(&combo) {
            combos.push(combo);
        }
    }
    let dir = ctx.report_dir();
    let mut long_headers = vec!["epoch".to_string(), "variant".to_string()];
    long_headers.extend(keys.iter().cloned());
    long_headers.extend(["seed", "train_loss", "test_error"].map(String::from));
    let mut long = Table::new(spec.title.clone(), long_headers);
    let mut md = format!("## {}\n\n", spec.title);
    let several = combos.len() > 1;
    for combo in &combos {
        let stem_name = combo_stem(&ctx.name, combo, several);
        let title = if keys.is_empty() {
            spec.title.clone()
        } else {
            format!("{} ({})", spec.title, combo_text(keys, combo))
        };
        let mut in_combo: Vec<&Cell> = cells
            .iter()
            .filter(|c| &combo_of(c, keys) == combo)
            .collect();
        // Variants in the grid's order, then seeds.
        let vpos = |c: &Cell| {
            c.variant
                .as_ref()
                .and_then(|v| ctx.variants.iter().position(|x| x == v))
        };
        in_combo.sort_by_key(|c| (vpos(c), c.seed, c.index));
        let multi_seed = in_combo
            .iter()
            .map(|c| c.seed)
            .collect::<BTreeSet<_>>()
            .len()
            > 1;
        let mut loss = Vec::new();
        let mut err = Vec::new();
        let mut summary = Table::new(
            String::new(),
            [
                "run",
                "seed",
                "epochs",
                "final train loss",
                "final test error (%)",
                "best test error (%)",
                "status",
            ]
            .map(String::from)
            .to_vec(),
        );
        for c in &in_combo {
            let r = RunRecord::load(&c.dir());
            let variant = c.variant.clone().unwrap_or_default();
            let mut label = c.variant.clone().unwrap_or_else(|| c.name.clone());
            if multi_seed && c.variant.is_some() {
                label += &format!(" (seed {})", c.seed);
            }
            summary.push(vec![
                label.clone(),
                c.seed.to_string(),
                r.epochs_done().to_string(),
                fmt_opt(r.final_train_loss(), 4),
                fmt_opt(r.final_test_error(), 2),
                fmt_opt(r.best_test_error(), 2),
                state_text(&r),
            ]);
            if r.rows.is_empty() {
                continue;
            }
            for row in &r.rows {
                let mut l = vec![row.epoch.to_string(), variant.clone()];
                l.extend(combo.iter().cloned());
                l.extend([
                    c.seed.to_string(),
                    row.train_loss.to_string(),
                    crate::report::runs::error_pct(row.test_acc)
                        .map_or_else(|| "NaN".into(), |e| e.to_string()),
                ]);
                long.push(l);
            }
            loss.push(Series::new(label.clone(), r.train_loss_curve()));
            err.push(Series::new(label, r.test_error_curve()));
        }
        md += &format!("### {title}\n\n");
        md += &summary.to_markdown();
        md += &format!("\n{}", runs_note(&in_combo));
        if !loss.is_empty() {
            let panels = [
                Panel {
                    spec: PlotSpec::new("train loss", "epoch", "train loss").log_y(true),
                    series: loss,
                },
                Panel {
                    spec: PlotSpec::new("test error", "epoch", "test error (%)"),
                    series: err,
                },
            ];
            let files = plot::multi_panel(&dir.join(&stem_name), &title, &panels)?;
            md += &format!("\nfigure: {}\n\n", file_list(&files));
        } else {
            md += "\nno epochs logged yet: no figure\n\n";
        }
    }
    let csv_path = dir.join(format!("{}.csv", slug(&ctx.name)));
    long.write_csv(&csv_path)?;
    md += &format!("curves (long CSV): `{}`\n", csv_path.display());
    let md_path = dir.join(format!("{}.md", slug(&ctx.name)));
    crate::util::write_atomic(&md_path, &md)?;
    Ok(md)
}
