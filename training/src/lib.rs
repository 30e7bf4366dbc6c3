//! Training side of the churn system: reads a customer table, trains a candle model (MLP or the
//! logistic baseline) through the shared feature contract of `churn-core`, calibrates it,
//! evaluates it, and writes the model bundle (ONNX + feature spec + metrics + report).
//!
//! The `churn` binary (src/main.rs) runs [`cli`], one function per subcommand over [`pipeline`]
//! and the other modules.
//!
//! Errors: the modules that compute — [`data`], [`params`], [`model`], [`train`], [`mlmodel`] —
//! return typed errors a caller can match (`churn_core::CoreError`, [`params::ParamError`],
//! [`params::ConfigError`], [`train::TrainError`]). The command layer the `churn` binary and
//! the notebooks run — [`cli`], [`pipeline`], [`track`], [`benchmark`], [`explanations`],
//! [`notebook`] — only reports errors to a person, so it uses `anyhow` and adds what it was
//! doing (`with_context`) on the way up.

pub mod benchmark;
pub mod cli;
pub mod data;
pub mod explanations;
pub mod mlmodel;
pub mod model;
pub mod monitor;
pub mod notebook;
pub mod params;
pub mod pipeline;
pub mod report;
pub mod track;
pub mod train;

/// The bundled Telco customers, used when `churn train` is given no `--data`.
pub const BUNDLED_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/telco/customers.csv");
/// The Telco training configuration (derived features, playbook), used with the bundled data.
pub const BUNDLED_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/telco.toml");
