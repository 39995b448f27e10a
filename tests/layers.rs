//! The crate's layers import only downwards: util → data → model → train → report → sweep →
//! papers → cli (src/lib.rs). This test reads every source file and fails on an import of a
//! layer above the file's own (which also rules out cycles between layers), naming the file,
//! the line and the import. Run it alone with `cargo test --release --test layers`.
use std::path::{Path, PathBuf};

const LAYERS: [&str; 8] = [
    "util", "data", "model", "train", "report", "sweep", "papers", "cli",
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|&l| l == module)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::<module>` named on a line (not in a comment).
fn crate_imports(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices("crate::")
        .filter(|(i, _)| *i == 0 || !is_ident(code.as_bytes()[i - 1]))
        .map(|(i, _)| {
            code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .iter()
            .next()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some(own) = rank(&top) else {
            assert!(
                ["lib", "main"].contains(&top.as_str()),
                "{}: a top-level module outside the layers {LAYERS:?}",
                rel.display()
            );
            continue;
        };
        checked += 1;
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            for m in crate_imports(line) {
                match rank(&m) {
                    Some(r) if r > own => bad.push(format!(
                        "src/{}:{}: {top} imports crate::{m}, a layer above it",
                        rel.display(),
                        n + 1
                    )),
                    Some(_) => {}
                    None => bad.push(format!(
                        "src/{}:{}: crate::{m} is not one of the layers {LAYERS:?}",
                        rel.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} files checked: is src/ laid out as expected?"
    );
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_import() {
    assert_eq!(
        crate_imports("use crate::sweep::grid::Grid; // crate::cli"),
        ["sweep"]
    );
    assert_eq!(
        crate_imports("let x = deepres_crate::foo;"),
        Vec::<String>::new()
    );
    assert!(rank("sweep") > rank("report") && rank("util") < rank("data"));
}
