//! `report.html`: a self-contained page (inline SVG charts drawn with plotters) describing one
//! trained model: test metrics, business view per tier, and the charts a data scientist checks
//! first (ROC, precision–recall, calibration, cumulative gains, profit versus threshold, training
//! curves). The notebooks reuse [`line_chart`] for their own figures.

use churn_core::Playbook;
use churn_core::metrics::{self, Evaluation};
use plotters::prelude::*;

use crate::train::EpochRecord;

/// One named series of (x, y) points.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

impl<'a> Series<'a> {
    pub fn line(name: &'a str, points: Vec<(f64, f64)>) -> Self {
        Series { name, points, dashed: false }
    }
    pub fn reference(name: &'a str, points: Vec<(f64, f64)>) -> Self {
        Series { name, points, dashed: true }
    }
}

/// An SVG chart of `size` pixels on a white background, drawn by `draw`. A drawing error is
/// logged (naming the chart) and leaves what was drawn: a report is never lost to one chart.
pub fn svg_chart(
    title: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), Box<dyn std::error::Error>>,
) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let drawn = root.fill(&WHITE).map_err(Into::into).and_then(|()| draw(&root)).and_then(|()| root.present().map_err(Into::into));
        if let Err(e) = drawn {
            tracing::warn!("chart {title:?} could not be drawn: {e}");
        }
    }
    svg
}

/// An SVG line chart; axis ranges cover every series.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>]) -> String {
    let bounds = |f: fn(&(f64, f64)) -> f64| {
        let vals = series.iter().flat_map(|s| s.points.iter().map(f));
        let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi - lo < 1e-9 {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo, hi + (hi - lo) * 0.02)
        }
    };
    let (x0, x1) = bounds(|p| p.0);
    let (y0, y1) = bounds(|p| p.1);
    svg_chart(title, (520, 360), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).light_line_style(WHITE.mix(0.0)).draw()?;
        let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
        for (i, s) in series.iter().enumerate() {
            let color = if s.dashed { BLACK.mix(0.5) } else { colors[i % colors.len()].mix(1.0) };
            let style = color.stroke_width(2);
            if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, style))?
                    .label(s.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            } else {
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), style))?
                    .label(s.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            }
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        Ok(())
    })
}

/// A number for a chart label: three significant digits, no exponent for everyday values.
pub fn short_number(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a >= 0.001 {
        format!("{x:.3}")
    } else {
        format!("{x:.1e}")
    }
}

/// `s` as HTML text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A two-column HTML table of figures.
pub fn figure_table(rows: &[(&str, String)]) -> String {
    let mut h = String::from("<table>");
    for (k, v) in rows {
        h.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v)));
    }
    h.push_str("</table>");
    h
}

/// Wraps sections into a standalone page.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}th,td{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th{{background:#f4f4f4;text-align:left}}.charts{{display:flex;flex-wrap:wrap;gap:8px}}\
         </style></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    )
}

/// What the model report needs.
pub struct ReportInput<'a> {
    pub title: String,
    pub summary: Vec<(&'a str, String)>,
    pub test: &'a Evaluation,
    pub test_p: &'a [f32],
    pub test_y: &'a [bool],
    pub history: &'a [EpochRecord],
    pub playbook: &'a Playbook,
    pub threshold: f64,
    /// Personalised offers picked for the contacted test customers.
    pub offers: &'a [crate::explanations::OfferCount],
}

/// The reliability diagram (10 bins) with the band a perfectly calibrated model would stay in
/// on these rows 90 % of the time (5th to 95th percentile per bin, [`metrics::calibration_noise`]).
pub fn calibration_chart(p: &[f32], y: &[bool]) -> String {
    let observed =
        metrics::calibration_bins(p, y, 10).iter().filter(|b| b.count > 0).map(|b| (b.mean_predicted, b.fraction_positive)).collect();
    let noise = metrics::calibration_noise(p);
    let band = |pick: fn(&(f64, f64, f64)) -> f64| noise.bands.iter().map(|b| (b.0, pick(b))).collect::<Vec<_>>();
    line_chart(
        "Calibration (10 bins)",
        "mean predicted",
        "observed churn rate",
        &[
            Series::line("model", observed),
            Series::reference("perfect", vec![(0.0, 0.0), (1.0, 1.0)]),
            Series::reference("5 % if calibrated", band(|b| b.1)),
            Series::reference("95 % if calibrated", band(|b| b.2)),
        ],
    )
}

pub fn model_report(r: &ReportInput<'_>) -> String {
    let e = r.test;
    let mut body = String::new();
    body.push_str("<h2>Run</h2>");
    body.push_str(&figure_table(&r.summary));
    body.push_str("<h2>Held-out test figures</h2>");
    let f = |x: f64| format!("{x:.4}");
    body.push_str(&figure_table(&[
        ("rows / churners", format!("{} / {} ({:.1} %)", e.rows, e.positives, 100.0 * e.base_rate)),
        ("ROC AUC", f(e.roc_auc)),
        ("PR AUC (average precision)", f(e.pr_auc)),
        ("log loss", f(e.log_loss)),
        ("Brier score", f(e.brier)),
        (
            "expected calibration error",
            format!(
                "{} (a perfectly calibrated model shows {} on these rows by sampling noise, 90 % of the time ≤ {})",
                f(e.ece),
                f(e.ece_floor),
                f(e.ece_floor_p90)
            ),
        ),
        ("top-decile lift / capture", format!("{:.2} / {:.1} %", e.top_decile_lift, 100.0 * e.top_decile_capture)),
        (
            "at chosen threshold",
            format!(
                "t={:.2}: precision {:.3}, recall {:.3}, F1 {:.3}, accuracy {:.3}",
                r.threshold, e.at_threshold.precision, e.at_threshold.recall, e.at_threshold.f1, e.at_threshold.accuracy
            ),
        ),
        (
            "at 0.5",
            format!(
                "precision {:.3}, recall {:.3}, F1 {:.3}, accuracy {:.3}",
                e.at_half.precision, e.at_half.recall, e.at_half.f1, e.at_half.accuracy
            ),
        ),
        ("campaign profit at chosen threshold", format!("{:.0}", e.profit_at_threshold)),
        ("best threshold on this data (profit)", format!("{:.2} ({:.0})", e.best_profit_threshold, e.best_profit)),
    ]));
    body.push_str("<h2>Business view per risk tier (test rows)</h2><table><tr><th>tier</th><th>action</th><th>customers</th><th>churners</th><th>churn rate</th><th>expected profit</th><th>realised profit</th><th>ROI</th></tr>");
    for t in &e.tiers {
        body.push_str(&format!(
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{:.1} %</td><td>{:.0}</td><td>{:.0}</td><td>{:.2}</td></tr>",
            escape(&t.tier),
            escape(&t.action),
            t.customers,
            t.churners,
            100.0 * t.churn_rate,
            t.expected_profit,
            t.realised_profit,
            t.roi
        ));
    }
    let b = &r.playbook.business;
    body.push_str(&format!(
        "</table><p>Value per retained customer {}, cost per contact {}, success rate {:.0} %.</p>",
        b.value_per_retained_customer,
        b.cost_per_contact,
        100.0 * b.success_rate
    ));
    body.push_str(&offers_section(r.playbook, r.offers));
    let (p, y) = (r.test_p, r.test_y);
    let diag = vec![(0.0, 0.0), (1.0, 1.0)];
    let epochs = |f: fn(&EpochRecord) -> f64| r.history.iter().map(|h| (h.epoch as f64, f(h))).collect::<Vec<_>>();
    let charts = [
        line_chart(
            "ROC",
            "false positive rate",
            "true positive rate",
            &[Series::line("model", metrics::roc_curve(p, y)), Series::reference("chance", diag.clone())],
        ),
        line_chart(
            "Precision-recall",
            "recall",
            "precision",
            &[Series::line("model", metrics::pr_curve(p, y)), Series::reference("base rate", vec![(0.0, e.base_rate), (1.0, e.base_rate)])],
        ),
        calibration_chart(p, y),
        line_chart(
            "Cumulative gains",
            "share of customers contacted",
            "share of churners reached",
            &[Series::line("model", metrics::gains(p, y)), Series::reference("random", diag)],
        ),
        line_chart(
            "Campaign profit vs threshold",
            "threshold",
            "profit",
            &[Series::line("realised profit", metrics::profit_curve(p, y, r.playbook))],
        ),
        line_chart(
            "Training curves",
            "epoch",
            "loss",
            &[Series::line("train loss", epochs(|h| h.train_loss)), Series::line("validation loss", epochs(|h| h.validation_loss))],
        ),
        line_chart("Validation ROC AUC", "epoch", "AUC", &[Series::line("validation AUC", epochs(|h| h.validation_auc))]),
    ];
    body.push_str("<h2>Charts (test rows)</h2><div class=\"charts\">");
    for c in charts {
        body.push_str(&c);
    }
    body.push_str("</div>");
    page(&r.title, &body)
}

/// The playbook's personalised offers and how many contacted test customers get each.
pub fn offers_section(playbook: &Playbook, mix: &[crate::explanations::OfferCount]) -> String {
    if playbook.offers.is_empty() {
        return "<h2>Personalised offers</h2><p>The playbook defines no offers: every contacted customer gets the tier's action.</p>"
            .into();
    }
    let b = &playbook.business;
    let mut h = String::from(
        "<h2>Personalised offers</h2><p>A contacted customer gets the first offer, going down their reasons \
         (Shapley values, largest first), that addresses that reason's field.</p>\
         <table><tr><th>offer</th><th>field</th><th>condition</th><th>action</th><th>cost</th><th>success rate</th>\
         <th>test customers</th><th>expected profit</th></tr>",
    );
    for c in mix {
        let o = playbook.offers.iter().find(|o| o.name == c.offer);
        let condition = o.map(|o| {
            if !o.values.is_empty() {
                format!("in {}", o.values.join(" | "))
            } else {
                [o.above.map(|a| format!("> {a}")), o.below.map(|b| format!("< {b}"))]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" and ")
            }
        });
        h.push_str(&format!(
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0} %</td><td>{}</td><td>{:.0}</td></tr>",
            escape(&c.offer),
            escape(o.map(|o| o.field.as_str()).unwrap_or("")),
            escape(&condition.unwrap_or_default()),
            escape(&c.action),
            o.and_then(|o| o.cost).unwrap_or(b.cost_per_contact),
            100.0 * o.and_then(|o| o.success_rate).unwrap_or(b.success_rate),
            c.customers,
            c.expected_value
        ));
    }
    h.push_str("</table>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_is_svg_with_its_title() {
        let svg = line_chart("Gains", "x", "y", &[Series::line("m", vec![(0.0, 0.0), (1.0, 1.0)])]);
        assert!(svg.starts_with("<svg") && svg.contains("Gains"), "{}", &svg[..svg.len().min(200)]);
    }
}
