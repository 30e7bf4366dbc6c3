//! The API's request and response bodies. The OpenAPI document (`GET /openapi.json`) is
//! generated from these types, so it cannot drift from what the handlers send.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /predict`: one customer, or `{"customers": [...]}`. A customer is an object
/// with every input field of the model (`GET /model` lists them; `null` when unknown) and
/// optionally the id field, echoed back as `customer_id`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PredictRequest {
    Batch {
        #[schema(value_type = Vec<Object>)]
        customers: Vec<serde_json::Map<String, serde_json::Value>>,
    },
    #[schema(value_type = Object)]
    One(serde_json::Map<String, serde_json::Value>),
}

pub use churn_core::ModelInfo;

/// One field's part in a prediction: its Shapley value (or occlusion contribution; see `churn_core::explain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    pub feature: String,
    pub value: String,
    /// How much this field raises the churn probability: its Shapley value (the field's share of
    /// probability minus the average background customer's), or with `REASONS_METHOD=occlusion`
    /// how much lower the probability would be if the field were typical.
    pub contribution: f64,
}

/// The playbook's offer for this customer: the first offer, going down the reasons, that
/// addresses a reason's field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PersonalisedOffer {
    pub name: String,
    pub action: String,
    /// The reason (input field) the offer addresses.
    pub addresses: String,
    /// Expected profit of making the offer: p × success rate × value of a retained customer − cost.
    pub expected_value: f64,
}

/// A note about an input that was scored anyway (unknown category, missing value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InputWarning {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Prediction {
    pub customer_id: Option<String>,
    pub churn_probability: f64,
    pub risk_tier: String,
    pub action: String,
    /// The fields that raise this customer's risk most, largest first.
    pub reasons: Vec<Reason>,
    /// The personalised offer; absent for tiers that are not contacted or when no offer fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<PersonalisedOffer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<InputWarning>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PredictResponse {
    pub model: ModelInfo,
    pub predictions: Vec<Prediction>,
}

/// One thing wrong with a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Where: a field path such as `customers[3].tenure`, or `body`.
    pub field: String,
    /// The offending value, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub problem: String,
}

/// What went wrong, as the `error` field of every error response names it; each code has one
/// HTTP status ([`ErrorCode::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON.
    InvalidJson,
    /// 400: an object has the same key twice.
    DuplicateKey,
    /// 400: valid JSON, invalid customers (every problem listed).
    InvalidRequest,
    /// 413: the body or the batch is over the limit.
    PayloadTooLarge,
    /// 415: the Content-Type is not JSON.
    UnsupportedMediaType,
    /// 404: no such route.
    NotFound,
    /// 405: the route exists with another method.
    MethodNotAllowed,
    /// 500: the model failed; logged.
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> axum::http::StatusCode {
        use axum::http::StatusCode as S;
        match self {
            ErrorCode::InvalidJson | ErrorCode::DuplicateKey | ErrorCode::InvalidRequest => S::BAD_REQUEST,
            ErrorCode::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => S::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::NotFound => S::NOT_FOUND,
            ErrorCode::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            ErrorCode::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Every error response: a short code, a sentence, and each problem with its field path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub model: ModelInfo,
}

/// One input field the model expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InputField {
    pub name: String,
    /// `number` or `category`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Numbers: the accepted range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Categories seen in training; others are scored with a warning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
}

/// A risk tier and what the retention team does about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TierInfo {
    pub name: String,
    pub min_probability: f64,
    pub action: String,
}

/// `GET /model`: what is loaded, how good it is, and what it expects. Written, not read, by
/// this crate (its metrics are the bundle's JSON as is).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelDescription {
    #[serde(flatten)]
    pub model: ModelInfo,
    pub kind: String,
    pub created_unix: u64,
    pub threshold: f64,
    /// The id field, echoed back as `customer_id`.
    pub id_field: Option<String>,
    pub inputs: Vec<InputField>,
    pub tiers: Vec<TierInfo>,
    /// The bundle's `metrics.json` (held-out test and validation figures).
    #[schema(value_type = Object)]
    pub metrics: Box<serde_json::value::RawValue>,
}
