//! A plain table: Markdown (aligned pipes, under a title line) and CSV (atomic write).
use anyhow::{Context, Result};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: Vec<String>) -> Table {
        Table {
            title: title.into(),
            headers,
            rows: Vec::new(),
        }
    }

    /// Adds a row (padded with empty cells or cut to the number of headers).
    pub fn push(&mut self, mut row: Vec<String>) {
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// `**title**`, a blank line, then the table with its columns padded to a common width;
    /// columns of numbers are right-aligned (the first column never), others left-aligned.
    /// `|` in cells is escaped.
    pub fn to_markdown(&self) -> String {
        let ncol = self
            .headers
            .len()
            .max(self.rows.iter().map(Vec::len).max().unwrap_or(0));
        let cell = |row: &[String], j: usize| {
            row.get(j)
                .map(|s| s.replace('|', "\\|"))
                .unwrap_or_default()
        };
        let width = |s: &str| s.chars().count();
        let mut w = vec![3usize; ncol];
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (j, wj) in w.iter_mut().enumerate() {
                *wj = (*wj).max(width(&cell(row, j)));
            }
        }
        // A column is right-aligned when some cell of it starts with a number.
        let numeric = |s: &str| {
            let t = s.split_whitespace().next().unwrap_or("");
            let t = t.trim_end_matches(';');
            !t.is_empty() && t.parse::<f64>().is_ok_and(|v| !v.is_nan() || t == "NaN")
        };
        let right: Vec<bool> = (0..ncol)
            .map(|j| j > 0 && self.rows.iter().any(|r| numeric(&cell(r, j))))
            .collect();
        let line = |row: &[String]| {
            let mut s = String::from("|");
            for (j, &wj) in w.iter().enumerate() {
                let c = cell(row, j);
                let pad = " ".repeat(wj - width(&c));
                if !right[j] {
                    s += &format!(" {c}{pad} |");
                } else {
                    s += &format!(" {pad}{c} |");
                }
            }
            s + "\n"
        };
        let mut out = String::new();
        if !self.title.is_empty() {
            out += &format!("**{}**\n\n", self.title);
        }
        out += &line(&self.headers);
        out += "|";
        for (j, &wj) in w.iter().enumerate() {
            if !right[j] {
                out += &format!(":{}|", "-".repeat(wj + 1));
            } else {
                out += &format!("{}:|", "-".repeat(wj + 1));
            }
        }
        out += "\n";
        for row in &self.rows {
            out += &line(row);
        }
        out
    }

    /// Headers and rows as CSV (the title is not written), atomically.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
        }
        crate::util::atomic::write_atomic_with(path, |f| {
            let mut w = csv::WriterBuilder::new().flexible(true).from_writer(f);
            w.write_record(&self.headers)?;
            for row in &self.rows {
                w.write_record(row)?;
            }
            w.flush()?;
            Ok(())
        })
    }
}
