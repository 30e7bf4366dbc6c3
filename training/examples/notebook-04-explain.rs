//! Runs the notebook `notebooks/04_explain.rs` headless (see `churn_training::notebook`).
include!(concat!(env!("OUT_DIR"), "/notebooks/04_explain.rs"));
