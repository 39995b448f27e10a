//! `deepres page`: one static HTML page with every paper's tables and figures found under
//! `runs/` ([`mod@scan`]), written atomically. The page loads nothing: the SVG figures are inlined
//! (their XML prolog stripped), a PNG without an SVG is a `data:` URI, the style sheet is inline
//! and there is no script. Each table or figure shows its scale, the command that made it and
//! its date (the newest modification time of its files, ISO 8601 UTC). A paper with nothing run
//! yet says so and names the target that runs it.
pub mod markdown;
pub mod scan;

use anyhow::{Context, Result};
use std::path::Path;
use std::time::SystemTime;

use markdown::escape;
pub use scan::{scan, Entry, Paper};

/// What [`fn@write`] put on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageSummary {
    /// Papers with at least one entry.
    pub papers: usize,
    pub entries: usize,
    pub figures: usize,
}

/// Scans `runs` and writes the page to `out` (atomically; its directory is created).
pub fn write(runs: &Path, out: &Path) -> Result<PageSummary> {
    let papers = scan(runs)?;
    let page_dir = out.parent().unwrap_or(Path::new(""));
    let html = render(&papers, runs, page_dir)?;
    if !page_dir.as_os_str().is_empty() {
        std::fs::create_dir_all(page_dir)
            .with_context(|| format!("{}: cannot create the directory", page_dir.display()))?;
    }
    crate::util::write_atomic(out, html)?;
    Ok(PageSummary {
        papers: papers.iter().filter(|p| !p.entries.is_empty()).count(),
        entries: papers.iter().map(|p| p.entries.len()).sum(),
        figures: papers
            .iter()
            .flat_map(|p| &p.entries)
            .map(|e| e.figures.len())
            .sum(),
    })
}

const STYLE: &str =
    "body{font-family:sans-serif;max-width:1250px;margin:1em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #bbb;padding:2px 8px}\
th{background:#eee}code{background:#f4f4f4;padding:0 3px}.meta{color:#555}\
figure{margin:1em 0}figure svg,figure img{max-width:100%;height:auto;display:block}\
figcaption{color:#555;font-size:90%}article{border-top:1px solid #ddd;margin-top:1.5em}\
.empty{font-style:italic}";

/// The page's HTML.
pub fn render(papers: &[Paper], runs: &Path, page_dir: &Path) -> Result<String> {
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>deepres: the papers' tables and figures</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>deepres: the papers' tables and figures</h1>\n\
         <p class=\"meta\">From <code>{}</code>, written {} by <code>deepres page</code> \
         (<code>make report</code>).</p>\n<ul>\n",
        escape(&runs.display().to_string()),
        iso8601(SystemTime::now())
    );
    for p in papers {
        html += &format!(
            "<li><a href=\"#{}\">{}</a>: {} table(s) and figure(s)</li>\n",
            p.key,
            escape(p.title),
            p.entries.len()
        );
    }
    html += "</ul>\n";
    for p in papers {
        html += &paper(p, page_dir)?;
    }
    html += "</body>\n</html>\n";
    Ok(html)
}

fn paper(p: &Paper, page_dir: &Path) -> Result<String> {
    let mut html = format!(
        "<section id=\"{}\">\n<h2>{} (arXiv:{})</h2>\n",
        p.key,
        escape(p.title),
        p.arxiv
    );
    if p.entries.is_empty() {
        html += &format!(
            "<p class=\"empty\">Nothing run yet: <code>{} SCALE=smoke</code> runs it.</p>\n",
            p.make_all
        );
    }
    for e in &p.entries {
        html += &entry(p.key, e, page_dir)?;
    }
    Ok(html + "</section>\n")
}

/// One table or figure directory: heading, scale, command, date, tables, figures, data files.
fn entry(paper: &str, e: &Entry, page_dir: &Path) -> Result<String> {
    let mut title = format!("{} ({})", e.name, e.scale);
    let mut body = String::new();
    for (i, md) in e.markdown.iter().enumerate() {
        let text = std::fs::read_to_string(md)
            .with_context(|| format!("{}: cannot read", md.display()))?;
        let (heading, rest) = split_heading(&text);
        if let (0, Some(h)) = (i, heading) {
            // Marion's READMEs end their heading with `(M1, scale smoke)` already.
            title = match h.contains(&format!("scale {}", e.scale)) {
                true => h.to_string(),
                false => format!("{h} ({}, {})", e.name, e.scale),
            };
        }
        body += &markdown::to_html(if i == 0 { rest } else { &text }, 2);
    }
    let anchor = format!("{paper}-{}-{}", e.name, e.scale)
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-");
    let mut html = format!(
        "<article id=\"{anchor}\">\n<h3>{}</h3>\n\
         <p class=\"meta\">scale <strong>{}</strong>; made by \
         <code>{}</code>; date {}; in <code>{}</code></p>\n{body}",
        markdown::inline(&title),
        escape(&e.scale),
        escape(&e.command),
        e.modified.map(iso8601).unwrap_or_else(|| "unknown".into()),
        escape(&e.dir.display().to_string()),
    );
    for f in &e.figures {
        html += &figure(f)?;
    }
    if !e.data.is_empty() {
        let links: Vec<String> = e.data.iter().map(|d| link(d, page_dir)).collect();
        html += &format!("<p class=\"meta\">data: {}</p>\n", links.join(", "));
    }
    Ok(html + "</article>\n")
}

/// The first line's `#` heading, if any, and the text after it.
fn split_heading(text: &str) -> (Option<&str>, &str) {
    let t = text.trim_start();
    let (first, rest) = t.split_once('\n').unwrap_or((t, ""));
    match first.trim_start_matches('#') {
        h if h.len() < first.len() && h.starts_with(' ') => (Some(h.trim()), rest),
        _ => (None, text),
    }
}

/// A figure: an SVG inlined, or a PNG as a `data:` URI; captioned by its file name.
fn figure(path: &Path) -> Result<String> {
    let name = escape(&path.file_name().unwrap_or_default().to_string_lossy());
    let content = if path.extension().is_some_and(|x| x == "svg") {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        inline_svg(&text).with_context(|| {
            format!(
                "{}: not an SVG document (no <svg> element); rerun the target that writes it",
                path.display()
            )
        })?
    } else {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        format!(
            "<img alt=\"{name}\" src=\"data:image/png;base64,{}\">",
            base64(&bytes)
        )
    };
    Ok(format!(
        "<figure>\n{content}\n<figcaption>{name}</figcaption>\n</figure>\n"
    ))
}

/// The `<svg>…</svg>` element of an SVG document: the XML prolog, doctype and comments before
/// it are dropped. `None` when there is no `<svg` element.
pub fn inline_svg(doc: &str) -> Option<String> {
    let start = doc.find("<svg")?;
    let end = doc
        .rfind("</svg>")
        .map(|i| i + "</svg>".len())
        .unwrap_or(doc.len());
    (end > start).then(|| doc[start..end].to_string())
}

/// A link to `file` relative to the page's directory, or its path as text when it is not
/// under it.
fn link(file: &Path, page_dir: &Path) -> String {
    let name = escape(&file.file_name().unwrap_or_default().to_string_lossy());
    let rel = if page_dir.as_os_str().is_empty() {
        Some(file)
    } else {
        file.strip_prefix(page_dir).ok()
    };
    match rel {
        Some(r) => format!("<a href=\"{}\">{name}</a>", escape(&r.to_string_lossy())),
        None => format!("<code>{}</code>", escape(&file.display().to_string())),
    }
}

/// Standard base64 (RFC 4648, padded).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `t` as ISO 8601 UTC to the second: `2026-11-30T06:31:00Z`.
pub fn iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_base64_and_svg() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_020_260);
        assert_eq!(iso8601(t), "2026-11-30T06:31:00Z");
        assert_eq!(iso8601(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        let doc = "<?xml version=\"1.0\"?>\n<!DOCTYPE svg>\n<svg a=\"1\"><g/></svg>\n";
        assert_eq!(inline_svg(doc).unwrap(), "<svg a=\"1\"><g/></svg>");
    }
}
