//! Runs the notebook `notebooks/02_train.rs` headless (see `churn_training::notebook`).
include!(concat!(env!("OUT_DIR"), "/notebooks/02_train.rs"));
