//! The Markdown our reports write, as HTML: `#` headings, pipe tables (with the `:---` /
//! `---:` alignment row), `- ` lists, fenced code blocks and paragraphs; inline `**bold**`,
//! `*emphasis*` and `` `code` ``. Everything else is text, escaped. Not a general Markdown
//! parser: the subset of [`crate::report::table::Table::to_markdown`] and the papers' READMEs.

/// `s` with `&`, `<`, `>` and `"` escaped for HTML text and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// One line's inline Markdown as HTML: `**bold**`, `*emphasis*`, `` `code` `` and `\|`.
pub fn inline(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(body) = rest.strip_prefix('`') {
            if let Some(end) = body.find('`') {
                out += &format!("<code>{}</code>", escape(&body[..end]));
                rest = &body[end + 1..];
                continue;
            }
        }
        if let Some(body) = rest.strip_prefix("**") {
            if let Some(end) = body.find("**").filter(|&e| e > 0) {
                out += &format!("<strong>{}</strong>", inline(&body[..end]));
                rest = &body[end + 2..];
                continue;
            }
        }
        if let Some(body) = rest.strip_prefix('*') {
            if let Some(end) = body.find('*').filter(|&e| e > 0 && !body.starts_with(' ')) {
                out += &format!("<em>{}</em>", inline(&body[..end]));
                rest = &body[end + 1..];
                continue;
            }
        }
        if let Some(r) = rest.strip_prefix("\\|") {
            out.push('|');
            rest = r;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        out += &escape(&c.to_string());
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The cells of a table line `| a | b \| c |` (escaped pipes stay in their cell).
fn cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = if t.ends_with('|') && !t.ends_with("\\|") {
        &t[..t.len() - 1]
    } else {
        t
    };
    let mut out = vec![String::new()];
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                out.last_mut().unwrap().push_str("\\|");
            }
            '|' => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

/// `Some(alignments)` when `line` is a table's delimiter row (`|:---|---:|`).
fn delimiter_row(line: &str) -> Option<Vec<&'static str>> {
    if !line.trim_start().starts_with('|') {
        return None;
    }
    cells(line)
        .iter()
        .map(|c| {
            let dashes = c.trim_matches(':');
            if dashes.is_empty() || !dashes.chars().all(|ch| ch == '-') {
                return None;
            }
            Some(match (c.starts_with(':'), c.ends_with(':')) {
                (false, true) => "right",
                (true, true) => "center",
                _ => "left",
            })
        })
        .collect()
}

/// A pipe table (header line, delimiter row, body lines) as an HTML table.
fn table(header: &str, align: &[&str], body: &[&str]) -> String {
    let row = |line: &str, tag: &str| {
        let mut s = String::from("<tr>");
        for (j, c) in cells(line).iter().enumerate() {
            let a = align.get(j).copied().unwrap_or("left");
            s += &format!("<{tag} style=\"text-align:{a}\">{}</{tag}>", inline(c));
        }
        s + "</tr>\n"
    };
    let mut out = format!("<table>\n<thead>{}</thead>\n<tbody>\n", row(header, "th"));
    for line in body {
        out += &row(line, "td");
    }
    out + "</tbody>\n</table>\n"
}

/// A Markdown document (the subset above) as an HTML fragment; headings are shifted down by
/// `shift` levels (at most `<h6>`), so that a README's `#` sits under the page's own headings.
pub fn to_html(md: &str, shift: usize) -> String {
    let lines: Vec<&str> = md.lines().collect();
    let mut out = String::new();
    let mut para: Vec<&str> = Vec::new();
    let flush = |para: &mut Vec<&str>, out: &mut String| {
        if !para.is_empty() {
            let text: Vec<String> = para.iter().map(|l| inline(l.trim())).collect();
            *out += &format!("<p>{}</p>\n", text.join("<br>\n"));
            para.clear();
        }
    };
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if t.is_empty() {
            flush(&mut para, &mut out);
            i += 1;
        } else if t.starts_with("```") {
            flush(&mut para, &mut out);
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim_start().starts_with("```"))
                .unwrap_or(lines.len());
            let code: Vec<String> = lines[i + 1..end].iter().map(|l| escape(l)).collect();
            out += &format!("<pre><code>{}</code></pre>\n", code.join("\n"));
            i = end + 1;
        } else if let Some(level) = heading_level(t) {
            flush(&mut para, &mut out);
            let h = (level + shift).min(6);
            out += &format!("<h{h}>{}</h{h}>\n", inline(t[level..].trim()));
            i += 1;
        } else if let Some(align) = lines.get(i + 1).and_then(|l| delimiter_row(l)) {
            flush(&mut para, &mut out);
            let end = (i + 2..lines.len())
                .find(|&j| !lines[j].trim_start().starts_with('|'))
                .unwrap_or(lines.len());
            out += &table(line, &align, &lines[i + 2..end]);
            i = end;
        } else if t.starts_with("- ") {
            flush(&mut para, &mut out);
            out += "<ul>\n";
            while i < lines.len() && lines[i].trim_start().starts_with("- ") {
                out += &format!("<li>{}</li>\n", inline(&lines[i].trim_start()[2..]));
                i += 1;
            }
            out += "</ul>\n";
        } else {
            para.push(line);
            i += 1;
        }
    }
    flush(&mut para, &mut out);
    out
}

/// The level of a `# heading` line (1 to 6), or `None`.
fn heading_level(t: &str) -> Option<usize> {
    let n = t.chars().take_while(|&c| c == '#').count();
    ((1..=6).contains(&n) && t[n..].starts_with(' ')).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_headings_lists_and_inline() {
        let md = "# Title\n\n**Table A**\n\n| depth | err |\n|:------|----:|\n\
                  | 20 | 8.1 \\| 2 |\n\n- a `x<y`\n- b\n";
        let html = to_html(md, 1);
        assert!(html.contains("<h2>Title</h2>"), "{html}");
        assert!(html.contains("<p><strong>Table A</strong></p>"), "{html}");
        assert!(
            html.contains("<th style=\"text-align:left\">depth</th>"),
            "{html}"
        );
        assert!(
            html.contains("<td style=\"text-align:right\">8.1 | 2</td>"),
            "{html}"
        );
        assert!(html.contains("<li>a <code>x&lt;y</code></li>"), "{html}");
    }
}
