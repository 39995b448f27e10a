//! What `runs/` holds, paper by paper: the directories the Makefile's paper targets write,
//! each an [`Entry`] with its Markdown, figures and data files and the command that made it.
//!
//! - The τ paper (Zhang et al. 2022): `<runs>/zhang2022-stability-<scale>/{resnet,fc}/`
//!   (`make zhang-stability`) and the sweeps' reports `<runs>/zhang2022-<item>-<scale>/report/`
//!   (`make zhang-<item>`, item = table1, table2, fig3).
//! - Marion et al. (2022) and Chizat (2025): `<runs>/<paper dir>/<fig>/<scale>/`
//!   (`make marion-<fig>`, `make chizat-<fig>`), each with its README.md.
//!
//! A directory with no Markdown and no figure is left out; nothing found is no error.
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The scales of the paper targets (`SCALE=`); a directory name ending in `-<scale>` has it.
pub const SCALES: [&str; 2] = ["smoke", "full"];

/// One paper: its section of the page.
#[derive(Debug, Clone)]
pub struct Paper {
    /// The section's anchor, e.g. `zhang2022`.
    pub key: &'static str,
    pub title: &'static str,
    pub arxiv: &'static str,
    /// What to run when nothing is there yet.
    pub make_all: &'static str,
    pub entries: Vec<Entry>,
}

/// One table or figure directory.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The target's short name (`table1`, `fig3`, `stability (resnet)`).
    pub name: String,
    /// `smoke`, `full`, or `(none)` for a directory without one.
    pub scale: String,
    /// The command that writes this directory.
    pub command: String,
    pub dir: PathBuf,
    /// Markdown files, in the order shown (README.md first).
    pub markdown: Vec<PathBuf>,
    /// SVG files, and PNG files without an SVG of the same stem.
    pub figures: Vec<PathBuf>,
    /// CSV files.
    pub data: Vec<PathBuf>,
    /// The newest modification time of the files above.
    pub modified: Option<SystemTime>,
}

/// The three papers, each with what `runs` holds for it.
pub fn scan(runs: &Path) -> Result<Vec<Paper>> {
    Ok(vec![
        Paper {
            key: "zhang2022",
            title: "Zhang et al. (2022), Stabilize Deep ResNet with a Sharp Scaling Factor τ",
            arxiv: "1903.07120",
            make_all: "make tables",
            entries: zhang(runs)?,
        },
        Paper {
            key: "marion2022",
            title: "Marion et al. (2022), Scaling ResNets in the Large-depth Regime",
            arxiv: "2206.06929",
            make_all: "make marion",
            entries: figures(runs, "marion2022", "marion")?,
        },
        Paper {
            key: "chizat2025",
            title: "Chizat (2025), The Hidden Width of Deep ResNets",
            arxiv: "2509.10167",
            make_all: "make chizat",
            entries: figures(runs, "chizat2025", "chizat")?,
        },
    ])
}

/// The subdirectories of `dir`, sorted by name (none when `dir` is missing).
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("{}: cannot read the directory", dir.display()))
        }
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("{}: cannot read the directory", dir.display()))?;
        let p = e.path();
        if p.is_dir() {
            out.push((e.file_name().to_string_lossy().into_owned(), p));
        }
    }
    out.sort_by_key(|a| natural_key(&a.0));
    Ok(out)
}

/// A sort key that puts `fig2` before `fig10`.
fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in s.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() || !text.is_empty() {
                out.push((std::mem::take(&mut text), digits.parse().unwrap_or(0)));
                digits.clear();
            }
            text.push(c);
        }
    }
    out
}

/// `name` split into its stem and scale (`zhang2022-table1-smoke` → `zhang2022-table1`, `smoke`).
fn split_scale(name: &str) -> (&str, Option<&str>) {
    for s in SCALES {
        if let Some(stem) = name.strip_suffix(s).and_then(|n| n.strip_suffix('-')) {
            return (stem, Some(s));
        }
    }
    (name, None)
}

/// The τ paper: the stability probe and the sweeps' reports.
fn zhang(runs: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (name, dir) in subdirs(runs)? {
        let Some(item) = name.strip_prefix("zhang2022-") else {
            continue;
        };
        let (item, scale) = split_scale(item);
        let scale_arg = scale.map(|s| format!(" SCALE={s}")).unwrap_or_default();
        if item == "stability" {
            for (model, sub) in subdirs(&dir)? {
                let command = match scale {
                    Some(_) => format!("make zhang-stability{scale_arg}"),
                    None => format!("deepres probe --model {model} --out {}", sub.display()),
                };
                out.extend(entry(
                    &sub,
                    format!("stability ({model})"),
                    scale,
                    command,
                    false,
                )?);
            }
        } else {
            let command = match (scale, ["table1", "table2", "fig3"].contains(&item)) {
                (Some(_), true) => format!("make zhang-{item}{scale_arg}"),
                _ => format!(
                    "deepres report experiments/zhang2022/{item}.yaml{}",
                    scale.map(|s| format!(" --scale {s}")).unwrap_or_default()
                ),
            };
            out.extend(entry(
                &dir.join("report"),
                item.to_string(),
                scale,
                command,
                false,
            )?);
        }
    }
    // The paper's order: its tables, its figure, then the probe; smoke before full.
    let order = ["table1", "table2", "fig3"];
    let rank = |e: &Entry| {
        order
            .iter()
            .position(|&o| o == e.name)
            .unwrap_or(order.len())
    };
    out.sort_by_key(|e| (rank(e), natural_key(&e.name), scale_rank(&e.scale)));
    Ok(out)
}

/// Smoke before full before any other scale.
fn scale_rank(scale: &str) -> usize {
    SCALES
        .iter()
        .position(|&s| s == scale)
        .unwrap_or(SCALES.len())
}

/// Marion's or Chizat's figures: `<runs>/<paper_dir>/<fig>/<scale>/`.
fn figures(runs: &Path, paper_dir: &str, cmd: &str) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (fig, dir) in subdirs(&runs.join(paper_dir))? {
        let mut scales = subdirs(&dir)?;
        scales.sort_by_key(|(s, _)| scale_rank(s));
        for (scale, sub) in scales {
            let numbered = fig
                .strip_prefix("fig")
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            let command = if numbered && SCALES.contains(&scale.as_str()) {
                format!("make {cmd}-{fig} SCALE={scale}")
            } else {
                format!("deepres {cmd} experiments/{paper_dir}/{fig}.yaml --scale {scale}")
            };
            out.extend(entry(&sub, fig.clone(), Some(&scale), command, true)?);
        }
    }
    Ok(out)
}

/// The entry of `dir`, or `None` when it holds no Markdown and no figure. With `readme_only`,
/// a README.md stands for the directory's other Markdown files (it holds their tables).
fn entry(
    dir: &Path,
    name: String,
    scale: Option<&str>,
    command: String,
    readme_only: bool,
) -> Result<Option<Entry>> {
    let mut files = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e
                .with_context(|| format!("{}: cannot read the directory", dir.display()))?
                .path();
            if p.is_file() {
                files.push(p);
            }
        }
    }
    files.sort_by_key(|p| natural_key(&p.to_string_lossy()));
    let ext = |p: &PathBuf, e: &str| p.extension().is_some_and(|x| x == e);
    let readme = dir.join("README.md");
    let mut markdown: Vec<PathBuf> = files.iter().filter(|p| ext(p, "md")).cloned().collect();
    if markdown.contains(&readme) {
        markdown.retain(|p| *p != readme);
        if readme_only {
            markdown.clear();
        }
        markdown.insert(0, readme);
    }
    let mut figures: Vec<PathBuf> = files
        .iter()
        .filter(|p| ext(p, "svg") || (ext(p, "png") && !p.with_extension("svg").is_file()))
        .cloned()
        .collect();
    // The figure named after the directory's target first; a copy of it shown once.
    figures.sort_by_key(|p| p.file_stem().is_none_or(|s| s != name.as_str()));
    let mut seen = Vec::new();
    figures.retain(|p| {
        let bytes = std::fs::read(p).unwrap_or_default();
        let new = !seen.contains(&bytes);
        seen.push(bytes);
        new
    });
    if markdown.is_empty() && figures.is_empty() {
        return Ok(None);
    }
    let data: Vec<PathBuf> = files.iter().filter(|p| ext(p, "csv")).cloned().collect();
    let modified = markdown
        .iter()
        .chain(&figures)
        .chain(&data)
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max();
    Ok(Some(Entry {
        name,
        scale: scale.unwrap_or("(none)").to_string(),
        command,
        dir: dir.to_path_buf(),
        markdown,
        figures,
        data,
        modified,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_naturally_and_scales_split() {
        let mut v = vec!["fig10", "fig2", "fig1"];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(v, ["fig1", "fig2", "fig10"]);
        assert_eq!(split_scale("table1-smoke"), ("table1", Some("smoke")));
        assert_eq!(split_scale("table1"), ("table1", None));
    }
}
