//! Start-up configuration from environment variables, shared by the function binaries: the
//! error that names the variable, the model address both functions take, and bounded numbers.
//! Readers take `get` (`std::env::var` in the binaries, [`from_pairs`] in tests) so that they
//! can be checked without touching the process environment.

/// A bad or missing variable: its name, its value and what is expected.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("environment variable {variable}={value:?}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, value: &str, problem: &str) -> Self {
        ConfigError { variable, value: value.to_string(), problem: problem.to_string() }
    }
}

/// Where a function loads its model from.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSource {
    /// `MODEL_URI`: a bundle directory, `s3://bucket/prefix/<model>/<id>`, or
    /// `models:/<name>@<alias>` (needs `MLFLOW_TRACKING_URI`).
    pub model_uri: String,
    /// `MLFLOW_TRACKING_URI`, needed only for `models:/` addresses.
    pub mlflow_uri: Option<String>,
}

/// Reads `MODEL_URI` and `MLFLOW_TRACKING_URI`.
pub fn model_source(get: &impl Fn(&str) -> Option<String>) -> Result<ModelSource, ConfigError> {
    let model_uri = get("MODEL_URI").filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        ConfigError::new(
            "MODEL_URI",
            "",
            "not set: give the model bundle as a directory, s3://bucket/prefix/<model>/<id>, or models:/<name>@<alias>",
        )
    })?;
    let mlflow_uri = get("MLFLOW_TRACKING_URI").filter(|v| !v.trim().is_empty());
    if model_uri.starts_with("models:/") && mlflow_uri.is_none() {
        return Err(ConfigError::new(
            "MLFLOW_TRACKING_URI",
            "",
            &format!("not set, but MODEL_URI={model_uri} is a registry address; set it or use the bundle's s3:// address"),
        ));
    }
    Ok(ModelSource { model_uri, mlflow_uri })
}

/// A whole number from `min` to `max`; `default` when the variable is not set.
pub fn whole_number(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match get(variable) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::new(variable, &v, &format!("must be a whole number from {min} to {max}"))),
        },
    }
}

/// A `get` over fixed pairs, for tests and tools.
pub fn from_pairs(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}
