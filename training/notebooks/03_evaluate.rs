// %% [markdown]
// # 03 · Evaluate
//
// The shared model (`model/` in the reports folder, from notebook 02) on its held-out test
// rows, scored by tract from the ONNX file — what the Lambdas run. Ranking (ROC, PR, gains),
// probabilities (calibration), decisions (confusion matrix at the chosen threshold) and money
// (profit versus threshold, with the playbook's business figures).

// %%
use churn_core::metrics::{self, Confusion, Evaluation};
use churn_training::notebook::{self, Notebook, line_chart};
use churn_training::report::{Series, calibration_chart};

let mut nb = Notebook::start("03_evaluate")?;
let bundle = notebook::shared_model(&nb)?;
let test = notebook::test_split(&nb, &bundle)?;
let y = test.y.clone();
let p = bundle.scorer.predict(&test.x)?;
let threshold = bundle.manifest.threshold;
let e = Evaluation::compute(&p, &y, threshold, &bundle.playbook)?;
nb.text(format!(
    "{} test customers, {} churned; ROC AUC {:.4}, PR AUC {:.4}, Brier {:.4}, ECE {:.4} (a perfectly calibrated model shows {:.4} on this many rows by sampling noise); threshold {:.2} (chosen on validation rows for profit)",
    e.rows, e.positives, e.roc_auc, e.pr_auc, e.brier, e.ece, e.ece_floor, threshold
));

// %% [markdown]
// ## Ranking and calibration
//
// ROC and precision–recall show how well churners are ranked above stayers; the calibration
// curve shows whether a predicted 30 % means 30 % (the calibration undoes the skew of the
// positive-class weight); the dashed band is where a perfectly calibrated model's bins would
// fall on this many customers 90 % of the time. Cumulative gains: the share of churners reached when contacting the
// riskiest customers first.

// %%
let diag = vec![(0.0, 0.0), (1.0, 1.0)];
nb.charts(vec![
    line_chart("ROC", "false positive rate", "true positive rate", &[
        Series::line("model", metrics::roc_curve(&p, &y)),
        Series::reference("chance", diag.clone()),
    ]),
    line_chart("Precision-recall", "recall", "precision", &[
        Series::line("model", metrics::pr_curve(&p, &y)),
        Series::reference("base rate", vec![(0.0, e.base_rate), (1.0, e.base_rate)]),
    ]),
    calibration_chart(&p, &y),
    line_chart("Cumulative gains", "share contacted", "share of churners reached", &[
        Series::line("model", metrics::gains(&p, &y)),
        Series::reference("random", diag),
    ]),
]);
nb.text(format!("top-decile lift {:.2}: the riskiest 10 % hold {:.1} % of the churners", e.top_decile_lift, 100.0 * e.top_decile_capture));

// %% [markdown]
// ## Decisions at the chosen threshold

// %%
let c = Confusion::at(&p, &y, threshold);
nb.table(&["", "predicted churn", "predicted stay"], &[
    vec!["churned".into(), c.tp.to_string(), c.fn_.to_string()],
    vec!["stayed".into(), c.fp.to_string(), c.tn.to_string()],
]);
nb.text(format!(
    "precision {:.3}, recall {:.3}, F1 {:.3}, accuracy {:.3} at {:.2}; at 0.5: precision {:.3}, recall {:.3}, F1 {:.3}",
    e.at_threshold.precision, e.at_threshold.recall, e.at_threshold.f1, e.at_threshold.accuracy, threshold,
    e.at_half.precision, e.at_half.recall, e.at_half.f1
));

// %% [markdown]
// ## Profit versus threshold
//
// Contacting everyone above a threshold: each retained churner is worth the playbook's value
// per retained customer times its success rate, each contact costs the cost per contact. The
// best threshold on these rows and the one chosen on validation rows are marked.

// %%
let curve = metrics::profit_curve(&p, &y, &bundle.playbook);
let (lo, hi) = curve.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, v)| (a.min(*v), b.max(*v)));
nb.chart(line_chart("Campaign profit vs threshold (test rows)", "threshold", "profit", &[
    Series::line("realised profit", curve),
    Series::reference(&format!("chosen {threshold:.2}"), vec![(threshold, lo), (threshold, hi)]),
    Series::reference(&format!("best {:.2}", e.best_profit_threshold), vec![(e.best_profit_threshold, lo), (e.best_profit_threshold, hi)]),
]));
nb.table(
    &["tier", "action", "customers", "churners", "churn rate", "realised profit", "ROI"],
    &e.tiers
        .iter()
        .map(|t| vec![t.tier.clone(), t.action.clone(), t.customers.to_string(), t.churners.to_string(), format!("{:.1} %", 100.0 * t.churn_rate), format!("{:.0}", t.realised_profit), format!("{:.2}", t.roi)])
        .collect::<Vec<_>>(),
);

// %%
nb.finish()?;
