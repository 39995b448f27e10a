//! The limit model (the paper's Neural Mean ODE): the same ResNet at a much larger L and M
//! (`limit.depth`, `limit.width`, averaged over `limit.models` independent models), trained the
//! same way. It is computed once per setting and cached under `limit.cache` in a file named by
//! the setting's key ([`limit_key`]); the file holds the full key and a file whose key differs
//! is refused, never used. A limit whose training a preemption signal stopped keeps its state
//! beside it ([`partial_path`], the same key) and continues from that step.
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

use super::gd::{recorded_steps, train_from, Progress};
use super::spec::{Dynamics, LimitSpec, TaskSpec};
use super::task::train_and_test;
use crate::model::two_layer_resnet::TwoLayerResNet;
use crate::train::interrupt::{self, Interrupted};
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
    lim.cache.join(format!("limit-{}.safetensors", &key[..16]))
}

/// The file of the limit's training stopped by a preemption signal (its weights after the
/// steps done, their losses and the outputs recorded), beside the limit's cache file; removed
/// once the limit is cached.
pub fn partial_path(lim: &LimitSpec, key: &str) -> PathBuf {
    lim.cache
        .join(format!("limit-{}.partial.safetensors", &key[..16]))
}

/// The limit for dimension `dim`: loaded from the cache, or trained (and cached). A preemption
/// signal stops the training after the GD step in progress with [`Interrupted`], its state
/// saved ([`partial_path`]); the rerun continues from that step to the same limit.
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
    let lim_out = compute(dim, (dynamics, task_spec, lim), &key, device, quiet)?;
    save(&lim_out, lim, &path, &key)?;
    let _ = std::fs::remove_file(partial_path(lim, &key));
    if !quiet {
        eprintln!(
            "limit: D = {dim} done in {:.1} s, final loss {:.2e}",
            lim_out.seconds,
            lim_out.loss.double_value(&[dynamics.steps as i64])
        );
    }
    Ok(lim_out)
}

/// How often a limit in training says how far it is.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Trains the limit's models (from their saved partial training, if any) and averages them.
fn compute(
    dim: i64,
    (dynamics, task_spec, lim): (&Dynamics, &TaskSpec, &LimitSpec),
    key: &str,
    device: Device,
    quiet: bool,
) -> Result<Limit> {
    let start = Instant::now();
    let (x, y, xt) = train_and_test(task_spec, dim, device);
    tch::manual_seed(1_000_000 + lim.seed as i64 * 7919 + dim);
    let specs = vec![dynamics.model(lim.depth, lim.width, dim); lim.models as usize];
    let mut net = TwoLayerResNet::new(&specs, device);
    let partial = partial_path(lim, key);
    let steps = dynamics.steps;
    let progress = match partial.exists() {
        true => load_partial(&partial, key, &mut net, steps, device)?,
        false => Progress::start(),
    };
    if !quiet && progress.done > 0 {
        eprintln!(
            "limit: D = {dim}: resuming at GD step {} of {steps} from {}",
            progress.done,
            partial.display()
        );
    }
    // A limit takes minutes to hours (L × M large, n points): a line every PROGRESS_EVERY.
    let mut last = Instant::now();
    let each_step = |k: usize, _: &TwoLayerResNet| {
        if !quiet && last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            eprintln!("limit: D = {dim}: GD step {k} of {steps} ({secs:.0} s)");
        }
    };
    let (loss, outputs) = train_saved(
        &mut net,
        (&x, &y, &xt),
        (steps, progress),
        (lim, key),
        each_step,
    )?;
    let trace = {
        let _g = tch::no_grad_guard();
        net.trace(&xt).mean_dim(0, false, Kind::Float)
    };
    Ok(Limit {
        loss: loss.mean_dim(1, false, Kind::Float),
        outputs: outputs
            .into_iter()
            .map(|(k, o)| (k, o.mean_dim(0, false, Kind::Float)))
            .collect(),
        trace,
        seconds: start.elapsed().as_secs_f64(),
        cached: false,
    })
}

/// [`train_from`] `progress` on `data`, its training saved ([`save_partial`]) every
/// `limit.save_seconds` (so that even a kill -9 loses at most that much) and when a preemption
/// signal stops it, which then ends it with [`Interrupted`].
fn train_saved(
    net: &mut TwoLayerResNet,
    data: (&Tensor, &Tensor, &Tensor),
    (steps, mut progress): (usize, Progress),
    (lim, key): (&LimitSpec, &str),
    mut each_step: impl FnMut(usize, &TwoLayerResNet),
) -> Result<(Tensor, BTreeMap<usize, Tensor>)> {
    let partial = partial_path(lim, key);
    loop {
        let (since, mut asked) = (Instant::now(), false);
        let stop = |k: usize| {
            asked = interrupt::requested(0, k as i64);
            asked || since.elapsed().as_secs_f64() >= lim.save_seconds
        };
        let p = match train_from(net, data, steps, progress, &mut each_step, stop) {
            Ok(done) => return Ok(done),
            Err(p) => p,
        };
        save_partial(&partial, lim, key, net, &p)?;
        if asked {
            let sig = interrupt::signal().unwrap_or(libc::SIGTERM);
            return Err(Interrupted(format!(
                "{}: the limit (D = {}) stopped by {} after GD step {} of {steps}, its \
                 training saved; resumable: rerun the same command",
                partial.display(),
                net.dim,
                interrupt::name(sig),
                p.done
            ))
            .into());
        }
        progress = p;
    }
}

const FIX: &str = "delete it to recompute";

/// Reads a file of the limit cache (`what`), refusing one that holds another setting's key.
fn read_keyed(path: &Path, key: &str, what: &str, device: Device) -> Result<TensorFile> {
    let file = TensorFile::read(path, device, what, FIX)?;
    let stored = Vec::<u8>::try_from(file.get("key")?.to_device(Device::Cpu))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    if stored != key {
        bail!(
            "{}: the {what} is for another setting (its key {stored:?}, this one's \
             {key:?}) ({FIX})",
            path.display()
        );
    }
    Ok(file)
}

/// Reads a cached limit, refusing a file that holds another setting's key.
fn load(path: &Path, key: &str, steps: usize, device: Device) -> Result<Limit> {
    let file = read_keyed(path, key, "cached limit", device)?;
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

/// Creates the limit cache's directory.
fn create_cache(lim: &LimitSpec) -> Result<()> {
    std::fs::create_dir_all(&lim.cache)
        .with_context(|| format!("{}: cannot create the limit cache", lim.cache.display()))
}

/// Writes a limit and its full key to `path` (atomically, see [`tensor_file::write`]).
fn save(lim_out: &Limit, lim: &LimitSpec, path: &Path, key: &str) -> Result<()> {
    create_cache(lim)?;
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

/// Writes the limit's partial training (its key, the steps done, the weights after them, their
/// losses and the outputs recorded so far) to `path`, atomically.
fn save_partial(
    path: &Path,
    lim: &LimitSpec,
    key: &str,
    net: &TwoLayerResNet,
    p: &Progress,
) -> Result<()> {
    create_cache(lim)?;
    let cpu = |t: &Tensor| t.to_device(Device::Cpu);
    let mut named: Vec<(String, Tensor)> = vec![
        ("key".into(), Tensor::from_slice(key.as_bytes())),
        ("done".into(), Tensor::from_slice(&[p.done as i64])),
        ("loss".into(), cpu(&Tensor::stack(&p.losses, 0))),
    ];
    for (k, o) in &p.outputs {
        named.push((format!("out{k}"), cpu(o)));
    }
    for (l, (u, v)) in net.u.iter().zip(&net.v).enumerate() {
        named.push((format!("u{l}"), cpu(u)));
        named.push((format!("v{l}"), cpu(v)));
    }
    tensor_file::write(path, &named, "limit training")
}

/// Restores a partial training of [`save_partial`] into `net`; returns its progress.
fn load_partial(
    path: &Path,
    key: &str,
    net: &mut TwoLayerResNet,
    steps: usize,
    device: Device,
) -> Result<Progress> {
    let file = read_keyed(path, key, "saved limit training", device)?;
    let get = |name: &str| file.get(name).map(Tensor::shallow_clone);
    let done = file.get("done")?.int64_value(&[0]) as usize;
    let loss = get("loss")?;
    if done == 0 || done >= steps || loss.size()[0] != done as i64 {
        bail!(
            "{}: a saved limit training with {done} steps of {steps} ({FIX})",
            path.display()
        );
    }
    for l in 0..net.depth() {
        net.u[l] = get(&format!("u{l}"))?;
        net.v[l] = get(&format!("v{l}"))?;
    }
    let mut outputs = BTreeMap::new();
    for k in recorded_steps(steps).into_iter().filter(|&k| k < done) {
        outputs.insert(k, get(&format!("out{k}"))?);
    }
    Ok(Progress {
        done,
        losses: loss.unbind(0),
        outputs,
    })
}
