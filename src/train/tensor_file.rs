//! Files of named tensors for caches and training state outside the run checkpoint, in the
//! format of the run checkpoints and weight exports: safetensors (`.safetensors`, readable
//! from Python with `safetensors.torch.load_file`), written and read by
//! [`crate::util::safetensors_file`]: atomically (a kill leaves the previous file or none), and
//! read back with one-line errors that name the file and the fix.
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

use crate::util::safetensors_file;

/// Writes `named` (on any device, any layout) to `path` atomically; `what` names the file's
/// content in errors.
pub fn write(path: &Path, named: &[(String, Tensor)], what: &str) -> Result<()> {
    safetensors_file::write_tensors(path, named, |_| Ok(())).with_context(|| format!("the {what}"))
}

/// The tensors of a file of [`fn@write`], by name.
pub struct TensorFile {
    path: PathBuf,
    /// What to do about a bad file, e.g. "delete it to recompute".
    fix: String,
    tensors: BTreeMap<String, Tensor>,
}

impl TensorFile {
    /// Reads `path` onto `device`; `what` and `fix` go into the error lines.
    pub fn read(path: &Path, device: Device, what: &str, fix: &str) -> Result<Self> {
        let tensors = safetensors_file::read(path)
            .with_context(|| format!("{}: unreadable {what} ({fix})", path.display()))?
            .tensors;
        Ok(Self {
            path: path.to_path_buf(),
            fix: fix.to_string(),
            tensors: tensors
                .into_iter()
                .map(|(k, t)| (k, t.to_device(device)))
                .collect(),
        })
    }

    /// The tensor `name`, or an error naming the file, the missing tensor and the fix.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .with_context(|| format!("{}: no tensor {name:?} ({})", self.path.display(), self.fix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("x.safetensors");
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        write(&path, &[("a".into(), a.shallow_clone())], "test file").unwrap();
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["x.safetensors"],
            "no temporary file is left beside the written one"
        );
        let f = TensorFile::read(&path, Device::Cpu, "test file", "delete it").unwrap();
        assert_eq!(f.get("a").unwrap(), &a);
        let err = format!("{:#}", f.get("b").unwrap_err());
        assert!(
            err.contains("x.safetensors") && err.contains("\"b\"") && err.contains("delete it"),
            "{err}"
        );
        std::fs::write(&path, b"not a tensor file").unwrap();
        let err = format!(
            "{:#}",
            TensorFile::read(&path, Device::Cpu, "test file", "delete it")
                .err()
                .unwrap()
        );
        assert!(err.contains("unreadable test file"), "{err}");
    }
}
