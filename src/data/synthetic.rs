//! Seeded, CIFAR-shaped synthetic data: uint8 `[N, 3, 32, 32]`, 10 classes.
//!
//! Each class has a fixed random low-frequency colour template (a sum of a few plane
//! waves with random colours, generated from the seed). An image of class `c` is
//!
//! ```text
//! 128 + A_t · template_c(shifted by up to ±MAX_SHIFT px) + A_n · nuisance + brightness + white noise
//! ```
//!
//! clamped to 0..=255, where `nuisance` is a per-image smooth random colour field (a 4×4
//! grid upsampled bilinearly) of the same kind of spatial frequencies as the templates, so
//! the class signal does not simply average out of the noise. A small CNN learns it well
//! above chance within one epoch of a few thousand images, but it is not trivially
//! separable (see the numbers in the crate's tests / report).
//!
//! Everything is drawn from a ChaCha8 stream seeded from the user's seed (never torch's
//! global RNG): stream 0 makes the templates, stream 1 the training set, stream 2 the test
//! set, so train and test come from the same distribution with different draws, and the
//! first `n` images of a set do not depend on the set's size.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::Dataset;

/// Number of classes of the synthetic set.
pub const SYNTH_CLASSES: i64 = 10;
/// Image side.
pub const SYNTH_SIDE: usize = 32;
/// Largest shift of the template, in pixels, in each direction.
pub const MAX_SHIFT: usize = 4;
/// Plane waves per template.
const WAVES: usize = 6;
/// Template amplitude (pixel units; templates have unit standard deviation).
const AMP_TEMPLATE: f32 = 28.0;
/// Nuisance amplitude (grid values are standard normal before upsampling).
const AMP_NUISANCE: f32 = 36.0;
/// Standard deviation of the per-image brightness offset.
const BRIGHTNESS_STD: f32 = 16.0;
/// Standard deviation of the (uniform) white pixel noise.
const NOISE_STD: f32 = 24.0;
/// Nuisance grid side (upsampled to 32×32).
const GRID: usize = 4;

/// Stream numbers of the ChaCha8 generator.
const STREAM_TEMPLATES: u64 = 0;
/// Stream of the training set.
pub const STREAM_TRAIN: u64 = 1;
/// Stream of the test set.
pub const STREAM_TEST: u64 = 2;

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// A standard normal draw (Box–Muller; only used for the few per-image scalars).
fn normal(r: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = 1.0 - r.gen::<f64>(); // (0, 1]
    let u2: f64 = r.gen::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// The class templates: `[class][channel][y][x]` flattened, on a `(32 + 2·MAX_SHIFT)²`
/// grid so that a shifted 32×32 window is always inside; each template has zero mean and
/// unit standard deviation over its window at shift 0.
fn templates(seed: u64) -> Vec<Vec<f32>> {
    let mut r = rng(seed, STREAM_TEMPLATES);
    let side = SYNTH_SIDE + 2 * MAX_SHIFT;
    (0..SYNTH_CLASSES)
        .map(|_| {
            let mut t = vec![0f32; 3 * side * side];
            for _ in 0..WAVES {
                // Low frequencies: 1..3 cycles per 32 px in y and/or x.
                let (fy, fx) = loop {
                    let fy = r.gen_range(-3i32..=3);
                    let fx = r.gen_range(0i32..=3);
                    if fy != 0 || fx != 0 {
                        break (fy, fx);
                    }
                };
                let phase = r.gen::<f32>() * std::f32::consts::TAU;
                let amp = 0.5 + r.gen::<f32>();
                let colour: [f32; 3] = [normal(&mut r), normal(&mut r), normal(&mut r)];
                let w = std::f32::consts::TAU / SYNTH_SIDE as f32;
                for y in 0..side {
                    for x in 0..side {
                        let v = amp * (w * (fy as f32 * y as f32 + fx as f32 * x as f32) + phase).cos();
                        for (c, col) in colour.iter().enumerate() {
                            t[(c * side + y) * side + x] += col * v;
                        }
                    }
                }
            }
            // Standardize over the centred window.
            let window = |c: usize, y: usize, x: usize| t[(c * side + y + MAX_SHIFT) * side + x + MAX_SHIFT];
            let n = (3 * SYNTH_SIDE * SYNTH_SIDE) as f64;
            let (mut s, mut s2) = (0f64, 0f64);
            for c in 0..3 {
                for y in 0..SYNTH_SIDE {
                    for x in 0..SYNTH_SIDE {
                        let v = window(c, y, x) as f64;
                        s += v;
                        s2 += v * v;
                    }
                }
            }
            let mean = s / n;
            let std = (s2 / n - mean * mean).max(1e-12).sqrt();
            t.iter().map(|v| ((*v as f64 - mean) / std) as f32).collect()
        })
        .collect()
}

/// Bilinear upsampling (corner-aligned) of a `GRID × GRID` grid to `SYNTH_SIDE²`.
fn upsample(grid: &[f32], out: &mut [f32]) {
    let scale = (GRID - 1) as f32 / (SYNTH_SIDE - 1) as f32;
    for y in 0..SYNTH_SIDE {
        let gy = y as f32 * scale;
        let y0 = (gy as usize).min(GRID - 2);
        let ty = gy - y0 as f32;
        for x in 0..SYNTH_SIDE {
            let gx = x as f32 * scale;
            let x0 = (gx as usize).min(GRID - 2);
            let tx = gx - x0 as f32;
            let g = |yy: usize, xx: usize| grid[yy * GRID + xx];
            let top = g(y0, x0) * (1.0 - tx) + g(y0, x0 + 1) * tx;
            let bottom = g(y0 + 1, x0) * (1.0 - tx) + g(y0 + 1, x0 + 1) * tx;
            out[y * SYNTH_SIDE + x] = top * (1.0 - ty) + bottom * ty;
        }
    }
}

/// Generate `n` images (and labels uniform in 0..10) from stream `stream` of `seed`.
/// Templates depend on `seed` only, so all streams share the same classes.
pub fn generate(n: i64, seed: u64, stream: u64) -> Dataset {
    assert!(stream != STREAM_TEMPLATES, "stream 0 is reserved for the class templates");
    let templates = templates(seed);
    let mut r = rng(seed, stream);
    let side = SYNTH_SIDE + 2 * MAX_SHIFT;
    let plane = SYNTH_SIDE * SYNTH_SIDE;
    let n_us = n.max(0) as usize;
    let mut pixels = vec![0u8; n_us * 3 * plane];
    let mut labels = Vec::with_capacity(n_us);
    let mut nuisance = vec![0f32; plane];
    let mut grid = [0f32; GRID * GRID];
    // Uniform noise in [-a, a) has standard deviation a / sqrt(3).
    let noise_half_width = NOISE_STD * 3f32.sqrt();
    for img in pixels.chunks_exact_mut(3 * plane) {
        let label = r.gen_range(0..SYNTH_CLASSES);
        labels.push(label);
        let t = &templates[label as usize];
        let dy = r.gen_range(0..=2 * MAX_SHIFT);
        let dx = r.gen_range(0..=2 * MAX_SHIFT);
        let brightness = BRIGHTNESS_STD * normal(&mut r);
        for (c, out) in img.chunks_exact_mut(plane).enumerate() {
            for g in grid.iter_mut() {
                *g = normal(&mut r);
            }
            upsample(&grid, &mut nuisance);
            for y in 0..SYNTH_SIDE {
                let trow = &t[(c * side + y + dy) * side + dx..][..SYNTH_SIDE];
                for x in 0..SYNTH_SIDE {
                    let u = (r.gen::<u32>() >> 8) as f32 / (1u32 << 24) as f32; // [0, 1)
                    let v = 128.0
                        + AMP_TEMPLATE * trow[x]
                        + AMP_NUISANCE * nuisance[y * SYNTH_SIDE + x]
                        + brightness
                        + noise_half_width * (2.0 * u - 1.0);
                    out[y * SYNTH_SIDE + x] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    let s = SYNTH_SIDE as i64;
    Dataset {
        images: Tensor::from_slice(&pixels).view([n, 3, s, s]),
        labels: Tensor::from_slice(&labels).to_kind(Kind::Int64),
    }
}

/// The synthetic (train, test) pair for `seed`: train from stream 1, test from stream 2.
pub fn synthetic_split(n_train: i64, n_test: i64, seed: u64) -> (Dataset, Dataset) {
    (generate(n_train, seed, STREAM_TRAIN), generate(n_test, seed, STREAM_TEST))
}
