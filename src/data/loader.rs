//! The on-device loader: the whole dataset lives on the training device as uint8, and
//! shuffling, augmentation and normalization are batched tensor ops on that device.
//!
//! Per training batch: `index_select` of the shuffled indices → float in `[0, 1]` → random
//! crop with zero padding + horizontal flip (one draw per image, torch's global RNG on the
//! device) → `(x - mean) / std` → cutout when asked (one square per image set to 0, i.e. to
//! the mean pixel, after normalization as in DeVries & Taylor's code). Nothing is done per
//! image on the CPU.
use tch::{Device, Kind, Tensor};

use super::Dataset;

/// Training-time augmentation (a key left out takes the CIFAR default: crop 4, flip, no
/// cutout).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Zero padding of the random crop, in pixels; 0 = no crop.
    pub crop_padding: i64,
    /// Horizontal flip with probability 1/2.
    pub hflip: bool,
    /// Cutout (DeVries & Taylor 2017, arXiv:1708.04552): the side of the square zeroed in each
    /// image, centred uniformly over the image and clipped at its edges; absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutout: Option<i64>,
}

impl Augment {
    /// No augmentation.
    pub const NONE: Augment = Augment {
        crop_padding: 0,
        hflip: false,
        cutout: None,
    };
    /// The standard CIFAR augmentation: RandomCrop(32, padding=4) + RandomHorizontalFlip.
    pub const CIFAR: Augment = Augment {
        crop_padding: 4,
        hflip: true,
        cutout: None,
    };
}

impl Default for Augment {
    fn default() -> Augment {
        Augment::CIFAR
    }
}

/// Cutout on a batch `[batch, C, H, W]`: for each image a centre (cy, cx) uniform over the pixels
/// and the square rows [cy − s/2, cy + s/2) × columns [cx − s/2, cx + s/2), clipped to the
/// image, set to 0 in every channel (one draw per image, on the device).
pub fn cutout(x: &Tensor, size: i64) -> Tensor {
    let (b, _, h, w) = x.size4().expect("cutout: x must be [batch, C, H, W]");
    cutout_at(x, size, &cutout_centres(b, h, w, x.device()))
}

/// Cutout's draws for `b` images of `h`×`w`: the centres' rows and columns, int64 `[batch, 1, 1]`.
fn cutout_centres(b: i64, h: i64, w: i64, dev: Device) -> (Tensor, Tensor) {
    let cy = Tensor::randint(h, [b, 1, 1], (Kind::Int64, dev));
    let cx = Tensor::randint(w, [b, 1, 1], (Kind::Int64, dev));
    (cy, cx)
}

/// [`cutout`] with its centres given.
fn cutout_at(x: &Tensor, size: i64, (cy, cx): &(Tensor, Tensor)) -> Tensor {
    let (_, _, h, w) = x.size4().expect("cutout: x must be [batch, C, H, W]");
    let dev = x.device();
    let rows = Tensor::arange(h, (Kind::Int64, dev)).view([1, h, 1]);
    let cols = Tensor::arange(w, (Kind::Int64, dev)).view([1, 1, w]);
    let (lo, hi) = (size / 2, size - size / 2);
    let inside =
        |t: &Tensor, c: &Tensor| t.ge_tensor(&(c - lo)).logical_and(&t.lt_tensor(&(c + hi)));
    let hole = inside(&rows, cy).logical_and(&inside(&cols, cx)); // [batch, H, W]
    x * hole.logical_not().unsqueeze(1).to_kind(x.kind())
}

/// A training batch's random draws (which examples, crop offsets, flips, cutout centres),
/// made in the order the batch's ops consume them: [`DeviceData::train_draws`]. Several
/// batches' draws under the same augmentation join into one ([`Draws::cat`]), which
/// [`DeviceData::batch`] makes into the same images, batch after batch, in one pass.
pub struct Draws {
    /// The examples, int64 `[batch]`.
    pub idx: Tensor,
    aug: Augment,
    /// Crop offsets (rows, columns), int64 `[batch]` each, when `aug.crop_padding > 0`.
    crop: Option<(Tensor, Tensor)>,
    /// Flip mask, bool `[batch]`, when `aug.hflip`.
    flip: Option<Tensor>,
    /// Cutout centres, int64 `[batch, 1, 1]` each, when `aug.cutout` is set.
    cutout: Option<(Tensor, Tensor)>,
}

impl Draws {
    /// Draws for the examples `idx` under `aug` on images of `h`×`w`, from torch's generator on
    /// `idx`'s device: crop rows, crop columns, flips, cutout rows, cutout columns.
    fn new(idx: Tensor, aug: Augment, h: i64, w: i64) -> Draws {
        let (b, dev) = (idx.size()[0], idx.device());
        let (crop, flip) = augment_draws(b, aug, dev);
        let cutout = aug.cutout.map(|_| cutout_centres(b, h, w, dev));
        Draws {
            idx,
            aug,
            crop,
            flip,
            cutout,
        }
    }

    /// `ds`, each the draws of a batch under the same augmentation, as one batch, in order.
    pub fn cat(ds: &[Draws]) -> Draws {
        let all = |f: &dyn Fn(&Draws) -> Option<&Tensor>| {
            let v: Option<Vec<&Tensor>> = ds.iter().map(f).collect();
            v.map(|v| Tensor::cat(&v, 0))
        };
        let pair = |f: &dyn Fn(&Draws) -> Option<&(Tensor, Tensor)>| {
            Some((all(&|d| f(d).map(|t| &t.0))?, all(&|d| f(d).map(|t| &t.1))?))
        };
        assert!(
            ds.iter().all(|d| d.aug == ds[0].aug),
            "draws join only under the same augmentation"
        );
        Draws {
            idx: all(&|d| Some(&d.idx)).expect("at least one batch"),
            aug: ds[0].aug,
            crop: pair(&|d| d.crop.as_ref()),
            flip: all(&|d| d.flip.as_ref()),
            cutout: pair(&|d| d.cutout.as_ref()),
        }
    }

    /// The number of examples.
    pub fn len(&self) -> i64 {
        self.idx.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dataset on the training device, ready to be batched.
pub struct DeviceData {
    /// uint8 `[N, C, H, W]` on `device`.
    images: Tensor,
    /// int64 `[N]` on `device`.
    labels: Tensor,
    /// float `[1, C, 1, 1]` on `device`.
    mean: Tensor,
    /// float `[1, C, 1, 1]` on `device`.
    std: Tensor,
    device: Device,
    /// Batches come out in channels-last (NHWC) memory format.
    channels_last: bool,
}

impl DeviceData {
    /// Copy `ds` to `device` (kept as uint8) with per-channel `mean`/`std` (in `[0, 1]` pixel
    /// units, one value per channel).
    pub fn new(ds: &Dataset, mean: &[f64], std: &[f64], device: Device) -> DeviceData {
        let c = ds.images.size()[1];
        assert_eq!(
            mean.len() as i64,
            c,
            "mean has {} values for {c} channels",
            mean.len()
        );
        assert_eq!(
            std.len() as i64,
            c,
            "std has {} values for {c} channels",
            std.len()
        );
        let stat = |v: &[f64]| {
            Tensor::from_slice(v)
                .to_kind(Kind::Float)
                .view([1, c, 1, 1])
                .to_device(device)
        };
        DeviceData {
            images: ds.images.to_device(device),
            labels: ds.labels.to_device(device),
            mean: stat(mean),
            std: stat(std),
            device,
            channels_last: false,
        }
    }

    /// Batches in channels-last (NHWC) memory format (for a model whose weights are so too:
    /// cuDNN then runs its NHWC kernels without transposes).
    pub fn with_channels_last(mut self, on: bool) -> DeviceData {
        self.channels_last = on;
        self
    }

    /// `x` in the batches' memory format (channels-last when [`Self::with_channels_last`]).
    pub fn layout(&self, x: Tensor) -> Tensor {
        if self.channels_last {
            crate::util::torch_ext::channels_last(&x).expect("channels-last batch")
        } else {
            x
        }
    }

    /// Number of examples.
    pub fn len(&self) -> i64 {
        self.labels.size()[0]
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The device the data lives on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// uint8 → float in `[0, 1]` → `(x - mean) / std`.
    pub fn normalize(&self, x_u8: &Tensor) -> Tensor {
        (x_u8.to_kind(Kind::Float) / 255.0 - &self.mean) / &self.std
    }

    /// One epoch of shuffled, augmented, normalized batches.
    ///
    /// Calls `tch::manual_seed(seed)` once (now, not lazily), draws a `randperm` on the
    /// device, then per batch: its draws ([`Self::train_draws`]) and [`Self::batch`]. Yields
    /// `(x float [batch, C, H, W], y int64 [batch])` on the device; the last batch may be
    /// smaller. The same seed gives the same epoch as long as nothing else draws from torch's
    /// RNG between batches.
    pub fn train_batches(
        &self,
        batch_size: i64,
        seed: i64,
        aug: Augment,
    ) -> impl Iterator<Item = (Tensor, Tensor)> + '_ {
        self.train_draws(batch_size, seed, aug).map(move |d| {
            let (x, y) = self.batch(&d);
            (self.layout(x), y)
        })
    }

    /// The random draws of [`Self::train_batches`]'s epoch, batch by batch, without the images:
    /// `tch::manual_seed(seed)` and the `randperm` now, each batch's crop offsets, flips and
    /// cutout centres ([`Draws`]) when it is asked for.
    pub fn train_draws(
        &self,
        batch_size: i64,
        seed: i64,
        aug: Augment,
    ) -> impl Iterator<Item = Draws> + '_ {
        assert!(batch_size > 0, "batch_size must be positive");
        tch::manual_seed(seed);
        let n = self.len();
        let (_, _, h, w) = self.images.size4().expect("images are [N, C, H, W]");
        let perm = Tensor::randperm(n, (Kind::Int64, self.device));
        (0..n).step_by(batch_size as usize).map(move |start| {
            let idx = perm.narrow(0, start, batch_size.min(n - start));
            Draws::new(idx, aug, h, w)
        })
    }

    /// The batch that draws `d` make: `index_select`, float/255, crop and flip ([`augment`]'s
    /// ops), normalize, cutout; `(x float [batch, C, H, W], y int64 [batch])` in the default
    /// memory format (see [`Self::layout`]).
    pub fn batch(&self, d: &Draws) -> (Tensor, Tensor) {
        let x = self.images.index_select(0, &d.idx).to_kind(Kind::Float) / 255.0;
        let x = augment_with(&x, d.aug, d.crop.as_ref(), d.flip.as_ref());
        let mut x = (x - &self.mean) / &self.std;
        if let (Some(size), Some(centres)) = (d.aug.cutout, &d.cutout) {
            x = cutout_at(&x, size, centres);
        }
        (x, self.labels.index_select(0, &d.idx))
    }

    /// The examples in order, without augmentation, normalized; the last batch may be
    /// smaller.
    pub fn eval_batches(&self, batch_size: i64) -> impl Iterator<Item = (Tensor, Tensor)> + '_ {
        assert!(batch_size > 0, "batch_size must be positive");
        let n = self.len();
        (0..n).step_by(batch_size as usize).map(move |start| {
            let len = batch_size.min(n - start);
            (
                self.layout(self.normalize(&self.images.narrow(0, start, len))),
                self.labels.narrow(0, start, len),
            )
        })
    }
}

/// Random crop with `aug.crop_padding` pixels of zero padding and, if `aug.hflip`, a
/// horizontal flip with probability 1/2; a different offset and flip per image.
///
/// `x` is `[batch, C, H, W]` (any dtype; zeros are padded in whatever space `x` is in, so
/// call it before normalizing to match torchvision's `RandomCrop(32, padding=4)` on the
/// PIL image). The draws use torch's global RNG on `x`'s device, in this order: row
/// offsets, column offsets (each `randint(0, 2·pad+1, [batch])`), flip mask
/// (`rand([batch]) < 0.5`).
pub fn augment(x: &Tensor, aug: Augment) -> Tensor {
    let (crop, flip) = augment_draws(x.size()[0], aug, x.device());
    augment_with(x, aug, crop.as_ref(), flip.as_ref())
}

/// [`augment`]'s draws for `b` images: crop offsets (rows, then columns) when
/// `aug.crop_padding > 0`, then the flip mask when `aug.hflip`.
fn augment_draws(b: i64, aug: Augment, dev: Device) -> (Option<(Tensor, Tensor)>, Option<Tensor>) {
    let crop = (aug.crop_padding > 0).then(|| {
        let span = 2 * aug.crop_padding + 1;
        let off_y = Tensor::randint(span, [b], (Kind::Int64, dev));
        (off_y, Tensor::randint(span, [b], (Kind::Int64, dev)))
    });
    let flip = aug
        .hflip
        .then(|| Tensor::rand([b], (Kind::Float, dev)).lt(0.5));
    (crop, flip)
}

/// [`augment`] with its draws given.
fn augment_with(
    x: &Tensor,
    aug: Augment,
    crop: Option<&(Tensor, Tensor)>,
    flip: Option<&Tensor>,
) -> Tensor {
    let mut out = x.shallow_clone();
    if let Some((off_y, off_x)) = crop {
        out = crop_with_offsets(&out, aug.crop_padding, off_y, off_x);
    }
    if let Some(mask) = flip {
        out = flip_where(&out, mask);
    }
    out
}

/// Crop each image of `x` `[batch, C, H, W]`, zero-padded by `pad` on all four sides, to `H×W`
/// starting at row `off_y[i]` and column `off_x[i]` (int64 `[batch]`, each in `0..=2·pad`) of
/// the padded image. Offset `pad` is the identity; offset 0 shifts the image down/right
/// by `pad` with zeros in the first `pad` rows/columns.
///
/// Fully batched: one `constant_pad_nd`, then a `gather` along the rows and one along
/// the columns with indices `offset[i] + arange(H or W)`.
pub fn crop_with_offsets(x: &Tensor, pad: i64, off_y: &Tensor, off_x: &Tensor) -> Tensor {
    if pad == 0 {
        return x.shallow_clone();
    }
    let (b, c, h, w) = x
        .size4()
        .expect("crop_with_offsets: x must be [batch, C, H, W]");
    let device = x.device();
    let padded = x.constant_pad_nd([pad, pad, pad, pad]); // [batch, C, H+2p, W+2p]
    let rows = off_y.to_device(device).to_kind(Kind::Int64).view([b, 1])
        + Tensor::arange(h, (Kind::Int64, device)).view([1, h]);
    let rows = rows
        .view([b, 1, h, 1])
        .expand([b, c, h, w + 2 * pad], false);
    let cropped_rows = padded.gather(2, &rows, false); // [batch, C, H, W+2p]
    let cols = off_x.to_device(device).to_kind(Kind::Int64).view([b, 1])
        + Tensor::arange(w, (Kind::Int64, device)).view([1, w]);
    let cols = cols.view([b, 1, 1, w]).expand([b, c, h, w], false);
    cropped_rows.gather(3, &cols, false)
}

/// Flip image `i` of `x` `[batch, C, H, W]` horizontally where `mask[i]` (bool `[batch]`) is true.
pub fn flip_where(x: &Tensor, mask: &Tensor) -> Tensor {
    let b = x.size()[0];
    let mask = mask
        .to_device(x.device())
        .to_kind(Kind::Bool)
        .view([b, 1, 1, 1]);
    x.flip([3]).where_self(&mask, x)
}
