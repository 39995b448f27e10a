//! `--set a.b.c=value` overrides of a YAML tree, and serde's error messages rewritten into the
//! key / accepted-values form of deepres's errors.
use anyhow::{bail, Result};

/// Applies `a.b.c=value` to a YAML tree; the value is parsed as YAML (numbers, bools, lists).
pub fn apply_override(root: &mut serde_yaml::Value, ov: &str) -> Result<()> {
    let (key, raw) = ov
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("expected key=value (dotted key, e.g. model.depth=56)"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
        bail!("empty key in {ov:?}; expected e.g. train.optimizer.lr=0.05");
    }
    let value: serde_yaml::Value =
        serde_yaml::from_str(raw).unwrap_or_else(|_| serde_yaml::Value::String(raw.to_string()));
    let mut node = root;
    for part in key.split('.') {
        if !node.is_mapping() {
            if node.is_null() {
                *node = serde_yaml::Value::Mapping(Default::default());
            } else {
                bail!("{key}: {part:?} is inside a value that is not a mapping");
            }
        }
        let map = node.as_mapping_mut().expect("checked above");
        let k = serde_yaml::Value::String(part.to_string());
        if !map.contains_key(&k) {
            map.insert(k.clone(), serde_yaml::Value::Null);
        }
        node = map.get_mut(&k).expect("inserted above");
    }
    *node = value;
    Ok(())
}

/// Rewrites serde's messages into the key/accepted-values form of our errors.
pub fn explain_serde_error(msg: &str) -> String {
    // serde_yaml: "model.tau: unknown field `foo`, expected one of `rule`, `c`, ... at line 3 column 5"
    let msg = msg.replace("unknown field", "unknown key");
    let msg = msg.replace("unknown variant", "unknown value");
    if msg.contains("unknown key") {
        format!("{msg} (remove or rename the key)")
    } else {
        msg
    }
}
