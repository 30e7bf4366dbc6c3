//! The model contract shared by training and serving.
//!
//! Everything that must be identical on both sides of the training/serving boundary lives here:
//! the dataset schema, the fitted feature transform ([`spec::FeatureSpec`]), the retention
//! playbook (risk tiers, actions, business figures), the model bundle format with its checksums,
//! the tract-based scorer, and the evaluation metrics. Training (candle) writes a bundle with this
//! crate; the Lambdas and `churn score` read it with this crate, so a raw customer record takes one
//! code path to its feature vector wherever it is scored.
//!
//! The crate has no candle in it: the prediction Lambda depends on it and must stay small.
//! Tabular I/O (CSV / parquet through arrow) is behind the `tabular` feature for the same reason.

pub mod bundle;
pub mod config;
pub mod drift;
pub mod emf;
pub mod env;
pub mod error;
pub mod explain;
pub mod metrics;
pub mod network;
pub mod onnx;
pub mod playbook;
pub mod privacy;
pub mod row;
pub mod scorer;
#[cfg(feature = "tabular")]
pub mod scoring;
pub mod spec;
#[cfg(feature = "tabular")]
pub mod table;

/// The CloudWatch namespace of every metric the functions emit (their EMF lines); the
/// template's alarms watch it.
pub const METRIC_NAMESPACE: &str = "ChurnPrediction";

pub use bundle::{Bundle, Manifest, ModelInfo};
pub use config::{BinEdges, DatasetConfig, DerivedFeature, DerivedKind};
pub use error::{CoreError, FieldProblem, RowError, ValueProblem};
pub use playbook::Playbook;
pub use row::{RawRow, RawValue};
pub use scorer::Scorer;
pub use spec::{FeatureSpec, RawInputType};

/// Version of the bundle layout and of the feature-spec JSON. Readers refuse other versions.
pub const SCHEMA_VERSION: u32 = 1;

/// Hex SHA-256 of a byte slice: the checksum used in manifests and for data hashes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
