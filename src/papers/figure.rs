//! Figure files (`experiments/<paper>/figN.yaml`), shared by the papers' figure runners: a file
//! holds `figure` (its name), `title`, `spec` (the settings, tagged by `kind`) and `scales`
//! (`smoke`, `full`: keys that replace those of `spec`); `--set key=value` overrides come last.
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::Path;

use crate::util::overrides::{blame, explain_serde_error};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FigureFile {
    figure: String,
    title: String,
    spec: serde_yaml::Mapping,
    #[serde(default)]
    scales: std::collections::BTreeMap<String, serde_yaml::Mapping>,
}

/// A figure file read at one scale, its spec parsed into `S`.
#[derive(Debug, Clone)]
pub struct FigureFileAt<S> {
    pub figure: String,
    pub title: String,
    pub scale: String,
    pub spec: S,
    /// The file's stem (e.g. `fig1`).
    pub stem: String,
}

/// Reads `path`, applies `scales[scale]` over `spec`, then `overrides` (`key=value`, dotted keys
/// of `spec`, e.g. `depth=200`, `train.epochs=2`), and parses the result. Errors name the file
/// and the key (`<file>: spec.<key>: unknown key ...`).
pub fn load<S: DeserializeOwned>(
    path: &Path,
    scale: &str,
    overrides: &[String],
) -> Result<FigureFileAt<S>> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{origin}: cannot read the figure file"))?;
    let file: FigureFile = serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(
        &text,
    ))
    .map_err(|e| {
        let p = e.path().to_string();
        anyhow::anyhow!(
            "{origin}: {p}: {} (keys: figure, title, spec, scales)",
            e.into_inner()
        )
    })?;
    let mut spec = file.spec.clone();
    match file.scales.get(scale) {
        Some(over) => {
            for (k, v) in over {
                spec.insert(k.clone(), v.clone());
            }
        }
        None if file.scales.is_empty() => {}
        None => bail!(
            "{origin}: scales: no scale {scale:?}; the file has {}",
            file.scales.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
    let mut spec = serde_yaml::Value::Mapping(spec);
    for ov in overrides {
        crate::util::overrides::apply_override(&mut spec, ov)
            .with_context(|| format!("--set {ov}"))?;
    }
    let spec: S = serde_path_to_error::deserialize(&spec).map_err(|e| {
        let p = e.path().to_string();
        let msg = explain_serde_error(&e.into_inner().to_string());
        let unknown = msg
            .strip_prefix("unknown key `")
            .and_then(|r| r.split('`').next())
            .filter(|k| spec.get(*k).is_some());
        let key = if p != "." {
            Some(p)
        } else if let Some(k) = unknown {
            Some(k.to_string())
        } else {
            offending_key(&spec, &msg)
        };
        match key {
            Some(k) => anyhow::anyhow!("{}: spec.{k}: {msg}", blame(&origin, &k, overrides)),
            None => anyhow::anyhow!("{origin}: spec: {msg}"),
        }
    })?;
    Ok(FigureFileAt {
        figure: file.figure,
        title: file.title,
        scale: scale.to_string(),
        spec,
        stem: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    })
}

impl<S> FigureFileAt<S> {
    /// The figure's default output directory: `runs/<paper>/<stem>/<scale>/`.
    pub fn default_out(&self, paper: &str) -> std::path::PathBuf {
        Path::new("runs")
            .join(paper)
            .join(&self.stem)
            .join(&self.scale)
    }
}

/// `spec.<name>` must be ≥ 1 (the figure runners' checks of counts).
pub fn positive(name: &str, v: i64) -> Result<()> {
    if v < 1 {
        bail!("spec.{name}: must be ≥ 1, got {v}");
    }
    Ok(())
}

/// `n` points evenly spaced from `from` to `to` (both included).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linspace {
    pub from: f64,
    pub to: f64,
    pub points: usize,
}

impl Linspace {
    pub fn values(&self) -> Vec<f64> {
        if self.points <= 1 {
            return vec![self.from];
        }
        let h = (self.to - self.from) / (self.points - 1) as f64;
        (0..self.points)
            .map(|i| ((self.from + h * i as f64) * 1e6).round() / 1e6)
            .collect()
    }
}

/// The dotted key of `spec` whose value serde's `msg` quotes (`unknown variant `foo``,
/// `invalid type: string "abc"`), when exactly one leaf holds it. serde loses the path inside
/// a spec's `kind`-tagged enum, so an error would otherwise name only `spec`.
fn offending_key(spec: &serde_yaml::Value, msg: &str) -> Option<String> {
    let quoted = |open: char, close: char| {
        let start = msg.find(open)? + 1;
        let len = msg[start..].find(close)?;
        Some(msg[start..start + len].to_string())
    };
    let value = quoted('`', '`').or_else(|| quoted('"', '"'))?;
    let mut found = Vec::new();
    leaves_equal_to(spec, &value, String::new(), &mut found);
    match found.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// Pushes onto `found` the dotted key of every scalar leaf of `v` (under `prefix`) written `value`.
fn leaves_equal_to(v: &serde_yaml::Value, value: &str, prefix: String, found: &mut Vec<String>) {
    use serde_yaml::Value;
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let name = k
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{k:?}"));
                let key = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}.{name}")
                };
                leaves_equal_to(child, value, key, found);
            }
        }
        Value::Sequence(items) => {
            for (i, child) in items.iter().enumerate() {
                leaves_equal_to(child, value, format!("{prefix}[{i}]"), found);
            }
        }
        Value::String(s) if s == value => found.push(prefix),
        Value::Number(n) if n.to_string() == value => found.push(prefix),
        Value::Bool(b) if b.to_string() == value => found.push(prefix),
        _ => {}
    }
}
