//! The ResNet with two-layer-perceptron (2LP) blocks of Chizat (2025, "The Hidden Width of Deep
//! ResNets", arXiv:2509.10167), many independent models at once, trained by full-batch gradient descent
//! with a hand-written backward pass.
//!
//! Notation (the paper's): embedding dimension D, depth L, hidden width M (units per block),
//! residual scale s = α·D^γ/(L·M) (γ = 1/2: the critical 2LP scale; α → ∞: the lazy regime).
//! - h_0 = x ∈ R^D (the input is its own embedding);
//! - h_ℓ = h_{ℓ−1} + s Σ_{j=1..M} u_{ℓ,j} tanh(⟨v_{ℓ,j}, h_{ℓ−1}⟩), ℓ = 1..L;
//! - output f(x) = ⟨e_1, h_L⟩ (a fixed linear readout: the first coordinate).
//!
//! Initialization (our reconstruction, docs/chizat2025.md): u_{ℓ,j} ~ σ_u·N(0, I_D) and v_{ℓ,j} ~ σ_v·N(0, I_D / D), i.i.d.
//! over (ℓ, j): each coordinate of u is O(σ_u), ‖v‖ ≈ σ_v and the pre-activations ⟨v, h⟩ are
//! O(σ_v) for h of norm √D. At initialization each coordinate of h_L − h_0 is then
//! O(σ_u·α·D^γ/√(LM)): the √D/√(LM) of the error bound at γ = 1/2.
//!
//! Training: the square loss ½·mean_i (f(x_i) − y_i)², full batch, and the mean-field step
//! θ ← θ − λ ∇_θ loss for every u and v with λ = η/(s²·L·M) = η·L·M/(α²·D^{2γ}): at the critical
//! scale this is the mean-field η·L·M step divided by D, and for every (α, γ, D) one step moves the
//! output by O(η) whatever L and M (tests/chizat.rs checks it). Dividing by α² is what makes
//! α → ∞ lazy rather than divergent (the usual lazy-training normalization).
//!
//! Batching: the models of one [`TwoLayerResNet`] share their padded shape (L_max, M_max,
//! D_max). A model with fewer layers, units or coordinates has them set to zero, which is
//! exact: a zero unit (u = v = 0) has zero output (tanh 0 = 0) and zero gradient, zero input
//! coordinates stay zero, so padded parts never move. Each model has its own s and λ.
//! Weights are kept per layer (`u[ℓ]`, `v[ℓ]`: `[models, M, D]`), hidden states are `[models, n, D]`.
use tch::{Device, Kind, Tensor};

/// One model's shape and hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TwoLayerSpec {
    /// L: number of residual blocks.
    pub depth: i64,
    /// M: hidden units per block.
    pub width: i64,
    /// D: embedding dimension.
    pub dim: i64,
    /// σ_u: scale of u (each coordinate ~ σ_u·N(0, 1)).
    pub sigma_u: f64,
    /// σ_v: scale of v (‖v‖ ≈ σ_v).
    pub sigma_v: f64,
    /// α in s = α·D^γ/(L·M).
    pub alpha: f64,
    /// γ in s = α·D^γ/(L·M).
    pub gamma: f64,
    /// η: the step in units of the mean-field step, λ = η/(s²·L·M).
    pub eta: f64,
}

impl TwoLayerSpec {
    /// The residual scale s = α·D^γ/(L·M).
    pub fn residual_scale(&self) -> f64 {
        self.alpha * (self.dim as f64).powf(self.gamma) / (self.depth * self.width) as f64
    }

    /// The gradient step λ = η/(s²·L·M).
    pub fn step_size(&self) -> f64 {
        let s = self.residual_scale();
        self.eta / (s * s * (self.depth * self.width) as f64)
    }
}

/// `models` ResNets with 2LP blocks, padded to a common shape.
#[derive(Debug)]
pub struct TwoLayerResNet {
    /// u_{ℓ,j} for ℓ = 1..L_max: `[models, M_max, D_max]` each.
    pub u: Vec<Tensor>,
    /// v_{ℓ,j} for ℓ = 1..L_max: `[models, M_max, D_max]` each.
    pub v: Vec<Tensor>,
    /// s per model, `[models, 1, 1]`.
    pub scale: Tensor,
    /// λ per model, `[models, 1, 1]`.
    pub step: Tensor,
    pub specs: Vec<TwoLayerSpec>,
    pub dim: i64,
}

/// The most bytes one forward tape may hold (every block's activations and inputs for the
/// inputs in it): the backward pass takes the inputs in chunks that fit and sums their
/// gradients, so memory stays bounded at any n. Unchunked, C5's limit (n = 2048, L = M = 1024)
/// held 8.6 GB of activations and its process 21 GB, near the 24 GiB of our CPU machines.
pub const TAPE_BYTES: i64 = 1 << 30;

/// aᵀb for `a` `[models, n, M]` and `b` `[models, n, D]`. For D ≤ 16 it is computed as (bᵀa)ᵀ,
/// which the CPU's BLAS does 3–6× faster at D = 2–8 (and as fast at D = 1; slower at D = 100:
/// BENCHMARKS.md, 2026-12-03); the same product, to float rounding.
fn transposed_bmm(a: &Tensor, b: &Tensor) -> Tensor {
    match b.size()[2] <= 16 {
        true => b.transpose(1, 2).bmm(a).transpose(1, 2).contiguous(),
        false => a.transpose(1, 2).bmm(b),
    }
}

/// The forward pass's saved tensors for the backward pass.
pub struct Tape {
    /// h_0 .. h_{L−1}: `[models, n, D]`.
    inputs: Vec<Tensor>,
    /// tanh(⟨v_{ℓ,j}, h_{ℓ−1}⟩) for ℓ = 1..L: `[models, n, M]`.
    acts: Vec<Tensor>,
}

/// `[models, …]` mask of ones where index < limit[b] along `dim` of a tensor of `size` there.
fn prefix_mask(limits: &[i64], size: i64, device: Device) -> Tensor {
    let lim = Tensor::from_slice(limits).to_device(device).view([-1, 1]);
    Tensor::arange(size, (Kind::Int64, device))
        .view([1, -1])
        .lt_tensor(&lim)
        .to_kind(Kind::Float)
}

impl TwoLayerResNet {
    /// Random models drawn from torch's current generator (seed it with `tch::manual_seed`).
    pub fn new(specs: &[TwoLayerSpec], device: Device) -> TwoLayerResNet {
        assert!(!specs.is_empty(), "TwoLayerResNet::new: no models");
        let b = specs.len() as i64;
        let l_max = specs.iter().map(|s| s.depth).max().unwrap();
        let m_max = specs.iter().map(|s| s.width).max().unwrap();
        let d_max = specs.iter().map(|s| s.dim).max().unwrap();
        let col = |f: &dyn Fn(&TwoLayerSpec) -> f64| {
            Tensor::from_slice(&specs.iter().map(f).collect::<Vec<f64>>())
                .to_kind(Kind::Float)
                .to_device(device)
                .view([b, 1, 1])
        };
        // Per-model std of u and v entries (σ_u and σ_v/√D), zero outside each model's M and D.
        let std_u = col(&|s| s.sigma_u);
        let std_v = col(&|s| s.sigma_v / (s.dim as f64).sqrt());
        let units = prefix_mask(
            &specs.iter().map(|s| s.width).collect::<Vec<_>>(),
            m_max,
            device,
        )
        .view([b, m_max, 1]);
        let coords = prefix_mask(
            &specs.iter().map(|s| s.dim).collect::<Vec<_>>(),
            d_max,
            device,
        )
        .view([b, 1, d_max]);
        let mask = units * coords;
        let depths: Vec<i64> = specs.iter().map(|s| s.depth).collect();
        let mut u = Vec::with_capacity(l_max as usize);
        let mut v = Vec::with_capacity(l_max as usize);
        for l in 0..l_max {
            let alive = Tensor::from_slice(
                &depths
                    .iter()
                    .map(|&d| (l < d) as i64 as f32)
                    .collect::<Vec<f32>>(),
            )
            .to_device(device)
            .view([b, 1, 1]);
            let m = &mask * alive;
            let shape = [b, m_max, d_max];
            u.push(Tensor::randn(shape, (Kind::Float, device)) * &std_u * &m);
            v.push(Tensor::randn(shape, (Kind::Float, device)) * &std_v * &m);
        }
        TwoLayerResNet {
            u,
            v,
            scale: col(&|s| s.residual_scale()),
            step: col(&|s| s.step_size()),
            specs: specs.to_vec(),
            dim: d_max,
        }
    }

    /// Model j drawn alone after `tch::manual_seed(seeds[j])`, then all padded with zeros to a
    /// common shape: each model's weights do not depend on which other models share its batch
    /// (nor, but for float rounding, its training), so the batch size is a performance choice.
    pub fn new_each(specs: &[TwoLayerSpec], seeds: &[i64], device: Device) -> TwoLayerResNet {
        assert_eq!(
            specs.len(),
            seeds.len(),
            "TwoLayerResNet::new_each: one seed per model"
        );
        let alone: Vec<TwoLayerResNet> = (specs.iter().zip(seeds))
            .map(|(spec, &seed)| {
                tch::manual_seed(seed);
                TwoLayerResNet::new(std::slice::from_ref(spec), device)
            })
            .collect();
        let max = |f: fn(&TwoLayerSpec) -> i64| specs.iter().map(f).max().unwrap_or(0);
        let (l_max, m_max, d_max) = (max(|s| s.depth), max(|s| s.width), max(|s| s.dim));
        // Layer l of every model, `[models, M_max, D_max]`: zeros where a model has no such layer,
        // unit or coordinate.
        let layer = |l: usize, of: fn(&TwoLayerResNet) -> &Vec<Tensor>| {
            let padded: Vec<Tensor> = (alone.iter())
                .map(|net| match of(net).get(l) {
                    Some(w) => w.constant_pad_nd([0, d_max - w.size()[2], 0, m_max - w.size()[1]]),
                    None => Tensor::zeros([1, m_max, d_max], (Kind::Float, device)),
                })
                .collect();
            Tensor::cat(&padded, 0)
        };
        let cat = |of: fn(&TwoLayerResNet) -> &Tensor| {
            Tensor::cat(&alone.iter().map(of).collect::<Vec<_>>(), 0)
        };
        TwoLayerResNet {
            u: (0..l_max as usize).map(|l| layer(l, |n| &n.u)).collect(),
            v: (0..l_max as usize).map(|l| layer(l, |n| &n.v)).collect(),
            scale: cat(|n| &n.scale),
            step: cat(|n| &n.step),
            specs: specs.to_vec(),
            dim: d_max,
        }
    }

    /// L_max.
    pub fn depth(&self) -> usize {
        self.u.len()
    }

    /// One block: h + s Σ_j u_j tanh(⟨v_j, h⟩); also returns the activations.
    fn block(&self, l: usize, h: &Tensor) -> (Tensor, Tensor) {
        // h_ℓ = h_{ℓ−1} + s Σ_j u_{ℓ,j} tanh(⟨v_{ℓ,j}, h_{ℓ−1}⟩)
        let act = h.bmm(&self.v[l].transpose(1, 2)).tanh();
        let next = h + act.bmm(&self.u[l]) * &self.scale;
        (next, act)
    }

    /// f(x) = ⟨e_1, h_L⟩ for inputs `[models, n, D]` (or `[n, D]`, shared by all models): `[models, n]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = self.batch_input(x);
        for l in 0..self.depth() {
            h = self.block(l, &h).0;
        }
        h.select(2, 0)
    }

    /// ⟨e_1, h_ℓ⟩ for ℓ = 0..L_max: `[models, L_max + 1, n]` (the 1-D projection of the forward pass).
    pub fn trace(&self, x: &Tensor) -> Tensor {
        let mut h = self.batch_input(x);
        let mut out = vec![h.select(2, 0)];
        for l in 0..self.depth() {
            h = self.block(l, &h).0;
            out.push(h.select(2, 0));
        }
        Tensor::stack(&out, 1)
    }

    fn batch_input(&self, x: &Tensor) -> Tensor {
        let b = self.specs.len() as i64;
        let x = if x.dim() == 2 {
            x.unsqueeze(0).expand([b, -1, -1], false)
        } else {
            x.shallow_clone()
        };
        assert_eq!(
            x.size()[2],
            self.dim,
            "inputs must have D_max = {} columns",
            self.dim
        );
        x
    }

    /// The forward pass with its tape: (f `[models, n]`, tape).
    fn forward_tape(&self, x: &Tensor) -> (Tensor, Tape) {
        let mut h = self.batch_input(x);
        let mut tape = Tape {
            inputs: Vec::with_capacity(self.depth()),
            acts: Vec::with_capacity(self.depth()),
        };
        for l in 0..self.depth() {
            let (next, act) = self.block(l, &h);
            tape.inputs.push(h);
            tape.acts.push(act);
            h = next;
        }
        (h.select(2, 0), tape)
    }

    /// Loss per model `[models]` and the gradients (∂loss/∂u_ℓ, ∂loss/∂v_ℓ) for ℓ = 1..L, for the
    /// square loss ½·mean_i (f(x_i) − y_i)² with targets `[models, n]` (or `[n]`).
    pub fn gradients(&self, x: &Tensor, y: &Tensor) -> (Tensor, Vec<Tensor>, Vec<Tensor>) {
        self.gradients_in_chunks(x, y, self.chunk_len(x))
    }

    /// [`Self::gradients`], the inputs taken `chunk` at a time (the gradients summed over the
    /// chunks: the same up to float rounding).
    pub fn gradients_in_chunks(
        &self,
        x: &Tensor,
        y: &Tensor,
        chunk: i64,
    ) -> (Tensor, Vec<Tensor>, Vec<Tensor>) {
        let mut gu = Vec::with_capacity(self.depth());
        let mut gv = Vec::with_capacity(self.depth());
        let loss = self.backward(x, y, chunk, |_, g_u, g_v| {
            gu.push(g_u);
            gv.push(g_v);
        });
        gu.reverse();
        gv.reverse();
        (loss, gu, gv)
    }

    /// One full-batch gradient-descent step θ ← θ − λ∇θ on every u and v; returns the loss per
    /// model before the step, `[models]`.
    pub fn gd_step(&mut self, x: &Tensor, y: &Tensor) -> Tensor {
        let mut updates = Vec::with_capacity(self.depth());
        let chunk = self.chunk_len(x);
        let loss = self.backward(x, y, chunk, |l, g_u, g_v| updates.push((l, g_u, g_v)));
        let minus_step = self.step.neg();
        for (l, g_u, g_v) in updates {
            let _ = self.u[l].addcmul_(&g_u, &minus_step);
            let _ = self.v[l].addcmul_(&g_v, &minus_step);
        }
        loss
    }

    /// How many inputs of `x` (`[n, D]` or `[models, n, D]`) one forward tape holds: as many as
    /// fit in [`TAPE_BYTES`], at least one.
    fn chunk_len(&self, x: &Tensor) -> i64 {
        let (models, depth) = (self.specs.len() as i64, self.depth() as i64);
        let width = self.u.first().map_or(0, |u| u.size()[1]);
        let per_input = 4 * models * depth * (width + self.dim);
        (TAPE_BYTES / per_input.max(1)).clamp(1, x.size()[x.dim() - 2].max(1))
    }

    /// The backward pass over the inputs `chunk` at a time, their gradients summed;
    /// `each(ℓ − 1, ∂loss/∂u_ℓ, ∂loss/∂v_ℓ)` from ℓ = L down to 1, once the chunks are done.
    fn backward(
        &self,
        x: &Tensor,
        y: &Tensor,
        chunk: i64,
        mut each: impl FnMut(usize, Tensor, Tensor),
    ) -> Tensor {
        let _guard = tch::no_grad_guard();
        let n = x.size()[x.dim() - 2];
        let (x_dim, y_dim) = (x.dim() as i64 - 2, y.dim() as i64 - 1);
        let mut loss: Option<Tensor> = None;
        // (∂loss/∂u_ℓ, ∂loss/∂v_ℓ) for ℓ = L down to 1.
        let mut grads: Vec<(Tensor, Tensor)> = Vec::with_capacity(self.depth());
        for start in (0..n).step_by(chunk.max(1) as usize) {
            let len = chunk.min(n - start);
            let (xc, yc) = (x.narrow(x_dim, start, len), y.narrow(y_dim, start, len));
            let mut i = 0;
            let part = self.backward_chunk(&xc, &yc, n, |g_u, g_v| {
                match grads.get_mut(i) {
                    Some((su, sv)) => {
                        *su += g_u;
                        *sv += g_v;
                    }
                    None => grads.push((g_u, g_v)),
                }
                i += 1;
            });
            loss = Some(match loss {
                Some(sum) => sum + part,
                None => part,
            });
        }
        for (i, (g_u, g_v)) in grads.into_iter().enumerate() {
            each(self.depth() - 1 - i, g_u, g_v);
        }
        loss.expect("TwoLayerResNet: no inputs")
    }

    /// The backward recursion for the inputs `x` of `n` in all, from ℓ = L down to 1: this
    /// chunk's part of the loss, ½·Σ_i (f(x_i) − y_i)²/n, and of every gradient, `each(∂/∂u_ℓ, ∂/∂v_ℓ)`.
    fn backward_chunk(
        &self,
        x: &Tensor,
        y: &Tensor,
        n: i64,
        mut each: impl FnMut(Tensor, Tensor),
    ) -> Tensor {
        let (f, tape) = self.forward_tape(x);
        let resid = &f - y;
        let loss = resid.square().sum_dim_intlist(1, false, Kind::Float) / n as f64 * 0.5;
        // p_L = ∂loss/∂h_L = e_1 (f − y)/n
        let mut p = Tensor::zeros_like(&tape.inputs[0]);
        p.select(2, 0).copy_(&(resid / n as f64));
        for l in (0..self.depth()).rev() {
            let (h, act) = (&tape.inputs[l], &tape.acts[l]);
            let ps = &p * &self.scale;
            // ∂/∂u_ℓ = s·tanh(z)ᵀ p;  ∂/∂z = s·(p uᵀ) ⊙ (1 − tanh²);  ∂/∂v_ℓ = (∂/∂z)ᵀ h
            let g_u = transposed_bmm(act, &ps);
            let g_z: Tensor = ps.bmm(&self.u[l].transpose(1, 2)) * (act.square().neg() + 1.0);
            let g_v = transposed_bmm(&g_z, h);
            // p_{ℓ−1} = p_ℓ + (∂/∂z) v_ℓ
            p += g_z.bmm(&self.v[l]);
            each(g_u, g_v);
        }
        loss
    }
}
