//! The prediction function. Start-up (Lambda's init phase, outside any request) does all the
//! heavy work once: read and check the configuration, fetch the bundle (S3, a directory, or
//! through the MLflow registry), verify its checksums, read the model (a dense stack's layers, or
//! tract's plan of any other graph) and compile the transform.
//! Then the same axum router answers requests: through the Lambda runtime API when
//! `AWS_LAMBDA_RUNTIME_API` is set, on a local HTTP port (`BIND`) otherwise.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use churn_api::{Predictor, RequestId, ServeConfig};
use churn_store::{Mlflow, Store, registry};
use lambda_http::RequestExt;

fn main() -> ExitCode {
    if std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_none() {
        // A REST API (payload v1) puts the stage in the path (`/Prod/predict`); the routes are
        // stage-free, so lambda_http is told to leave it out.
        // SAFETY: no other thread exists yet (the runtime is built after this).
        unsafe { std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true") };
    }
    churn_store::function::main(run(churn_store::function::in_lambda()))
}

async fn run(in_lambda: bool) -> anyhow::Result<()> {
    let start = Instant::now();
    let config = ServeConfig::from_env(|k| std::env::var(k).ok())?;
    if !config.pseudonyms.configured {
        tracing::warn!(
            "ID_PSEUDONYM_KEY is not set: customer ids in logs use a random per-instance key and cannot be matched across instances"
        );
    }
    let store = Store::new();
    let mlflow = config.mlflow_uri.as_deref().map(Mlflow::new).transpose()?;
    let resolved = registry::resolve_model(&store, mlflow.as_ref(), &config.model_uri)
        .await
        .with_context(|| format!("loading the model from MODEL_URI={}", config.model_uri))?;
    let t = resolved.bundle.timings;
    let predictor = Arc::new(
        Predictor::new(resolved.bundle, resolved.version.map(|v| v.version), config.max_batch, config.top_reasons)
            .with_pseudonyms(config.pseudonyms.clone())
            .with_reasons(config.reasons),
    );
    if matches!(config.reasons, churn_api::Reasons::Shapley { .. }) && predictor.reasons() == churn_api::Reasons::Occlusion {
        tracing::warn!(
            "the bundle has no background sample (trained before explanations existed): reasons use occlusion; retrain for Shapley reasons"
        );
    }
    let info = predictor.info();
    let packaged_from = resolved.package.as_ref().map_or("-", |p| p.bundle_location.as_str());
    tracing::info!(model = %info.name, version = %info.version, sha256 = %info.sha256, location = %resolved.location, packaged_from, verify_ms = t.verify_ms, parse_ms = t.parse_ms, plan_ms = t.plan_ms, explainer_ms = t.explainer_ms, init_ms = start.elapsed().as_secs_f64() * 1e3, "model loaded");
    let app = churn_api::router(predictor, config.max_body_bytes);
    if in_lambda {
        let app = app.layer(axum::middleware::map_request(lambda_request_id));
        lambda_http::run(app).await.map_err(|e| anyhow::anyhow!("{e}"))
    } else {
        let listener = tokio::net::TcpListener::bind(config.bind).await.with_context(|| format!("binding BIND={}", config.bind))?;
        tracing::info!(address = %config.bind, "serving HTTP (not in Lambda)");
        axum::serve(listener, app).await.context("serving HTTP")
    }
}

/// Puts Lambda's request id where the handlers look for it.
async fn lambda_request_id(mut req: axum::extract::Request) -> axum::extract::Request {
    if let Some(ctx) = req.lambda_context_ref() {
        let id = ctx.request_id.clone();
        req.extensions_mut().insert(RequestId(id));
    }
    req
}
