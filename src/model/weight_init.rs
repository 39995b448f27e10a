//! Layer-correlated initializations of the fully connected ResNets of Marion et al. (2022,
//! arXiv:2206.06929; docs/marion2022.md): every entry (i, j) of the depth's weights `[L, d, d]` is an independent path over
//! the layer index k = 1..L; the three laws differ in how a path is correlated across k.
//!
//! - [`LayerInit::Iid`]: uniform on ±√(3/fan_in), independent across k (variance 1/fan_in);
//!   on the CPU drawn by [`fast_uniform`] (xoshiro256++ streams of fixed-size blocks seeded
//!   from torch's RNG: the same values whatever the number of threads).
//! - [`LayerInit::Smooth`]: a Gaussian process f over t_k = k/L, t ∈ [0, 1], with kernel
//!   exp(-(t-s)²/0.02) (bandwidth 0.1); as in the authors' code, the layer weights are the
//!   path's increments W_k ∝ f(t_k) − f(t_{k−1}) normalized to variance 1/fan_in, a smooth
//!   function of t_k (≈ f′(t_k)), so W_{k+1} − W_k = O(1/L).
//! - [`LayerInit::Fbm`]: fractional Brownian motion B^H with Hurst index H sampled exactly at
//!   t_k = k/L (Cholesky factor of the fractional Gaussian noise covariance, computed in f64
//!   once per (L, H) and cached); the layer weights are its increments normalized to unit
//!   variance, W_k = L^H (B^H(t_k) − B^H(t_{k−1})) / √fan_in (fractional Gaussian noise, as in
//!   the authors' code). H = 1/2 gives i.i.d. Gaussian weights; H → 1 smooth ones; H < 1/2
//!   anti-correlated, rough ones.
//! - [`LayerInit::FbmAuthors`]: the same normalization, the increments drawn by the authors'
//!   Davies–Harte sampler instead ([`super::davies_harte`]: not exact above H = 1/2).
//!
//! Paths of all d² entries (and of many models) come from one matmul `z @ Cᵀ` of standard
//! normals with the factor C; nothing loops over entries. Randomness: torch's global RNG
//! (`tch::manual_seed`).
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use tch::{Device, Kind, Tensor};

/// Squared bandwidth term of the smooth kernel: k(t, s) = exp(-(t-s)² / SMOOTH_KERNEL_DENOM).
pub const SMOOTH_KERNEL_DENOM: f64 = 0.02;

/// How the L layer weights of a fully connected ResNet are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerInit {
    /// Uniform ±√(3/fan_in), independent across layers.
    Iid,
    /// Increments of a Gaussian process with kernel exp(-(t-s)²/0.02), normalized.
    Smooth,
    /// Fractional Gaussian noise of Hurst index `hurst` in (0, 1), normalized.
    Fbm { hurst: f64 },
    /// As `Fbm`, drawn by the authors' Davies–Harte sampler ([`super::davies_harte`]).
    FbmAuthors { hurst: f64 },
}

impl LayerInit {
    /// The sampler and Hurst index of an fBm init (None for i.i.d. and smooth).
    pub fn fbm(self) -> Option<(FbmSampler, f64)> {
        match self {
            LayerInit::Fbm { hurst } => Some((FbmSampler::Exact, hurst)),
            LayerInit::FbmAuthors { hurst } => Some((FbmSampler::Authors, hurst)),
            LayerInit::Iid | LayerInit::Smooth => None,
        }
    }
}

/// Which sampler draws fBm weights (`fbm_sampler` of Marion's figure files M6, M7, M9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FbmSampler {
    /// Exact fractional Gaussian noise (Cholesky): [`LayerInit::Fbm`].
    #[default]
    Exact,
    /// The authors' Davies–Harte sampler of utils.py: [`LayerInit::FbmAuthors`].
    Authors,
}

impl FbmSampler {
    /// The fBm init of Hurst index `hurst` drawn by this sampler.
    pub fn init(self, hurst: f64) -> LayerInit {
        match self {
            FbmSampler::Exact => LayerInit::Fbm { hurst },
            FbmSampler::Authors => LayerInit::FbmAuthors { hurst },
        }
    }

    /// Whether this is the default (left out of keys, so results of before keep theirs).
    pub fn is_exact(&self) -> bool {
        *self == FbmSampler::Exact
    }
}

impl fmt::Display for LayerInit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerInit::Iid => f.write_str("iid"),
            LayerInit::Smooth => f.write_str("smooth"),
            LayerInit::Fbm { hurst } => write!(f, "fbm:{hurst}"),
            LayerInit::FbmAuthors { hurst } => write!(f, "fbm-authors:{hurst}"),
        }
    }
}

impl FromStr for LayerInit {
    type Err = String;
    /// `iid`, `smooth`, `fbm:H` or `fbm-authors:H` with 0 < H < 1.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iid" => Ok(LayerInit::Iid),
            "smooth" => Ok(LayerInit::Smooth),
            _ => {
                let (sampler, h) = match s.strip_prefix("fbm-authors:") {
                    Some(h) => (FbmSampler::Authors, h),
                    None => (
                        FbmSampler::Exact,
                        s.strip_prefix("fbm:").ok_or_else(|| {
                            format!(
                                "unknown init {s:?}: expected iid, smooth, fbm:H or fbm-authors:H \
                             (0 < H < 1)"
                            )
                        })?,
                    ),
                };
                let hurst: f64 = h
                    .parse()
                    .map_err(|_| format!("{s:?}: the Hurst index {h:?} is not a number"))?;
                if !(hurst > 0.0 && hurst < 1.0) {
                    return Err(format!("{s:?}: the Hurst index must be in (0, 1)"));
                }
                Ok(sampler.init(hurst))
            }
        }
    }
}

impl serde::Serialize for LayerInit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for LayerInit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Autocovariance of unit-variance fractional Gaussian noise at lag n:
/// γ(n) = ½(|n+1|^{2H} − 2|n|^{2H} + |n−1|^{2H}).
pub fn fgn_autocovariance(n: i64, hurst: f64) -> f64 {
    let p = 2.0 * hurst;
    let a = |x: i64| (x.abs() as f64).powf(p);
    0.5 * (a(n + 1) - 2.0 * a(n) + a(n - 1))
}

/// Cached factors as (rows, cols, values) in f64 (a `Tensor` is not `Sync`).
type FactorCache = Mutex<HashMap<(i64, u64), Arc<(i64, i64, Vec<f64>)>>>;

fn cache() -> &'static FactorCache {
    static CACHE: OnceLock<FactorCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The cached factor under `key`, computed by `make` (f64 `[rows, cols]`) when missing.
fn cached(key: (i64, u64), make: impl FnOnce() -> Tensor) -> Tensor {
    let hit = cache().lock().unwrap().get(&key).cloned();
    let entry = match hit {
        Some(e) => e,
        None => {
            let t = make().to_kind(Kind::Double).contiguous();
            let (r, c) = (t.size()[0], t.size()[1]);
            let v = Vec::<f64>::try_from(t.view([-1])).expect("factor values");
            let e = Arc::new((r, c, v));
            cache().lock().unwrap().insert(key, e.clone());
            e
        }
    };
    Tensor::from_slice(&entry.2).view([entry.0, entry.1])
}

/// Lower Cholesky factor C (f64, CPU, `[L, L]`) of the covariance of L steps of unit-variance
/// fractional Gaussian noise: z @ Cᵀ has exactly that covariance. Cached per (L, H).
pub fn fgn_factor(steps: i64, hurst: f64) -> Tensor {
    cached((steps, hurst.to_bits()), || fgn_cholesky(steps, hurst))
}

fn fgn_cholesky(steps: i64, hurst: f64) -> Tensor {
    let lags: Vec<f64> = (0..steps).map(|n| fgn_autocovariance(n, hurst)).collect();
    let lag = Tensor::from_slice(&lags);
    let idx = Tensor::arange(steps, (Kind::Int64, Device::Cpu));
    let dist = (idx.unsqueeze(1) - idx.unsqueeze(0)).abs();
    let cov = lag.index_select(0, &dist.view([-1])).view([steps, steps]);
    cov.linalg_cholesky(false)
}

/// A factor F (f64, CPU, `[L+1, r]`) with F Fᵀ ≈ K, K the smooth kernel over t_k = k/L,
/// k = 0..L: eigen-decomposition of K in f64, eigenvalues below 1e-13·λ_max dropped (K is
/// numerically of low rank). Cached per L.
pub fn smooth_factor(steps: i64) -> Tensor {
    cached((steps, u64::MAX), || smooth_eigen_factor(steps))
}

fn smooth_eigen_factor(steps: i64) -> Tensor {
    let t = Tensor::arange(steps + 1, (Kind::Double, Device::Cpu)) / steps as f64;
    let d = t.unsqueeze(1) - t.unsqueeze(0);
    let k = (-(&d * &d) / SMOOTH_KERNEL_DENOM).exp();
    let (eval, evec) = k.linalg_eigh("L");
    let max = eval.max().double_value(&[]);
    let keep = eval.gt(1e-13 * max).nonzero().view([-1]);
    evec.index_select(1, &keep) * eval.index_select(0, &keep).sqrt().unsqueeze(0)
}

/// `n` fBm paths B^H(t_k), t_k = k/L, k = 0..L (`[n, L+1]`, f32, B^H(0) = 0) on `device`:
/// Var B^H(t) = t^{2H}; increments have variance (1/L)^{2H}.
pub fn fbm_paths(n: i64, steps: i64, hurst: f64, device: Device) -> Tensor {
    fbm_paths_by(FbmSampler::Exact, n, steps, hurst, device)
}

/// [`fbm_paths`] drawn by `sampler` (the authors' paths: the cumulative sums of their noise
/// times L^-H, as their `generate_fbm`).
pub fn fbm_paths_by(sampler: FbmSampler, n: i64, steps: i64, hurst: f64, device: Device) -> Tensor {
    let b = fgn_by(sampler, n, steps, hurst, device).cumsum(1, Kind::Float)
        * (steps as f64).powf(-hurst);
    Tensor::cat(&[Tensor::zeros([n, 1], (Kind::Float, device)), b], 1)
}

/// [`fgn`] drawn by `sampler`: exact, or the authors' ([`super::davies_harte::authors_fgn`]).
pub fn fgn_by(sampler: FbmSampler, n: i64, steps: i64, hurst: f64, device: Device) -> Tensor {
    match sampler {
        FbmSampler::Exact => fgn(n, steps, hurst, device),
        FbmSampler::Authors => super::davies_harte::authors_fgn(n, steps, hurst, device),
    }
}

/// `n` sequences of L steps of unit-variance fractional Gaussian noise (`[n, L]`, f32).
pub fn fgn(n: i64, steps: i64, hurst: f64, device: Device) -> Tensor {
    let c = fgn_factor(steps, hurst)
        .to_kind(Kind::Float)
        .to_device(device);
    Tensor::randn([n, steps], (Kind::Float, device)).matmul(&c.tr())
}

/// `n` paths of the smooth Gaussian process at t_k = k/L, k = 0..L (`[n, L+1]`, f32).
pub fn smooth_paths(n: i64, steps: i64, device: Device) -> Tensor {
    let f = smooth_factor(steps).to_kind(Kind::Float).to_device(device);
    Tensor::randn([n, f.size()[1]], (Kind::Float, device)).matmul(&f.tr())
}

/// Standard deviation of an increment f(t_k) − f(t_{k−1}) of the smooth process:
/// √(2(1 − exp(−(1/L)²/0.02))) ≈ 10/L.
pub fn smooth_increment_std(steps: i64) -> f64 {
    let dt = 1.0 / steps as f64;
    (2.0 * (1.0 - (-dt * dt / SMOOTH_KERNEL_DENOM).exp())).sqrt()
}

/// The version of the i.i.d. CPU sampler ([`uniform_blocks`]), in the keys of results that
/// depend on its values (Marion's training checkpoints): 1 was the hand-written generator with
/// one stream per thread (its values depended on the core count), 2 the fixed blocks.
pub const IID_SAMPLER_VERSION: u32 = 2;

/// Values per block of the i.i.d. sampler ([`uniform_blocks`]): a fixed unit of work, not a
/// share of the threads, so that the values do not depend on how many threads draw them.
pub const UNIFORM_BLOCK: usize = 1 << 18;

/// `n` independent uniform(−bound, bound) f32 values (24 random bits each), on
/// [`crate::util::threads::worker_threads`] threads, seeded from torch's global RNG (so
/// `tch::manual_seed` fixes them): [`uniform_blocks`] with one seed drawn from it. Sampling the
/// i.i.d. weights of many wide, deep models (Figure M2: 2·10¹¹ values) is several times faster
/// this way than with torch's CPU `uniform_`.
pub fn fast_uniform(n: usize, bound: f32) -> Vec<f32> {
    let mut out = vec![0f32; n];
    fast_uniform_into(&mut out, bound);
    out
}

/// [`fast_uniform`] into an existing buffer (no allocation).
pub fn fast_uniform_into(out: &mut [f32], bound: f32) {
    let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64;
    uniform_blocks(out, bound, seed, crate::util::threads::worker_threads());
}

/// Fills `out` with uniform(−bound, bound) values from `seed`, the same bytes for any
/// `threads`: block b (values b·[`UNIFORM_BLOCK`] onwards) is drawn from the xoshiro256++
/// stream `Xoshiro256PlusPlus::seed_from_u64(seed)` advanced by b jumps (2¹²⁸ steps each, so
/// the blocks' streams never overlap); each 64-bit output gives two values, its bits 40..64
/// and 8..32 (a block's odd last value takes bits 40..64 of one more output). Threads take
/// contiguous runs of blocks.
pub fn uniform_blocks(out: &mut [f32], bound: f32, seed: u64, threads: usize) {
    use rand_xoshiro::rand_core::SeedableRng;
    let blocks = out.len().div_ceil(UNIFORM_BLOCK);
    let per_thread = blocks.div_ceil(threads.max(1)).max(1);
    let scale = 2.0 * bound / (1u32 << 24) as f32;
    std::thread::scope(|sc| {
        for (t, part) in out.chunks_mut(per_thread * UNIFORM_BLOCK).enumerate() {
            sc.spawn(move || {
                let mut stream = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
                for _ in 0..t * per_thread {
                    stream.jump();
                }
                for block in part.chunks_mut(UNIFORM_BLOCK) {
                    fill_uniform(block, &mut stream.clone(), scale, bound);
                    stream.jump();
                }
            });
        }
    });
}

/// Two values per 64-bit output of `rng`: (bits 40..64, bits 8..32) · `scale` − `bound`.
fn fill_uniform(
    out: &mut [f32],
    rng: &mut impl rand_xoshiro::rand_core::RngCore,
    scale: f32,
    bound: f32,
) {
    let mut pairs = out.chunks_exact_mut(2);
    for p in &mut pairs {
        let x = rng.next_u64();
        p[0] = (x >> 40) as f32 * scale - bound;
        p[1] = ((x >> 8) & 0xFF_FFFF) as f32 * scale - bound;
    }
    for v in pairs.into_remainder() {
        *v = (rng.next_u64() >> 40) as f32 * scale - bound;
    }
}

/// Redraws `weights` (`[models, L, d_out, d_in]`, as made by [`layer_weights`]) in place from
/// `init`: the same law as a fresh [`layer_weights`], without allocating a new buffer when the
/// init is i.i.d. on the CPU (Figure M2 redraws 800 MB of weights per 10 models; fresh buffers
/// cost as much in page faults as the sampling itself).
pub fn redraw_layer_weights(weights: &mut Tensor, init: LayerInit) {
    let [models, steps, d_out, d_in] = weights.size()[..] else {
        panic!(
            "redraw_layer_weights: want [models, L, d_out, d_in], got {:?}",
            weights.size()
        );
    };
    let in_place = init == LayerInit::Iid
        && weights.device() == Device::Cpu
        && weights.kind() == Kind::Float
        && weights.is_contiguous();
    if in_place {
        let bound = (3.0 / d_in as f64).sqrt() as f32;
        let n = weights.numel();
        // SAFETY: a contiguous CPU f32 tensor of n elements that we hold mutably.
        let data = unsafe { std::slice::from_raw_parts_mut(weights.data_ptr() as *mut f32, n) };
        fast_uniform_into(data, bound);
    } else {
        let fresh = layer_weights(init, models, steps, d_out, d_in, weights.device());
        tch::no_grad(|| weights.copy_(&fresh));
    }
}

/// Weights of `models` independent models of depth `steps` = L: `[models, L, d_out, d_in]`
/// (f32), each entry an independent path over k drawn from `init`, of variance 1/d_in.
pub fn layer_weights(
    init: LayerInit,
    models: i64,
    steps: i64,
    d_out: i64,
    d_in: i64,
    device: Device,
) -> Tensor {
    let n = models * d_out * d_in;
    let scale = 1.0 / (d_in as f64).sqrt();
    let paths = match init {
        LayerInit::Iid => {
            let bound = (3.0 / d_in as f64).sqrt();
            // Independent across k: draw in the final layout directly.
            let shape = [models, steps, d_out, d_in];
            if device == Device::Cpu {
                let v = fast_uniform((models * steps * d_out * d_in) as usize, bound as f32);
                return Tensor::from_slice(&v).view(shape);
            }
            return Tensor::empty(shape, (Kind::Float, device)).uniform_(-bound, bound);
        }
        LayerInit::Smooth => {
            let f = smooth_factor(steps);
            // Increments of the factor give the increments of the path: ΔF = F[1:] − F[:-1].
            let df = (f.narrow(0, 1, steps) - f.narrow(0, 0, steps)) / smooth_increment_std(steps)
                * scale;
            let df = df.to_kind(Kind::Float).to_device(device);
            Tensor::randn([n, df.size()[1]], (Kind::Float, device)).matmul(&df.tr())
        }
        LayerInit::Fbm { hurst } => fgn(n, steps, hurst, device) * scale,
        LayerInit::FbmAuthors { hurst } => {
            fgn_by(FbmSampler::Authors, n, steps, hurst, device) * scale
        }
    };
    paths
        .view([models, d_out, d_in, steps])
        .permute([0, 3, 1, 2])
        .contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inits() {
        assert_eq!("iid".parse::<LayerInit>().unwrap(), LayerInit::Iid);
        assert_eq!(
            "fbm:0.3".parse::<LayerInit>().unwrap(),
            LayerInit::Fbm { hurst: 0.3 }
        );
        assert!("fbm:1.2".parse::<LayerInit>().is_err());
        assert!("gp".parse::<LayerInit>().is_err());
        assert_eq!(LayerInit::Fbm { hurst: 0.3 }.to_string(), "fbm:0.3");
        let authors = "fbm-authors:0.9".parse::<LayerInit>().unwrap();
        assert_eq!(authors, LayerInit::FbmAuthors { hurst: 0.9 });
        assert_eq!(authors.to_string(), "fbm-authors:0.9");
        assert!("fbm-authors:1".parse::<LayerInit>().is_err());
    }

    #[test]
    fn fgn_autocovariance_at_half_is_white() {
        assert_eq!(fgn_autocovariance(0, 0.5), 1.0);
        assert!(fgn_autocovariance(1, 0.5).abs() < 1e-15);
        assert!((fgn_autocovariance(1, 0.8) - (2f64.powf(0.6) - 1.0)).abs() < 1e-12);
    }

    /// xoshiro256++ and its splitmix64 seeding transcribed from the reference C code
    /// (Blackman & Vigna, prng.di.unimi.it): the oracle of the sampler's first block.
    fn reference_stream(mut seed: u64) -> impl FnMut() -> u64 {
        let mut s = [0u64; 4];
        for x in &mut s {
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *x = z ^ (z >> 31);
        }
        move || {
            let r = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
            let t = s[1] << 17;
            s[2] ^= s[0];
            s[3] ^= s[1];
            s[1] ^= s[2];
            s[0] ^= s[3];
            s[2] ^= t;
            s[3] = s[3].rotate_left(45);
            r
        }
    }

    #[test]
    fn uniform_blocks_are_the_same_bytes_for_any_thread_count() {
        // 3.5 blocks plus an odd value: a partial last block with an odd length.
        let n = UNIFORM_BLOCK * 7 / 2 + 1;
        let draw = |threads| {
            let mut v = vec![0f32; n];
            uniform_blocks(&mut v, 0.5, 42, threads);
            v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
        };
        let one = draw(1);
        for threads in [2, 3, 4, 16, 64] {
            assert!(one == draw(threads), "{threads} threads give other values");
        }
        // Block 0 is the reference xoshiro256++ stream of the seed, two values per output.
        let mut next = reference_stream(42);
        let scale = 1.0 / (1u32 << 24) as f32;
        for i in 0..1000 {
            let x = next();
            assert_eq!(one[2 * i], ((x >> 40) as f32 * scale - 0.5).to_bits());
            assert_eq!(
                one[2 * i + 1],
                (((x >> 8) & 0xFF_FFFF) as f32 * scale - 0.5).to_bits()
            );
        }
        // Every block is its own stream: no block repeats another's start.
        let starts: std::collections::HashSet<_> = (0..4)
            .map(|b| one[b * UNIFORM_BLOCK..b * UNIFORM_BLOCK + 8].to_vec())
            .collect();
        assert_eq!(starts.len(), 4);
        // Another seed, other values.
        let mut other = vec![0f32; 16];
        uniform_blocks(&mut other, 0.5, 43, 1);
        assert_ne!(
            other.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            one[..16]
        );
    }
}
