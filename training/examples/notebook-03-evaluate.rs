//! Runs the notebook `notebooks/03_evaluate.rs` headless (see `churn_training::notebook`).
include!(concat!(env!("OUT_DIR"), "/notebooks/03_evaluate.rs"));
