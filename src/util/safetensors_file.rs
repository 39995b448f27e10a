//! Every safetensors file deepres writes or reads (the format PyTorch users load with
//! `safetensors.torch.load_file`) goes through here, and through the one atomic writer:
//! - [`write`]: model files with a string→string header (best weights, exports), through the
//!   safetensors crate (tch's own `write_safetensors` has no metadata);
//! - [`write_tensors`]: files without metadata (run checkpoints, caches, training state),
//!   streamed from CPU-contiguous copies by tch, so that a file as large as an M9 chunk's
//!   (572 MB for 50 models) is not held twice in memory;
//! - [`read`] and [`read_metadata`] read either kind back, [`read_named`] a few of its tensors.
use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor};

use crate::util::atomic::{write_atomic, write_atomic_by_path};

fn dtype(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        k => bail!("tensors of kind {k:?} cannot go into a safetensors file"),
    })
}

fn kind(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        d => bail!("safetensors dtype {d:?} is not supported"),
    })
}

/// A CPU tensor of `dtype` and `shape` from its raw little-endian bytes.
fn tensor(data: &[u8], shape: &[usize], dtype: Dtype) -> Result<Tensor> {
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Ok(Tensor::from_data_size(data, &shape, kind(dtype)?))
}

/// The string→string metadata of a file's header, in key order.
fn metadata_of(header: &Metadata) -> BTreeMap<String, String> {
    header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Writes `tensors` (on any device, in any layout) to `path` atomically, with no metadata;
/// `check` runs on the written temporary file before it is renamed over `path` (the kill test
/// of the run checkpoint truncates it there).
pub fn write_tensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    check: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    // safetensors holds the bytes of contiguous CPU tensors.
    let cpu: Vec<(&str, Tensor)> = tensors
        .iter()
        .map(|(k, t)| (k.as_str(), t.to_device(Device::Cpu).contiguous()))
        .collect();
    write_atomic_by_path(path, |tmp| {
        Tensor::write_safetensors(&cpu, tmp)?;
        check(tmp)
    })
}

/// The raw little-endian bytes of a CPU-contiguous copy of `t`.
fn bytes(t: &Tensor) -> Vec<u8> {
    let t = t.to_device(Device::Cpu).contiguous();
    let n = t.numel() * t.kind().elt_size_in_bytes();
    let mut out = vec![0u8; n];
    t.copy_data_u8(&mut out, t.numel());
    out
}

/// Writes `tensors` (sorted by name in the file) and `metadata` to `path` atomically.
pub fn write(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let shape = t.size().iter().map(|&d| d as usize).collect();
            Ok((name.clone(), dtype(t.kind())?, shape, bytes(t)))
        })
        .collect::<Result<_>>()?;
    let views: Vec<(String, TensorView)> = raw
        .iter()
        .map(|(name, dt, shape, data)| {
            let view = TensorView::new(*dt, shape.clone(), data)
                .map_err(|e| anyhow::anyhow!("{name}: {e:?}"))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    let buf = safetensors::serialize(views, &Some(meta))
        .map_err(|e| anyhow::anyhow!("{}: cannot serialize ({e:?})", path.display()))?;
    write_atomic(path, sorted_metadata(buf)?)
}

/// `buf` (a serialized safetensors file) with its metadata in key order: the safetensors crate
/// takes the metadata as a `HashMap`, whose order is random in each process, so the same
/// tensors and metadata would otherwise give other bytes in each run.
fn sorted_metadata(buf: Vec<u8>) -> Result<Vec<u8>> {
    let n = u64::from_le_bytes(buf[..8].try_into()?) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&buf[8..8 + n])?;
    if let Some(serde_json::Value::Object(meta)) = header.remove("__metadata__") {
        let sorted: BTreeMap<String, serde_json::Value> = meta.into_iter().collect();
        let mut rebuilt = serde_json::Map::new();
        rebuilt.insert("__metadata__".into(), serde_json::json!(sorted));
        rebuilt.extend(header);
        header = rebuilt;
    }
    let mut json = serde_json::to_vec(&header)?;
    // The header is padded with spaces to a multiple of 8 bytes, as safetensors writes it.
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + json.len() + buf.len() - 8 - n);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&buf[8 + n..]);
    Ok(out)
}

/// A safetensors file read back: its tensors (CPU) by name, in name order, and its metadata.
pub struct Loaded {
    pub tensors: BTreeMap<String, Tensor>,
    pub metadata: BTreeMap<String, String>,
}

/// The open file at `path`, where its data starts, and its header (tensor names, kinds,
/// shapes, offsets; metadata), read without the data.
fn header(path: &Path) -> Result<(std::fs::File, u64, Metadata)> {
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let n = u64::from_le_bytes(len);
    // safetensors' own limit on a header (100 MB): a larger one is not a safetensors file.
    if n > 100_000_000 {
        bail!(
            "{}: not a safetensors file (header of {n} bytes)",
            path.display()
        );
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).with_context(|| {
        format!(
            "{}: not a safetensors file (header cut short)",
            path.display()
        )
    })?;
    let meta: Metadata = serde_json::from_slice(&header)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    Ok((f, 8 + n, meta))
}

/// The metadata of the safetensors file at `path`, read from its header alone.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let (_, _, meta) = header(path)?;
    Ok(metadata_of(&meta))
}

/// The tensors called `names` in the safetensors file at `path` (those it has), read alone:
/// the header and those tensors' bytes, not the rest of the file (a pack's resume asks each
/// member's checkpoint for two scalars and its member list).
pub fn read_named(path: &Path, names: &[&str]) -> Result<BTreeMap<String, Tensor>> {
    use std::io::{Read, Seek, SeekFrom};
    let (mut f, data, meta) = header(path)?;
    let infos = meta.tensors();
    // As `read` would, refuse a file whose data is cut short, not only the tensors read.
    let end = infos.values().map(|i| i.data_offsets.1).max().unwrap_or(0) as u64;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len != data + end {
        bail!(
            "{}: not a safetensors file ({len} bytes, the header says {})",
            path.display(),
            data + end
        );
    }
    let mut out = BTreeMap::new();
    for &name in names {
        let Some(info) = infos.get(name) else {
            continue;
        };
        let at = |what: &str| format!("{}: tensor {name} {what}", path.display());
        let (s, e) = info.data_offsets;
        let numel: usize = info.shape.iter().product();
        if e < s || e - s != numel * info.dtype.size() {
            bail!("{}", at("has offsets that do not match its shape"));
        }
        let mut buf = vec![0u8; e - s];
        f.seek(SeekFrom::Start(data + s as u64))
            .and_then(|_| f.read_exact(&mut buf))
            .with_context(|| at("is cut short"))?;
        let t = tensor(&buf, &info.shape, info.dtype).with_context(|| at(""))?;
        out.insert(name.to_string(), t);
    }
    Ok(out)
}

/// Reads `path`; a file that is not safetensors gets one line naming it.
pub fn read(path: &Path) -> Result<Loaded> {
    let buf = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let not_st = |e: safetensors::SafeTensorError| {
        anyhow::anyhow!("{}: not a safetensors file ({e:?})", path.display())
    };
    let (_, header) = SafeTensors::read_metadata(&buf).map_err(not_st)?;
    let metadata = metadata_of(&header);
    let st = SafeTensors::deserialize(&buf).map_err(not_st)?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let t = tensor(view.data(), view.shape(), view.dtype())
            .with_context(|| format!("{}: tensor {name}", path.display()))?;
        tensors.insert(name, t);
    }
    Ok(Loaded { tensors, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `read_named` reads back what tch's own writer (not this module's code) wrote, by name,
    /// skips names the file lacks, and refuses a file cut short anywhere, as `read` does.
    #[test]
    fn read_named_reads_the_named_tensors_alone_and_refuses_a_cut_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.safetensors");
        let weights = Tensor::arange(1000, (Kind::Float, Device::Cpu)).reshape([10, 100]);
        let tensors = vec![
            ("a.weights".to_string(), weights),
            ("meta.epoch".to_string(), Tensor::from_slice(&[7i64])),
            ("z.list".to_string(), Tensor::from_slice(b"x\ny".as_slice())),
        ];
        write_tensors(&p, &tensors, |_| Ok(())).unwrap();
        let got = read_named(&p, &["z.list", "meta.epoch", "absent"]).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), ["meta.epoch", "z.list"]);
        assert_eq!(got["meta.epoch"].int64_value(&[0]), 7);
        assert_eq!(Vec::<u8>::try_from(&got["z.list"]).unwrap(), b"x\ny");
        let w = &read_named(&p, &["a.weights"]).unwrap()["a.weights"];
        assert_eq!(w.size(), [10, 100]);
        assert!(w.equal(&tensors[0].1));
        let bytes = std::fs::read(&p).unwrap();
        let cut = tmp.path().join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 4]).unwrap();
        let e = format!("{:#}", read_named(&cut, &["meta.epoch"]).unwrap_err());
        assert!(e.starts_with(&cut.display().to_string()), "{e}");
        assert!(read(&cut).is_err());
    }
}
