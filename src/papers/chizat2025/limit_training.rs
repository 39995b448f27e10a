//! C3, `kind: limit-training`: the limit's training loss over the K steps, and the trajectory
//! of one unit's u in every layer of a finite model whose unit 1 shares one initialization
//! across layers.
use anyhow::Result;
use std::path::Path;
use tch::{Device, Tensor};

use super::gd::train;
use super::limit::limit;
use super::output::{to_vec, write_csv, RED};
use super::spec::{Figure, LimitTrainingFig};
use super::task::train_and_test;
use crate::model::two_layer_resnet::TwoLayerResNet;
use crate::report::acceptance::{Acceptance, Check};
use crate::report::plot::{multi_panel, ramp, Panel, PlotSpec, Series};

/// Unit 1's u, coordinates 1 and 2, in every layer ℓ, at each step k: `traj[k][2ℓ + c]`.
type Trajectories = Vec<Vec<f64>>;

pub(super) fn limit_training(
    fig: &Figure,
    s: &LimitTrainingFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(String, Acceptance)> {
    let lim = limit(s.dim, &s.dynamics, &s.task, &s.limit, device, quiet)?;
    let loss = to_vec(&lim.loss);
    let (traj, model_loss) = train_with_shared_unit(s, device)?;
    write_csvs(s, out, &traj, &loss, &model_loss)?;
    plot(fig, s, out, &traj, &loss, &model_loss)?;
    Ok((
        report(fig, s, &traj, (&loss, lim.cached), &model_loss),
        acceptance(s, &traj, &loss),
    ))
}

/// Trains one model whose unit 1 shares one initialization in all layers; returns unit 1's
/// trajectories and the model's training loss per step.
fn train_with_shared_unit(
    s: &LimitTrainingFig,
    device: Device,
) -> Result<(Trajectories, Vec<f64>)> {
    let k = s.dynamics.steps;
    let (x, y, xt) = train_and_test(&s.task, s.dim, device);
    tch::manual_seed(s.seed as i64 * 7919 + 17);
    let mut net = TwoLayerResNet::new(&[s.dynamics.model(s.depth, s.width, s.dim)], device);
    {
        let _g = tch::no_grad_guard();
        let (u0, v0) = (
            net.u[0].narrow(1, 0, 1).copy(),
            net.v[0].narrow(1, 0, 1).copy(),
        );
        for l in 1..net.depth() {
            net.u[l].narrow(1, 0, 1).copy_(&u0);
            net.v[l].narrow(1, 0, 1).copy_(&v0);
        }
    }
    let unit = |net: &TwoLayerResNet| -> Vec<f64> {
        // u_{ℓ,1} coordinates 1 and 2 for every ℓ: [L, 2]
        let parts: Vec<Tensor> = net
            .u
            .iter()
            .map(|u| u.get(0).get(0).narrow(0, 0, 2))
            .collect();
        to_vec(&Tensor::stack(&parts, 0))
    };
    let mut traj = vec![unit(&net)];
    let (model_loss, _) = train(&mut net, &x, &y, &xt, k, |_, n| traj.push(unit(n)))?;
    Ok((traj, to_vec(&model_loss)))
}

/// trajectories.csv and loss.csv.
fn write_csvs(
    s: &LimitTrainingFig,
    out: &Path,
    traj: &Trajectories,
    loss: &[f64],
    model_loss: &[f64],
) -> Result<()> {
    let depth = s.depth as usize;
    let mut csv = Vec::new();
    for (step, t) in traj.iter().enumerate() {
        for l in 0..depth {
            csv.push(format!(
                "{step},{},{:.6},{:.6}",
                l + 1,
                t[2 * l],
                t[2 * l + 1]
            ));
        }
    }
    write_csv(&out.join("trajectories.csv"), "step,layer,u1,u2", &csv)?;
    let loss_rows: Vec<String> = loss
        .iter()
        .zip(model_loss)
        .enumerate()
        .map(|(k, (a, b))| format!("{k},{a:.6e},{b:.6e}"))
        .collect();
    write_csv(
        &out.join("loss.csv"),
        "step,limit_loss,model_loss",
        &loss_rows,
    )
}

/// Left, the losses of the limit and the model; right, unit 1's u in every layer.
fn plot(
    fig: &Figure,
    s: &LimitTrainingFig,
    out: &Path,
    traj: &Trajectories,
    loss: &[f64],
    model_loss: &[f64],
) -> Result<()> {
    let depth = s.depth as usize;
    let traj_series: Vec<Series> = (0..depth)
        .map(|l| {
            let pts = traj.iter().map(|t| (t[2 * l], t[2 * l + 1])).collect();
            Series::new("", pts)
                .rgb(ramp(l as f64 / (depth.max(2) - 1) as f64))
                .unlabelled()
        })
        .chain(std::iter::once(
            Series::new("initialization (shared)", vec![(traj[0][0], traj[0][1])])
                .rgb(RED)
                .scatter(),
        ))
        .collect();
    multi_panel(
        &out.join(&fig.stem),
        &format!(
            "{}: training of the limit (L = {}, M = {}, D = {})",
            fig.figure, s.limit.depth, s.limit.width, s.dim
        ),
        &[
            Panel {
                spec: PlotSpec::new("square loss over GD steps", "step k", "train loss")
                    .log_y(true),
                series: vec![
                    Series::new(
                        format!("limit (L = {}, M = {})", s.limit.depth, s.limit.width),
                        loss.iter()
                            .enumerate()
                            .map(|(k, v)| (k as f64, *v))
                            .collect(),
                    )
                    .rgb(RED),
                    Series::new(
                        format!("L = {}, M = {}", s.depth, s.width),
                        model_loss
                            .iter()
                            .enumerate()
                            .map(|(k, v)| (k as f64, *v))
                            .collect(),
                    ),
                ],
            },
            Panel {
                spec: PlotSpec::new(
                    format!(
                        "u of unit 1 over k, layers ℓ = 1 (dark) … {} (yellow)",
                        s.depth
                    ),
                    "u coordinate 1",
                    "u coordinate 2",
                ),
                series: traj_series,
            },
        ],
    )?;
    Ok(())
}

/// How far unit 1's u moved in each layer after the K steps, and its initial norm.
fn unit_moves(s: &LimitTrainingFig, traj: &Trajectories) -> (Vec<f64>, f64) {
    let k = s.dynamics.steps;
    let moves = (0..s.depth as usize)
        .map(|l| {
            let (a, b) = (&traj[0], &traj[k]);
            ((b[2 * l] - a[2 * l]).powi(2) + (b[2 * l + 1] - a[2 * l + 1]).powi(2)).sqrt()
        })
        .collect();
    (moves, (traj[0][0].powi(2) + traj[0][1].powi(2)).sqrt())
}

/// The paper's claims as checks: the limit trains (its loss falls at least 10× in K steps) and
/// its features move by O(1) (MLU: in every layer unit 1 moves by at least a fifth of its
/// initial norm).
fn acceptance(s: &LimitTrainingFig, traj: &Trajectories, loss: &[f64]) -> Acceptance {
    let k = s.dynamics.steps;
    let (moves, init_norm) = unit_moves(s, traj);
    let min_move = moves.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut a = Acceptance::default();
    a.push(Check::new(
        format!("the limit's loss at k = 0 over k = {k}"),
        loss[0] / loss[k],
        10.0,
        f64::INFINITY,
    ));
    a.push(Check::new(
        "unit 1's smallest move over the layers / its initial norm (MLU)",
        min_move / init_norm,
        0.2,
        f64::INFINITY,
    ));
    a
}

/// The text: the limit's loss and how far unit 1 moved.
fn report(
    fig: &Figure,
    s: &LimitTrainingFig,
    traj: &Trajectories,
    (loss, cached): (&[f64], bool),
    model_loss: &[f64],
) -> String {
    let k = s.dynamics.steps;
    let (moves, init_norm) = unit_moves(s, traj);
    let mut text = format!(
        "Figure: {}.svg/png; data loss.csv, trajectories.csv.\n\n",
        fig.stem
    );
    text += &format!(
        "Limit (L = {}, M = {}): train loss {:.3e} at k = 0, {:.3e} at k = {k} ({:.1}× lower){}.\n\n",
        s.limit.depth,
        s.limit.width,
        loss[0],
        loss[k],
        loss[0] / loss[k],
        if cached { ", from the cache" } else { "" }
    );
    text += &format!(
        "Unit 1's u (2-D, ‖u_init‖ = {init_norm:.3}) moved by {:.3} (min over layers) to {:.3} \
         (max) after K = {k} steps, in the model L = {}, M = {} (train loss {:.3e} → {:.3e}).\n",
        moves.iter().cloned().fold(f64::INFINITY, f64::min),
        moves.iter().cloned().fold(0.0, f64::max),
        s.depth,
        s.width,
        model_loss[0],
        model_loss[k]
    );
    text
}
