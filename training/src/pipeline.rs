//! The training job end to end: data → split → fitted spec → model → calibration → threshold →
//! evaluation → ONNX → parity check → bundle (with report) on disk.

use std::path::{Path, PathBuf};
use std::time::Instant;

use churn_core::bundle::{self, Manifest};
use churn_core::drift;
use churn_core::metrics::{Evaluation, best_profit_threshold};
use churn_core::{Bundle, Playbook, Scorer};
use serde_json::json;

use crate::data::{self, Prepared};
use crate::params::{TrainConfig, ValidParams};
use crate::report::{self, ReportInput};
use crate::train::{self, EpochRecord, Trained};

/// Largest candle-versus-tract difference accepted before a bundle is written.
pub const PARITY_TOLERANCE: f32 = 1e-5;

pub struct TrainJob {
    pub data: PathBuf,
    pub config: TrainConfig,
    /// Where to write the bundle; `None` trains and evaluates without writing (model comparison).
    pub out: Option<PathBuf>,
    pub force: bool,
    /// Called after every epoch (progress bars).
    pub on_epoch: Box<dyn FnMut(&EpochRecord)>,
}

/// What a training run produced.
pub struct Outcome {
    pub params: ValidParams,
    pub prepared: Prepared,
    pub trained: Trained,
    pub threshold: f64,
    pub validation: Evaluation,
    pub test: Evaluation,
    /// Calibrated candle probabilities of the test rows (split order).
    pub candle_test_p: Vec<f32>,
    /// The same rows scored by tract from the exported ONNX.
    pub tract_test_p: Vec<f32>,
    pub parity_max_abs_diff: f32,
    pub onnx: Vec<u8>,
    pub manifest: Option<Manifest>,
    pub seconds: f64,
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// A model trained, calibrated and evaluated on a prepared split (nothing exported yet).
pub struct Fitted {
    pub trained: Trained,
    pub threshold: f64,
    pub validation: Evaluation,
    /// Calibrated candle probabilities of the test rows (split order).
    pub candle_test_p: Vec<f32>,
    pub test: Evaluation,
}

/// Trains on the training rows, picks the threshold of maximum expected profit on the
/// validation rows, and evaluates on the test rows: what `churn train` and every
/// cross-validation fold of `churn benchmark` do alike.
pub fn fit_and_evaluate(
    params: &ValidParams,
    playbook: &Playbook,
    prepared: &Prepared,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> anyhow::Result<Fitted> {
    let trained = train::fit(params, &prepared.train, &prepared.validation, on_epoch)?;
    let pv = train::calibrated(&trained.validation_logits, &trained.calibration);
    let (threshold, _) = best_profit_threshold(&pv, &prepared.validation.y, playbook);
    let validation = Evaluation::compute(&pv, &prepared.validation.y, threshold, playbook)?;
    let candle_test_p = train::candle_probabilities(&trained, &prepared.test)?;
    let test = Evaluation::compute(&candle_test_p, &prepared.test.y, threshold, playbook)?;
    Ok(Fitted { trained, threshold, validation, candle_test_p, test })
}

pub fn run(job: TrainJob) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let TrainJob { data, config, out, force, mut on_epoch } = job;
    churn_core::table::FileFormat::from_path(&data)?;
    let params = config.model.clone().check()?;
    let playbook: Playbook = config.playbook.clone().check()?;
    if let Some(dir) = &out
        && dir.join(bundle::MANIFEST).exists()
        && !force
    {
        anyhow::bail!("{}: a bundle already exists here; choose another --out or pass --force to replace it", dir.display());
    }
    let prepared = data::prepare(&data, &config.dataset, params.validation_fraction, params.test_fraction, params.seed)?;
    playbook.check_fields(prepared.spec.input_names())?;
    tracing::info!(rows = prepared.table.rows, features = prepared.spec.width(), train = prepared.train.rows(), "data prepared");
    let Fitted { trained, threshold, validation, candle_test_p, test } = fit_and_evaluate(&params, &playbook, &prepared, &mut *on_epoch)?;

    let layers = train::export_layers(&trained)?;
    let model_name = format!("churn-{}", params.kind.name());
    let onnx = churn_core::onnx::dense_stack_to_onnx(
        &layers,
        &[
            ("model_name".into(), model_name.clone()),
            ("threshold".into(), threshold.to_string()),
            ("features".into(), prepared.spec.feature_names.join(",")),
        ],
    )?;
    let scorer = Scorer::from_onnx(&onnx, prepared.spec.width())?;
    let tract_test_p = scorer.predict(&prepared.test.x)?;
    let parity_max_abs_diff = candle_test_p.iter().zip(&tract_test_p).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    if parity_max_abs_diff > PARITY_TOLERANCE {
        anyhow::bail!(
            "exported model disagrees with candle by {parity_max_abs_diff} (> {PARITY_TOLERANCE}) on test rows; no bundle written"
        );
    }

    let mut outcome = Outcome {
        params,
        prepared,
        trained,
        threshold,
        validation,
        test,
        candle_test_p,
        tract_test_p,
        parity_max_abs_diff,
        onnx,
        manifest: None,
        seconds: 0.0,
    };
    if let Some(dir) = out {
        outcome.manifest = Some(write_bundle(&outcome, &scorer, &dir, &data, &model_name, &playbook, force)?);
    }
    outcome.seconds = start.elapsed().as_secs_f64();
    Ok(outcome)
}

fn write_bundle(
    o: &Outcome,
    scorer: &Scorer,
    dir: &Path,
    data: &Path,
    model_name: &str,
    playbook: &Playbook,
    force: bool,
) -> anyhow::Result<Manifest> {
    let p = &o.prepared;
    let metrics = json!({
        "model_kind": o.params.kind.name(),
        "threshold": o.threshold,
        "best_epoch": o.trained.best_epoch,
        "member_best_epochs": o.trained.member_best_epochs,
        "epochs_run": o.trained.history.len(),
        "pos_weight": o.trained.pos_weight,
        "calibration": o.trained.calibration,
        "parity": {"candle_vs_tract_max_abs_diff": o.parity_max_abs_diff, "rows": o.candle_test_p.len()},
        "data": {
            "file": data.display().to_string(),
            "rows": p.table.rows,
            "train": p.train.rows(), "validation": p.validation.rows(), "test": p.test.rows(),
            "features": p.spec.width(),
        },
        "validation": o.validation,
        "test": o.test,
        "test_spread": churn_core::metrics::bootstrap_spread(&o.candle_test_p, &p.test.y, crate::monitor::RESAMPLES)?,
    });
    let history = serde_json::to_vec_pretty(&o.trained.history)?;
    let background = data::background(&p.table, &p.spec, &p.split.train, o.params.background_rows, o.params.seed)?;
    let offers = crate::explanations::offer_mix(
        &p.spec,
        scorer,
        &background,
        playbook,
        &p.table,
        &p.split.test,
        &o.tract_test_p,
        // The API's budget, so the report shows what the API would answer.
        churn_core::explain::REASON_PERMUTATIONS,
    )?;
    let summary = vec![
        ("model", format!("{} ({})", model_name, o.params.kind.name())),
        ("data", format!("{} ({} rows, {} features)", data.display(), p.table.rows, p.spec.width())),
        (
            "split (train / validation / test)",
            format!("{} / {} / {} (seed {})", p.train.rows(), p.validation.rows(), p.test.rows(), o.params.seed),
        ),
        ("epochs (best / run)", format!("{} / {}", o.trained.best_epoch, o.trained.history.len())),
        ("calibration", describe_calibration(&o.trained.calibration)),
        ("decision threshold (max validation profit)", format!("{:.2}", o.threshold)),
        ("candle vs tract max |diff| on test rows", format!("{:.2e}", o.parity_max_abs_diff)),
    ];
    let html = report::model_report(&ReportInput {
        title: format!("Churn model report: {model_name}"),
        summary,
        test: &o.test,
        test_p: &o.candle_test_p,
        test_y: &p.test.y,
        history: &o.trained.history,
        playbook,
        threshold: o.threshold,
        offers: &offers,
    });
    let files = vec![
        (bundle::MODEL.to_string(), o.onnx.clone()),
        (bundle::FEATURE_SPEC.to_string(), p.spec.to_json().into_bytes()),
        (bundle::PLAYBOOK.to_string(), serde_json::to_vec_pretty(playbook)?),
        (bundle::METRICS.to_string(), serde_json::to_vec_pretty(&metrics)?),
        ("split.json".to_string(), serde_json::to_vec(&p.split)?),
        ("history.json".to_string(), history),
        (drift::REFERENCE.to_string(), serde_json::to_vec(&data::drift_reference(&p.table, &p.spec, &p.split.train)?)?),
        (churn_core::explain::BACKGROUND.to_string(), serde_json::to_vec(&background)?),
        ("report.html".to_string(), html.into_bytes()),
    ];
    let manifest = Manifest {
        schema_version: churn_core::SCHEMA_VERSION,
        model_name: model_name.to_string(),
        model_kind: o.params.kind.name().into(),
        created_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        crate_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: git_commit(),
        data_sha256: p.data_sha256.clone(),
        data_rows: p.table.rows,
        seed: o.params.seed,
        threshold: o.threshold,
        hyperparameters: serde_json::to_value(&*o.params)?,
        files: Default::default(),
    };
    let manifest = bundle::write_dir(dir, &files, manifest, force)?;
    // Read back what was written, as a consumer would, before declaring success.
    Bundle::load_dir(dir)?;
    Ok(manifest)
}

/// Evaluates a bundle on labelled data with its own threshold.
pub fn evaluate(bundle: &Bundle, path: &Path) -> anyhow::Result<Evaluation> {
    Ok(evaluate_with_predictions(bundle, path)?.0)
}

/// [`evaluate`], with the predictions and labels (for the spread of the figures).
pub fn evaluate_with_predictions(bundle: &Bundle, path: &Path) -> anyhow::Result<(Evaluation, Vec<f32>, Vec<bool>)> {
    let table = churn_core::table::Table::read(path)?;
    table.require(bundle.spec.input_names().chain([bundle.spec.target_column.as_str()]))?;
    let y = data::labels(&table, &bundle.spec.target_column, &bundle.spec.positive_label)?;
    let rows: Vec<usize> = (0..table.rows).collect();
    let m = data::featurise(&table, &bundle.spec, &rows, &y)?;
    let p = bundle.scorer.predict(&m.x)?;
    let e = Evaluation::compute(&p, &m.y, bundle.manifest.threshold, &bundle.playbook)?;
    Ok((e, p, m.y))
}

/// The calibration in one line of the report.
fn describe_calibration(c: &train::Calibration) -> String {
    if c.knots.is_empty() {
        format!("Platt scaling: a {:.4}, b {:.4}", c.a, c.b)
    } else {
        let knots: Vec<String> = c.knots.iter().map(|t| format!("{t:.2}")).collect();
        format!(
            "spline in the logit: a {:.4}, b {:.4}, knots at {} (slopes change by {:?})",
            c.a,
            c.b,
            knots.join(", "),
            c.slopes.iter().map(|v| (v * 1e4).round() / 1e4).collect::<Vec<_>>()
        )
    }
}
