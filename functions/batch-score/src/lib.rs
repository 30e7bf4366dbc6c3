//! The S3-triggered batch scorer: each `incoming/<key>` object (parquet or CSV) put into the data
//! bucket becomes `scored/<key>` (id, probability, tier, action, model version), `rejected/<key>`
//! (rows that could not be scored, whole, with the reason) and `scored/<key>.summary.json`
//! (counts that add up, score distribution, drift against the training reference, timings).
//!
//! [`event`] turns an invocation into tasks, [`job`] scores one task through the scoring core
//! shared with `churn score`, [`s3io`] streams from and to S3. The binary (`main.rs`) only
//! loads the model once at init and hands every event to [`handle`].

pub mod config;
pub mod event;
pub mod job;
pub mod s3io;

use churn_core::emf::{self, Metric};
use serde_json::{Value, json};

pub use config::BatchConfig;
pub use job::{Scorer, Status, Summary};

/// Why an invocation fails (Lambda then retries it, and finally hands it to the on-failure
/// destination).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("plan request: {0}")]
    PlanRequest(serde_json::Error),
    #[error(transparent)]
    Plan(#[from] job::PlanError),
    #[error("merge request: {0}")]
    MergeRequest(serde_json::Error),
    #[error(transparent)]
    Event(#[from] event::EventError),
    /// Objects that could not be finished for a retry-worthy reason (the others were).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Retry(Vec<job::JobError>),
}

/// Handles one invocation: every task is attempted; the answer lists each object's summary and
/// every skipped record. When any task failed for a retry-worthy reason the invocation fails
/// (after the others are done, and their re-delivery is a no-op), so Lambda retries it and
/// finally hands it to the on-failure destination.
pub async fn handle(scorer: &Scorer, event: Value, deadline_ms: u64) -> Result<Value, HandleError> {
    let deadline_ms = job::deadline_epoch_ms(deadline_ms);
    tracing::debug!(deadline_ms, left_ms = job::ms_left(deadline_ms), "invocation");
    if let Some(plan) = event.get("plan") {
        let input = event::PlanInput::from_value(plan.clone()).map_err(HandleError::PlanRequest)?;
        return Ok(scorer.plan_input(input).await?);
    }
    if let Some(merge) = event.get("merge") {
        let req: event::MergeRequest = serde_json::from_value(merge.clone()).map_err(HandleError::MergeRequest)?;
        let s = scorer.merge(&req).await.map_err(|e| HandleError::Retry(vec![e]))?;
        log_summary(&s);
        return Ok(json!({"objects": [s]}));
    }
    let (tasks, skipped) = event::tasks(event, &scorer.config.input_prefix)?;
    for s in &skipped {
        tracing::info!(bucket = %s.bucket, key = %s.key, reason = %s.reason, "skipped");
    }
    let mut summaries = Vec::new();
    let mut errors = Vec::new();
    for task in &tasks {
        match scorer.run(task, deadline_ms).await {
            Ok(s) => {
                log_summary(&s);
                summaries.push(s);
            }
            Err(e) => {
                tracing::error!(bucket = %task.bucket, key = %task.key, error = %e, "not scored; the invocation fails so that it is retried");
                errors.push(e);
            }
        }
    }
    if !errors.is_empty() {
        return Err(HandleError::Retry(errors));
    }
    Ok(json!({"objects": summaries, "skipped": skipped}))
}

fn log_summary(s: &Summary) {
    let drifted = s.drift.as_ref().map(|d| d.drifted.join(",")).unwrap_or_default();
    match s.status {
        Status::Failed | Status::Refused => {
            tracing::error!(key = %s.source.key, status = ?s.status, error = s.error.as_deref().unwrap_or(""), summary = %s.summary_uri, "not scored")
        }
        Status::Superseded => {
            tracing::warn!(key = %s.source.key, error = s.error.as_deref().unwrap_or(""), "replaced while scored; nothing written")
        }
        _ => tracing::info!(
            key = %s.source.key,
            status = ?s.status,
            rows_in = s.rows_in,
            rows_scored = s.rows_scored,
            rows_rejected = s.rows_rejected,
            drifted = %drifted,
            ms = s.timings.total_ms,
            "scored"
        ),
    }
    if !drifted.is_empty() {
        tracing::warn!(key = %s.source.key, drifted = %drifted, "feature drift above the PSI threshold");
    }
    if !matches!(s.status, Status::AlreadyScored | Status::Superseded) {
        println!("{}", emf_line(s));
    }
}

/// The metrics of one object: rows in / scored / rejected, the largest PSI and the number of
/// drifted features (the drift alarm watches these), duration.
const METRICS: [Metric; 7] = [
    Metric::count("RowsIn"),
    Metric::count("RowsScored"),
    Metric::count("RowsRejected"),
    Metric::count("FailedObjects"),
    Metric { name: "MaxPsi", unit: "None" },
    Metric::count("DriftedFeatures"),
    Metric { name: "Duration", unit: "Milliseconds" },
];

/// One CloudWatch Embedded Metric Format line for an object, by function (the model version
/// logged beside it).
pub fn emf_line(s: &Summary) -> String {
    let (max_psi, drifted) = s.drift.as_ref().map(|d| (d.max_psi, d.drifted.len())).unwrap_or((0.0, 0));
    let failed = matches!(s.status, Status::Failed | Status::Refused);
    let values = [
        s.rows_in as f64,
        s.rows_scored as f64,
        s.rows_rejected as f64,
        f64::from(u8::from(failed)),
        max_psi,
        drifted as f64,
        s.timings.total_ms,
    ];
    emf::line(&[("Function", "batch-score")], &[("ModelVersion", &s.model.version)], &METRICS, &values, emf::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line the template's alarms read: by function only, every declared metric with a value,
    /// a failed object counted once.
    #[test]
    fn an_objects_emf_line_carries_every_alarmed_metric() {
        let summary: Summary = serde_json::from_value(json!({
            "status": "failed",
            "source": {"bucket": "b", "key": "incoming/x.csv", "etag": "\"e\"", "bytes": 10, "row_groups": null},
            "model": {"name": "churn-mlp", "version": "7", "sha256": "s"},
            "rows_in": 0, "rows_scored": 0, "rows_rejected": 0, "rows_warned": 0,
            "tiers": [], "probability_histogram": [], "mean_probability": 0.0, "drift": null,
            "scored_uri": null, "rejected_uri": null, "summary_uri": "s3://b/scored/x.csv.summary.json",
            "timings": {"read_and_score_ms": 0.0, "total_ms": 12.5, "bytes_read": 0, "bytes_written": 0},
            "error": "not a table"
        }))
        .unwrap();
        let v: Value = serde_json::from_str(&emf_line(&summary)).unwrap();
        assert_eq!((v["Function"].as_str(), v["ModelVersion"].as_str()), (Some("batch-score"), Some("7")));
        assert_eq!((v["FailedObjects"].as_i64(), v["Duration"].as_f64()), (Some(1), Some(12.5)));
        let d = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], churn_core::METRIC_NAMESPACE);
        assert_eq!(d["Dimensions"], json!([["Function"]]));
        for m in d["Metrics"].as_array().unwrap() {
            assert!(v.get(m["Name"].as_str().unwrap()).is_some(), "{m} has no value");
        }
    }
}
