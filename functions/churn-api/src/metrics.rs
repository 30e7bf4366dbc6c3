//! What the function tells CloudWatch: Embedded Metric Format (EMF) lines — JSON on stdout that
//! CloudWatch Logs turns into metrics without an API call on the request path — and hashed
//! customer ids, so logs can follow a customer without holding the raw id.

use churn_core::emf::{self, Metric};

/// Buckets of the probability histogram: `[0, 0.1), [0.1, 0.2), … [0.9, 1]`
/// (`churn_core::metrics::probability_bin`). A shift between buckets over days is the drift
/// signal the monitoring dashboards watch.
pub const BUCKETS: usize = 10;

const BUCKET_NAMES: [&str; BUCKETS] = [
    "Probability00to10",
    "Probability10to20",
    "Probability20to30",
    "Probability30to40",
    "Probability40to50",
    "Probability50to60",
    "Probability60to70",
    "Probability70to80",
    "Probability80to90",
    "Probability90to100",
];

/// Every metric a line carries; the same for every line, so it is a constant.
const DEFINITIONS: [Metric; 2 + BUCKETS] = [
    Metric { name: "Latency", unit: "Milliseconds" },
    Metric::count("BatchSize"),
    Metric::count(BUCKET_NAMES[0]),
    Metric::count(BUCKET_NAMES[1]),
    Metric::count(BUCKET_NAMES[2]),
    Metric::count(BUCKET_NAMES[3]),
    Metric::count(BUCKET_NAMES[4]),
    Metric::count(BUCKET_NAMES[5]),
    Metric::count(BUCKET_NAMES[6]),
    Metric::count(BUCKET_NAMES[7]),
    Metric::count(BUCKET_NAMES[8]),
    Metric::count(BUCKET_NAMES[9]),
];

/// One EMF line for a scored request: latency, batch size and the probability histogram, by
/// function and model version.
pub fn emf_line(function: &str, model_version: &str, latency_ms: f64, probabilities: &[f64], timestamp_ms: u128) -> String {
    let mut values = [0.0; 2 + BUCKETS];
    values[0] = latency_ms;
    values[1] = probabilities.len() as f64;
    for p in probabilities {
        values[2 + churn_core::metrics::probability_bin(*p, BUCKETS)] += 1.0;
    }
    emf::line(&[("Function", function), ("ModelVersion", model_version)], &[], &DEFINITIONS, &values, timestamp_ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use churn_core::METRIC_NAMESPACE as NAMESPACE;

    #[test]
    fn emf_line_is_a_valid_document_with_a_histogram() {
        let line = emf_line("predict", "3", 1.5, &[0.05, 0.15, 0.95, 1.0], 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["BatchSize"], 4);
        assert_eq!(v["Probability00to10"], 1);
        assert_eq!(v["Probability90to100"], 2);
        let defs = v["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
        assert_eq!(defs.len(), 2 + BUCKETS);
        for d in defs {
            assert!(v.get(d["Name"].as_str().unwrap()).is_some(), "every declared metric has a value");
        }
        assert_eq!(v["_aws"]["Timestamp"], 1);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([["Function", "ModelVersion"]]));
        assert_eq!((v["Function"].as_str(), v["ModelVersion"].as_str(), v["Latency"].as_f64()), (Some("predict"), Some("3"), Some(1.5)));
    }
}
