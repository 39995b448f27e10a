//! Resume and cache keys: the SHA-256 of a spec as it is serialized, so that two settings
//! share a key exactly when they serialize alike.

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The resume or cache key of a spec: the SHA-256 (hex) of its YAML serialization (for a run
/// config, the text of its `config.yaml`). Two specs share a key exactly when they serialize
/// alike, so a field added to a spec changes every key (old results are then recomputed, never
/// reused for another setting); tests pin one key of each kind to make such a change deliberate.
pub fn spec_key(spec: &impl serde::Serialize) -> String {
    let yaml = serde_yaml::to_string(spec).expect("a spec always serializes to YAML");
    sha256_hex(yaml.as_bytes())
}
