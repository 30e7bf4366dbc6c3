//! Runs the notebook `notebooks/05_drift.rs` headless (see `churn_training::notebook`).
include!(concat!(env!("OUT_DIR"), "/notebooks/05_drift.rs"));
