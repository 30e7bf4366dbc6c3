//! Where model bundles live and how runs and versions are recorded:
//!
//! - [`store`]: a bundle in a local directory or under `s3://bucket/prefix`, written once
//!   (aws-sdk-s3, feature `sdk`), verified against its manifest on every read (a SigV4-signed
//!   GET, in every build: the prediction function is built without the SDK, see `s3read`);
//! - [`mlflow`]: the MLflow REST API (tracking, artifacts through the server's proxy, model
//!   registry with aliases) with bounded retries;
//! - [`registry`]: the aliases and version tags `churn` uses, and resolving a model address.

pub mod function;
pub mod mlflow;
pub mod package;
pub mod registry;
mod retry;
mod s3read;
pub mod store;

pub use mlflow::Mlflow;
pub use store::{Location, Store};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{uri}: {problem}")]
    Uri { uri: String, problem: String },
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("S3 {op} {uri} failed{}: {message}. Check the bucket exists, the credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID) and, for a non-AWS server, AWS_ENDPOINT_URL_S3", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    S3 { op: String, uri: String, code: Option<String>, message: String },
    #[error("{uri} already exists with different content: bundle files are immutable; upload under a new run id")]
    Exists { uri: String },
    #[error("MLflow at {server}: {message}")]
    Mlflow { server: String, message: String },
    /// The service did not answer (connection refused, name resolution, time-out) after the
    /// bounded retries: worth trying again later, unlike a refusal.
    #[error("{service} at {target}: unreachable ({detail}) after {attempts} attempts; {hint}")]
    Unreachable { service: &'static str, target: String, detail: String, attempts: u32, hint: &'static str },
    #[error(transparent)]
    Core(#[from] churn_core::CoreError),
}

impl StoreError {
    /// Whether the error means "could not reach the service" (as opposed to a refusal).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. })
    }
}
