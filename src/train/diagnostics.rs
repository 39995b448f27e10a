//! Per-block diagnostics during training, `blocks.csv`: before the first epoch (epoch 0) and
//! after every epoch, on a fixed batch of training images (the first ones, unaugmented), one
//! row per residual block ℓ:
//! - `tau`: τ as the block sees it (its own for ReZero and Fixup, the shared or constant one
//!   otherwise);
//! - `branch_to_skip`: ‖τ·f(h_{ℓ−1})‖ / ‖x_skip‖, how much the branch adds to the skip path;
//! - `h_norm`: ‖h_ℓ‖ / √batch, the RMS norm of the block's output per image;
//! - `weight_norm`, `grad_norm`: ‖θ_ℓ‖ and ‖∂ℓ/∂θ_ℓ‖ over the block's own parameters (convs,
//!   batch norms, scalar biases, its own τ) for the cross-entropy of that batch.
//!
//! Batch norm runs in training mode (batch statistics, as in a training step); its running
//! statistics are restored afterwards, the gradients are computed apart from the parameters'
//! `.grad` (torch's autograd.grad), so the training run is not touched. The cost is one
//! forward and backward pass on one batch per epoch.
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::model::ResNet;

/// The file, next to metrics.csv.
pub const FILE: &str = "blocks.csv";

/// One row of blocks.csv.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockRow {
    /// Epochs finished (0: at initialization).
    pub epoch: i64,
    /// ℓ − 1: 0-based block index.
    pub block: i64,
    /// Stage 1, 2 or 3 (16, 32, 64 channels at width 1).
    pub stage: i64,
    pub tau: f64,
    pub branch_to_skip: f64,
    pub h_norm: f64,
    pub weight_norm: f64,
    pub grad_norm: f64,
}

fn norm(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).norm().double_value(&[])
}

/// Measures every block on the batch (x, y) after `epoch` epochs.
pub fn measure(model: &ResNet, vs: &VarStore, x: &Tensor, y: &Tensor, epoch: i64) -> Vec<BlockRow> {
    let vars = vs.variables();
    // BN's running statistics: the training-mode forward below updates them; put them back.
    let stats: Vec<(Tensor, Tensor)> = vars
        .values()
        .filter(|t| !t.requires_grad())
        .map(|t| (t.shallow_clone(), t.copy()))
        .collect();
    let blocks = model.blocks();
    let n = blocks.len() as i64;
    let mut h = model.stem_t(x, true);
    let mut traced = Vec::with_capacity(blocks.len());
    for b in blocks {
        let t = b.trace(&h, true);
        h = t.out.shallow_clone();
        traced.push(t);
    }
    let loss = model.head_t(&h).cross_entropy_for_logits(y);
    let params: Vec<Vec<Tensor>> = (0..n)
        .map(|k| {
            let prefix = format!("blocks.{k}.");
            let mut ps: Vec<(&String, &Tensor)> = vars
                .iter()
                .filter(|(name, t)| name.starts_with(&prefix) && t.requires_grad())
                .collect();
            ps.sort_by(|a, b| a.0.cmp(b.0));
            ps.into_iter().map(|(_, t)| t.shallow_clone()).collect()
        })
        .collect();
    let flat: Vec<&Tensor> = params.iter().flatten().collect();
    let grads = Tensor::run_backward(&[&loss], &flat, false, false);
    tch::no_grad(|| {
        for (var, saved) in &stats {
            var.shallow_clone().copy_(saved);
        }
    });
    let batch = x.size()[0] as f64;
    let mut g = grads.iter();
    let sq =
        |ts: &mut dyn Iterator<Item = &Tensor>| ts.map(|t| norm(t).powi(2)).sum::<f64>().sqrt();
    traced
        .iter()
        .zip(&params)
        .enumerate()
        .map(|(k, (t, ps))| BlockRow {
            epoch,
            block: k as i64,
            stage: 1 + 3 * k as i64 / n,
            tau: blocks[k].tau_value(),
            branch_to_skip: norm(&t.scaled) / norm(&t.skip),
            h_norm: norm(&t.out) / batch.sqrt(),
            weight_norm: sq(&mut ps.iter()),
            grad_norm: sq(&mut g.by_ref().take(ps.len())),
        })
        .collect()
}

/// Appends `rows` to `dir/blocks.csv` (header first if the file is new).
pub fn append(dir: &Path, rows: &[BlockRow]) -> Result<()> {
    let epoch = rows.first().map_or(0, |r| r.epoch);
    super::metrics::append_rows(&dir.join(FILE), rows, epoch)
}

/// Reads blocks.csv.
pub fn read(path: &Path) -> Result<Vec<BlockRow>> {
    crate::util::csv_rows::read(path)
}
