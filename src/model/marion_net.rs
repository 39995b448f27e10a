//! [`MarionNet`]: either fully connected ResNet of Marion et al. (2022) behind one interface,
//! for the scaling measurements and the training of Figures M8–M9.
use std::str::FromStr;

use tch::{nn, Device, Tensor};

use super::full_resnet::FullResNet;
use super::simple_resnet::SimpleResNet;
use super::weight_init::LayerInit;

/// Which residual block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarionModel {
    /// h_{k+1} = h_k + L^-β V relu(W h_k).
    Full,
    /// h_{k+1} = h_k + L^-β (V relu(h_k) + b).
    Simple,
}

impl FromStr for MarionModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(MarionModel::Full),
            "simple" => Ok(MarionModel::Simple),
            _ => Err(format!("unknown model {s:?}: expected full or simple")),
        }
    }
}

impl std::fmt::Display for MarionModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MarionModel::Full => "full",
            MarionModel::Simple => "simple",
        })
    }
}

/// `models` models of one kind.
#[derive(Debug)]
pub enum MarionNet {
    Full(FullResNet),
    Simple(SimpleResNet),
}

/// Sizes of a [`MarionNet`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarionShape {
    pub depth: i64,
    pub width: i64,
    pub d_in: i64,
    pub d_out: i64,
}

impl MarionNet {
    /// `models` random models.
    pub fn new(
        kind: MarionModel,
        models: i64,
        s: MarionShape,
        init: LayerInit,
        device: Device,
    ) -> MarionNet {
        match kind {
            MarionModel::Full => MarionNet::Full(FullResNet::new(
                models, s.depth, s.width, s.d_in, s.d_out, init, device,
            )),
            MarionModel::Simple => MarionNet::Simple(SimpleResNet::new(
                models, s.depth, s.width, s.d_in, s.d_out, init, device,
            )),
        }
    }

    /// One trainable model per entry of `inits`, held as one `[models, ...]` set of variables of
    /// `path` (A, W, V, B or A, V, bias, B). Model m is drawn from `inits[m]` right after
    /// `tch::manual_seed(seed)`, so models of the same init start from the same weights (the
    /// models of a learning-rate grid, or of several β, then differ only by those) and a model
    /// is the same whichever others it is trained with.
    pub fn trainable(
        kind: MarionModel,
        path: &nn::Path,
        s: MarionShape,
        inits: &[LayerInit],
        seed: u64,
    ) -> MarionNet {
        let parts: Vec<MarionNet> = inits
            .iter()
            .map(|&init| {
                tch::manual_seed(seed as i64);
                tch::no_grad(|| MarionNet::new(kind, 1, s, init, path.device()))
            })
            .collect();
        let vars = (0..parts[0].named_tensors().len())
            .map(|i| {
                let name = parts[0].named_tensors()[i].0;
                let all: Vec<&Tensor> = parts.iter().map(|p| p.named_tensors()[i].1).collect();
                path.var_copy(name, &tch::no_grad(|| Tensor::cat(&all, 0)))
            })
            .collect::<Vec<_>>();
        let mut vars = vars.into_iter();
        let mut next = || vars.next().unwrap();
        match kind {
            MarionModel::Full => MarionNet::Full(FullResNet {
                a: next(),
                w: next(),
                v: next(),
                b: next(),
            }),
            MarionModel::Simple => MarionNet::Simple(SimpleResNet {
                a: next(),
                v: next(),
                bias: next(),
                bias_on: super::simple_resnet::bias_on(inits, path.device()),
                b: next(),
            }),
        }
    }

    /// Every tensor of the models by name, in the order [`MarionNet::trainable`] builds them:
    /// A, W, V, B (full) or A, V, bias, B (simple); each `[models, ...]`.
    pub fn named_tensors(&self) -> Vec<(&'static str, &Tensor)> {
        match self {
            MarionNet::Full(m) => vec![("A", &m.a), ("W", &m.w), ("V", &m.v), ("B", &m.b)],
            MarionNet::Simple(m) => {
                vec![("A", &m.a), ("V", &m.v), ("bias", &m.bias), ("B", &m.b)]
            }
        }
    }

    /// Draws new random models in place (same shapes and law as [`MarionNet::new`]), reusing
    /// the weight buffers.
    pub fn redraw(&mut self, init: LayerInit) {
        use super::full_resnet::uniform_fan_in_ as uniform_;
        use super::weight_init::redraw_layer_weights;
        match self {
            MarionNet::Full(m) => {
                uniform_(&mut m.a);
                redraw_layer_weights(&mut m.w, init);
                redraw_layer_weights(&mut m.v, init);
                uniform_(&mut m.b);
            }
            MarionNet::Simple(m) => {
                uniform_(&mut m.a);
                redraw_layer_weights(&mut m.v, init);
                uniform_(&mut m.b);
                let models = m.a.size()[0] as usize;
                m.bias_on = super::simple_resnet::bias_on(&vec![init; models], m.a.device());
            }
        }
    }

    /// The number of models held.
    pub fn models(&self) -> i64 {
        match self {
            MarionNet::Full(m) => m.a.size()[0],
            MarionNet::Simple(m) => m.a.size()[0],
        }
    }

    pub fn depth(&self) -> i64 {
        match self {
            MarionNet::Full(m) => m.depth(),
            MarionNet::Simple(m) => m.depth(),
        }
    }

    pub fn embed(&self, x: &Tensor) -> Tensor {
        match self {
            MarionNet::Full(m) => m.embed(x),
            MarionNet::Simple(m) => m.embed(x),
        }
    }

    pub fn hidden(&self, h0: &Tensor, scale: &Tensor, masks: Option<&mut Vec<Tensor>>) -> Tensor {
        match self {
            MarionNet::Full(m) => m.hidden(h0, scale, masks),
            MarionNet::Simple(m) => m.hidden(h0, scale, masks),
        }
    }

    pub fn hidden_grad(&self, g_l: &Tensor, scale: &Tensor, masks: &[Tensor]) -> Tensor {
        match self {
            MarionNet::Full(m) => m.hidden_grad(g_l, scale, masks),
            MarionNet::Simple(m) => m.hidden_grad(g_l, scale, masks),
        }
    }

    /// The output B h_L `[models, inputs, d_out]` from h_L.
    pub fn output(&self, h_l: &Tensor) -> Tensor {
        match self {
            MarionNet::Full(m) => m.output(h_l),
            MarionNet::Simple(m) => m.output(h_l),
        }
    }

    /// The output for inputs x `[models, inputs, d_in]` at residual scale α_L (`scale`).
    // B h_L, h_ℓ = h_{ℓ−1} + α_L·f_ℓ(h_{ℓ−1}) (FullResNet or SimpleResNet's f_ℓ), h_0 = A x
    pub fn forward(&self, x: &Tensor, scale: &Tensor) -> Tensor {
        self.output(&self.hidden(&self.embed(x), scale, None))
    }

    /// The depth's weight tensors `[models, L, d, d]` by name: W, V (full) or V (simple).
    pub fn layer_weights(&self) -> Vec<(&'static str, &Tensor)> {
        match self {
            MarionNet::Full(m) => vec![("W", &m.w), ("V", &m.v)],
            MarionNet::Simple(m) => vec![("V", &m.v)],
        }
    }
}
