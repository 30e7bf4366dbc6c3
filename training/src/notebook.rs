//! Notebooks-as-code: the runtime behind `training/notebooks/*.rs`.
//!
//! A notebook is Rust source in jupytext's percent format: `// %% [markdown]` cells (comment
//! lines holding Markdown) and `// %%` code cells (top-level statements). The same file is
//!
//! - run headless as a cargo example (`cargo run --release -p churn-training --example
//!   01_explore`): `build.rs` wraps its statements in a `main`, keeping line numbers;
//! - converted to a Jupyter notebook for the evcxr kernel with `jupytext --to ipynb`
//!   (README, "Notebooks").
//!
//! A run writes one self-contained HTML report, `<reports>/<name>.html`: every Markdown cell
//! rendered, every code cell folded under its outputs. Outputs (charts, tables, text) are
//! placed under the code cell that produced them: the output calls are `#[track_caller]`, so
//! the source line of the call says which cell it is in — no cell markers in the code. Where
//! the line is unknown (in Jupyter, the kernel shows outputs itself), outputs go last.
//!
//! Reports go to `CHURN_REPORTS_DIR`, default `out/notebooks/` at the workspace root
//! (git-ignored; outside `training/notebooks/` so that writing a report never re-runs the build
//! script).

use std::fmt::Write as _;
use std::panic::Location;
use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;

use crate::report::{self, Series};

/// Environment variable naming the reports folder.
pub const REPORTS_VARIABLE: &str = "CHURN_REPORTS_DIR";

/// Folder holding the notebooks' sources.
pub const NOTEBOOKS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/notebooks");

#[derive(Debug, Clone, PartialEq)]
pub enum CellKind {
    Markdown,
    Code,
}

/// One cell of a percent-format source: its kind, first and last line (1-based), and text
/// (Markdown without the comment markers, or code).
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub kind: CellKind,
    pub first_line: u32,
    pub last_line: u32,
    pub text: String,
}

/// Splits a percent-format source into cells. Lines before the first marker form a code cell
/// when they hold anything but blank lines and comments.
pub fn parse_cells(source: &str) -> Vec<Cell> {
    let mut cells: Vec<Cell> = Vec::new();
    let mut current: Option<Cell> = None;
    for (i, line) in source.lines().enumerate() {
        let n = i as u32 + 1;
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("// %%") {
            cells.extend(current.take());
            let kind = if rest.trim_start().starts_with("[markdown]") { CellKind::Markdown } else { CellKind::Code };
            current = Some(Cell { kind, first_line: n, last_line: n, text: String::new() });
            continue;
        }
        let cell = current.get_or_insert_with(|| Cell { kind: CellKind::Code, first_line: n, last_line: n, text: String::new() });
        cell.last_line = n;
        match cell.kind {
            CellKind::Markdown => {
                let md = t.strip_prefix("//").map(|r| r.strip_prefix(' ').unwrap_or(r)).unwrap_or(t);
                cell.text.push_str(md);
            }
            CellKind::Code => cell.text.push_str(line),
        }
        cell.text.push('\n');
    }
    cells.extend(current);
    cells.retain(|c| match c.kind {
        CellKind::Markdown => true,
        CellKind::Code => c.text.lines().any(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with("//")
        }),
    });
    for c in &mut cells {
        c.text = c.text.trim_end().to_string();
    }
    cells
}

enum Output {
    Html(String),
}

/// A running notebook: collects outputs, then writes the report.
pub struct Notebook {
    name: String,
    cells: Vec<Cell>,
    outputs: Vec<(Option<u32>, Output)>,
    reports: PathBuf,
}

impl Notebook {
    /// Starts notebook `name` (its source is `notebooks/<name>.rs`).
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let path = Path::new(NOTEBOOKS_DIR).join(format!("{name}.rs"));
        let source = std::fs::read_to_string(&path).with_context(|| format!("reading the notebook source {}", path.display()))?;
        let reports = std::env::var_os(REPORTS_VARIABLE)
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../out/notebooks"));
        std::fs::create_dir_all(&reports)
            .with_context(|| format!("creating the reports folder {} ({REPORTS_VARIABLE})", reports.display()))?;
        Ok(Notebook { name: name.to_string(), cells: parse_cells(&source), outputs: Vec::new(), reports })
    }

    /// The reports folder (where the notebooks also keep the model they share).
    pub fn reports_dir(&self) -> &Path {
        &self.reports
    }

    fn push(&mut self, at: &Location<'_>, html: String) {
        // Lines only mean something when the call comes from this notebook's source (the
        // cargo example); from a Jupyter kernel they do not.
        let file = Path::new(at.file()).file_stem().map(|s| s.to_string_lossy().to_string());
        let line = (file.as_deref() == Some(self.name.as_str())).then(|| at.line());
        self.outputs.push((line, Output::Html(html)));
    }

    /// An SVG chart (from [`report::line_chart`], [`bar_chart`], …).
    #[track_caller]
    pub fn chart(&mut self, svg: String) {
        self.push(Location::caller(), format!("<div class=\"chart\">{svg}</div>"));
    }

    /// Several charts side by side.
    #[track_caller]
    pub fn charts(&mut self, svgs: Vec<String>) {
        let inner: String = svgs.into_iter().collect();
        self.push(Location::caller(), format!("<div class=\"charts\">{inner}</div>"));
    }

    /// A table with a header row.
    #[track_caller]
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        let mut h = String::from("<table><tr>");
        for c in header {
            let _ = write!(h, "<th>{}</th>", report::escape(c));
        }
        h.push_str("</tr>");
        for r in rows {
            h.push_str("<tr>");
            for c in r {
                let _ = write!(h, "<td>{}</td>", report::escape(c));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        self.push(Location::caller(), h);
    }

    /// Preformatted text (also printed, as a notebook would show it).
    #[track_caller]
    pub fn text(&mut self, text: impl AsRef<str>) {
        println!("{}", text.as_ref());
        self.push(Location::caller(), format!("<pre class=\"out\">{}</pre>", report::escape(text.as_ref())));
    }

    /// Writes the report; returns its path.
    pub fn finish(self) -> anyhow::Result<PathBuf> {
        let mut body = String::new();
        let mut placed = vec![false; self.outputs.len()];
        for cell in &self.cells {
            match cell.kind {
                CellKind::Markdown => {
                    let mut html = String::new();
                    pulldown_cmark::html::push_html(&mut html, pulldown_cmark::Parser::new(&cell.text));
                    body.push_str(&html);
                }
                CellKind::Code => {
                    let _ =
                        write!(body, "<details class=\"code\"><summary>code</summary><pre>{}</pre></details>", report::escape(&cell.text));
                    for (i, (line, Output::Html(h))) in self.outputs.iter().enumerate() {
                        if line.is_some_and(|l| (cell.first_line..=cell.last_line).contains(&l)) {
                            body.push_str(h);
                            placed[i] = true;
                        }
                    }
                }
            }
        }
        for (i, (_, Output::Html(h))) in self.outputs.iter().enumerate() {
            if !placed[i] {
                body.push_str(h);
            }
        }
        let path = self.reports.join(format!("{}.html", self.name));
        let page = report::page(&format!("Notebook {}", self.name), &format!("{}{body}", style()));
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
        Ok(path)
    }
}

fn style() -> &'static str {
    "<style>details.code{margin:.5em 0;color:#555}details.code pre{background:#f7f7f7;padding:8px;overflow-x:auto}\
     pre.out{background:#fffbea;padding:8px}.chart{margin:8px 0}</style>"
}

/// The model the notebooks share: `<reports>/model`, written by `02_train`; trained here (same
/// configuration and seed, so the same model) when a later notebook runs first.
pub fn shared_model(nb: &Notebook) -> anyhow::Result<churn_core::Bundle> {
    let dir = nb.reports_dir().join("model");
    if !dir.join(churn_core::bundle::MANIFEST).exists() {
        let config = crate::params::TrainConfig::load(Path::new(crate::BUNDLED_CONFIG))?;
        crate::pipeline::run(crate::pipeline::TrainJob {
            data: crate::BUNDLED_DATA.into(),
            config,
            out: Some(dir.clone()),
            force: true,
            on_epoch: Box::new(|_| {}),
        })?;
    }
    Ok(churn_core::Bundle::load_dir(&dir)?)
}

/// The shared model's held-out test rows.
pub struct TestSplit {
    pub table: churn_core::table::Table,
    /// 0-based rows of the table.
    pub rows: Vec<usize>,
    /// Labels, in `rows` order.
    pub y: Vec<bool>,
    /// Feature vectors (row-major), in `rows` order.
    pub x: Vec<f32>,
}

/// The bundled table and the shared model's held-out test rows, featurised by its spec.
pub fn test_split(nb: &Notebook, bundle: &churn_core::Bundle) -> anyhow::Result<TestSplit> {
    let split: crate::data::Split = serde_json::from_slice(
        &std::fs::read(nb.reports_dir().join("model/split.json")).context("reading the shared model's split.json")?,
    )?;
    let table = churn_core::table::Table::read(Path::new(crate::BUNDLED_DATA))?;
    let all = crate::data::labels(&table, &bundle.spec.target_column, &bundle.spec.positive_label)?;
    let m = crate::data::featurise(&table, &bundle.spec, &split.test, &all)?;
    Ok(TestSplit { table, rows: split.test, y: m.y, x: m.x })
}

/// A horizontal bar chart: one bar per (label, value), top to bottom in the given order, with
/// an optional vertical reference line (a threshold).
pub fn bar_chart(title: &str, x_label: &str, bars: &[(String, f64)], reference: Option<(&str, f64)>) -> String {
    let n = bars.len().max(1);
    let height = (80 + 34 * n) as u32;
    let lo = bars.iter().map(|b| b.1).fold(0.0f64, f64::min);
    let mut hi = bars.iter().map(|b| b.1).chain(reference.map(|r| r.1)).fold(0.0f64, f64::max);
    if hi - lo < 1e-12 {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.05;
    let x0 = if lo < 0.0 { lo - pad } else { 0.0 };
    report::svg_chart(title, (560, height), |root| {
        // Bar i (from the top) sits at y = n - 1 - i; its label is written just above it,
        // inside the plot, which keeps long labels readable without a wide label margin.
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(10)
            .build_cartesian_2d(x0..(hi + pad), -0.6f64..(n as f64 - 0.1))?;
        chart.configure_mesh().disable_y_mesh().disable_y_axis().x_desc(x_label).light_line_style(WHITE.mix(0.0)).draw()?;
        for (i, (name, v)) in bars.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let color = if *v >= 0.0 { BLUE.mix(0.55) } else { RED.mix(0.55) };
            chart.draw_series(std::iter::once(Rectangle::new([(0.0, y - 0.45), (*v, y - 0.05)], color.filled())))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{name}: {}", crate::report::short_number(*v)),
                (x0, y + 0.32),
                ("sans-serif", 12).into_font(),
            )))?;
        }
        if let Some((name, x)) = reference {
            let style = BLACK.stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new([(x, -0.6), (x, n as f64 - 0.1)], 6, 4, style))?
                .label(format!("{name} {}", crate::report::short_number(x)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })
}

/// A line chart (re-exported for notebooks).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>]) -> String {
    report::line_chart(title, x_label, y_label, series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_split_by_percent_markers() {
        let src = "//! doc\n// %% [markdown]\n// # Title\n//\n// Some *text*.\n\n// %%\nlet x = 1;\n\n// %%\n// only a comment\n// %% [markdown]\n// end\n";
        let cells = parse_cells(src);
        assert_eq!(cells.len(), 3, "{cells:?}");
        assert_eq!(cells[0].kind, CellKind::Markdown);
        assert_eq!(cells[0].text, "# Title\n\nSome *text*.");
        assert_eq!((cells[1].kind.clone(), cells[1].first_line, cells[1].text.as_str()), (CellKind::Code, 7, "let x = 1;"));
        assert_eq!(cells[2].text, "end");
    }

    #[test]
    fn bar_chart_is_svg_with_labels() {
        let svg = bar_chart("PSI", "psi", &[("contract".into(), 0.5), ("tenure".into(), -0.01)], Some(("threshold", 0.2)));
        assert!(svg.starts_with("<svg") && svg.contains("contract") && svg.contains("tenure") && svg.contains("threshold"));
    }
}
