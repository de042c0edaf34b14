// SPDX-License-Identifier: GPL-2.0

//! `lincell-vm bench`: benchmarks are scenarios (`bench/*.sh`, the same
//! `# lincell-vm:` directives as guest tests) whose guest script (and host
//! peer, if it has one) prints, besides its TAP, one result per line:
//!
//! ```text
//! ROW.COLUMN=VALUE            e.g. read.p50_us=256.3
//! GROUP.ROW.COLUMN=VALUE      e.g. run2.cpu1.noise_ms_per_s=527.1
//! ```
//!
//! (names of letters, digits, `_` and `-`; VALUE a number). The harness
//! prints each group as a table, rows by columns, and adds the ratios the
//! script's `ratio=NUM/DEN` directives ask for: within each group, a row
//! `NUM/DEN` holding NUM's value over DEN's for every column both have (the
//! baseline DEN is measured in the same run). Groups named alike but for a
//! trailing number (`run1`, `run2`, `run3`) are repetitions: their ratios'
//! medians are a last group, `median`. [`svg`] draws the same tables as
//! a bar chart, every ratio's baseline beside its numerator.

use std::fmt::Write as _;

/// One result line.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Group (empty if the key has two parts).
    pub group: String,
    /// Row.
    pub row: String,
    /// Column.
    pub column: String,
    /// The value as printed.
    pub text: String,
    /// The value.
    pub value: f64,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The result lines in a guest's output (other lines are ignored).
pub fn parse(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| {
            let (key, text) = line.trim().split_once('=')?;
            let value: f64 = text.parse().ok().filter(|v: &f64| v.is_finite())?;
            let parts: Vec<&str> = key.split('.').collect();
            if !parts.iter().all(|p| is_name(p)) {
                return None;
            }
            let (group, row, column) = match parts[..] {
                [row, column] => ("", row, column),
                [group, row, column] => (group, row, column),
                _ => return None,
            };
            Some(Value {
                group: group.into(),
                row: row.into(),
                column: column.into(),
                text: text.into(),
                value,
            })
        })
        .collect()
}

/// A table row: its name and `(column, text, value)` cells.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Row name (`NUM/DEN` for a ratio).
    pub name: String,
    /// Cells, in column order of first appearance.
    pub cells: Vec<(String, String, f64)>,
}

/// One table.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Its name (empty for a benchmark with one group).
    pub name: String,
    /// Its rows: measured, then ratios.
    pub rows: Vec<Row>,
}

/// A ratio as the tables show it: fewer decimals for larger ratios.
pub fn format_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

fn ratio_row(rows: &[Row], num: &str, den: &str) -> Option<Row> {
    let n = rows.iter().find(|r| r.name == num)?;
    let d = rows.iter().find(|r| r.name == den)?;
    let cells: Vec<_> = n
        .cells
        .iter()
        .filter_map(|(col, _, nv)| {
            let (_, _, dv) = d.cells.iter().find(|(c, _, _)| c == col)?;
            (*dv > 0.0).then(|| {
                let r = nv / dv;
                (col.clone(), format_ratio(r), r)
            })
        })
        .collect();
    Some(Row {
        name: format!("{num}/{den}"),
        cells,
    })
}

/// A group name without its trailing number, if it has one.
fn repetition_stem(name: &str) -> Option<&str> {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    (stem.len() < name.len() && !stem.is_empty()).then_some(stem)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    // The lower middle, as `sort -g | ... v[int((NR + 1) / 2)]` took it.
    v[(v.len() - 1) / 2]
}

/// The tables of one benchmark's results, with the ratios `ratios` asks
/// for and the medians of repeated groups.
pub fn tables(values: &[Value], ratios: &[(String, String)]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for v in values {
        let g = match groups.iter_mut().position(|g| g.name == v.group) {
            Some(i) => &mut groups[i],
            None => {
                groups.push(Group {
                    name: v.group.clone(),
                    rows: Vec::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        let r = match g.rows.iter_mut().position(|r| r.name == v.row) {
            Some(i) => &mut g.rows[i],
            None => {
                g.rows.push(Row {
                    name: v.row.clone(),
                    cells: Vec::new(),
                });
                g.rows.last_mut().expect("just pushed")
            }
        };
        r.cells.push((v.column.clone(), v.text.clone(), v.value));
    }
    for g in &mut groups {
        let extra: Vec<Row> = ratios
            .iter()
            .filter_map(|(n, d)| ratio_row(&g.rows, n, d))
            .collect();
        g.rows.extend(extra);
    }
    // Medians of each ratio cell over the groups of one stem.
    let mut medians = Vec::new();
    for (n, d) in ratios {
        let name = format!("{n}/{d}");
        let mut seen: Vec<&str> = Vec::new();
        for g in &groups {
            let Some(stem) = repetition_stem(&g.name) else {
                continue;
            };
            if seen.contains(&stem) {
                continue;
            }
            seen.push(stem);
            let reps: Vec<&Row> = groups
                .iter()
                .filter(|h| repetition_stem(&h.name) == Some(stem))
                .filter_map(|h| h.rows.iter().find(|r| r.name == name))
                .collect();
            if reps.len() < 2 {
                continue;
            }
            let cells = reps[0]
                .cells
                .iter()
                .map(|(col, _, _)| {
                    let m = median(
                        reps.iter()
                            .filter_map(|r| r.cells.iter().find(|(c, _, _)| c == col))
                            .map(|(_, _, v)| *v)
                            .collect(),
                    );
                    (col.clone(), format_ratio(m), m)
                })
                .collect();
            medians.push(Row {
                name: format!("{name} ({} × {stem})", reps.len()),
                cells,
            });
        }
    }
    if !medians.is_empty() {
        groups.push(Group {
            name: "median".into(),
            rows: medians,
        });
    }
    groups
}

/// The tables as text, one per group, columns aligned.
pub fn render(groups: &[Group]) -> String {
    let mut out = String::new();
    for g in groups {
        if !g.name.is_empty() {
            let _ = writeln!(out, "{}:", g.name);
        }
        let mut columns: Vec<&str> = Vec::new();
        for r in &g.rows {
            for (c, _, _) in &r.cells {
                if !columns.contains(&c.as_str()) {
                    columns.push(c);
                }
            }
        }
        let cell = |r: &Row, c: &str| {
            r.cells
                .iter()
                .find(|(col, _, _)| col == c)
                .map_or("-".to_string(), |(_, t, _)| t.clone())
        };
        let first = g
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0);
        let widths: Vec<usize> = columns
            .iter()
            .map(|c| {
                g.rows
                    .iter()
                    .map(|r| cell(r, c).len())
                    .chain([c.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let _ = write!(out, "  {:first$}", "");
        for (c, w) in columns.iter().zip(&widths) {
            let _ = write!(out, "  {c:>w$}");
        }
        out.push('\n');
        for r in &g.rows {
            let pad = first - r.name.chars().count();
            let _ = write!(out, "  {}{:pad$}", r.name, "");
            for (c, w) in columns.iter().zip(&widths) {
                let _ = write!(out, "  {:>w$}", cell(r, c));
            }
            out.push('\n');
        }
    }
    out
}

/// Every cell as a `KEY=VALUE` line (`BENCH.[GROUP.]ROW.COLUMN`), ratios and
/// medians included: the run's figures in one file.
pub fn key_values(bench: &str, groups: &[Group]) -> String {
    let mut out = String::new();
    for g in groups {
        for r in &g.rows {
            for (c, t, _) in &r.cells {
                let group = if g.name.is_empty() {
                    String::new()
                } else {
                    format!("{}.", g.name)
                };
                let _ = writeln!(out, "{bench}.{group}{}.{c}={t}", r.name);
            }
        }
    }
    out
}

/// `text` with XML's special characters escaped.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Bar colours, one per row of a chart, in the order the rows come.
const COLOURS: [&str; 6] = [
    "#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
];

/// One benchmark's figures as an SVG bar chart: for every group with
/// ratio rows, one block per column with a bar for each row a ratio
/// names (baselines and the project's figure side by side, in the order
/// the rows were measured), each bar labelled with its value, and the
/// block's ratios beside the column's name. Bars of a block share a scale
/// (the block's largest value); blocks do not, since their units differ.
/// A benchmark without ratios gets a bar per measured row.
pub fn svg(title: &str, groups: &[Group], ratios: &[(String, String)]) -> String {
    const WIDTH: f64 = 960.0;
    const LEFT: f64 = 20.0;
    const BAR_MAX: f64 = 760.0;
    const BAR_H: f64 = 14.0;
    const LINE: f64 = 18.0;
    let is_ratio = |r: &Row| r.name.contains('/');
    let charted: Vec<&Group> = {
        let with_ratios: Vec<&Group> = groups
            .iter()
            .filter(|g| g.name != "median" && g.rows.iter().any(is_ratio))
            .collect();
        if with_ratios.is_empty() {
            groups.iter().filter(|g| g.name != "median").collect()
        } else {
            with_ratios
        }
    };
    let named = |row: &str| ratios.iter().any(|(n, d)| n == row || d == row);
    // The rows of each block and every row name, for the legend.
    let mut legend: Vec<String> = Vec::new();
    let mut body = String::new();
    let mut y = 56.0;
    for g in &charted {
        let bars: Vec<&Row> = g
            .rows
            .iter()
            .filter(|r| !is_ratio(r) && (ratios.is_empty() || named(&r.name)))
            .collect();
        for r in &bars {
            if !legend.contains(&r.name) {
                legend.push(r.name.clone());
            }
        }
        if !g.name.is_empty() {
            y += LINE;
            let _ = writeln!(
                body,
                r#"<text x="{LEFT}" y="{y}" font-weight="bold">{}</text>"#,
                xml_escape(&g.name)
            );
        }
        let mut columns: Vec<&str> = Vec::new();
        for r in &bars {
            for (c, _, _) in &r.cells {
                if !columns.contains(&c.as_str()) {
                    columns.push(c);
                }
            }
        }
        for col in columns {
            let cells: Vec<(&Row, &str, f64)> = bars
                .iter()
                .filter_map(|r| {
                    let (_, t, v) = r.cells.iter().find(|(c, _, _)| c == col)?;
                    Some((*r, t.as_str(), *v))
                })
                .collect();
            let max = cells.iter().map(|c| c.2).fold(0.0, f64::max);
            let ratio_text: Vec<String> = g
                .rows
                .iter()
                .filter(|r| is_ratio(r))
                .filter_map(|r| {
                    let (_, t, _) = r.cells.iter().find(|(c, _, _)| c == col)?;
                    Some(format!("{} {t}", r.name))
                })
                .collect();
            y += LINE + 6.0;
            let _ = writeln!(
                body,
                r##"<text x="{LEFT}" y="{y}">{}<tspan fill="#555">{}</tspan></text>"##,
                xml_escape(col),
                xml_escape(&if ratio_text.is_empty() {
                    String::new()
                } else {
                    format!("   {}", ratio_text.join("   "))
                })
            );
            for (r, text, v) in cells {
                y += 4.0;
                let colour =
                    COLOURS[legend.iter().position(|n| *n == r.name).unwrap_or(0) % COLOURS.len()];
                let w = if max > 0.0 {
                    (v / max * BAR_MAX).max(1.0)
                } else {
                    1.0
                };
                let _ = writeln!(
                    body,
                    r#"<rect x="{LEFT}" y="{y:.1}" width="{w:.1}" height="{BAR_H}" fill="{colour}"><title>{} {}</title></rect>"#,
                    xml_escape(&r.name),
                    xml_escape(text)
                );
                let _ = writeln!(
                    body,
                    r#"<text x="{:.1}" y="{:.1}" font-size="11">{} {}</text>"#,
                    LEFT + w + 4.0,
                    y + BAR_H - 3.0,
                    xml_escape(text),
                    xml_escape(&r.name)
                );
                y += BAR_H;
            }
        }
    }
    let mut legend_svg = String::new();
    for (i, name) in legend.iter().enumerate() {
        // CAST: a handful of legend entries.
        let x = LEFT + 140.0 * i as f64;
        let _ = writeln!(
            legend_svg,
            r#"<rect x="{x}" y="34" width="12" height="12" fill="{}"/><text x="{}" y="45">{}</text>"#,
            COLOURS[i % COLOURS.len()],
            x + 16.0,
            xml_escape(name)
        );
    }
    let height = y + 20.0;
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "\n",
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h:.0}" viewBox="0 0 {w} {h:.0}" font-family="sans-serif" font-size="13">"#,
            "\n",
            r#"<rect width="100%" height="100%" fill="white"/>"#,
            "\n",
            r#"<text x="{l}" y="22" font-size="16" font-weight="bold">{t}</text>"#,
            "\n{legend}{body}</svg>\n"
        ),
        w = WIDTH,
        h = height,
        l = LEFT,
        t = xml_escape(title),
        legend = legend_svg,
        body = body
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_among_other_output() {
        let v = parse(
            "TAP version 13\n1..1\nread.p50_us=256.3\nok 1 - x\nrun2.cpu1.irqs=712\n\
             no.value=abc\na=1\nx.y.z.w=1\nbad key.c=1\n spin.max_us=62848.4 \n",
        );
        let keys: Vec<_> = v
            .iter()
            .map(|v| (v.group.as_str(), v.row.as_str(), v.column.as_str(), v.value))
            .collect();
        assert_eq!(
            keys,
            [
                ("", "read", "p50_us", 256.3),
                ("run2", "cpu1", "irqs", 712.0),
                ("", "spin", "max_us", 62848.4)
            ]
        );
    }

    #[test]
    fn ratios_against_the_baseline_row() {
        let v = parse(
            "read.p50_us=256.3\nread.p99_us=3370.4\nread.lost=0\n\
             spin.p50_us=0.6\nspin.p99_us=360.3\nspin.lost=0\n",
        );
        let g = tables(&v, &[("read".into(), "spin".into())]);
        assert_eq!(g.len(), 1);
        let r = &g[0].rows[2];
        assert_eq!(r.name, "read/spin");
        // lost/lost is 0/0: no ratio.
        let cells: Vec<_> = r
            .cells
            .iter()
            .map(|(c, t, _)| (c.as_str(), t.as_str()))
            .collect();
        assert_eq!(cells, [("p50_us", "427"), ("p99_us", "9.35")]);
        let text = render(&g);
        assert!(text.contains("read/spin"), "{text}");
        assert!(text.lines().nth(3).unwrap().ends_with('-'), "{text}");
        assert!(
            key_values("ivshmem-doorbell", &g).contains("ivshmem-doorbell.read/spin.p50_us=427\n")
        );
    }

    #[test]
    fn medians_over_repeated_groups_only() {
        let mut text = String::from("control.cpu0.noise=700\ncontrol.cpu1.noise=750\n");
        for (i, iso) in [(1, 350.0), (2, 500.0), (3, 70.0)] {
            text.push_str(&format!("run{i}.cpu0.noise=700\nrun{i}.cpu1.noise={iso}\n"));
        }
        let g = tables(&parse(&text), &[("cpu0".into(), "cpu1".into())]);
        let names: Vec<_> = g.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["control", "run1", "run2", "run3", "median"]);
        let m = &g[4].rows[0];
        assert_eq!(m.name, "cpu0/cpu1 (3 × run)");
        // 700/350 = 2, 700/500 = 1.4, 700/70 = 10: the median is 2.
        assert_eq!(m.cells[0].1, "2.00");
        // Two values: the lower one.
        assert_eq!(median(vec![3.0, 1.0]), 1.0);
    }

    #[test]
    fn ratio_formats() {
        assert_eq!(format_ratio(427.2), "427");
        assert_eq!(format_ratio(22.24), "22.2");
        assert_eq!(format_ratio(0.834), "0.83");
    }

    /// A small XML well-formedness check: tags nest and close, attribute
    /// values are quoted, text has no bare `<` or `&`.
    fn well_formed(xml: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = xml;
        let mut root_closed = false;
        while let Some(i) = rest.find('<') {
            let text = &rest[..i];
            for (j, _) in text.match_indices('&') {
                let ent = &text[j..];
                if !["&amp;", "&lt;", "&gt;", "&quot;"]
                    .iter()
                    .any(|e| ent.starts_with(e))
                {
                    return Err(format!("bare & in {text:?}"));
                }
            }
            let end = rest[i..].find('>').ok_or("unclosed tag")? + i;
            let tag = &rest[i + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') {
                continue;
            }
            if root_closed {
                return Err(format!("<{tag}> after the root element"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
                if open != name {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
                root_closed = stack.is_empty();
                continue;
            }
            if tag.matches('"').count() % 2 != 0 || tag.contains('<') {
                return Err(format!("bad attributes in <{tag}>"));
            }
            let name = tag.split_whitespace().next().ok_or("empty tag")?;
            if !tag.ends_with('/') {
                stack.push(name.trim_end_matches('/').to_string());
            }
        }
        if !stack.is_empty() || !root_closed {
            return Err(format!("unclosed: {stack:?}"));
        }
        Ok(())
    }

    #[test]
    fn svg_chart_is_well_formed_and_holds_the_figures() {
        let v = parse(
            "native.seq-read-1m-qd1-j1_mb_per_s=1444.7\nnative.randread-4k-qd1-j1_iops=2567\n\
             remote.seq-read-1m-qd1-j1_mb_per_s=336.9\nremote.randread-4k-qd1-j1_iops=2124\n\
             floor.seq-read-1m-qd1-j1_mb_per_s=900.5\nfloor.randread-4k-qd1-j1_iops=50000\n\
             copy.libc.to_shm_1m_mb_per_s=900.5\n",
        );
        let ratios = [
            ("remote".to_string(), "native".to_string()),
            ("remote".to_string(), "floor".to_string()),
        ];
        let g = tables(&v, &ratios);
        let svg = svg("vdev-blk <&> \"fio\"", &g, &ratios);
        well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        for want in [
            "1444.7",
            "336.9",
            "900.5",
            "2567",
            "2124",
            "remote/native 0.23",
            "remote/native 0.83",
            "remote/floor 0.37",
            "seq-read-1m-qd1-j1_mb_per_s",
            "randread-4k-qd1-j1_iops",
            "vdev-blk &lt;&amp;&gt; &quot;fio&quot;",
        ] {
            assert!(svg.contains(want), "{want} missing:\n{svg}");
        }
        // One bar per row and column (3 × 2), plus the legend's 3 and the background.
        assert_eq!(svg.matches("<rect").count(), 6 + 3 + 1, "{svg}");
        // The copy group has no ratio: not charted.
        assert!(!svg.contains("to_shm"), "{svg}");
        // The baseline's bar is the longest of its block: full width.
        assert!(
            svg.contains(r##"width="760.0" height="14" fill="#7f7f7f"><title>native 1444.7"##),
            "{svg}"
        );
    }

    #[test]
    fn svg_without_ratios_charts_every_row() {
        let g = tables(&parse("run1.cpu0.noise=700\nrun1.cpu1.noise=350\n"), &[]);
        let svg = svg("noise", &g, &[]);
        well_formed(&svg).unwrap();
        assert!(
            svg.contains("700 cpu0") && svg.contains("350 cpu1"),
            "{svg}"
        );
        assert!(svg.contains(">run1</text>"), "{svg}");
    }

    #[test]
    fn the_checker_refuses_broken_xml() {
        assert!(well_formed("<svg><rect></svg>").is_err());
        assert!(well_formed("<svg>a & b</svg>").is_err());
        assert!(well_formed("<svg><text x=\"1>a</text></svg>").is_err());
        assert!(well_formed("<svg></svg><svg></svg>").is_err());
        assert!(well_formed("<?xml version=\"1.0\"?>\n<svg><rect/></svg>\n").is_ok());
    }
}
