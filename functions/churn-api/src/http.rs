//! The HTTP routes. `lambda_http` hands API Gateway events (HTTP API payload v2, REST API v1)
//! to this router as ordinary HTTP requests, and the local server serves the same router, so
//! there is one set of handlers. Handlers parse, call the [`Predictor`], and shape the response.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::metrics;
use crate::predictor::Predictor;
use crate::request::ApiError;
use crate::types::*;

/// The id of the request being served: Lambda's request id inside Lambda (the binary inserts
/// it), else the `x-request-id` header, else a local counter.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

#[derive(Clone)]
struct App {
    predictor: Arc<Predictor>,
    max_body_bytes: usize,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Churn prediction API", description = "Churn probability, risk tier, recommended action and reasons per customer."),
    paths(predict, health, model, openapi),
    components(schemas(
        PredictRequest,
        PredictResponse,
        Prediction,
        Reason,
        PersonalisedOffer,
        InputWarning,
        ModelInfo,
        ErrorResponse,
        Problem,
        Health,
        ModelDescription,
        InputField,
        TierInfo
    ))
)]
struct ApiDoc;

/// The OpenAPI 3 document of the API.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The API's routes over a shared predictor.
pub fn router(predictor: Arc<Predictor>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/predict", post(predict))
        .route("/health", get(health))
        .route("/model", get(model))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(App { predictor, max_body_bytes })
}

fn ok<T: serde::Serialize>(body: &T) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn request_id(id: Option<Extension<RequestId>>, headers: &HeaderMap) -> String {
    static LOCAL: AtomicU64 = AtomicU64::new(0);
    id.map(|Extension(RequestId(id))| id)
        .or_else(|| headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string))
        .unwrap_or_else(|| format!("local-{}", LOCAL.fetch_add(1, Ordering::Relaxed)))
}

/// Score customers.
#[utoipa::path(post, path = "/predict", request_body(content = PredictRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One prediction per customer, in request order", body = PredictResponse),
        (status = 400, description = "Invalid JSON or invalid customers; every problem with its field path", body = ErrorResponse),
        (status = 413, description = "Body or batch over the limit", body = ErrorResponse),
        (status = 415, description = "Content-Type is not application/json", body = ErrorResponse),
    ))]
async fn predict(
    State(app): State<App>,
    id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let request_id = request_id(id, &headers);
    let p = &app.predictor;
    let result = check_content_type(&headers)
        .and_then(|()| {
            body.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("the body is over {} bytes: split the batch", app.max_body_bytes),
                        vec![],
                    )
                } else {
                    ApiError::invalid(format!("the body could not be read: {e}"), vec![])
                }
            })
        })
        .and_then(|bytes| p.predict_body(&bytes));
    let latency_ms = start.elapsed().as_secs_f64() * 1e3;
    let version = &p.info().version;
    match result {
        Ok(response) => {
            let probabilities: Vec<f64> = response.predictions.iter().map(|x| x.churn_probability).collect();
            let hashed: Vec<String> =
                response.predictions.iter().take(20).filter_map(|x| x.customer_id.as_deref()).map(|id| p.pseudonym(id)).collect();
            tracing::info!(request_id, model_version = %version, status = 200, customers = probabilities.len(), customer_pseudonyms = ?hashed, latency_ms, "scored");
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
            println!("{}", metrics::emf_line("predict", version, latency_ms, &probabilities, now));
            ok(&response)
        }
        Err(e) => {
            tracing::info!(request_id, model_version = %version, status = e.status().as_u16(), error = ?e.body.error, problems = e.body.problems.len(), latency_ms, "refused");
            e.into_response()
        }
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type {:?} is not JSON: send the body as application/json", ct),
            vec![Problem { field: "Content-Type".into(), value: Some(ct.to_string()), problem: "expected application/json".into() }],
        ))
    }
}

/// Liveness: the model is loaded and answering.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
async fn health(State(app): State<App>) -> Response {
    ok(&Health { status: "ok".into(), model: app.predictor.info().clone() })
}

/// The loaded model: name, version, figures, the input fields it expects, the risk tiers.
#[utoipa::path(get, path = "/model", responses((status = 200, body = ModelDescription)))]
async fn model(State(app): State<App>) -> Response {
    ok(&app.predictor.describe())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3 document")))]
async fn openapi() -> Response {
    ok(&openapi_document())
}

async fn not_found() -> Response {
    ApiError::new(ErrorCode::NotFound, "no such route: use POST /predict, GET /health, GET /model or GET /openapi.json", vec![])
        .into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(ErrorCode::MethodNotAllowed, "wrong method for this route: POST /predict; GET /health, /model, /openapi.json", vec![])
        .into_response()
}
