//! The prediction API, independent of where it runs.
//!
//! - [`config`]: the serving configuration from environment variables, checked at start-up;
//! - [`request`]: parsing and validating a `POST /predict` body, listing every problem with its
//!   field path;
//! - [`predictor`]: scoring validated customers with the bundle (one feature path; the network
//!   evaluator for the project's dense stacks, tract for any other graph and for occlusion
//!   reasons) and explaining each score;
//! - [`http`]: the routes as an axum `Router`, served by `lambda_http` inside Lambda and by
//!   `axum::serve` on a local port outside it — one set of handlers for both;
//! - [`metrics`]: CloudWatch Embedded Metric Format lines and hashed customer ids for logs.

pub mod config;
pub mod http;
pub mod metrics;
pub mod predictor;
pub mod request;
pub mod types;

pub use config::{ConfigError, ServeConfig};
pub use http::{RequestId, openapi_document, router};
pub use predictor::{Predictor, Reasons};
pub use types::*;
