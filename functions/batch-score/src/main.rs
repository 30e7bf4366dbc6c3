//! The batch-scoring function. Init does the heavy work once: read and check the configuration,
//! fetch and verify the bundle, read the model (a dense stack's layers, or tract's plan of any other
//! graph) and build the S3 client. Each S3 event is then
//! handed to `batch_score::handle`.

use std::process::ExitCode;

use anyhow::Context;
use batch_score::job::ModelInfo;
use batch_score::{BatchConfig, Scorer};
use churn_store::{Mlflow, Store, registry};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

fn main() -> ExitCode {
    churn_store::function::main(run())
}

async fn run() -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    // A corrupt object is reported as that object's error, without a panic message first.
    churn_core::table::quiet_decoder_panics();
    let config = BatchConfig::from_env(|k| std::env::var(k).ok())?;
    let store = Store::new();
    let mlflow = config.mlflow_uri.as_deref().map(Mlflow::new).transpose()?;
    let resolved = registry::resolve_model(&store, mlflow.as_ref(), &config.model_uri)
        .await
        .with_context(|| format!("loading the model from MODEL_URI={}", config.model_uri))?;
    let model = ModelInfo::of(&resolved.bundle.manifest, resolved.version.as_ref().map(|v| v.version.clone()));
    // A bundle that cannot give reasons is a configuration mistake: said now, not per object.
    churn_core::scoring::BatchScorer::new(&resolved.bundle, &[])
        .with_reasons(config.top_reasons)
        .with_context(|| format!("TOP_REASONS={}", config.top_reasons))?;
    let client = store.s3().await.clone();
    let t = resolved.bundle.timings;
    let packaged_from = resolved.package.as_ref().map_or("-", |p| p.bundle_location.as_str());
    tracing::info!(model = %model.name, version = %model.version, sha256 = %model.sha256, location = %resolved.location, packaged_from, verify_ms = t.verify_ms, parse_ms = t.parse_ms, plan_ms = t.plan_ms, explainer_ms = t.explainer_ms, init_ms = start.elapsed().as_secs_f64() * 1e3, "model loaded");
    let scorer = Scorer { client, bundle: resolved.bundle, model, config };
    let scorer = &scorer;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // The runtime reports the error's text as the invocation's error message.
        batch_score::handle(scorer, event.payload, event.context.deadline).await.map_err(|e| e.to_string())
    }))
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
}
