//! Every end-to-end test, as one test binary: one link instead of one per file, one build check
//! of the workspace binaries and one trained bundle per run (`churn_e2e::binary`,
//! `churn_e2e::trained_bundle`), and one pool of test threads, so a long test of one file (the
//! arm64 `sam build`) runs beside the others instead of after them. Run one file's tests with
//! `cargo test -p churn-e2e --test e2e parity::`.

mod api;
mod batch;
mod cli;
mod deploy;
mod explain;
mod lambda;
mod notebooks;
mod parity;
mod registry;
