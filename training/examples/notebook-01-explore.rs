//! Runs the notebook `notebooks/01_explore.rs` headless (see `churn_training::notebook`).
include!(concat!(env!("OUT_DIR"), "/notebooks/01_explore.rs"));
