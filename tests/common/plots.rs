//! Plot files in the tests: which files a plot writes, and keeping them to look at.
use deepres::report::plot;
use std::path::{Path, PathBuf};

/// The files a plot with stem `stem` writes: the PNG only where a font was found.
pub fn plot_files(stem: &str) -> Vec<String> {
    let mut v = vec![format!("{stem}.svg")];
    if plot::font_path().is_some() {
        v.push(format!("{stem}.png"));
    }
    v
}

/// The file names of `paths`.
pub fn files(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// With `DEEPRES_KEEP_PLOTS=DIR`, copies a plot there to look at.
pub fn keep(path: &Path) {
    if let Ok(dir) = std::env::var("DEEPRES_KEEP_PLOTS") {
        let _ = std::fs::copy(path, Path::new(&dir).join(path.file_name().unwrap()));
    }
}
