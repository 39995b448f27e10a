//! Adam for M independent models stored along a leading model axis (every parameter is
//! `[M, ...]`), each model with its own learning rate: torch.optim.Adam (β1 = 0.9,
//! β2 = 0.999, ε = 1e-8, no weight decay) applied to each model, so that one batched program
//! trains a whole learning-rate grid (Marion's Figure M9) at once:
//!   m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²;
//!   p ← p − lr_m / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
use tch::{Kind, Tensor};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

pub struct BatchedAdam {
    params: Vec<Tensor>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    /// The models' current learning rates, `[M]` on the parameters' device.
    lr: Tensor,
    step: i32,
    /// For steps replayed from a CUDA graph: 1 − β1^t and √(1 − β2^t) as `[1]` tensors on the
    /// device, written by [`Self::begin_step`] before each step (the host's scalars would be
    /// frozen into the graph at their capture-time values).
    device_bias: Option<(Tensor, Tensor)>,
}

impl BatchedAdam {
    /// Adam over `params` (each `[M, ...]`, requiring grad) with model m's rate `lrs[m]`.
    pub fn new(params: Vec<Tensor>, lrs: &[f64]) -> BatchedAdam {
        let models = lrs.len() as i64;
        for p in &params {
            assert_eq!(
                p.size()[0],
                models,
                "parameter without the model axis of {models}"
            );
        }
        let zeros = |p: &Tensor| p.zeros_like().detach();
        let lr = Tensor::from_slice(lrs)
            .to_kind(Kind::Float)
            .to_device(params[0].device());
        BatchedAdam {
            exp_avg: params.iter().map(zeros).collect(),
            exp_avg_sq: params.iter().map(zeros).collect(),
            params,
            lr,
            step: 0,
            device_bias: None,
        }
    }

    /// Keeps the bias corrections on the device (see `device_bias`), for CUDA graphs: then
    /// each step is [`Self::begin_step`] on the host, then [`Self::backward_update`] (which a
    /// graph may capture and replay).
    pub fn use_device_bias_correction(&mut self) {
        let dev = self.lr.device();
        let one = || Tensor::ones([1], (Kind::Float, dev));
        self.device_bias = Some((one(), one()));
    }

    /// Counts the step about to be taken, and writes its bias corrections into the device
    /// tensors when they are used.
    pub fn begin_step(&mut self) {
        self.step += 1;
        if let Some((bc1, bc2_sqrt)) = &mut self.device_bias {
            let _ = bc1.fill_(1.0 - BETA1.powi(self.step));
            let _ = bc2_sqrt.fill_((1.0 - BETA2.powi(self.step)).sqrt());
        }
    }

    /// Sets every model's learning rate (one value per model).
    pub fn set_lr(&mut self, lrs: &[f64]) {
        assert_eq!(lrs.len() as i64, self.lr.size()[0]);
        let new = Tensor::from_slice(lrs).to_kind(Kind::Float);
        tch::no_grad(|| self.lr.copy_(&new));
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// One Adam step from the parameters' gradients.
    pub fn step(&mut self) {
        self.begin_step();
        self.update();
    }

    /// The update of the step counted by [`Self::begin_step`].
    fn update(&mut self) {
        let bc1 = 1.0 - BETA1.powi(self.step);
        let bc2_sqrt = (1.0 - BETA2.powi(self.step)).sqrt();
        tch::no_grad(|| {
            for ((p, m), v) in self
                .params
                .iter_mut()
                .zip(&mut self.exp_avg)
                .zip(&mut self.exp_avg_sq)
            {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m.lerp_(&g, 1.0 - BETA1);
                let _ = v.g_mul_scalar_(BETA2).addcmul_(&g, &(&g * (1.0 - BETA2)));
                let mut shape = vec![-1i64];
                shape.resize(p.dim(), 1);
                let lr = self.lr.view(shape.as_slice());
                // The same formula, with the host's scalars (the ordinary step, rounded as it
                // always was) or with the device tensors a CUDA graph reads at each replay.
                let (denom, step_size) = match &self.device_bias {
                    None => ((v.sqrt() / bc2_sqrt) + EPS, lr / bc1),
                    Some((bc1, bc2_sqrt)) => ((v.sqrt() / bc2_sqrt) + EPS, lr / bc1),
                };
                let _ = p.g_sub_(&(&*m / denom * step_size));
            }
        });
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i32 {
        self.step
    }

    /// The first and second moments of each parameter, in the parameters' order.
    pub fn moments(&self) -> impl Iterator<Item = (&Tensor, &Tensor)> {
        self.exp_avg.iter().zip(&self.exp_avg_sq)
    }

    /// Restores the state of [`Self::steps`] and [`Self::moments`] (a checkpoint's).
    pub fn restore(&mut self, steps: i32, exp_avg: &[Tensor], exp_avg_sq: &[Tensor]) {
        assert_eq!(exp_avg.len(), self.params.len());
        assert_eq!(exp_avg_sq.len(), self.params.len());
        self.step = steps;
        tch::no_grad(|| {
            for (dst, src) in self.exp_avg.iter_mut().zip(exp_avg) {
                dst.copy_(src);
            }
            for (dst, src) in self.exp_avg_sq.iter_mut().zip(exp_avg_sq) {
                dst.copy_(src);
            }
        });
    }

    /// zero_grad, backward of `loss`, step.
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.step();
    }

    /// zero_grad, backward of `loss`, and the update of the step [`Self::begin_step`] counted.
    pub fn backward_update(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.update();
    }
}
