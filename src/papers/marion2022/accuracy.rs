//! `kind: accuracy` (M9): test accuracy after training over H × β (fBm init), best over a
//! learning-rate grid. The runs go to `runs-<dataset>.csv`, rewritten after every chunk of
//! models, so that an interrupted figure resumes from it ([`resume_rows`]).
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use tch::Device;

use super::spec::{AccuracyFig, Figure, TrainFig, Training};
use super::train::{load_first, train_classifiers, TrainRun, TrainSetup};
use crate::data::DataSplit;
use crate::model::marion_net::MarionModel;
use crate::model::weight_init::FbmSampler;
use crate::report::acceptance::{Acceptance, Check};
use crate::report::heatmap::{Heatmap, NanAs};
use crate::report::table::Table;
use crate::util::key::spec_key;
use crate::util::write_atomic;

/// The columns of M9's runs-<dataset>.csv.
const RUN_COLUMNS: [&str; 8] = [
    "dataset",
    "hurst",
    "beta",
    "lr",
    "test_acc",
    "train_loss",
    "diverged",
    "chunk_seconds",
];

/// A grid run's (H, β, lr) as written in the runs CSV.
type RunKey = (String, String, String);

/// A grid point: (index of H, index of β, lr).
type GridPoint = (usize, usize, f64);

/// What every step of the figure needs.
struct Ctx<'a> {
    fig: &'a Figure,
    s: &'a AccuracyFig,
    out: &'a Path,
    device: Device,
    quiet: bool,
}

/// Every (H, β, lr) of the figure, H slowest.
struct Grid {
    sampler: FbmSampler,
    hs: Vec<f64>,
    betas: Vec<f64>,
    points: Vec<GridPoint>,
}

impl Grid {
    fn new(s: &AccuracyFig) -> Grid {
        let (hs, betas) = (s.hursts.values(), s.betas.values());
        let n_betas = betas.len();
        let points = (0..hs.len())
            .flat_map(|j| (0..n_betas).flat_map(move |i| s.lrs.iter().map(move |&lr| (j, i, lr))))
            .collect();
        Grid {
            sampler: s.fbm_sampler,
            hs,
            betas,
            points,
        }
    }

    /// The point's (H, β, lr) as written in the runs CSV.
    fn key(&self, &(j, i, lr): &GridPoint) -> RunKey {
        (
            self.hs[j].to_string(),
            self.betas[i].to_string(),
            lr.to_string(),
        )
    }

    /// The point's model: fBm init with its H, its β and lr.
    fn run(&self, &(j, i, lr): &GridPoint) -> TrainRun {
        TrainRun {
            init: self.sampler.init(self.hs[j]),
            beta: self.betas[i],
            lr,
        }
    }
}

pub(super) fn accuracy_figure(
    fig: &Figure,
    s: &AccuracyFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(String, Acceptance)> {
    let ctx = Ctx {
        fig,
        s,
        out,
        device,
        quiet,
    };
    let mut text = String::new();
    let mut acc = Acceptance::default();
    for names in &s.datasets {
        let split = match load_first(names, &s.training.train) {
            Ok(split) => split,
            Err(e) => {
                let which: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
                let which = which.join(" / ");
                let msg = format!("skipped {which}: {e:#}\n\n");
                eprintln!("{}: {msg}", fig.figure);
                text += &msg;
                acc.not_shown(format!(
                    "training fails where the initialization explodes, on {which}: no data"
                ));
                continue;
            }
        };
        let (md, check) = dataset_figure(&ctx, &split)?;
        text += &md;
        acc.push(check);
    }
    Ok((text, acc))
}

/// The paper's claim on one dataset as a check: training fails where the initialization
/// explodes (β below the M7 boundary max(H, 1/2)). The mean best accuracy of the cells at or
/// above the boundary minus that of the cells more than 0.1 below it must be at least 0.1.
fn boundary_check(dname: &str, grid: &Grid, best: &[Vec<f64>]) -> Check {
    let (mut above, mut below) = (Vec::new(), Vec::new());
    for (i, &b) in grid.betas.iter().enumerate() {
        for (j, &h) in grid.hs.iter().enumerate() {
            let boundary = h.max(0.5);
            let a = if best[i][j].is_finite() {
                best[i][j]
            } else {
                0.0
            };
            if b >= boundary - 1e-9 {
                above.push(a);
            } else if b < boundary - 0.1 {
                below.push(a);
            }
        }
    }
    let mean = |xs: &[f64]| {
        if xs.is_empty() {
            f64::NAN
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    };
    Check::new(
        format!(
            "{dname}: mean accuracy of the {} cells with β ≥ max(H, 1/2) minus the {} cells below it",
            above.len(),
            below.len()
        ),
        mean(&above) - mean(&below),
        0.1,
        1.0,
    )
}

/// The grid of one dataset: trains the runs missing from its runs CSV, then writes the heatmap
/// of the best accuracy over the learning rates; returns its Markdown.
fn dataset_figure(ctx: &Ctx, split: &DataSplit) -> Result<(String, Check)> {
    let Ctx { fig, s, out, .. } = *ctx;
    let grid = Grid::new(s);
    let dname = split.name.as_str();
    let runs_path = out.join(format!("runs-{dname}.csv"));
    let mut rows = resume_rows(s, split, out, &runs_path, ctx.quiet)?;
    let todo: Vec<GridPoint> = grid
        .points
        .iter()
        .filter(|g| !rows.contains_key(&grid.key(g)))
        .copied()
        .collect();
    if !ctx.quiet && !rows.is_empty() {
        eprintln!(
            "{}: {dname}: {} of {} runs already in {}, {} to train",
            fig.figure,
            grid.points.len() - todo.len(),
            grid.points.len(),
            runs_path.display(),
            todo.len()
        );
    }
    train_missing(ctx, split, &grid, &todo, &mut rows, &runs_path)?;
    let best = best_over_lr(&grid, &rows);
    let check = boundary_check(dname, &grid, &best);
    let mut table = Table::new(
        format!(
            "{dname}: best test accuracy over lr ∈ {:?} (rows β, columns H; L = {}, width {}, {} epoch(s))",
            s.lrs, s.training.depth, s.training.width, s.training.train.epochs
        ),
        std::iter::once("β \\ H".to_string())
            .chain(grid.hs.iter().map(|h| format!("{h}")))
            .collect(),
    );
    for (i, &b) in grid.betas.iter().enumerate().rev() {
        table.push(
            std::iter::once(format!("{b}"))
                .chain(best[i].iter().map(|a| format!("{a:.3}")))
                .collect(),
        );
    }
    write_heatmap(ctx, &grid, dname, &best, &rows)?;
    Ok((
        format!(
            "Figure: {}-{dname}.svg/png.\n\n{}\n",
            fig.stem,
            table.to_markdown()
        ),
        check,
    ))
}

/// The heatmap of the best accuracy over the learning rates (`best`: rows β, columns H) as
/// `<stem>-<dataset>.svg/png`; while runs of the grid are missing from `rows` (a long figure
/// between two chunks), its title says how many are in.
fn write_heatmap(
    ctx: &Ctx,
    grid: &Grid,
    dname: &str,
    best: &[Vec<f64>],
    rows: &HashMap<RunKey, Vec<String>>,
) -> Result<()> {
    let Ctx { fig, s, out, .. } = *ctx;
    let done = (grid.points.iter())
        .filter(|g| rows.contains_key(&grid.key(g)))
        .count();
    let total = grid.points.len();
    let partial = match done < total {
        true => format!(" (partial: {done} of {total} runs)"),
        false => String::new(),
    };
    Heatmap {
        title: format!(
            "{}: test accuracy, {dname} (L = {}){partial}",
            fig.figure, s.training.depth
        ),
        x_label: "Hurst index H".into(),
        y_label: "β (scale L^-β)".into(),
        xs: grid.hs.clone(),
        ys: grid.betas.clone(),
        values: best.to_vec(),
        vmin: 0.0,
        vmax: 1.0,
        value_label: "test accuracy".into(),
        curves: vec![],
        // A cell whose every run diverged, or none has run yet, has no accuracy: grey.
        nan: NanAs::Missing,
    }
    .write(&out.join(format!("{}-{dname}", fig.stem)))?;
    Ok(())
}

/// Trains the points `todo`, `chunk` models at a time, into `rows`; the runs CSV is rewritten
/// after every chunk.
fn train_missing(
    ctx: &Ctx,
    split: &DataSplit,
    grid: &Grid,
    todo: &[GridPoint],
    rows: &mut HashMap<RunKey, Vec<String>>,
    runs_path: &Path,
) -> Result<()> {
    let Ctx { fig, s, out, .. } = *ctx;
    let dname = split.name.as_str();
    let chunks = todo.len().div_ceil(s.batched.chunk);
    // The current chunk's models and optimizer after every epoch.
    let checkpoint = out.join(format!(".chunk-{dname}.safetensors"));
    for (c, chunk) in todo.chunks(s.batched.chunk).enumerate() {
        let runs: Vec<TrainRun> = chunk.iter().map(|g| grid.run(g)).collect();
        let label = format!(
            "{} {dname} chunk {}/{chunks} ({} models)",
            fig.figure,
            c + 1,
            runs.len()
        );
        let setup = TrainSetup {
            label: (!ctx.quiet).then_some(label.clone()),
            checkpoint: Some(checkpoint.clone()),
            ..TrainSetup::of(&s.training, ctx.device)
        };
        let tr = train_classifiers(&setup, split, &runs)?;
        // Over every process that trained the chunk (NaN: resumed from a checkpoint of before
        // 2026-12-03, which did not record its time).
        let secs = tr.seconds;
        for (m, g) in chunk.iter().enumerate() {
            let (h, b, lr) = grid.key(g);
            rows.insert(
                grid.key(g),
                vec![
                    dname.into(),
                    h,
                    b,
                    lr,
                    tr.test_acc[m].to_string(),
                    tr.train_loss[m].to_string(),
                    tr.diverged[m].to_string(),
                    format!("{secs:.2}"),
                ],
            );
        }
        if !ctx.quiet {
            eprintln!("{label}: done in {secs:.1}s");
        }
        // Rewritten (atomically) after every chunk: an interrupted figure resumes from it
        // (and from the chunk's checkpoint, removed once its runs are in the file).
        runs_table(grid, rows).write_csv(runs_path)?;
        let _ = std::fs::remove_file(&checkpoint);
        if c + 1 < chunks {
            // The figure so far, for a run of hours or days (the last is written by the caller).
            write_heatmap(ctx, grid, dname, &best_over_lr(grid, rows), rows)?;
        }
    }
    Ok(())
}

/// The best finite test accuracy of every (β, H) cell over the learning rates: rows β, columns
/// H (NaN where every run diverged, or none is trained yet).
fn best_over_lr(grid: &Grid, rows: &HashMap<RunKey, Vec<String>>) -> Vec<Vec<f64>> {
    let mut best = vec![vec![f64::NAN; grid.hs.len()]; grid.betas.len()];
    for g in &grid.points {
        let (j, i, _) = *g;
        let Some(row) = rows.get(&grid.key(g)) else {
            continue; // not trained yet
        };
        let acc: f64 = row[4].parse().unwrap_or(f64::NAN);
        if acc.is_finite() && (best[i][j].is_nan() || acc > best[i][j]) {
            best[i][j] = acc;
        }
    }
    best
}

/// The runs CSV in grid order (runs not trained yet left out).
fn runs_table(grid: &Grid, rows: &HashMap<RunKey, Vec<String>>) -> Table {
    let mut t = Table::new("", RUN_COLUMNS.iter().map(|s| s.to_string()).collect());
    for g in &grid.points {
        if let Some(r) = rows.get(&grid.key(g)) {
            t.push(r.clone());
        }
    }
    t
}

/// The settings that determine the runs of one dataset's runs CSV (the grid point of a run is
/// in its row; the dataset in the file's name).
#[derive(Serialize)]
struct RunsKey<'a> {
    model: MarionModel,
    depth: i64,
    width: i64,
    train: &'a TrainFig,
    seed: u64,
    train_examples: i64,
    test_examples: i64,
    /// Left out when exact, the only sampler until 2026-12-01, so the runs made with it keep their key.
    #[serde(skip_serializing_if = "FbmSampler::is_exact")]
    fbm_sampler: FbmSampler,
}

/// The key of a runs CSV of `training` with fBm weights drawn by `sampler` on `split`, recorded
/// in the `.runs-<dataset>.key` file beside it ([`crate::util::key::spec_key`]).
pub fn runs_key(training: &Training, sampler: FbmSampler, split: &DataSplit) -> String {
    spec_key(&RunsKey {
        model: training.model,
        depth: training.depth,
        width: training.width,
        train: &training.train,
        seed: training.seed,
        train_examples: split.train.len(),
        test_examples: split.test.len(),
        fbm_sampler: sampler,
    })
}

/// The runs an interrupted M9 left in `runs_path`, by (H, β, lr), when they were trained with
/// the same settings ([`runs_key`], recorded in a `.key` file beside it); the runs of other
/// settings are moved aside to `runs-<dataset>.<unix time>.csv`, never overwritten.
fn resume_rows(
    s: &AccuracyFig,
    split: &DataSplit,
    out: &Path,
    runs_path: &Path,
    quiet: bool,
) -> Result<HashMap<RunKey, Vec<String>>> {
    let dname = split.name.as_str();
    let key = format!("{}\n", runs_key(&s.training, s.fbm_sampler, split));
    let key_path = out.join(format!(".runs-{dname}.key"));
    let mut rows = HashMap::new();
    if runs_path.exists() {
        if std::fs::read_to_string(&key_path).ok().as_deref() == Some(key.as_str()) {
            let mut r = csv::Reader::from_path(runs_path)
                .with_context(|| format!("{}: cannot read", runs_path.display()))?;
            for rec in r.records() {
                let rec = rec.with_context(|| format!("{}: bad row", runs_path.display()))?;
                let row: Vec<String> = rec.iter().map(String::from).collect();
                if row.len() == RUN_COLUMNS.len() {
                    rows.insert((row[1].clone(), row[2].clone(), row[3].clone()), row);
                }
            }
        } else {
            let aside = crate::util::atomic::move_aside(runs_path)?;
            if !quiet {
                eprintln!(
                    "{}: trained with other settings; moved to {}",
                    runs_path.display(),
                    aside.display()
                );
            }
        }
    }
    write_atomic(&key_path, &key)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::papers::marion2022::spec::FigureSpec;

    /// Between two chunks of a long figure: the cells with no run yet are NaN, the others the
    /// best accuracy over their learning rates (here by hand: max of the two), and the heatmap
    /// written then says in its title how many runs are in and paints the NaN cells grey.
    #[test]
    fn a_partial_grid_gives_a_partial_heatmap() {
        let sets = ["hursts.points=2", "betas.points=2", "lrs=[0.01, 0.1]"].map(String::from);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/marion2022/fig9.yaml");
        let fig = Figure::load_with(&path, "smoke", &sets).unwrap();
        let FigureSpec::Accuracy(s) = &fig.spec else {
            panic!("fig9 is an accuracy figure");
        };
        let grid = Grid::new(s);
        assert_eq!(grid.points.len(), 8);
        // Both learning rates of cell (H_0, β_0), one of cell (H_1, β_1), nothing else.
        let mut rows = HashMap::new();
        for (g, acc) in [
            ((0, 0, 0.01), "0.5"),
            ((0, 0, 0.1), "0.7"),
            ((1, 1, 0.1), "0.6"),
        ] {
            let (h, b, lr) = grid.key(&g);
            let row = ["synthetic", &h, &b, &lr, acc, "1.0", "false", "1.0"].map(String::from);
            rows.insert(grid.key(&g), row.to_vec());
        }
        let best = best_over_lr(&grid, &rows);
        assert_eq!(best[0][0], 0.7);
        assert_eq!(best[1][1], 0.6);
        assert!(best[0][1].is_nan() && best[1][0].is_nan(), "{best:?}");
        let dir = tempfile::tempdir().unwrap();
        let ctx = Ctx {
            fig: &fig,
            s,
            out: dir.path(),
            device: Device::Cpu,
            quiet: true,
        };
        write_heatmap(&ctx, &grid, "synthetic", &best, &rows).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("fig9-synthetic.svg")).unwrap();
        assert!(svg.contains("(partial: 3 of 8 runs)"), "no partial title");
        // The two cells without an accuracy are grey (not the colour of accuracy 1), and so is
        // the legend's square beside "no value".
        assert_eq!(svg.matches("#969696").count(), 3, "grey cells");
        assert!(svg.contains("no value"));
    }

    /// The M9 check on a hand-made grid, its value worked out by hand: H = 0.3, 0.7 (boundaries
    /// max(H, 1/2) = 0.5, 0.7), β = 0.2, 0.5, 0.8. At or above the boundary: (β 0.5, H 0.3),
    /// (0.8, 0.3), (0.8, 0.7); more than 0.1 below it: (0.2, 0.3), (0.2, 0.7), (0.5, 0.7). A
    /// diverged run (NaN) counts as accuracy 0.
    #[test]
    fn the_m9_check_is_the_mean_above_the_boundary_minus_below() {
        let grid = Grid {
            sampler: FbmSampler::Exact,
            hs: vec![0.3, 0.7],
            betas: vec![0.2, 0.5, 0.8],
            points: Vec::new(),
        };
        // rows β, columns H
        let best = vec![
            vec![0.10, f64::NAN], // β 0.2: both below
            vec![0.80, 0.30],     // β 0.5: above for H 0.3, below (0.5 < 0.6) for H 0.7
            vec![0.90, 0.70],     // β 0.8: both above
        ];
        let check = boundary_check("d", &grid, &best);
        let above = (0.80 + 0.90 + 0.70) / 3.0;
        let below = (0.10 + 0.0 + 0.30) / 3.0;
        assert!(
            (check.value - (above - below)).abs() < 1e-12,
            "{}",
            check.value
        );
        assert!(check
            .name
            .contains("the 3 cells with β ≥ max(H, 1/2) minus the 3 cells"));
        assert!(check.passed());
        // A cell 0.05 below its boundary is in neither mean.
        let grid = Grid {
            betas: vec![0.45, 0.8],
            ..grid
        };
        let best = vec![vec![0.0, 0.0], vec![0.6, 0.6]];
        let check = boundary_check("d", &grid, &best);
        assert!(check
            .name
            .contains("the 2 cells with β ≥ max(H, 1/2) minus the 1 cells"));
        assert!((check.value - 0.6).abs() < 1e-12);
    }
}
