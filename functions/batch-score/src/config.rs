//! Configuration of the batch scorer, read once from environment variables at start-up and
//! validated before the model is fetched; a bad value stops the function with a message naming
//! the variable.

/// What the batch scorer needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// `MODEL_URI`: the bundle (a directory, `s3://…`, or `models:/<name>@<alias>`).
    pub model_uri: String,
    /// `MLFLOW_TRACKING_URI`, needed only for `models:/` addresses.
    pub mlflow_uri: Option<String>,
    /// `INPUT_PREFIX` (default `incoming/`): only keys under it are scored.
    pub input_prefix: String,
    /// `SCORED_PREFIX` (default `scored/`): scored rows and the run summary.
    pub scored_prefix: String,
    /// `REJECTED_PREFIX` (default `rejected/`): rows that could not be scored, with the reason.
    pub rejected_prefix: String,
    /// `DRIFT_PSI_THRESHOLD` (default 0.2): PSI above which a feature is flagged as drifted.
    pub psi_threshold: f64,
    /// `MAX_ROWS_PER_INVOCATION` (default 20,000,000): a parquet object with more rows is refused
    /// with a message pointing at the row-group fan-out (the state machine), never truncated.
    pub max_rows: u64,
    /// `PART_SIZE_MB` (default 5, S3's minimum): the output buffered before it is sent as one
    /// part of the multipart upload (a part holds every write buffered by then: this much or a
    /// little more).
    pub part_size: usize,
    /// `TIME_MARGIN_MS` (default 10,000): stop and abort the uploads when less than this is left
    /// before the invocation's deadline, so that a timeout never leaves a truncated output.
    pub time_margin_ms: u64,
    /// `TOP_REASONS` (default 0, at most 50): reasons (and the personalised offer) written for
    /// each customer of a contacted tier, as `churn score --reasons` does. Off by default: about
    /// 45 µs per contacted customer, against well under 1 µs for the score.
    pub top_reasons: usize,
    /// `FAN_OUT_PREFIX` (unset or empty: off): where a refused parquet object's fan-out request
    /// is written (`<prefix><sha>.json`, the state machine's input). The template routes every
    /// object created there to the fan-out state machine (an EventBridge rule), so an object
    /// above `MAX_ROWS_PER_INVOCATION` is scored without anyone starting it.
    pub fan_out_prefix: Option<String>,
}

pub use churn_core::env::ConfigError;

impl BatchConfig {
    /// Reads the configuration through `get` (`std::env::var` in the binary).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let bad = ConfigError::new;
        let churn_core::env::ModelSource { model_uri, mlflow_uri } = churn_core::env::model_source(&get)?;
        let prefix = |variable: &'static str, default: &str| -> Result<String, ConfigError> {
            let v = get(variable).unwrap_or_else(|| default.to_string());
            if v.is_empty() || !v.ends_with('/') || v.starts_with('/') {
                return Err(bad(variable, &v, "must be a non-empty key prefix ending in `/`, e.g. incoming/"));
            }
            Ok(v)
        };
        let input_prefix = prefix("INPUT_PREFIX", "incoming/")?;
        let fan_out_prefix = match get("FAN_OUT_PREFIX").filter(|v| !v.is_empty()) {
            None => None,
            Some(_) => Some(prefix("FAN_OUT_PREFIX", "")?),
        };
        let scored_prefix = prefix("SCORED_PREFIX", "scored/")?;
        let rejected_prefix = prefix("REJECTED_PREFIX", "rejected/")?;
        let outputs = [("SCORED_PREFIX", &scored_prefix), ("REJECTED_PREFIX", &rejected_prefix)];
        for (name, p) in outputs.into_iter().chain(fan_out_prefix.as_ref().map(|p| ("FAN_OUT_PREFIX", p))) {
            // Outputs under the input prefix would trigger the function on its own output forever.
            if p.starts_with(&input_prefix) || input_prefix.starts_with(p.as_str()) {
                return Err(bad(name, p, &format!("overlaps INPUT_PREFIX={input_prefix}: outputs must live outside the input prefix")));
            }
        }
        let psi_threshold = match get("DRIFT_PSI_THRESHOLD") {
            None => churn_core::drift::DEFAULT_PSI_THRESHOLD,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 => x,
                _ => return Err(bad("DRIFT_PSI_THRESHOLD", &v, "must be a positive number, e.g. 0.2")),
            },
        };
        let number = |variable, default, min, max| churn_core::env::whole_number(&get, variable, default, min, max);
        let max_rows = number("MAX_ROWS_PER_INVOCATION", 20_000_000, 1, u64::MAX / 2)?;
        let part_size = number("PART_SIZE_MB", 5, 5, 512)? as usize * (1 << 20);
        let time_margin_ms = number("TIME_MARGIN_MS", 10_000, 0, 600_000)?;
        let top_reasons = number("TOP_REASONS", 0, 0, 50)? as usize;
        Ok(BatchConfig {
            model_uri,
            mlflow_uri,
            input_prefix,
            scored_prefix,
            rejected_prefix,
            psi_threshold,
            max_rows,
            part_size,
            time_margin_ms,
            top_reasons,
            fan_out_prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use churn_core::env::from_pairs as env;

    #[test]
    fn defaults() {
        let c = BatchConfig::from_env(env(&[("MODEL_URI", "s3://b/m")])).unwrap();
        assert_eq!((c.input_prefix.as_str(), c.scored_prefix.as_str(), c.rejected_prefix.as_str()), ("incoming/", "scored/", "rejected/"));
        assert_eq!((c.psi_threshold, c.max_rows, c.part_size, c.top_reasons), (0.2, 20_000_000, 5 << 20, 0));
        assert_eq!(c.fan_out_prefix, None);
        let c = BatchConfig::from_env(env(&[("MODEL_URI", "s3://b/m"), ("FAN_OUT_PREFIX", "fanout/")])).unwrap();
        assert_eq!(c.fan_out_prefix.as_deref(), Some("fanout/"));
    }

    #[test]
    fn mistakes_name_the_variable() {
        let cases = [
            (vec![], "MODEL_URI"),
            (vec![("MODEL_URI", "models:/churn@champion")], "MLFLOW_TRACKING_URI"),
            (vec![("MODEL_URI", "m"), ("SCORED_PREFIX", "incoming/scored/")], "SCORED_PREFIX"),
            (vec![("MODEL_URI", "m"), ("INPUT_PREFIX", "in")], "INPUT_PREFIX"),
            (vec![("MODEL_URI", "m"), ("DRIFT_PSI_THRESHOLD", "-1")], "DRIFT_PSI_THRESHOLD"),
            (vec![("MODEL_URI", "m"), ("PART_SIZE_MB", "1")], "PART_SIZE_MB"),
            (vec![("MODEL_URI", "m"), ("MAX_ROWS_PER_INVOCATION", "lots")], "MAX_ROWS_PER_INVOCATION"),
            (vec![("MODEL_URI", "m"), ("TOP_REASONS", "51")], "TOP_REASONS"),
            (vec![("MODEL_URI", "m"), ("FAN_OUT_PREFIX", "fanout")], "FAN_OUT_PREFIX"),
            (vec![("MODEL_URI", "m"), ("FAN_OUT_PREFIX", "incoming/fanout/")], "FAN_OUT_PREFIX"),
        ];
        for (pairs, variable) in cases {
            let e = BatchConfig::from_env(env(&pairs)).unwrap_err();
            assert_eq!(e.variable, variable, "{e}");
        }
    }
}
