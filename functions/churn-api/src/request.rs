//! Parsing and validating a `POST /predict` body against the model's feature spec.
//!
//! Every problem in a request is collected — across all customers of a batch — so a caller
//! fixes them in one round trip. Field paths are `tenure` for a single customer and
//! `customers[3].tenure` in a batch. Rules:
//! - every input field of the model must be present; `null` (or a blank string) means unknown
//!   and is imputed, with a warning in the response;
//! - fields the model does not know are refused (a typo would otherwise be silently imputed);
//! - numbers may be JSON numbers or numeric strings (as in the CSV files); NaN, infinities and
//!   values outside the range fitted on training data are refused;
//! - categories may be strings or numbers; a category not seen in training is scored, with a warning.

use churn_core::FeatureSpec;
use churn_core::spec::SlotValues;
use serde_json::{Map, Value};

use crate::types::{ErrorCode, ErrorResponse, Problem};

/// A request refused: the body to send, whose code decides the HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub body: ErrorResponse,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>, problems: Vec<Problem>) -> Self {
        ApiError { body: ErrorResponse { error: code, message: message.into(), problems } }
    }

    pub fn invalid(message: impl Into<String>, problems: Vec<Problem>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message, problems)
    }

    pub fn status(&self) -> axum::http::StatusCode {
        self.body.error.status()
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        (self.status(), axum::Json(self.body)).into_response()
    }
}

/// One validated customer record and its path in the request.
#[derive(Debug, Clone)]
pub struct Customer {
    pub path: String,
    pub record: Map<String, Value>,
    pub id: Option<String>,
}

const DUPLICATE: &str = "duplicate key `";

/// A JSON value parsed like `serde_json::Value`, except that an object with the same key twice
/// is an error: `serde_json` keeps the last one silently, and a customer sent with two
/// different `tenure`s must not be scored on whichever came last. (No maintained crate offers
/// this for `Value`; `serde_with`'s duplicate-key checks cover typed maps only.)
struct NoDuplicateKeys(Value);

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(NoDuplicateKeys)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.into()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(NoDuplicateKeys(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let NoDuplicateKeys(v) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("{DUPLICATE}{key}`")));
            }
            object.insert(key, v);
        }
        Ok(Value::Object(object))
    }
}

/// Limits a request must respect.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_batch: usize,
}

/// Parses `body` and validates every customer in it.
pub fn parse(body: &[u8], spec: &FeatureSpec, limits: Limits) -> Result<Vec<Customer>, ApiError> {
    let value: Value = serde_json::from_slice::<NoDuplicateKeys>(body)
        .map_err(|e| {
            let at = format!("line {} column {}", e.line(), e.column());
            let message = e.to_string();
            match message.strip_prefix(DUPLICATE).and_then(|rest| rest.split('`').next()) {
                Some(key) => ApiError::new(
                    ErrorCode::DuplicateKey,
                    format!("the field `{key}` appears twice in one object ({at}); send each field once"),
                    vec![Problem { field: key.into(), value: None, problem: format!("sent twice ({at})") }],
                ),
                None => ApiError::new(
                    ErrorCode::InvalidJson,
                    format!("the body is not valid JSON: {e}"),
                    vec![Problem { field: "body".into(), value: None, problem: format!("{at}: {e}") }],
                ),
            }
        })?
        .0;
    let mut problems = Vec::new();
    let items: Vec<(String, Value)> = match value {
        Value::Object(mut o) if o.contains_key("customers") => {
            for k in o.keys().filter(|k| *k != "customers") {
                problems.push(Problem { field: k.clone(), value: None, problem: "unknown field next to `customers`; remove it".into() });
            }
            match o.remove("customers") {
                Some(Value::Array(a)) => {
                    if a.is_empty() {
                        return Err(ApiError::invalid(
                            "`customers` is empty: send at least one customer",
                            vec![Problem { field: "customers".into(), value: Some("[]".into()), problem: "empty batch".into() }],
                        ));
                    }
                    if a.len() > limits.max_batch {
                        return Err(ApiError::new(
                            ErrorCode::PayloadTooLarge,
                            format!("{} customers in one request; the limit is {}: split the batch", a.len(), limits.max_batch),
                            vec![Problem {
                                field: "customers".into(),
                                value: Some(a.len().to_string()),
                                problem: format!("more than {} customers", limits.max_batch),
                            }],
                        ));
                    }
                    a.into_iter().enumerate().map(|(i, v)| (format!("customers[{i}]"), v)).collect()
                }
                Some(other) => {
                    return Err(ApiError::invalid(
                        "`customers` must be an array of customer objects",
                        vec![Problem { field: "customers".into(), value: Some(kind(&other).into()), problem: "expected an array".into() }],
                    ));
                }
                None => unreachable!("checked above"),
            }
        }
        Value::Object(o) => vec![(String::new(), Value::Object(o))],
        other => {
            return Err(ApiError::invalid(
                "expected one customer object or {\"customers\": [...]}",
                vec![Problem { field: "body".into(), value: Some(kind(&other).into()), problem: "expected a JSON object".into() }],
            ));
        }
    };
    let mut customers = Vec::with_capacity(items.len());
    let mut scratch = SlotValues::default();
    for (path, item) in items {
        let at = |field: &str| if path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
        let Value::Object(record) = item else {
            problems.push(Problem { field: path.clone(), value: Some(kind(&item).into()), problem: "expected a customer object".into() });
            continue;
        };
        let before = problems.len();
        for key in record.keys() {
            let known = spec.inputs.iter().any(|i| &i.name == key) || spec.id_column.as_deref() == Some(key.as_str());
            if !known {
                let hint = if *key == spec.target_column {
                    "this is the label the model predicts, not an input; remove it"
                } else {
                    "unknown field; GET /model lists the fields"
                };
                problems.push(Problem { field: at(key), value: None, problem: hint.into() });
            }
        }
        for input in &spec.inputs {
            if !record.contains_key(&input.name) {
                problems.push(Problem {
                    field: at(&input.name),
                    value: None,
                    problem: "missing; send null when the value is unknown".into(),
                });
            }
        }
        let mut value_problems = Vec::new();
        spec.slot_values(&record, &mut scratch, &mut value_problems);
        problems.extend(value_problems.into_iter().map(|p| Problem { field: at(&p.field), value: Some(p.value), problem: p.problem }));
        let id = match spec.id_column.as_deref().and_then(|c| record.get(c)) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                let field = at(spec.id_column.as_deref().unwrap_or("id"));
                problems.push(Problem { field, value: Some(kind(other).into()), problem: "the id must be a string or a number".into() });
                None
            }
        };
        if problems.len() == before {
            customers.push(Customer { path, record, id });
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        return Err(ApiError::invalid(
            format!("{n} problem{} in the request; nothing was scored", if n == 1 { "" } else { "s" }),
            problems,
        ));
    }
    Ok(customers)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
