//! The limit model (the paper's Neural Mean ODE): the same ResNet at a much larger L and M
//! (`limit.depth`, `limit.width`, averaged over `limit.models` independent models), trained the
//! same way. It is computed once per setting and cached under `limit.cache` in a file named by
//! the setting's key ([`limit_key`]); the file holds the full key and a file whose key differs
//! is refused, never used.
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

use super::gd::{recorded_steps, train};
use super::spec::{Dynamics, LimitSpec, TaskSpec};
use super::task::train_and_test;
use crate::model::two_layer_resnet::TwoLayerResNet;
use crate::train::tensor_file::{self, TensorFile};
use crate::util::key::spec_key;

/// The limit model's results for one setting.
pub struct Limit {
    /// Training loss per step `[K + 1]`.
    pub loss: Tensor,
    /// Mean test output at each recorded step, `[n_test]`.
    pub outputs: BTreeMap<usize, Tensor>,
    /// ⟨e_1, h_ℓ⟩ after training for ℓ = 0..L_lim, `[L_lim + 1, n_test]`.
    pub trace: Tensor,
    pub seconds: f64,
    pub cached: bool,
}

/// Exactly the settings that determine a limit; its [`spec_key`] names the cache file. Not
/// `limit.cache`: where a limit is stored does not change it.
#[derive(Debug, Clone, Serialize)]
pub struct LimitKey {
    /// Bump when the model, the task or the training changes (old cached limits are then
    /// recomputed). 1: u ~ σ_u·N(0, I_D) per coordinate.
    pub version: u32,
    /// D.
    pub dim: i64,
    pub dynamics: Dynamics,
    pub task: TaskSpec,
    /// L, M and the number of models of the limit, and its initialization seed.
    pub depth: i64,
    pub width: i64,
    pub models: i64,
    pub seed: u64,
}

/// The key of the limit for dimension `dim` (see [`LimitKey`]).
pub fn limit_key(dim: i64, dynamics: &Dynamics, task: &TaskSpec, lim: &LimitSpec) -> LimitKey {
    LimitKey {
        version: 1,
        dim,
        dynamics: *dynamics,
        task: *task,
        depth: lim.depth,
        width: lim.width,
        models: lim.models,
        seed: lim.seed,
    }
}

/// The cache file of the limit with key `key` (from [`spec_key`] of a [`LimitKey`]).
pub fn limit_path(lim: &LimitSpec, key: &str) -> PathBuf {
    lim.cache.join(format!("limit-{}.ot", &key[..16]))
}

/// The limit for dimension `dim`: loaded from the cache, or trained (and cached).
pub fn limit(
    dim: i64,
    dynamics: &Dynamics,
    task_spec: &TaskSpec,
    lim: &LimitSpec,
    device: Device,
    quiet: bool,
) -> Result<Limit> {
    let key = spec_key(&limit_key(dim, dynamics, task_spec, lim));
    let path = limit_path(lim, &key);
    if path.exists() {
        return load(&path, &key, dynamics.steps, device);
    }
    if !quiet {
        eprintln!(
            "limit: D = {dim}, L = {}, M = {}, {} model(s), K = {} (cached in {})",
            lim.depth,
            lim.width,
            lim.models,
            dynamics.steps,
            lim.cache.display()
        );
    }
    let lim_out = compute(dim, dynamics, task_spec, lim, device);
    save(&lim_out, lim, &path, &key)?;
    if !quiet {
        eprintln!(
            "limit: D = {dim} done in {:.1} s, final loss {:.2e}",
            lim_out.seconds,
            lim_out.loss.double_value(&[dynamics.steps as i64])
        );
    }
    Ok(lim_out)
}

/// Trains the limit's models and averages them.
fn compute(
    dim: i64,
    dynamics: &Dynamics,
    task_spec: &TaskSpec,
    lim: &LimitSpec,
    device: Device,
) -> Limit {
    let start = Instant::now();
    let (x, y, xt) = train_and_test(task_spec, dim, device);
    tch::manual_seed(1_000_000 + lim.seed as i64 * 7919 + dim);
    let specs = vec![dynamics.model(lim.depth, lim.width, dim); lim.models as usize];
    let mut net = TwoLayerResNet::new(&specs, device);
    let (loss, outputs) = train(&mut net, &x, &y, &xt, dynamics.steps, |_, _| {});
    let trace = {
        let _g = tch::no_grad_guard();
        net.trace(&xt).mean_dim(0, false, Kind::Float)
    };
    Limit {
        loss: loss.mean_dim(1, false, Kind::Float),
        outputs: outputs
            .into_iter()
            .map(|(k, o)| (k, o.mean_dim(0, false, Kind::Float)))
            .collect(),
        trace,
        seconds: start.elapsed().as_secs_f64(),
        cached: false,
    }
}

const FIX: &str = "delete it to recompute";

/// Reads a cached limit, refusing a file that holds another setting's key.
fn load(path: &std::path::Path, key: &str, steps: usize, device: Device) -> Result<Limit> {
    let file = TensorFile::read(path, device, "cached limit", FIX)?;
    let stored = Vec::<u8>::try_from(file.get("key")?.to_device(Device::Cpu))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    if stored != key {
        bail!(
            "{}: the cached limit is for another setting (its key {stored:?}, this one's \
             {key:?}) ({FIX})",
            path.display()
        );
    }
    let get = |name: &str| file.get(name).map(Tensor::shallow_clone);
    let mut outputs = BTreeMap::new();
    for k in recorded_steps(steps) {
        outputs.insert(k, get(&format!("out{k}"))?);
    }
    Ok(Limit {
        loss: get("loss")?,
        outputs,
        trace: get("trace")?,
        seconds: 0.0,
        cached: true,
    })
}

/// Writes a limit and its full key to `path` (atomically, see [`tensor_file::write`]).
fn save(lim_out: &Limit, lim: &LimitSpec, path: &std::path::Path, key: &str) -> Result<()> {
    std::fs::create_dir_all(&lim.cache)
        .with_context(|| format!("{}: cannot create the limit cache", lim.cache.display()))?;
    let mut named: Vec<(String, Tensor)> = vec![
        ("key".into(), Tensor::from_slice(key.as_bytes())),
        ("loss".into(), lim_out.loss.to_device(Device::Cpu)),
        ("trace".into(), lim_out.trace.to_device(Device::Cpu)),
    ];
    for (k, o) in &lim_out.outputs {
        named.push((format!("out{k}"), o.to_device(Device::Cpu)));
    }
    tensor_file::write(path, &named, "limit")
}
