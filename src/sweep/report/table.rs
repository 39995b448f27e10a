//! `kind: table`: rows are the values of `spec.rows`, columns the variants (best and final
//! test error, mean ± std over seeds, the published numbers and Δ beside them when known);
//! one table per combination of the other grid keys, each as Markdown, a long CSV and, for
//! numeric rows, a plot of the best test error per variant.
use anyhow::{bail, Result};

use super::paired;
use super::{
    cell_value, combo_of, combo_stem, combo_text, file_list, first_seen, format_mean_std, mean_std,
    runs_note, ReportContext,
};
use crate::report::plot::{self, PlotSpec, Series};
use crate::report::published;
use crate::report::runs::RunRecord;
use crate::report::stats::Estimate;
use crate::report::table::Table;
use crate::sweep::grid::Cell;
use crate::train::RunStatus;

/// What the seeds of one (row, variant) did.
#[derive(Debug, Default)]
struct Agg {
    seeds: usize,
    best: Vec<f64>,
    /// (seed, best test error) of the finished seeds, for the paired differences.
    best_by_seed: Vec<(u64, f64)>,
    fin: Vec<f64>,
    diverged: Vec<i64>,
    /// Best and last test error before diverging, of the diverged seeds that had a healthy
    /// epoch (the τ paper's script reports the best accuracy seen before a run diverged).
    diverged_best: Vec<f64>,
    diverged_fin: Vec<f64>,
    running: Vec<(i64, i64)>,
    missing: usize,
}

impl Agg {
    fn of(records: &[(u64, RunRecord)]) -> Agg {
        let mut a = Agg {
            seeds: records.len(),
            ..Default::default()
        };
        for (seed, r) in records {
            match r.status() {
                RunStatus::Finished => match (r.best_test_error(), r.final_test_error()) {
                    (Some(b), Some(f)) => {
                        a.best.push(b);
                        a.best_by_seed.push((*seed, b));
                        a.fin.push(f);
                    }
                    // Finished but with no test accuracy on record: treat as not there.
                    _ => a.missing += 1,
                },
                RunStatus::Diverged => {
                    a.diverged.push(r.diverged_at().unwrap_or(0));
                    if let Some((best, last)) = r.healthy_test_errors() {
                        a.diverged_best.push(best);
                        a.diverged_fin.push(last);
                    }
                }
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

    /// `diverged at epoch 2 (2/2 seeds)`, then `; best before it 55.00 ± 7.07 (2)` when
    /// `before` (the `what` errors before diverging) is not empty.
    fn diverged_text(&self, what: &str, before: &[f64]) -> String {
        let lo = self.diverged.iter().min().copied().unwrap_or(0);
        let hi = self.diverged.iter().max().copied().unwrap_or(0);
        let at = if lo == hi {
            format!("{lo}")
        } else {
            format!("{lo}–{hi}")
        };
        let mut text = format!(
            "diverged at epoch {at}{}",
            self.seeds_note(self.diverged.len())
        );
        if !before.is_empty() {
            text += &format!("; {what} before it {}", format_mean_std(before));
        }
        text
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

    /// The text of the best column (`best`) or the final one: numbers when some seed
    /// finished (the best with its 95 % interval), else the state, with the errors before
    /// diverging when every seed that ran diverged.
    fn text(&self, best: bool) -> String {
        let (xs, interval, what, before) = if best {
            (&self.best, true, "best", &self.diverged_best)
        } else {
            (&self.fin, false, "last", &self.diverged_fin)
        };
        if self.seeds == 0 {
            "–".into()
        } else if !xs.is_empty() && interval {
            Estimate::of(xs).map_or_else(String::new, |e| e.text()) + &self.others()
        } else if !xs.is_empty() {
            format_mean_std(xs) + &self.others()
        } else if !self.diverged.is_empty() {
            self.diverged_text(what, before)
        } else if !self.running.is_empty() {
            self.running_text()
        } else {
            "missing".into()
        }
    }

    /// The status column of the CSV (a diverged cell with the best error before it).
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
            self.text(true)
        }
    }
}

/// The columns of the long CSV after the row, the variant and the other grid keys.
const LONG_COLUMNS: [&str; 12] = [
    "seeds",
    "finished",
    "best_mean",
    "best_std",
    "best_ci_lo",
    "best_ci_hi",
    "final_mean",
    "final_std",
    "status",
    "published",
    "delta",
    "published_in_ci",
];

pub(super) fn render_tables(ctx: &ReportContext, cells: &[Cell]) -> Result<String> {
    let layout = Layout::new(ctx, cells)?;
    let several = layout.combos.len() > 1;
    let mut md = if several {
        format!("## {}\n\n", ctx.spec.title)
    } else {
        String::new()
    };
    for combo in &layout.combos {
        md += &layout.render_one(ctx, cells, combo, several)?;
    }
    Ok(md)
}

/// The shape of the tables: the row key's values, the other grid keys and their value
/// combinations (one table each), the variant columns.
struct Layout<'a> {
    rows: Option<&'a String>,
    /// The grid keys other than the row key.
    other: Vec<String>,
    row_header: String,
    row_values: Vec<String>,
    combos: Vec<Vec<String>>,
    /// The variants, or one unnamed column set.
    variants: Vec<Option<String>>,
    pub_key: Option<&'a str>,
}

/// One table filled from the runs, before it is written.
struct Filled<'c> {
    table: Table,
    long: Table,
    /// Best test error vs the row value, per variant.
    series: Vec<Series>,
    numeric_rows: bool,
    in_table: Vec<&'c Cell>,
    same_dataset: bool,
    /// (row, variant, (seed, best test error) of its finished seeds), for the paired table.
    by_seed: paired::BySeed,
}

impl<'a> Layout<'a> {
    fn new(ctx: &'a ReportContext, cells: &[Cell]) -> Result<Layout<'a>> {
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
        let mut layout = Layout {
            rows: spec.rows.as_ref(),
            row_header: spec.rows.clone().unwrap_or_else(|| "cells".into()),
            row_values: Vec::new(),
            combos: Vec::new(),
            variants: if ctx.variants.is_empty() {
                vec![None]
            } else {
                ctx.variants.iter().cloned().map(Some).collect()
            },
            pub_key: spec.published.as_deref(),
            other,
        };
        layout.row_values = first_seen(cells.iter().map(|c| layout.row_of(c)));
        for c in cells {
            let combo = combo_of(c, &layout.other);
            if !layout.combos.contains(&combo) {
                layout.combos.push(combo);
            }
        }
        if layout.combos.is_empty() {
            layout
                .combos
                .push(layout.other.iter().map(|_| "–".to_string()).collect());
        }
        Ok(layout)
    }

    /// A cell's row value (`all` without a row key).
    fn row_of(&self, c: &Cell) -> String {
        self.rows
            .map_or_else(|| "all".to_string(), |k| cell_value(c, k))
    }

    /// Whether variant `v` has published numbers beside it.
    fn with_pub(&self, v: &Option<String>) -> bool {
        match (self.pub_key, v) {
            (Some(k), Some(v)) => published::has_variant(k, v),
            _ => false,
        }
    }

    fn headers(&self) -> Vec<String> {
        let mut headers = vec![self.row_header.clone()];
        for v in &self.variants {
            let l = v.clone().unwrap_or_else(|| "ours".into());
            headers.push(format!("{l} best"));
            headers.push(format!("{l} final"));
            if self.with_pub(v) {
                headers.push(format!("{l} published"));
                headers.push(format!("{l} Δ"));
            }
        }
        headers
    }

    fn long_headers(&self) -> Vec<String> {
        let mut long_headers = vec![self.row_header.clone(), "variant".to_string()];
        long_headers.extend(self.other.iter().cloned());
        long_headers.extend(LONG_COLUMNS.map(String::from));
        long_headers
    }

    /// The table of one combination of the other keys: filled, written, as Markdown.
    fn render_one(
        &self,
        ctx: &ReportContext,
        cells: &[Cell],
        combo: &[String],
        several: bool,
    ) -> Result<String> {
        let spec = &ctx.spec;
        let stem_name = combo_stem(&ctx.name, combo, several);
        let title = if self.other.is_empty() {
            spec.title.clone()
        } else {
            format!("{} ({})", spec.title, combo_text(&self.other, combo))
        };
        let filled = self.fill(cells, combo, &title);
        let dir = ctx.report_dir();
        let body = self.body(&filled);
        let md_path = dir.join(format!("{stem_name}.md"));
        crate::util::write_atomic(&md_path, &body)?;
        let csv_path = dir.join(format!("{stem_name}.csv"));
        filled.long.write_csv(&csv_path)?;
        let mut files = vec![md_path, csv_path];
        let pairs = paired::variant_pairs(cells, &self.variants);
        let mut body = body;
        if !pairs.is_empty() {
            let t = paired::paired_table(&title, &self.row_header, &pairs, &filled.by_seed);
            let md = t.to_markdown()
                + "\nb − a: difference of the best test errors (points) of the same seed; \
                   95 % Student t interval and two-sided paired t-test over the seeds both finished.\n";
            let stem = format!("{stem_name}-paired");
            crate::util::write_atomic(&dir.join(format!("{stem}.md")), &md)?;
            t.write_csv(&dir.join(format!("{stem}.csv")))?;
            files.push(dir.join(format!("{stem}.md")));
            files.push(dir.join(format!("{stem}.csv")));
            body += &format!("\n{md}");
        }
        let series = &filled.series;
        if filled.numeric_rows && series.iter().any(|s| !s.points.is_empty()) {
            let xs: Vec<f64> = series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0))
                .collect();
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let pspec = PlotSpec::new(
                title.clone(),
                self.row_header.clone(),
                "best test error (%)",
            )
            .log_x(lo > 0.0 && hi / lo > 10.0)
            .markers(true);
            files.extend(plot::line_plot(&dir.join(&stem_name), &pspec, series)?);
        }
        Ok(format!("{body}\nfiles: {}\n\n", file_list(&files)))
    }

    /// The Markdown table and its notes (what the numbers are, the runs, the published source).
    fn body(&self, filled: &Filled) -> String {
        let mut body = filled.table.to_markdown();
        body += "\nbest: lowest test error (%) over the epochs; final: at the last epoch; mean ± sample std (n \
                 finished seeds) over seeds; CI: the 95 % Student t interval of the mean (none from one seed); \
                 the published number is marked inside or outside it.\n";
        body += &runs_note(&filled.in_table);
        if let Some(d) = self.pub_key.and_then(published::describe) {
            body += &format!("published: {d}; Δ = ours best − published.\n");
            if !filled.same_dataset {
                body += &format!(
                    "Δ is left out: these runs are not on {} (the published numbers' dataset), so they are not comparable.\n",
                    self.pub_key.and_then(published::dataset).unwrap_or("the published dataset")
                );
            }
        }
        body
    }

    /// Loads the runs of the combination's cells and fills its tables and plot series.
    fn fill<'c>(&self, cells: &'c [Cell], combo: &[String], title: &str) -> Filled<'c> {
        let in_table: Vec<&Cell> = cells
            .iter()
            .filter(|c| combo_of(c, &self.other) == combo)
            .collect();
        // Δ only against runs on the dataset the published numbers come from.
        let pub_dataset = self.pub_key.and_then(published::dataset);
        let same_dataset = pub_dataset
            .is_some_and(|d| in_table.iter().all(|c| c.config.data.name.to_string() == d));
        let mut filled = Filled {
            table: Table::new(title.to_string(), self.headers()),
            long: Table::new(title.to_string(), self.long_headers()),
            series: self
                .variants
                .iter()
                .map(|v| Series::new(v.clone().unwrap_or_else(|| "ours".into()), Vec::new()))
                .collect(),
            numeric_rows: self.rows.is_some(),
            in_table,
            same_dataset,
            by_seed: Vec::new(),
        };
        for rv in &self.row_values {
            let in_row: Vec<&Cell> = cells
                .iter()
                .filter(|c| &self.row_of(c) == rv && combo_of(c, &self.other) == combo)
                .collect();
            if in_row.is_empty() {
                continue;
            }
            let x = rv.parse::<f64>().ok();
            filled.numeric_rows &= x.is_some();
            let mut line = vec![rv.clone()];
            for (vi, v) in self.variants.iter().enumerate() {
                self.fill_variant(&mut filled, &mut line, (rv, x), combo, (vi, v), &in_row);
            }
            filled.table.push(line);
        }
        filled
    }

    /// The cells of one (row, variant): its columns of the Markdown line, its long CSV line
    /// and its plot point.
    fn fill_variant(
        &self,
        filled: &mut Filled,
        line: &mut Vec<String>,
        (rv, x): (&String, Option<f64>),
        combo: &[String],
        (vi, v): (usize, &Option<String>),
        in_row: &[&Cell],
    ) {
        let group: Vec<(u64, RunRecord)> = in_row
            .iter()
            .filter(|c| &c.variant == v)
            .map(|c| (c.seed, RunRecord::load(&c.dir())))
            .collect();
        let agg = Agg::of(&group);
        line.push(agg.text(true));
        line.push(agg.text(false));
        let best = mean_std(&agg.best);
        let est = Estimate::of(&agg.best);
        let in_ci = match (est, publ_of(self.pub_key, v, rv)) {
            (Some(e), Some(p)) if filled.same_dataset => e.contains(p),
            _ => None,
        };
        let publ = publ_of(self.pub_key, v, rv);
        let delta = match (best, publ) {
            (Some((m, _, _)), Some(p)) if filled.same_dataset => Some(m - p),
            _ => None,
        };
        if self.with_pub(v) {
            line.push(publ.map_or_else(|| "–".into(), |p| format!("{p:.2}")));
            let mark = match in_ci {
                Some(true) => " (inside our CI)",
                Some(false) => " (outside our CI)",
                None => "",
            };
            line.push(delta.map_or_else(|| "–".into(), |d| format!("{d:+.2}{mark}")));
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
            num(est.and_then(|e| e.ci).map(|c| c.0)),
            num(est.and_then(|e| e.ci).map(|c| c.1)),
            num(fin.map(|f| f.0)),
            num(fin.map(|f| f.1)),
            agg.status(),
            num(publ),
            num(delta),
            in_ci.map_or_else(String::new, |b| b.to_string()),
        ]);
        filled
            .by_seed
            .push((rv.clone(), v.clone(), agg.best_by_seed.clone()));
        filled.long.push(l);
        if let (Some(x), Some((m, _, _))) = (x, best) {
            filled.series[vi].points.push((x, m));
        }
    }
}

/// The published number of variant `v` at row `rv`, if the table has a source.
fn publ_of(key: Option<&str>, v: &Option<String>, rv: &str) -> Option<f64> {
    match (key, v) {
        (Some(k), Some(v)) => published::lookup(k, v, rv),
        _ => None,
    }
}
