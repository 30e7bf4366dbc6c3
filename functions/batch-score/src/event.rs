//! What an invocation asks for: an S3 `ObjectCreated` notification (one or more records), or a
//! row-group range of one object (an item of the Step Functions Distributed Map that fans a huge
//! object out over many invocations; see `infra/README.md`).
//!
//! S3 notification keys are URL-encoded the way HTML forms are: `+` is a space and other bytes are
//! `%xx` (a literal `+` arrives as `%2B`). Keys outside the input prefix are skipped with a reason,
//! so that even a misconfigured trigger can never make the function score its own output.

use aws_lambda_events::event::s3::S3Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One object (or a row-group range of one) to score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub bucket: String,
    /// The decoded key, e.g. `incoming/march export/customers.parquet`.
    pub key: String,
    /// `[first, end)` row groups of a parquet object; the whole object when absent.
    #[serde(default)]
    pub row_groups: Option<[usize; 2]>,
}

/// Asks how to split one parquet object into row-group tasks (the first state of the fan-out
/// state machine): `{"plan": {"bucket": …, "key": …, "row_groups_per_task": 4}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRequest {
    pub bucket: String,
    pub key: String,
    #[serde(default = "default_groups_per_task")]
    pub row_groups_per_task: usize,
}

/// The fan-out's last step: the plan (as [`crate::job::Scorer::plan`] answered it), whose ranges
/// have all been scored, to merge into the object's own summary.
#[derive(Debug, Clone, Deserialize)]
pub struct MergeRequest {
    pub bucket: String,
    pub key: String,
    pub items: Vec<Task>,
}

fn default_groups_per_task() -> usize {
    4
}

impl PlanRequest {
    /// The request for the whole of `s3://{bucket}/{key}`, in ranges of the default size.
    pub fn new(bucket: &str, key: &str) -> Self {
        PlanRequest { bucket: bucket.into(), key: key.into(), row_groups_per_task: default_groups_per_task() }
    }
}

/// The input of the fan-out's first state: a [`PlanRequest`] (a person starting an execution),
/// or what the EventBridge route sends for a fan-out request object the function wrote,
/// `{"bucket": …, "request": "<FAN_OUT_PREFIX>….json"}`, whose body is `{"plan": PlanRequest}`.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanInput {
    Object(PlanRequest),
    Request { bucket: String, request: String },
}

impl PlanInput {
    pub fn from_value(v: Value) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Request {
            bucket: String,
            request: String,
        }
        if v.get("request").is_some() {
            let Request { bucket, request } = serde_json::from_value(v)?;
            Ok(PlanInput::Request { bucket, request })
        } else {
            serde_json::from_value(v).map(PlanInput::Object)
        }
    }
}

/// The tasks covering `row_groups` groups, `per_task` at a time: every group exactly once.
pub fn split_tasks(bucket: &str, key: &str, row_groups: usize, per_task: usize) -> Vec<Task> {
    let per_task = per_task.max(1);
    (0..row_groups)
        .step_by(per_task)
        .map(|a| Task { bucket: bucket.into(), key: key.into(), row_groups: Some([a, (a + per_task).min(row_groups)]) })
        .collect()
}

/// A record that will not be scored, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub bucket: String,
    pub key: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("the event is neither an S3 notification (`Records`) nor a row-group task (`bucket`, `key`, `row_groups`): {0}")]
    Unrecognised(String),
    #[error("S3 record {index}: {problem}")]
    Record { index: usize, problem: String },
    #[error("key {raw:?} does not decode to UTF-8")]
    Key { raw: String },
}

/// Decodes an S3 notification key (`+` → space, then `%xx`).
pub fn decode_key(raw: &str) -> Result<String, EventError> {
    let plus = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus).decode_utf8().map(|k| k.into_owned()).map_err(|_| EventError::Key { raw: raw.into() })
}

/// The tasks of an invocation, plus the records it skips (outside `input_prefix`).
pub fn tasks(event: Value, input_prefix: &str) -> Result<(Vec<Task>, Vec<Skipped>), EventError> {
    if event.get("Records").is_some() {
        let s3: S3Event = serde_json::from_value(event).map_err(|e| EventError::Unrecognised(e.to_string()))?;
        let mut tasks = Vec::new();
        let mut skipped = Vec::new();
        for (index, r) in s3.records.into_iter().enumerate() {
            let bad = |problem: &str| EventError::Record { index, problem: problem.into() };
            let bucket = r.s3.bucket.name.filter(|b| !b.is_empty()).ok_or_else(|| bad("no bucket name (s3.bucket.name)"))?;
            let raw = r.s3.object.key.filter(|k| !k.is_empty()).ok_or_else(|| bad("no object key (s3.object.key)"))?;
            let key = decode_key(&raw).map_err(|e| bad(&e.to_string()))?;
            let name = r.event_name.unwrap_or_default();
            if !name.is_empty() && !name.starts_with("ObjectCreated") {
                skipped.push(Skipped { bucket, key, reason: format!("event {name} is not an ObjectCreated event") });
            } else if !key.starts_with(input_prefix) {
                skipped.push(Skipped {
                    bucket,
                    key,
                    reason: format!("not under the input prefix {input_prefix}; outputs are never scored"),
                });
            } else if key.ends_with('/') {
                skipped.push(Skipped { bucket, key, reason: "a folder marker, not a file".into() });
            } else {
                tasks.push(Task { bucket, key, row_groups: None });
            }
        }
        return Ok((tasks, skipped));
    }
    let task: Task = serde_json::from_value(event).map_err(|e| EventError::Unrecognised(e.to_string()))?;
    if let Some([a, b]) = task.row_groups
        && a >= b
    {
        return Err(EventError::Unrecognised(format!("row_groups [{a}, {b}] is empty: give [first, end) with first < end")));
    }
    if !task.key.starts_with(input_prefix) {
        let reason = format!("not under the input prefix {input_prefix}; outputs are never scored");
        return Ok((vec![], vec![Skipped { bucket: task.bucket, key: task.key, reason }]));
    }
    Ok((vec![task], vec![]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(key: &str, event: &str) -> Value {
        json!({
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-25T00:00:00.000Z", "eventName": event,
            "userIdentity": {"principalId": "X"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {}, "s3": {"s3SchemaVersion": "1.0", "configurationId": "c",
            "bucket": {"name": "data", "arn": "arn:aws:s3:::data"}, "object": {"key": key, "size": 10, "eTag": "e"}}
        })
    }

    #[test]
    fn keys_are_url_decoded() {
        assert_eq!(decode_key("incoming/march+export/caf%C3%A9+%2B+co.parquet").unwrap(), "incoming/march export/café + co.parquet");
        assert!(decode_key("incoming/%FF.parquet").is_err());
    }

    #[test]
    fn records_outside_the_prefix_and_other_events_are_skipped() {
        let ev = json!({"Records": [
            record("incoming/a+b.parquet", "ObjectCreated:Put"),
            record("scored/a+b.parquet", "ObjectCreated:CompleteMultipartUpload"),
            record("incoming/x.csv", "ObjectRemoved:Delete"),
            record("incoming/folder/", "ObjectCreated:Put"),
        ]});
        let (t, s) = tasks(ev, "incoming/").unwrap();
        assert_eq!(t, vec![Task { bucket: "data".into(), key: "incoming/a b.parquet".into(), row_groups: None }]);
        assert_eq!(s.len(), 3);
        assert!(s[0].reason.contains("input prefix"));
    }

    #[test]
    fn split_tasks_cover_every_group_once() {
        let t = split_tasks("b", "k", 10, 4);
        let ranges: Vec<[usize; 2]> = t.iter().map(|t| t.row_groups.unwrap()).collect();
        assert_eq!(ranges, vec![[0, 4], [4, 8], [8, 10]]);
        assert!(split_tasks("b", "k", 0, 4).is_empty());
    }

    #[test]
    fn row_group_tasks_and_garbage() {
        let (t, _) = tasks(json!({"bucket": "b", "key": "incoming/big.parquet", "row_groups": [2, 4]}), "incoming/").unwrap();
        assert_eq!(t[0].row_groups, Some([2, 4]));
        assert!(tasks(json!({"bucket": "b", "key": "incoming/big.parquet", "row_groups": [4, 4]}), "incoming/").is_err());
        assert!(matches!(tasks(json!({"hello": 1}), "incoming/"), Err(EventError::Unrecognised(_))));
        let e = tasks(json!({"Records": [record("", "ObjectCreated:Put")]}), "incoming/").unwrap_err();
        assert!(e.to_string().contains("record 0"), "{e}");
    }
}
