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

use serde_json::{Value, json};

pub use config::BatchConfig;
pub use job::{Scorer, Status, Summary};

use churn_core::METRIC_NAMESPACE as NAMESPACE;

/// Why an invocation fails (Lambda then retries it, and finally hands it to the on-failure
/// destination).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("plan request: {0}")]
    PlanRequest(serde_json::Error),
    #[error("{0}")]
    Plan(String),
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
        let req: event::PlanRequest = serde_json::from_value(plan.clone()).map_err(HandleError::PlanRequest)?;
        return scorer.plan(&req).await.map_err(HandleError::Plan);
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

/// One CloudWatch Embedded Metric Format line for an object: rows in / scored / rejected, the
/// largest PSI and the number of drifted features (the drift alarm watches these), duration.
pub fn emf_line(s: &Summary) -> String {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let (max_psi, drifted) = s.drift.as_ref().map(|d| (d.max_psi, d.drifted.len())).unwrap_or((0.0, 0));
    json!({
        "Function": "batch-score",
        "ModelVersion": s.model.version,
        "RowsIn": s.rows_in,
        "RowsScored": s.rows_scored,
        "RowsRejected": s.rows_rejected,
        "FailedObjects": u8::from(matches!(s.status, Status::Failed | Status::Refused)),
        "MaxPsi": max_psi,
        "DriftedFeatures": drifted,
        "Duration": s.timings.total_ms,
        "_aws": {
            "Timestamp": ts,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [
                    {"Name": "RowsIn", "Unit": "Count"},
                    {"Name": "RowsScored", "Unit": "Count"},
                    {"Name": "RowsRejected", "Unit": "Count"},
                    {"Name": "FailedObjects", "Unit": "Count"},
                    {"Name": "MaxPsi", "Unit": "None"},
                    {"Name": "DriftedFeatures", "Unit": "Count"},
                    {"Name": "Duration", "Unit": "Milliseconds"}
                ]
            }]
        }
    })
    .to_string()
}
