//! Scoring one object: stream it from S3, score every row with the bundle through the shared
//! scoring core (`churn_core::scoring`, the same one `churn score` uses), and write
//!
//! - `scored/<key>`: one row per scored customer — the id, `churn_probability`, `risk_tier`,
//!   `recommended_action`, `warnings` and `model_version` — in the input's format;
//! - `rejected/<key>`: every row that could not be scored, with all its original columns plus
//!   `_row` (1-based data row) and `_error` (field, value and what is wrong); removed when a
//!   re-run has no rejected rows, so a stale one never lingers;
//! - `scored/<key>.summary.json`, written last: the counts (`rows_in = rows_scored +
//!   rows_rejected`, always), tiers, score distribution, drift (PSI per feature), timings and
//!   the model. Its metadata records the status, the source ETag and the model SHA-256: a
//!   re-delivered event for an object version this model has already *scored* finds it and does
//!   nothing, so re-deliveries never duplicate; a `refused` or `failed` one is tried again.
//!
//! Every output carries the ETag of the object version it scored, in its metadata
//! (`x-amz-meta-source-etag`) and in the summary (`source.etag`): a reader compares it with
//! `incoming/<key>`'s ETag to know the results belong to the current data. When a newer version
//! cannot be scored, the older version's `scored/<key>` and `rejected/<key>` are removed, so the
//! only thing under the object's names is the summary saying why.
//!
//! Every write and delete (outputs, summary, stale outputs, the fan-out request) is an S3
//! conditional request over what its key held when the invocation looked, so an invocation
//! never replaces, unseen, what another one wrote since: when that happened and the source
//! object changed too, this invocation's results are dropped (`superseded`).
//!
//! Outputs are multipart uploads completed only at the end, so a failure or a timeout leaves no
//! partial object. Errors are either the input's fault (recorded in the summary with status
//! `failed`; retrying would not help) or transient (S3 trouble, running out of time: returned, so
//! that Lambda retries and finally hands the event to the on-failure destination). An object
//! replaced while it is being scored is left to the new version's own event: nothing is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use churn_core::Bundle;
use churn_core::scoring::{BatchScorer, ERROR_COLUMN};
use churn_core::table::{self, Encoder, FileFormat, TableReader};
use futures::StreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use serde::{Deserialize, Serialize};

use crate::config::BatchConfig;
use crate::event::Task;
use crate::s3io::{self, Finish, Precondition, Prefetch, S3Error, S3Reader, Upload};

/// The key of the fan-out request for `s3://{bucket}/{key}` under `prefix`: `<prefix><sha>.json`,
/// `<sha>` the first 16 hex digits of the SHA-256 of `bucket/key` (a name with no character an
/// event could encode differently).
pub fn fan_out_request_key(prefix: &str, bucket: &str, key: &str) -> String {
    format!("{prefix}{}.json", &churn_core::sha256_hex(format!("{bucket}/{key}").as_bytes())[..16])
}

/// Metadata keys on the summary object that make re-deliveries idempotent.
pub const META_SOURCE_ETAG: &str = "source-etag";
pub const META_MODEL_SHA: &str = "model-sha256";
/// Metadata key on the summary object: its [`Status`], so that only `scored` short-circuits.
pub const META_STATUS: &str = "status";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Scored; outputs written.
    Scored,
    /// This object version was already scored by this model; nothing was done.
    AlreadyScored,
    /// Too large for one invocation; nothing was scored (the summary says what to do).
    Refused,
    /// The input cannot be scored (not a table, missing columns, …); the summary says why.
    Failed,
    /// The object was replaced while it was being scored; nothing was written (the new
    /// version's own event scores it).
    Superseded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scored => "scored",
            Status::AlreadyScored => "already_scored",
            Status::Refused => "refused",
            Status::Failed => "failed",
            Status::Superseded => "superseded",
        }
    }
}

pub use churn_core::ModelInfo;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub bytes: u64,
    pub row_groups: Option<[usize; 2]>,
}

pub use churn_core::drift::DriftReport;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub read_and_score_ms: f64,
    pub total_ms: f64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// What happened to one object; also written as `scored/<key>.summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub status: Status,
    pub source: SourceInfo,
    pub model: ModelInfo,
    pub rows_in: u64,
    pub rows_scored: u64,
    pub rows_rejected: u64,
    /// Scored rows that carry a warning (unseen category, imputed value).
    pub rows_warned: u64,
    pub tiers: Vec<(String, u64)>,
    /// With `TOP_REASONS`: customers per personalised offer (playbook order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offers: Vec<(String, u64)>,
    /// Scored rows per probability decile.
    pub probability_histogram: Vec<u64>,
    pub mean_probability: f64,
    pub drift: Option<DriftReport>,
    pub scored_uri: Option<String>,
    pub rejected_uri: Option<String>,
    pub summary_uri: String,
    pub timings: Timings,
    pub error: Option<String>,
    /// For an object scored by the fan-out: the summaries of its row-group ranges, whose
    /// `scored_uri` / `rejected_uri` hold the rows (this summary adds their counts up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// For a `refused` object with `FAN_OUT_PREFIX` set: the fan-out request written for it
    /// (the state machine's input); the fan-out's merge step replaces this summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fan_out: Option<String>,
}

/// Why an object could not be finished in this invocation.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth retrying: S3 trouble.
    #[error(transparent)]
    S3(#[from] S3Error),
    /// Not enough time left; nothing was written.
    #[error(
        "s3://{bucket}/{key}: stopped after {rows} rows with {left_ms} ms left before the deadline; nothing was written. Raise the function's timeout, or split the object (the row-group state machine in infra/README.md)"
    )]
    OutOfTime { bucket: String, key: String, rows: u64, left_ms: u64 },
}

/// Why the row-group tasks of an object could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Worth retrying: S3 trouble.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The object cannot be split: not under the input prefix, gone, or not a readable parquet
    /// file (the message says which).
    #[error("{0}")]
    Object(String),
}

/// The model and settings every object of an invocation is scored with.
pub struct Scorer {
    pub client: Client,
    pub bundle: Bundle,
    pub model: ModelInfo,
    pub config: BatchConfig,
}

/// Adds `more`'s counts to `into`'s, by name, keeping first-seen order.
fn add_counts(into: &mut Vec<(String, u64)>, more: &[(String, u64)]) {
    for (name, n) in more {
        match into.iter_mut().find(|(m, _)| m == name) {
            Some((_, c)) => *c += n,
            None => into.push((name.clone(), *n)),
        }
    }
}

/// The output keys of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    pub scored: String,
    pub rejected: String,
    pub summary: String,
}

impl Keys {
    pub fn of(task: &Task, config: &BatchConfig) -> Keys {
        let rel = task.key.strip_prefix(&config.input_prefix).unwrap_or(&task.key);
        // A row-group part gets its own outputs: `<key>.rowgroups-<a>-<b>.<ext>`.
        let rel = match task.row_groups {
            None => rel.to_string(),
            Some([a, b]) => {
                let ext = std::path::Path::new(rel).extension().and_then(|e| e.to_str()).unwrap_or("parquet");
                format!("{rel}.rowgroups-{a}-{b}.{ext}")
            }
        };
        Keys {
            scored: format!("{}{rel}", config.scored_prefix),
            rejected: format!("{}{rel}", config.rejected_prefix),
            summary: format!("{}{rel}.summary.json", config.scored_prefix),
        }
    }
}

/// What the object's output keys held when the invocation started: every write and delete of
/// the invocation is conditional on it (S3 conditional requests), so that an invocation never
/// replaces, unseen, what another one wrote since.
struct Seen {
    scored: Precondition,
    rejected: Precondition,
    summary: Precondition,
}

/// Conditional writes tried on one key before the invocation gives up and is retried.
const CONDITIONAL_ATTEMPTS: usize = 3;

/// A failed conditional write: the retryable error, or why this invocation is superseded (the
/// writes return no other failure).
fn superseded(f: Failure) -> Result<String, JobError> {
    match f {
        Failure::Job(e) => Err(e),
        Failure::Superseded(m) | Failure::Input(m) | Failure::Refused(m) => Ok(m),
    }
}

fn kept_changing(op: &'static str, bucket: &str, key: &str) -> Failure {
    Failure::Job(JobError::S3(S3Error::transfer(
        op,
        bucket,
        key,
        format!("the key kept changing under {CONDITIONAL_ATTEMPTS} conditional writes"),
    )))
}

enum Source {
    Parquet(ParquetRecordBatchStream<Prefetch>),
    // The spool file lives as long as its reader.
    Table(TableReader, #[allow(dead_code)] tempfile::NamedTempFile),
}

impl Source {
    /// The next batch, the first of which is data row `row` (0-based). S3 trouble underneath is
    /// retried; a bad file is the input's fault, including a panic inside the parquet decoder on
    /// a corrupt page (the stream is not polled again after one).
    async fn next(&mut self, label: &str, row: usize) -> Option<Result<RecordBatch, Failure>> {
        let at = || table::locate(FileFormat::Parquet, row);
        match self {
            Source::Parquet(s) => match table::catch_decoder_panic_async(s.next()).await {
                Ok(next) => next.map(|r| r.map_err(|e| parquet_failure(label, e, |m| read_failure(label, &at(), m)))),
                Err(why) => Some(Err(read_failure(label, &at(), format!("corrupt data ({why})")))),
            },
            Source::Table(t, _) => t.next().map(|r| r.map_err(Failure::from)),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The invocation's deadline as Unix epoch milliseconds. Lambda sends exactly that; the
/// runtime API emulator of `cargo lambda watch` (1.9) sends the function's timeout in
/// milliseconds instead (600000), so a value too small to be a date after 2001 is read as a
/// duration from now.
pub fn deadline_epoch_ms(deadline_ms: u64) -> u64 {
    const YEAR_2001_MS: u64 = 978_307_200_000;
    if deadline_ms < YEAR_2001_MS { now_ms() + deadline_ms } else { deadline_ms }
}

/// Milliseconds left before `deadline_ms` (Unix epoch milliseconds).
pub fn ms_left(deadline_ms: u64) -> u64 {
    deadline_ms.saturating_sub(now_ms())
}

impl Scorer {
    fn uri(bucket: &str, key: &str) -> String {
        format!("s3://{bucket}/{key}")
    }

    fn summary(&self, task: &Task, keys: &Keys, status: Status, etag: &str, bytes: u64) -> Summary {
        Summary {
            status,
            source: SourceInfo {
                bucket: task.bucket.clone(),
                key: task.key.clone(),
                etag: etag.into(),
                bytes,
                row_groups: task.row_groups,
            },
            model: self.model.clone(),
            rows_in: 0,
            rows_scored: 0,
            rows_rejected: 0,
            rows_warned: 0,
            tiers: vec![],
            offers: vec![],
            probability_histogram: vec![0; 10],
            mean_probability: 0.0,
            drift: None,
            scored_uri: None,
            rejected_uri: None,
            summary_uri: Self::uri(&task.bucket, &keys.summary),
            timings: Timings::default(),
            error: None,
            parts: vec![],
            fan_out: None,
        }
    }

    /// [`plan`](Self::plan) for the state machine's input, reading a fan-out request object
    /// when that is what the input names.
    pub async fn plan_input(&self, input: crate::event::PlanInput) -> Result<serde_json::Value, PlanError> {
        let req = match input {
            crate::event::PlanInput::Object(req) => req,
            crate::event::PlanInput::Request { bucket, request } => {
                let label = Self::uri(&bucket, &request);
                let body = s3io::get(&self.client, &bucket, &request)
                    .await
                    .map_err(JobError::from)?
                    .ok_or_else(|| PlanError::Object(format!("{label}: no such fan-out request")))?;
                #[derive(Deserialize)]
                struct Body {
                    plan: crate::event::PlanRequest,
                }
                let Body { plan } = serde_json::from_slice(&body).map_err(|e| {
                    PlanError::Object(format!("{label}: not a fan-out request ({{\"plan\": {{\"bucket\", \"key\"}}}}): {e}"))
                })?;
                if plan.bucket != bucket {
                    return Err(PlanError::Object(format!("{label}: asks for an object of bucket {}, not its own", plan.bucket)));
                }
                plan
            }
        };
        self.plan(&req).await
    }

    /// The row-group tasks that split one parquet object (the state machine maps over them).
    pub async fn plan(&self, req: &crate::event::PlanRequest) -> Result<serde_json::Value, PlanError> {
        let label = Self::uri(&req.bucket, &req.key);
        if !req.key.starts_with(&self.config.input_prefix) {
            return Err(PlanError::Object(format!("{label}: not under the input prefix {}", self.config.input_prefix)));
        }
        let info = s3io::head(&self.client, &req.bucket, &req.key)
            .await
            .map_err(JobError::from)?
            .ok_or_else(|| PlanError::Object(format!("{label}: no such object")))?;
        let reader = S3Reader {
            client: self.client.clone(),
            bucket: req.bucket.clone(),
            key: req.key.clone(),
            etag: info.etag.clone(),
            size: info.size,
            fetched: Default::default(),
        };
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(|e| {
            match parquet_failure(&label, e, |m| unreadable(&label, m)) {
                Failure::Input(m) | Failure::Refused(m) | Failure::Superseded(m) => PlanError::Object(m),
                Failure::Job(e) => PlanError::Job(e),
            }
        })?;
        table::check_parquet_layout(builder.metadata(), info.size).map_err(|m| PlanError::Object(format!("{label}: {m}")))?;
        let groups = builder.metadata().row_groups();
        let rows: i64 = groups.iter().map(|g| g.num_rows()).sum();
        let items = crate::event::split_tasks(&req.bucket, &req.key, groups.len(), req.row_groups_per_task);
        Ok(serde_json::json!({"bucket": req.bucket, "key": req.key, "rows": rows, "row_groups": groups.len(), "items": items}))
    }

    /// The fan-out's last step: reads the summary of every range of `req`, checks they all
    /// scored the object's current version, and writes the object's own summary
    /// (`scored/<key>.summary.json`) with their counts added up and `parts` naming them —
    /// `scored` when every range is, `failed` (naming the ranges) otherwise. A re-delivered S3
    /// event for the object then answers `already_scored`.
    pub async fn merge(&self, req: &crate::event::MergeRequest) -> Result<Summary, JobError> {
        let start = Instant::now();
        let whole = Task { bucket: req.bucket.clone(), key: req.key.clone(), row_groups: None };
        let keys = Keys::of(&whole, &self.config);
        let (info, seen) =
            tokio::join!(s3io::head(&self.client, &req.bucket, &req.key), s3io::head(&self.client, &req.bucket, &keys.summary));
        let (info, seen) = (info?, Precondition::of(seen?.as_ref()));
        let (etag, size) = info.as_ref().map_or((String::new(), 0), |i| (i.etag.clone(), i.size));
        let mut merged = self.summary(&whole, &keys, Status::Scored, &etag, size);
        let mut problems = Vec::new();
        if info.is_none() {
            problems.push(format!("{}: the object no longer exists", Self::uri(&req.bucket, &req.key)));
        }
        let mut probability_sum = 0.0;
        let mut drift: Vec<churn_core::drift::FeatureDrift> = Vec::new();
        let mut threshold = None;
        for item in &req.items {
            let k = Keys::of(item, &self.config);
            let uri = Self::uri(&item.bucket, &k.summary);
            let Some(body) = s3io::get(&self.client, &item.bucket, &k.summary).await? else {
                problems.push(format!("{uri}: missing (the range was not scored)"));
                continue;
            };
            let part: Summary = match serde_json::from_slice(&body) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!("{uri}: not a summary ({e})"));
                    continue;
                }
            };
            if part.status != Status::Scored {
                problems.push(format!(
                    "{uri}: {}{}",
                    part.status.as_str(),
                    part.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
                ));
            } else if part.source.etag != etag {
                problems.push(format!("{uri}: scored another version of the object (ETag {})", part.source.etag));
            }
            merged.rows_in += part.rows_in;
            merged.rows_scored += part.rows_scored;
            merged.rows_rejected += part.rows_rejected;
            merged.rows_warned += part.rows_warned;
            add_counts(&mut merged.tiers, &part.tiers);
            add_counts(&mut merged.offers, &part.offers);
            if merged.probability_histogram.len() < part.probability_histogram.len() {
                merged.probability_histogram.resize(part.probability_histogram.len(), 0);
            }
            for (m, p) in merged.probability_histogram.iter_mut().zip(&part.probability_histogram) {
                *m += p;
            }
            probability_sum += part.mean_probability * part.rows_scored as f64;
            // PSI does not add up over ranges: each feature keeps its largest range PSI.
            if let Some(d) = &part.drift {
                threshold = Some(d.threshold);
                for f in &d.features {
                    match drift.iter_mut().find(|m| m.feature == f.feature) {
                        Some(m) if m.psi < f.psi => *m = f.clone(),
                        Some(_) => {}
                        None => drift.push(f.clone()),
                    }
                }
            }
            merged.timings.read_and_score_ms += part.timings.read_and_score_ms;
            merged.timings.bytes_read += part.timings.bytes_read;
            merged.timings.bytes_written += part.timings.bytes_written;
            merged.parts.push(uri);
        }
        merged.mean_probability = if merged.rows_scored > 0 { probability_sum / merged.rows_scored as f64 } else { 0.0 };
        merged.drift = threshold.map(|t| DriftReport::new(t, drift));
        if !problems.is_empty() {
            merged.status = Status::Failed;
            merged.error = Some(format!("{} of {} ranges not scored: {}", problems.len(), req.items.len(), problems.join("; ")));
        }
        merged.timings.total_ms = start.elapsed().as_secs_f64() * 1e3;
        if let Err(f) = self.put_summary(&whole, &keys, &etag, &merged, seen).await {
            merged.status = Status::Superseded;
            merged.error = Some(superseded(f)?);
        }
        Ok(merged)
    }

    /// Scores one task; `deadline_ms` is the invocation's deadline (Unix epoch milliseconds).
    pub async fn run(&self, task: &Task, deadline_ms: u64) -> Result<Summary, JobError> {
        let start = Instant::now();
        let keys = Keys::of(task, &self.config);
        // All at once: one round trip. What the output keys hold now is what this invocation's
        // writes expect to replace (see `Seen`).
        let head = |key| s3io::head(&self.client, &task.bucket, key);
        let (info, done, scored, rejected) = tokio::join!(head(&task.key), head(&keys.summary), head(&keys.scored), head(&keys.rejected));
        let done = done?;
        let seen = Seen {
            scored: Precondition::of(scored?.as_ref()),
            rejected: Precondition::of(rejected?.as_ref()),
            summary: Precondition::of(done.as_ref()),
        };
        let Some(info) = info? else {
            let mut s = self.summary(task, &keys, Status::Failed, "", 0);
            s.error = Some(format!("s3://{}/{}: the object does not exist (deleted after the event was sent?)", task.bucket, task.key));
            // Nothing to record next to a missing object; the response and the log say it.
            return Ok(s);
        };
        if let Some(done) = done {
            let meta = |k: &str| done.metadata.get(k).map(String::as_str);
            if meta(META_STATUS) == Some(Status::Scored.as_str())
                && meta(META_SOURCE_ETAG) == Some(info.etag.as_str())
                && meta(META_MODEL_SHA) == Some(self.model.sha256.as_str())
            {
                let mut s = self.summary(task, &keys, Status::AlreadyScored, &info.etag, info.size);
                s.timings.total_ms = start.elapsed().as_secs_f64() * 1e3;
                return Ok(s);
            }
        }
        let mut summary = self.summary(task, &keys, Status::Scored, &info.etag, info.size);
        let outcome = self.score(task, &keys, &info, &seen, deadline_ms, &mut summary).await;
        let (status, error) = match outcome {
            Ok(()) => (Status::Scored, None),
            Err(Failure::Input(message)) => (Status::Failed, Some(message)),
            Err(Failure::Refused(message)) => (Status::Refused, Some(message)),
            Err(Failure::Superseded(message)) => (Status::Superseded, Some(message)),
            Err(Failure::Job(e)) => return Err(e),
        };
        summary.status = status;
        summary.error = error;
        summary.timings.total_ms = start.elapsed().as_secs_f64() * 1e3;
        // Whatever is under the object's names belongs to a newer version.
        if status == Status::Superseded {
            return Ok(summary);
        }
        let fan_out = match (&self.config.fan_out_prefix, status) {
            (Some(prefix), Status::Refused) => {
                let request = fan_out_request_key(prefix, &task.bucket, &task.key);
                let uri = Self::uri(&task.bucket, &request);
                if let Some(error) = &mut summary.error {
                    error.push_str(&format!(" The fan-out was requested ({uri}); its merge step writes this object's summary."));
                }
                summary.fan_out = Some(uri);
                Some(request)
            }
            _ => None,
        };
        let written = async {
            // This version has no results: an older version's must not pass for them.
            if matches!(status, Status::Failed | Status::Refused) {
                self.remove_outputs(task, &keys, &info.etag, &seen).await?;
            }
            self.put_summary(task, &keys, &info.etag, &summary, seen.summary.clone()).await
        };
        if let Err(f) = written.await {
            summary.status = Status::Superseded;
            summary.error = Some(superseded(f)?);
            summary.fan_out = None;
            return Ok(summary);
        }
        // The request that starts the fan-out goes after the summary: the fan-out's merge step
        // replaces this summary and must never be overwritten by it.
        if let Some(request) = fan_out {
            self.request_fan_out(task, &request, &info.etag).await?;
        }
        Ok(summary)
    }

    /// Asks the fan-out state machine to score a refused object: writes the request `key`
    /// ([`fan_out_request_key`]), whose body is the state machine's input (`{"plan": {"bucket",
    /// "key", "row_groups_per_task"}}`). The template's EventBridge rule starts an execution for
    /// every object created under the prefix. A request for this object version already there
    /// (a re-delivered event) is left alone, so that one version starts one execution; the write
    /// is conditional on what the key held when looked at, and a request another invocation
    /// wrote in between (which started an execution of its own) is left alone too.
    async fn request_fan_out(&self, task: &Task, key: &str, etag: &str) -> Result<(), S3Error> {
        let uri = Self::uri(&task.bucket, key);
        let existing = s3io::head(&self.client, &task.bucket, key).await?;
        let asked = existing.as_ref().is_some_and(|o| o.metadata.get(META_SOURCE_ETAG).is_some_and(|e| e == etag));
        let mut raced = false;
        if !asked {
            let request = crate::event::PlanRequest::new(&task.bucket, &task.key);
            let body = serde_json::to_vec_pretty(&serde_json::json!({ "plan": request })).expect("a plan request serialises");
            let mut up = Upload::new(&self.client, &task.bucket, key, "application/json", self.config.part_size)
                .with_metadata(META_SOURCE_ETAG, etag);
            up.write(&body).await?;
            match up.finish(&Precondition::of(existing.as_ref())).await {
                Ok(_) => {}
                Err(Finish::Changed(back)) => {
                    back.abort().await;
                    raced = true;
                }
                Err(Finish::Failed(e)) => return Err(*e),
            }
        }
        tracing::info!(bucket = %task.bucket, key = %task.key, request = %uri, already = asked, raced, "fan-out requested");
        Ok(())
    }

    /// Whether `task`'s object is still the version with `etag`.
    async fn is_current(&self, task: &Task, etag: &str) -> Result<bool, Failure> {
        let now = s3io::head(&self.client, &task.bucket, &task.key).await.map_err(|e| Failure::Job(e.into()))?;
        Ok(now.is_some_and(|o| o.etag == etag))
    }

    /// After a conditional write or delete found its key changed since this invocation looked:
    /// when the source object changed too, a newer version's invocation wrote, and this one is
    /// `Superseded`; when not, the other writer scored an older version (its check came before
    /// this version was uploaded), and the condition to try again is what the key holds now.
    async fn after_change(&self, task: &Task, etag: &str, key: &str, label: &str) -> Result<Precondition, Failure> {
        if !self.is_current(task, etag).await? {
            return Err(Failure::Superseded(format!(
                "{label}: the object was replaced and its new version's results were written while this one finished; nothing of this version was written"
            )));
        }
        let now = s3io::head(&self.client, &task.bucket, key).await.map_err(|e| Failure::Job(e.into()))?;
        Ok(Precondition::of(now.as_ref()))
    }

    /// Completes an output upload as a conditional write over `seen`, what its key held when
    /// this invocation started, so that a write by another invocation since then is never
    /// overwritten unseen (see [`Self::after_change`]).
    async fn complete(&self, mut up: Upload, task: &Task, etag: &str, label: &str, seen: Precondition) -> Result<u64, Failure> {
        let mut when = seen;
        for _ in 0..CONDITIONAL_ATTEMPTS {
            match up.finish(&when).await {
                Ok(bytes) => return Ok(bytes),
                Err(Finish::Failed(e)) => return Err(Failure::Job((*e).into())),
                Err(Finish::Changed(back)) => match self.after_change(task, etag, back.key(), label).await {
                    Ok(now) => (when, up) = (now, *back),
                    Err(e) => {
                        back.abort().await;
                        return Err(e);
                    }
                },
            }
        }
        let key = up.key().to_string();
        up.abort().await;
        Err(kept_changing("CompleteUpload", &task.bucket, &key))
    }

    /// Deletes `key` as a conditional delete over `seen` (what it held when this invocation
    /// started), with the same rule as [`Self::complete`] when another invocation wrote it since.
    async fn delete(&self, task: &Task, etag: &str, key: &str, label: &str, seen: &Precondition) -> Result<(), Failure> {
        let mut when = seen.clone();
        for _ in 0..CONDITIONAL_ATTEMPTS {
            if s3io::delete(&self.client, &task.bucket, key, &when).await.map_err(|e| Failure::Job(e.into()))? {
                return Ok(());
            }
            when = self.after_change(task, etag, key, label).await?;
        }
        Err(kept_changing("DeleteObject", &task.bucket, key))
    }

    /// Deletes `scored/<key>` and `rejected/<key>`.
    async fn remove_outputs(&self, task: &Task, keys: &Keys, etag: &str, seen: &Seen) -> Result<(), Failure> {
        let label = Self::uri(&task.bucket, &task.key);
        let (a, b) = tokio::join!(
            self.delete(task, etag, &keys.scored, &label, &seen.scored),
            self.delete(task, etag, &keys.rejected, &label, &seen.rejected)
        );
        a.and(b)
    }

    /// Writes the summary, with its status, source ETag and model in the object's metadata, as a
    /// conditional write over `seen` like every output.
    async fn put_summary(&self, task: &Task, keys: &Keys, etag: &str, summary: &Summary, seen: Precondition) -> Result<(), Failure> {
        let body = serde_json::to_vec_pretty(summary).expect("summary serialises");
        let mut up = Upload::new(&self.client, &task.bucket, &keys.summary, "application/json", self.config.part_size)
            .with_metadata(META_SOURCE_ETAG, etag)
            .with_metadata(META_MODEL_SHA, &self.model.sha256)
            .with_metadata(META_STATUS, summary.status.as_str());
        up.write(&body).await.map_err(|e| Failure::Job(e.into()))?;
        self.complete(up, task, etag, &Self::uri(&task.bucket, &task.key), seen).await?;
        Ok(())
    }

    async fn open(
        &self,
        task: &Task,
        info: &s3io::ObjectInfo,
        format: FileFormat,
        fetched: &Arc<AtomicU64>,
    ) -> Result<(Source, Vec<String>, usize), Failure> {
        let label = Self::uri(&task.bucket, &task.key);
        match format {
            FileFormat::Parquet => {
                let mut reader = S3Reader {
                    client: self.client.clone(),
                    bucket: task.bucket.clone(),
                    key: task.key.clone(),
                    etag: info.etag.clone(),
                    size: info.size,
                    fetched: fetched.clone(),
                };
                let bad_file = |m| unreadable(&label, m);
                let meta = ArrowReaderMetadata::load_async(&mut reader, Default::default())
                    .await
                    .map_err(|e| parquet_failure(&label, e, bad_file))?;
                table::check_parquet_layout(meta.metadata(), info.size).map_err(|m| Failure::Input(format!("{label}: {m}")))?;
                let meta = table::dictionary_columns(meta, &table::text_inputs(&self.bundle.spec))
                    .map_err(|e| parquet_failure(&label, e, bad_file))?;
                let groups = meta.metadata().row_groups();
                let (range, first_row) = match task.row_groups {
                    None => (0..groups.len(), 0usize),
                    Some([a, b]) => {
                        if b > groups.len() {
                            return Err(Failure::Input(format!("{label}: row groups [{a}, {b}) asked for, the file has {}", groups.len())));
                        }
                        (a..b, groups[..a].iter().map(|g| g.num_rows() as usize).sum())
                    }
                };
                let reader = Prefetch::new(reader, s3io::row_group_spans(meta.metadata(), range.clone()));
                let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta);
                let groups = builder.metadata().row_groups();
                let columns: Vec<String> = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
                let rows: u64 = groups[range.clone()].iter().map(|g| g.num_rows() as u64).sum();
                if task.row_groups.is_none() && rows > self.config.max_rows {
                    return Err(Failure::Refused(format!(
                        "{label}: {rows} rows in {} row groups is more than MAX_ROWS_PER_INVOCATION={}; nothing was scored. \
                         Score it with the row-group state machine (infra/README.md), which sends [first, end) row-group ranges to this function",
                        groups.len(),
                        self.config.max_rows
                    )));
                }
                let stream = builder
                    .with_row_groups(range.collect())
                    .with_batch_size(table::BATCH_ROWS)
                    .build()
                    .map_err(|e| parquet_failure(&label, e, bad_file))?;
                Ok((Source::Parquet(stream), columns, first_row))
            }
            FileFormat::Csv => {
                if task.row_groups.is_some() {
                    return Err(Failure::Input(format!("{label}: row-group ranges apply to parquet files only")));
                }
                // CSV has no row groups to fetch by range: it is spooled to local storage (Lambda's
                // /tmp) as it streams in, then read a batch at a time; memory stays bounded.
                let spool = tempfile::NamedTempFile::new().map_err(|e| Failure::Input(format!("creating a temporary file: {e}")))?;
                let out = self
                    .client
                    .get_object()
                    .bucket(&task.bucket)
                    .key(&task.key)
                    .if_match(&info.etag)
                    .send()
                    .await
                    .map_err(|e| Failure::Job(s3io::s3_error("GetObject", &task.bucket, &task.key, e).into()))?;
                let mut body = out.body.into_async_read();
                let mut file = tokio::fs::File::from_std(spool.reopen().map_err(|e| Failure::Input(format!("temporary file: {e}")))?);
                let n = tokio::io::copy(&mut body, &mut file).await.map_err(|e| {
                    Failure::Job(S3Error::transfer("GetObject body", &task.bucket, &task.key, DisplayErrorContext(e)).into())
                })?;
                fetched.fetch_add(n, Ordering::Relaxed);
                tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(|e| Failure::Input(format!("temporary file: {e}")))?;
                let open = || spool.reopen().map_err(|e| Failure::Input(format!("temporary file: {e}")));
                let reader = TableReader::csv(&label, open()?, open()?)?;
                let columns = reader.columns.clone();
                Ok((Source::Table(reader, spool), columns, 0))
            }
        }
    }

    async fn score(
        &self,
        task: &Task,
        keys: &Keys,
        info: &s3io::ObjectInfo,
        seen: &Seen,
        deadline_ms: u64,
        summary: &mut Summary,
    ) -> Result<(), Failure> {
        let label = Self::uri(&task.bucket, &task.key);
        let format = FileFormat::from_path(std::path::Path::new(&task.key))
            .map_err(|_| Failure::Input(format!("{label}: unsupported file type; name the object *.parquet (or *.pq) or *.csv")))?;
        if info.size == 0 {
            return Err(Failure::Input(format!(
                "{label}: the object is empty (0 bytes); upload a parquet or CSV file with a header and customer rows"
            )));
        }
        let started = Instant::now();
        let fetched = Arc::new(AtomicU64::new(0));
        let (mut source, columns, first_row) = self.open(task, info, format, &fetched).await?;
        table::require(&label, &columns, self.bundle.spec.input_names())?;

        // Checked at start-up: a bundle that cannot give reasons stops init.
        let mut scorer = BatchScorer::new(&self.bundle, &columns).with_reasons(self.config.top_reasons)?;
        let scored_schema = scored_schema(&scorer.schema());
        let mut scored_enc = Encoder::new(format, scored_schema.clone())?;
        let part = self.config.part_size;
        let content_type = match format {
            FileFormat::Csv => "text/csv",
            FileFormat::Parquet => "application/vnd.apache.parquet",
        };
        let mut scored_up =
            Upload::new(&self.client, &task.bucket, &keys.scored, content_type, part).with_metadata(META_SOURCE_ETAG, &info.etag);
        let mut rejected: Option<(Encoder, Upload, SchemaRef)> = None;
        let locate = move |i: usize| table::locate(format, i);
        // The model version on every scored row: one column as long as the longest batch so far,
        // sliced to each batch's rows (a slice shares its buffers).
        let mut version: ArrayRef = Arc::new(StringArray::from(Vec::<&str>::new()));

        let result: Result<(), Failure> = async {
            let mut row = first_row;
            while let Some(batch) = source.next(&label, row).await {
                let left = ms_left(deadline_ms);
                if left < self.config.time_margin_ms {
                    return Err(Failure::Job(JobError::OutOfTime {
                        bucket: task.bucket.clone(),
                        key: task.key.clone(),
                        rows: (row - first_row) as u64,
                        left_ms: left,
                    }));
                }
                let batch = batch?;
                let out = scorer.score(&batch, row, &locate)?;
                let at_error = out.schema().index_of(ERROR_COLUMN).expect("the scorer writes an error column");
                let errors = out.column(at_error).clone();
                let ok = arrow::compute::is_null(&errors).expect("is_null on a column");
                let good = filter_record_batch(&out, &ok).expect("mask matches the batch");
                let n = good.num_rows();
                let mut cols: Vec<ArrayRef> =
                    good.columns().iter().enumerate().filter(|(i, _)| *i != at_error).map(|(_, c)| c.clone()).collect();
                if version.len() < n {
                    version = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(self.model.version.as_str(), n)));
                }
                cols.push(version.slice(0, n));
                let good = RecordBatch::try_new(scored_schema.clone(), cols).expect("scored schema");
                let bytes = scored_enc.encode(&good)?;
                scored_up.write(&bytes).await.map_err(|e| Failure::Job(e.into()))?;

                if ok.true_count() < batch.num_rows() {
                    let bad_mask = arrow::compute::not(&ok).expect("not");
                    let bad = reject_rows(&batch, &bad_mask, &errors, row);
                    if rejected.is_none() {
                        let enc = Encoder::new(format, bad.schema())?;
                        let up = Upload::new(&self.client, &task.bucket, &keys.rejected, content_type, part)
                            .with_metadata(META_SOURCE_ETAG, &info.etag);
                        rejected = Some((enc, up, bad.schema()));
                    }
                    let (enc, up, _) = rejected.as_mut().expect("just set");
                    let bytes = enc.encode(&bad)?;
                    up.write(&bytes).await.map_err(|e| Failure::Job(e.into()))?;
                }
                row += batch.num_rows();
            }
            Ok(())
        }
        .await;
        // The outputs' last parts go up while the object is checked once more: still the current
        // version? An object replaced after its last read would otherwise get this version's
        // results under its names: they are dropped, and the new version's own event scores it.
        let mut rejected = rejected.map(|(enc, up, schema)| (Some(enc), up, schema));
        let result =
            match result {
                Ok(()) => async {
                    let tail = scored_enc.finish(scored_schema)?;
                    scored_up.write(&tail).await.map_err(|e| Failure::Job(e.into()))?;
                    scored_up.send_last().await.map_err(|e| Failure::Job(e.into()))?;
                    if let Some((enc, up, schema)) = &mut rejected {
                        let tail = enc.take().expect("finished once").finish(schema.clone())?;
                        up.write(&tail).await.map_err(|e| Failure::Job(e.into()))?;
                        up.send_last().await.map_err(|e| Failure::Job(e.into()))?;
                    }
                    match self.is_current(task, &info.etag).await? {
                        true => Ok(()),
                        false => Err(Failure::Superseded(format!(
                            "{label}: the object was replaced after it was read; nothing was written, the new version's own event scores it"
                        ))),
                    }
                }
                .await,
                Err(e) => Err(e),
            };
        if let Err(e) = result {
            scored_up.abort().await;
            if let Some((_, up, _)) = rejected {
                up.abort().await;
            }
            return Err(e);
        }
        summary.timings.read_and_score_ms = started.elapsed().as_secs_f64() * 1e3;

        // Complete the outputs: rejected rows first, so that scored output never exists without
        // them. Without rejected rows, the stale rejected file of an earlier run is deleted while
        // the scored output completes.
        let s = &scorer.summary;
        let finish_scored = self.complete(scored_up, task, &info.etag, &label, seen.scored.clone());
        let scored_bytes = if let Some((_, up, _)) = rejected {
            summary.timings.bytes_written += self.complete(up, task, &info.etag, &label, seen.rejected.clone()).await?;
            summary.rejected_uri = Some(Self::uri(&task.bucket, &keys.rejected));
            finish_scored.await?
        } else {
            let delete_stale = self.delete(task, &info.etag, &keys.rejected, &label, &seen.rejected);
            let (deleted, scored) = tokio::join!(delete_stale, finish_scored);
            deleted?;
            scored?
        };
        summary.timings.bytes_written += scored_bytes;
        summary.scored_uri = Some(Self::uri(&task.bucket, &keys.scored));

        summary.rows_in = s.rows as u64;
        summary.rows_scored = s.scored as u64;
        summary.rows_rejected = s.failed as u64;
        summary.rows_warned = s.warned as u64;
        summary.tiers = s.tiers.iter().map(|(t, n)| (t.clone(), *n as u64)).collect();
        summary.offers = s.offers.iter().map(|(o, n)| (o.clone(), *n as u64)).collect();
        summary.probability_histogram = s.probability_histogram.iter().map(|&n| n as u64).collect();
        summary.mean_probability = s.mean_probability;
        summary.drift = scorer.drift(self.config.psi_threshold).map(|features| DriftReport::new(self.config.psi_threshold, features));
        summary.timings.bytes_read = fetched.load(Ordering::Relaxed);
        Ok(())
    }
}

/// How a task ended early.
enum Failure {
    /// The input's fault: recorded as `failed`.
    Input(String),
    /// Too large for one invocation: recorded as `refused`.
    Refused(String),
    /// The object was replaced while it was read: nothing is written.
    Superseded(String),
    /// Retry-worthy.
    Job(JobError),
}

/// A table or scoring error from the core: the input's fault.
impl From<churn_core::CoreError> for Failure {
    fn from(e: churn_core::CoreError) -> Self {
        Failure::Input(e.to_string())
    }
}

/// A parquet error: S3 trouble underneath is retried (or, when the object was replaced,
/// superseded); anything else is a bad file, described by `bad_file`.
fn parquet_failure(label: &str, e: parquet::errors::ParquetError, bad_file: impl FnOnce(String) -> Failure) -> Failure {
    if let parquet::errors::ParquetError::External(inner) = e {
        return match inner.downcast::<S3Error>() {
            Ok(s3) if s3.code.as_deref() == Some("PreconditionFailed") => Failure::Superseded(format!(
                "{label}: the object was replaced while it was being read; the new version's own event scores it"
            )),
            Ok(s3) => Failure::Job((*s3).into()),
            Err(other) => bad_file(other.to_string()),
        };
    }
    bad_file(e.to_string())
}

fn unreadable(label: &str, message: String) -> Failure {
    Failure::Input(format!("{label}: not a readable parquet file: {message}"))
}

fn read_failure(label: &str, at: &str, e: String) -> Failure {
    Failure::Input(format!("{label}: cannot read the data at or after {at}: {e}. Nothing was written; fix or re-export the file"))
}

/// The scored output's schema: the scorer's columns without `error`, plus `model_version`.
fn scored_schema(scorer: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = scorer.fields().iter().filter(|f| f.name() != ERROR_COLUMN).map(|f| f.as_ref().clone()).collect();
    fields.push(table::without_statistics(Field::new("model_version", DataType::Utf8, false)));
    Arc::new(Schema::new(fields))
}

/// The rejected rows of `input`, whole, plus their `_row` (1-based) and `_error`.
fn reject_rows(input: &RecordBatch, mask: &BooleanArray, errors: &ArrayRef, first_row: usize) -> RecordBatch {
    let rows: ArrayRef = Arc::new(UInt64Array::from_iter_values((0..input.num_rows()).map(|r| (first_row + r + 1) as u64)));
    let mut fields: Vec<Field> = input.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("_row", DataType::UInt64, false));
    fields.push(Field::new("_error", DataType::Utf8, true));
    let mut cols = input.columns().to_vec();
    cols.push(rows);
    cols.push(errors.clone());
    let all = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("same row count");
    filter_record_batch(&all, mask).expect("mask matches the batch")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BatchConfig {
        BatchConfig::from_env(|k| (k == "MODEL_URI").then(|| "m".to_string())).unwrap()
    }

    #[test]
    fn deadlines_are_epoch_milliseconds_or_a_duration_from_now() {
        let now = now_ms();
        let real = now + 5_000;
        assert_eq!(deadline_epoch_ms(real), real);
        let emulated = deadline_epoch_ms(600_000);
        assert!(emulated >= now + 600_000 && emulated < now + 660_000);
        assert_eq!(ms_left(now - 1), 0);
    }

    #[test]
    fn output_keys_mirror_the_input_key() {
        let t = Task { bucket: "b".into(), key: "incoming/march export/café.parquet".into(), row_groups: None };
        let k = Keys::of(&t, &config());
        assert_eq!(k.scored, "scored/march export/café.parquet");
        assert_eq!(k.rejected, "rejected/march export/café.parquet");
        assert_eq!(k.summary, "scored/march export/café.parquet.summary.json");
        let t = Task { row_groups: Some([2, 4]), ..t };
        assert_eq!(Keys::of(&t, &config()).scored, "scored/march export/café.parquet.rowgroups-2-4.parquet");
    }

    /// A read that fails because S3 failed underneath is retried (the invocation fails), an
    /// object replaced mid-read is left to its new version, and only a bad file is `failed`:
    /// mid-file as at the footer.
    #[test]
    fn s3_trouble_under_a_parquet_read_is_retried_not_blamed_on_the_file() {
        use parquet::errors::ParquetError;
        let external = |code: Option<&str>| {
            let mut e = S3Error::transfer("GetObject", "b", "incoming/x.parquet", "connection reset");
            e.code = code.map(String::from);
            ParquetError::External(Box::new(e))
        };
        let at = |m: String| read_failure("s3://b/incoming/x.parquet", "row 4097", m);
        assert!(matches!(parquet_failure("l", external(None), at), Failure::Job(JobError::S3(_))));
        assert!(matches!(parquet_failure("l", external(Some("InternalError")), at), Failure::Job(JobError::S3(_))));
        assert!(matches!(parquet_failure("l", external(Some("PreconditionFailed")), at), Failure::Superseded(_)));
        match parquet_failure("l", ParquetError::General("bad page".into()), at) {
            Failure::Input(m) => assert!(m.contains("row 4097") && m.contains("bad page"), "{m}"),
            _ => panic!("a bad page is the file's fault"),
        }
    }

    #[test]
    fn rejected_rows_keep_every_column_and_say_why() {
        let input = RecordBatch::try_from_iter(vec![("a", Arc::new(StringArray::from(vec!["x", "y", "z"])) as ArrayRef)]).unwrap();
        let errors: ArrayRef = Arc::new(StringArray::from(vec![None, Some("row 2: bad"), None]));
        let mask = BooleanArray::from(vec![false, true, false]);
        let r = reject_rows(&input, &mask, &errors, 0);
        assert_eq!(r.num_rows(), 1);
        assert_eq!(r.schema().field(0).name(), "a");
        assert_eq!(r.column(1).as_any().downcast_ref::<UInt64Array>().unwrap().value(0), 2);
        assert_eq!(r.column(2).as_any().downcast_ref::<StringArray>().unwrap().value(0), "row 2: bad");
    }
}
