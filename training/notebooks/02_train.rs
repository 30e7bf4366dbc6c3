// %% [markdown]
// # 02 · Train
//
// One training run through the library, exactly as `churn train` does it: seeded stratified
// split, feature spec fitted on the training rows, MLP (batch norm → hidden → dropout →
// output) with a positive-class weight, Adam with weight decay, early stopping on validation
// ROC AUC, calibration (a spline in the logit), ONNX export checked against candle. The bundle is written to
// the reports folder (`model/`), where notebooks 03–05 read it. The logistic baseline is
// trained on the same split for comparison.

// %%
use churn_training::notebook::{Notebook, bar_chart, line_chart};
use churn_training::params::{ModelKind, TrainConfig};
use churn_training::pipeline::{self, TrainJob};
use churn_training::report::Series;
use churn_training::{BUNDLED_CONFIG, BUNDLED_DATA};

let mut nb = Notebook::start("02_train")?;
let config = TrainConfig::load(std::path::Path::new(BUNDLED_CONFIG))?;
let model_dir = nb.reports_dir().join("model");
let mlp = pipeline::run(TrainJob {
    data: BUNDLED_DATA.into(),
    config: config.clone(),
    out: Some(model_dir.clone()),
    force: true,
    on_epoch: Box::new(|_| {}),
})?;
let mut baseline_config = config.clone();
baseline_config.model.kind = ModelKind::Logistic;
let logistic = pipeline::run(TrainJob { data: BUNDLED_DATA.into(), config: baseline_config, out: None, force: false, on_epoch: Box::new(|_| {}) })?;
nb.text(format!(
    "MLP: best epoch {} of {}, {:.2} s; logistic: best epoch {} of {}, {:.2} s; candle vs tract max |diff| {:.1e}; bundle at {}",
    mlp.trained.best_epoch,
    mlp.trained.history.len(),
    mlp.seconds,
    logistic.trained.best_epoch,
    logistic.trained.history.len(),
    logistic.seconds,
    mlp.parity_max_abs_diff,
    model_dir.display()
));

// %% [markdown]
// ## Training curves
//
// Loss on the training and validation rows per epoch, and the validation ROC AUC that early
// stopping watches (the bundle keeps the best epoch's weights).

// %%
let curve = |h: &[churn_training::train::EpochRecord], f: fn(&churn_training::train::EpochRecord) -> f64| -> Vec<(f64, f64)> {
    h.iter().map(|r| (r.epoch as f64, f(r))).collect()
};
nb.charts(vec![
    line_chart("MLP loss", "epoch", "weighted BCE", &[
        Series::line("train", curve(&mlp.trained.history, |r| r.train_loss)),
        Series::line("validation", curve(&mlp.trained.history, |r| r.validation_loss)),
    ]),
    line_chart("Validation ROC AUC", "epoch", "AUC", &[
        Series::line("MLP", curve(&mlp.trained.history, |r| r.validation_auc)),
        Series::line("logistic", curve(&logistic.trained.history, |r| r.validation_auc)),
    ]),
]);

// %% [markdown]
// ## MLP versus the linear baseline (held-out test rows)
//
// On 4,930 customers the linear model is a strong baseline: the MLP has to earn its keep.
// `churn compare` repeats this over several seeds (README, "Model quality").

// %%
let row = |name: &str, f: &dyn Fn(&churn_core::metrics::Evaluation) -> f64| {
    vec![name.to_string(), format!("{:.4}", f(&mlp.test)), format!("{:.4}", f(&logistic.test))]
};
nb.table(&["test figure", "MLP", "logistic"], &[
    row("ROC AUC", &|e| e.roc_auc),
    row("PR AUC", &|e| e.pr_auc),
    row("log loss", &|e| e.log_loss),
    row("Brier", &|e| e.brier),
    row("ECE", &|e| e.ece),
    row("ECE of a calibrated model (noise)", &|e| e.ece_floor),
    row("top-decile lift", &|e| e.top_decile_lift),
    row("profit at threshold", &|e| e.profit_at_threshold),
]);
let roc = |o: &pipeline::Outcome| churn_core::metrics::roc_curve(&o.candle_test_p, &o.prepared.test.y);
nb.charts(vec![
    line_chart("ROC (test)", "false positive rate", "true positive rate", &[
        Series::line("MLP", roc(&mlp)),
        Series::line("logistic", roc(&logistic)),
        Series::reference("chance", vec![(0.0, 0.0), (1.0, 1.0)]),
    ]),
    bar_chart("Test ROC AUC", "ROC AUC", &[("MLP".into(), mlp.test.roc_auc), ("logistic".into(), logistic.test.roc_auc)], None),
]);

// %%
nb.finish()?;
