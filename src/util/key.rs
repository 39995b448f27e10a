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

