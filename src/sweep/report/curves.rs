//! `kind: curves`: one two-panel figure (train loss | test error % per epoch, one line per
//! variant and seed) per combination of the grid keys, a summary table per figure, and one
//! long CSV of everything plotted.
use anyhow::Result;
use std::collections::BTreeSet;

use super::{combo_of, combo_stem, combo_text, file_list, runs_note, slug, ReportContext};
use crate::report::blocks::block_figures;
use crate::report::plot::{self, Panel, PlotSpec, Series};
use crate::report::runs::RunRecord;
use crate::report::table::Table;
use crate::sweep::grid::Cell;
use crate::train::RunStatus;

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

/// The curves of one combination: its cells sorted by variant (the grid's order) and seed.
struct Figure<'c> {
    combo: &'c [String],
    title: String,
    cells: Vec<&'c Cell>,
    /// Several seeds: labels name the seed.
    multi_seed: bool,
}

pub(super) fn render_curves(ctx: &ReportContext, cells: &[Cell]) -> Result<String> {
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
        let fig = Figure::new(ctx, cells, combo);
        md += &fig.render(&dir.join(&stem_name), &mut long)?;
    }
    let csv_path = dir.join(format!("{}.csv", slug(&ctx.name)));
    long.write_csv(&csv_path)?;
    md += &format!("curves (long CSV): `{}`\n", csv_path.display());
    let md_path = dir.join(format!("{}.md", slug(&ctx.name)));
    crate::util::write_atomic(&md_path, &md)?;
    Ok(md)
}

impl<'c> Figure<'c> {
    fn new(ctx: &ReportContext, cells: &'c [Cell], combo: &'c [String]) -> Figure<'c> {
        let keys = &ctx.keys;
        let title = if keys.is_empty() {
            ctx.spec.title.clone()
        } else {
            format!("{} ({})", ctx.spec.title, combo_text(keys, combo))
        };
        let mut in_combo: Vec<&Cell> = cells
            .iter()
            .filter(|c| combo_of(c, keys) == combo)
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
        Figure {
            combo,
            title,
            cells: in_combo,
            multi_seed,
        }
    }

    /// Loads the runs, adds their epochs to `long`, draws the figure at `stem`; returns the
    /// Markdown section (summary table, runs, files).
    fn render(&self, stem: &std::path::Path, long: &mut Table) -> Result<String> {
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
        for c in &self.cells {
            let r = RunRecord::load(&c.dir());
            let mut label = c.variant.clone().unwrap_or_else(|| c.name.clone());
            if self.multi_seed && c.variant.is_some() {
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
            self.long_rows(c, &r, long);
            loss.push(Series::new(label.clone(), r.train_loss_curve()));
            err.push(Series::new(label, r.test_error_curve()));
        }
        let mut md = format!("### {}\n\n", self.title);
        md += &summary.to_markdown();
        md += &format!("\n{}", runs_note(&self.cells));
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
            let files = plot::multi_panel(stem, &self.title, &panels)?;
            md += &format!("\nfigure: {}\n\n", file_list(&files));
        } else {
            md += "\nno epochs logged yet: no figure\n\n";
        }
        md += &self.block_section(stem)?;
        Ok(md)
    }

    /// Each run's per-block figures (ratio heatmap, τ curves), side by side in one table.
    fn block_section(&self, stem: &std::path::Path) -> Result<String> {
        let mut heads = Vec::new();
        let mut ratio = Vec::new();
        let mut tau = Vec::new();
        for c in &self.cells {
            let name = format!(
                "{}-{}",
                stem.file_name().unwrap_or_default().to_string_lossy(),
                c.name
            );
            let files = block_figures(&c.dir(), &stem.with_file_name(name), &c.name)?;
            let pick = |suffix: &str| {
                files
                    .iter()
                    .find(|f| f.to_string_lossy().ends_with(suffix))
                    .map_or_else(|| "–".into(), |f| format!("`{}`", f.display()))
            };
            if files.is_empty() {
                continue;
            }
            heads.push(c.name.clone());
            ratio.push(pick("-ratio.svg"));
            tau.push(pick("-tau.svg"));
        }
        if heads.is_empty() {
            return Ok(String::new());
        }
        let mut t = Table::new(
            "per block (blocks.csv): log10 ‖τ·f‖/‖skip‖ over block × epoch, and τ per block",
            std::iter::once(String::new()).chain(heads).collect(),
        );
        t.push(
            std::iter::once("‖τ·f‖/‖skip‖".to_string())
                .chain(ratio)
                .collect(),
        );
        t.push(std::iter::once("τ".to_string()).chain(tau).collect());
        Ok(format!("{}\n", t.to_markdown()))
    }

    /// One long-CSV line per logged epoch of cell `c`'s run `r`.
    fn long_rows(&self, c: &Cell, r: &RunRecord, long: &mut Table) {
        let variant = c.variant.clone().unwrap_or_default();
        for row in &r.rows {
            let mut l = vec![row.epoch.to_string(), variant.clone()];
            l.extend(self.combo.iter().cloned());
            l.extend([
                c.seed.to_string(),
                row.train_loss.to_string(),
                crate::report::runs::error_pct(row.test_acc)
                    .map_or_else(|| "NaN".into(), |e| e.to_string()),
            ]);
            long.push(l);
        }
    }
}
