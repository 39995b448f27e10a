//! `kind: weights` (M8): train a few models together, then plot a few weight entries against
//! the layer index k, with the roughness of each model's weights along the layers.
use anyhow::Result;
use std::path::Path;
use tch::{Device, Kind, Tensor};

use super::spec::{Figure, WeightRun, WeightsFig};
use super::train::{load_first, train_classifiers, TrainRun, TrainSetup, Trained};
use crate::data;
use crate::model::weight_init::LayerInit;
use crate::report::acceptance::{Acceptance, Check};
use crate::report::plot::{multi_panel, Panel, PlotSpec, Series};
use crate::report::table::Table;

pub(super) fn weights_figure(
    fig: &Figure,
    s: &WeightsFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(String, Acceptance)> {
    let split = load_first(&s.data, &s.training.train)?;
    let mut text = format!(
        "Data: {} ({} train / {} test images). Figure: {}.svg/png.\n\n",
        split.name,
        split.train.len(),
        split.test.len(),
        fig.stem
    );
    let mut panels = Vec::new();
    let mut csv = Table::new(
        "",
        headers(&["init", "beta", "tensor", "i", "j", "k", "value"]),
    );
    let checkpoint = out.join(".training.safetensors");
    let tr = train_runs(s, &split, &checkpoint, device, quiet)?;
    // The first layer tensor: V of a SimpleResNet (the authors' figure), W of a FullResNet.
    let (name, weights) = tr.net.layer_weights()[0];
    let rough_header = format!("mean |{name}_{{k+1}} − {name}_k| / mean |{name}_k|");
    let mut table = Table::new(
        "Trained models, and the roughness of their weights along the layers",
        headers(&["init", "β", "test acc", "train loss", rough_header.as_str()]),
    );
    let weights = weights.detach().to_device(Device::Cpu); // [models, L, d, d]
    let mut measured = Vec::new(); // (init, roughness, test accuracy)
    for (idx, r) in s.runs.iter().enumerate() {
        let test_acc = tr.test_acc[idx];
        if !quiet {
            eprintln!(
                "weights: {} init, β = {}: test acc {test_acc:.4} ({:.1}s for all {} runs)",
                r.init,
                r.beta,
                tr.seconds,
                s.runs.len()
            );
        }
        let w = weights.select(0, idx as i64); // [L, d, d]
        let rough = roughness(&w);
        measured.push((r.init, rough, test_acc));
        table.push(vec![
            r.init.to_string(),
            format!("{}", r.beta),
            format!("{test_acc:.4}"),
            format!("{:.4}", tr.train_loss[idx]),
            format!("{rough:.4}"),
        ]);
        let series = entry_paths(r, name, &w, s.training.width, s.entries, &mut csv)?;
        panels.push(Panel {
            spec: PlotSpec::new(
                format!("{} init, β = {} (test acc {test_acc:.3})", r.init, r.beta),
                "layer k",
                format!("{name}_k entry after training"),
            ),
            series,
        });
    }
    csv.write_csv(&out.join("weights.csv"))?;
    table.write_csv(&out.join("runs.csv"))?;
    multi_panel(&out.join(&fig.stem), &fig.title, &panels)?;
    let _ = std::fs::remove_file(&checkpoint);
    text += &table.to_markdown();
    Ok((text, acceptance(&measured)))
}

/// Trains the figure's runs together, one batched program (one model each), keeping its
/// checkpoint at `checkpoint` so that a stopped figure resumes.
fn train_runs(
    s: &WeightsFig,
    split: &data::DataSplit,
    checkpoint: &Path,
    device: Device,
    quiet: bool,
) -> Result<Trained> {
    let runs: Vec<TrainRun> = s
        .runs
        .iter()
        .map(|r| TrainRun {
            init: r.init,
            beta: r.beta,
            lr: s.lr,
        })
        .collect();
    let setup = TrainSetup {
        label: (!quiet).then(|| "weights".to_string()),
        checkpoint: Some(checkpoint.to_path_buf()),
        ..TrainSetup::of(&s.training, device)
    };
    train_classifiers(&setup, split, &runs)
}

/// The paper's point as checks: the models train (test accuracy ≥ 0.7) and training keeps the
/// regularity of the initialization: smooth-init weights stay smooth along the layers
/// (roughness ≤ 0.5) and i.i.d.-init ones rough (≥ 1; 4/3 for independent uniform layers).
fn acceptance(measured: &[(LayerInit, f64, f64)]) -> Acceptance {
    let roughness = |init: LayerInit| measured.iter().filter(move |m| m.0 == init).map(|m| m.1);
    let mut a = Acceptance::default();
    let lowest_acc = measured.iter().map(|m| m.2).fold(f64::INFINITY, f64::min);
    a.push(Check::new("lowest test accuracy", lowest_acc, 0.7, 1.0));
    if let Some(smooth) = roughness(LayerInit::Smooth).reduce(f64::max) {
        a.push(Check::new(
            "highest roughness of the smooth-init weights",
            smooth,
            0.0,
            0.5,
        ));
    }
    if let Some(iid) = roughness(LayerInit::Iid).reduce(f64::min) {
        a.push(Check::new(
            "lowest roughness of the i.i.d.-init weights",
            iid,
            1.0,
            f64::INFINITY,
        ));
    }
    a
}

/// Column names as the table wants them.
fn headers(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// mean |X_{k+1} − X_k| / mean |X_k| of one model's layer weights X `[L, d, d]` (V or W).
fn roughness(w: &Tensor) -> f64 {
    let l = w.size()[0];
    tch::no_grad(|| {
        let dw = (w.narrow(0, 1, l - 1) - w.narrow(0, 0, l - 1))
            .abs()
            .mean(Kind::Double);
        dw.double_value(&[]) / w.abs().mean(Kind::Double).double_value(&[])
    })
}

/// A few entries (i, j) of one model's weights `w` `[L, d, d]` against the layer k, the same
/// for every run: (e, (e·7 + 3) mod d) for e < `entries`; each one a plotted series and rows of
/// `csv`.
fn entry_paths(
    r: &WeightRun,
    name: &str,
    w: &Tensor,
    d: i64,
    entries: usize,
    csv: &mut Table,
) -> Result<Vec<Series>> {
    let mut series = Vec::new();
    for e in 0..entries as i64 {
        let (i, j) = (e % d, (e * 7 + 3) % d);
        let path = Vec::<f64>::try_from(w.select(1, i).select(1, j).to_kind(Kind::Double))?;
        for (k, v) in path.iter().enumerate() {
            csv.push(vec![
                r.init.to_string(),
                r.beta.to_string(),
                name.to_string(),
                i.to_string(),
                j.to_string(),
                (k + 1).to_string(),
                v.to_string(),
            ]);
        }
        series.push(Series::new(
            format!("{name}[{i},{j}]"),
            path.iter()
                .enumerate()
                .map(|(k, &v)| ((k + 1) as f64, v))
                .collect(),
        ));
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::roughness;
    use tch::{Kind, Tensor};

    /// Closed forms: a ramp X_k = k·1 (k = 1..L) has mean |ΔX| = 1 and mean |X| = (L+1)/2, so
    /// 2/(L+1); i.i.d. N(0, σ²) layers have E|X − Y| = 2σ/√π and E|X| = σ√(2/π), so √2;
    /// i.i.d. uniform on [−a, a] have 2a/3 and a/2, so 4/3.
    #[test]
    fn roughness_has_its_closed_forms() {
        let l = 50;
        let ramp = Tensor::arange_start(1, l + 1, (Kind::Float, tch::Device::Cpu))
            .view([l, 1, 1])
            .expand([l, 3, 3], false);
        assert!((roughness(&ramp) - 2.0 / (l + 1) as f64).abs() < 1e-6);
        tch::manual_seed(0);
        let normal = Tensor::randn([400, 30, 30], (Kind::Float, tch::Device::Cpu)) * 0.3;
        assert!((roughness(&normal) / 2f64.sqrt() - 1.0).abs() < 0.01);
        let uniform = Tensor::rand([400, 30, 30], (Kind::Float, tch::Device::Cpu)) * 2.0 - 1.0;
        assert!((roughness(&uniform) / (4.0 / 3.0) - 1.0).abs() < 0.01);
    }
}
