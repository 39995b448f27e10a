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
    } else if msg.contains("unknown value") {
        format!("{msg} (use one of those)")
    } else if let Some(expected) = msg.split("invalid type: ").nth(1) {
        // "string \"abc\", expected i64": name what to write instead.
        let want = match expected.split(", expected ").nth(1).unwrap_or("") {
            w if w.starts_with('i') || w.starts_with('u') => "an integer",
            w if w.starts_with('f') => "a number",
            w if w.contains("bool") => "true or false",
            w if w.contains("sequence") => "a list, e.g. [1, 2]",
            w if w.contains("string") => "a string",
            _ => "a value of that type",
        };
        format!("{msg} (give {want})")
    } else {
        msg
    }
}

/// Where a bad key came from: `origin` (the file), followed by `--set KEY=VALUE` when one of
/// `overrides` set `key` (or a mapping above or below it; the last one, as they apply in
/// order). `origin` `--set` (no file) gives the override alone.
pub fn blame(origin: &str, key: &str, overrides: &[String]) -> String {
    let set_key = |ov: &String| {
        ov.split_once('=')
            .map_or(ov.clone(), |(k, _)| k.trim().into())
    };
    match overrides
        .iter()
        .rev()
        .find(|ov| keys_overlap(&set_key(ov), key))
    {
        Some(ov) if origin == "--set" => format!("--set {ov}"),
        Some(ov) => format!("{origin}: --set {ov}"),
        None => origin.to_string(),
    }
}

/// Whether dotted keys `a` and `b` name the same setting or one holds the other: `model` and
/// `model.depth` overlap; `model.depth` and `model.depth_x` do not.
pub fn keys_overlap(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long == short || long.strip_prefix(short).is_some_and(|r| r.starts_with('.'))
}
