//! Serving configuration, read once from environment variables at start-up and validated
//! before any model is fetched; a bad value stops the function with a message naming the
//! variable.

use std::net::SocketAddr;

/// What the prediction function needs to start.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `MODEL_URI`: the bundle — a directory, `s3://bucket/prefix/<model>/<id>`, or
    /// `models:/<name>@<alias>` (needs `MLFLOW_TRACKING_URI`).
    pub model_uri: String,
    /// `MLFLOW_TRACKING_URI`, needed only for `models:/` addresses.
    pub mlflow_uri: Option<String>,
    /// `MAX_BATCH` (default 1000): most customers in one request.
    pub max_batch: usize,
    /// `MAX_BODY_BYTES` (default 1 MiB): largest request body.
    pub max_body_bytes: usize,
    /// `TOP_REASONS` (default 3): reasons returned per prediction.
    pub top_reasons: usize,
    /// `BIND` (default `127.0.0.1:8080`): the local HTTP address when not running in Lambda.
    pub bind: SocketAddr,
    /// `REASONS_METHOD` (`shapley`, default, or `occlusion`) and `REASONS_PERMUTATIONS`
    /// (default 2): how the reasons are computed.
    pub reasons: crate::Reasons,
    /// `ID_PSEUDONYM_KEY`: key of the customer-id pseudonyms in logs (random per process when unset).
    pub pseudonyms: churn_core::privacy::Pseudonymizer,
}

pub use churn_core::env::ConfigError;

impl ServeConfig {
    pub const DEFAULT_MAX_BATCH: usize = 1000;
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
    pub const DEFAULT_TOP_REASONS: usize = 3;

    /// Reads the configuration through `get` (`std::env::var` in the binaries).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let churn_core::env::ModelSource { model_uri, mlflow_uri } = churn_core::env::model_source(&get)?;
        let number = |variable: &'static str, default: usize, max: usize| {
            churn_core::env::whole_number(&get, variable, default as u64, 1, max as u64).map(|n| n as usize)
        };
        let max_batch = number("MAX_BATCH", Self::DEFAULT_MAX_BATCH, 100_000)?;
        // API Gateway caps payloads at 10 MB and Lambda at 6 MB; more could never arrive.
        let max_body_bytes = number("MAX_BODY_BYTES", Self::DEFAULT_MAX_BODY_BYTES, 10 << 20)?;
        let top_reasons = number("TOP_REASONS", Self::DEFAULT_TOP_REASONS, 50)?;
        let bind = match get("BIND") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v.parse().map_err(|_| ConfigError::new("BIND", &v, "must be an address like 127.0.0.1:8080"))?,
        };
        let permutations = number("REASONS_PERMUTATIONS", crate::Reasons::DEFAULT_PERMUTATIONS, 100)?;
        let reasons = match get("REASONS_METHOD").as_deref().map(str::trim) {
            None | Some("") | Some("shapley") => crate::Reasons::Shapley { permutations },
            Some("occlusion") => crate::Reasons::Occlusion,
            Some("none") => crate::Reasons::None,
            Some(other) => return Err(ConfigError::new("REASONS_METHOD", other, "must be shapley, occlusion or none")),
        };
        let pseudonyms = churn_core::privacy::Pseudonymizer::from_vars(&get)?;
        Ok(ServeConfig { model_uri, mlflow_uri, max_batch, max_body_bytes, top_reasons, bind, reasons, pseudonyms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use churn_core::env::from_pairs as env;

    #[test]
    fn defaults_and_overrides() {
        let c = ServeConfig::from_env(env(&[("MODEL_URI", "s3://b/m")])).unwrap();
        assert_eq!((c.max_batch, c.max_body_bytes, c.top_reasons), (1000, 1 << 20, 3));
        let c = ServeConfig::from_env(env(&[("MODEL_URI", "dir"), ("MAX_BATCH", "5"), ("BIND", "127.0.0.1:9")])).unwrap();
        assert_eq!(c.max_batch, 5);
        assert_eq!(c.bind.port(), 9);
    }

    #[test]
    fn mistakes_name_the_variable() {
        let e = ServeConfig::from_env(env(&[])).unwrap_err();
        assert_eq!(e.variable, "MODEL_URI");
        let e = ServeConfig::from_env(env(&[("MODEL_URI", "m"), ("MAX_BATCH", "0")])).unwrap_err();
        assert!(e.to_string().starts_with("environment variable MAX_BATCH=\"0\""), "{e}");
        let e = ServeConfig::from_env(env(&[("MODEL_URI", "m"), ("TOP_REASONS", "lots")])).unwrap_err();
        assert_eq!(e.variable, "TOP_REASONS");
        let e = ServeConfig::from_env(env(&[("MODEL_URI", "models:/churn@champion")])).unwrap_err();
        assert_eq!(e.variable, "MLFLOW_TRACKING_URI");
        let e = ServeConfig::from_env(env(&[("MODEL_URI", "m"), ("REASONS_METHOD", "lime")])).unwrap_err();
        assert_eq!(e.variable, "REASONS_METHOD");
        let c = ServeConfig::from_env(env(&[("MODEL_URI", "m"), ("REASONS_METHOD", "occlusion")])).unwrap();
        assert_eq!(c.reasons, crate::Reasons::Occlusion);
        let c = ServeConfig::from_env(env(&[("MODEL_URI", "m"), ("REASONS_METHOD", "none")])).unwrap();
        assert_eq!(c.reasons, crate::Reasons::None);
        let e = ServeConfig::from_env(env(&[("MODEL_URI", "m"), ("BIND", "localhost")])).unwrap_err();
        assert_eq!(e.variable, "BIND");
    }
}
