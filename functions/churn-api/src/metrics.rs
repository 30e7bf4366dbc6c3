//! What the function tells CloudWatch: Embedded Metric Format (EMF) lines — JSON on stdout that
//! CloudWatch Logs turns into metrics without an API call on the request path — and hashed
//! customer ids, so logs can follow a customer without holding the raw id.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use churn_core::METRIC_NAMESPACE as NAMESPACE;

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

#[derive(Serialize)]
struct MetricDefinition {
    #[serde(rename = "Name")]
    name: &'static str,
    #[serde(rename = "Unit")]
    unit: &'static str,
}

const fn count(name: &'static str) -> MetricDefinition {
    MetricDefinition { name, unit: "Count" }
}

/// Every metric a line carries; the same for every line, so it is a constant.
const DEFINITIONS: [MetricDefinition; 2 + BUCKETS] = [
    MetricDefinition { name: "Latency", unit: "Milliseconds" },
    count("BatchSize"),
    count(BUCKET_NAMES[0]),
    count(BUCKET_NAMES[1]),
    count(BUCKET_NAMES[2]),
    count(BUCKET_NAMES[3]),
    count(BUCKET_NAMES[4]),
    count(BUCKET_NAMES[5]),
    count(BUCKET_NAMES[6]),
    count(BUCKET_NAMES[7]),
    count(BUCKET_NAMES[8]),
    count(BUCKET_NAMES[9]),
];

#[derive(Serialize)]
struct Directive {
    #[serde(rename = "Namespace")]
    namespace: &'static str,
    #[serde(rename = "Dimensions")]
    dimensions: [[&'static str; 2]; 1],
    #[serde(rename = "Metrics")]
    metrics: &'static [MetricDefinition],
}

#[derive(Serialize)]
struct Aws {
    #[serde(rename = "Timestamp")]
    timestamp: u64,
    #[serde(rename = "CloudWatchMetrics")]
    directives: [Directive; 1],
}

/// One line's values. Serialised by hand as a map because the histogram's keys sit beside the
/// others at the top level (EMF's layout); every key is static, so a line is one allocation
/// (it is written for every request).
struct Line<'a> {
    function: &'a str,
    model_version: &'a str,
    latency_ms: f64,
    batch_size: usize,
    histogram: [u64; BUCKETS],
    timestamp_ms: u64,
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5 + BUCKETS))?;
        m.serialize_entry("Function", self.function)?;
        m.serialize_entry("ModelVersion", self.model_version)?;
        m.serialize_entry("Latency", &self.latency_ms)?;
        m.serialize_entry("BatchSize", &self.batch_size)?;
        for (name, n) in BUCKET_NAMES.iter().zip(&self.histogram) {
            m.serialize_entry(name, n)?;
        }
        let directive = Directive { namespace: NAMESPACE, dimensions: [["Function", "ModelVersion"]], metrics: &DEFINITIONS };
        m.serialize_entry("_aws", &Aws { timestamp: self.timestamp_ms, directives: [directive] })?;
        m.end()
    }
}

/// One EMF line for a scored request.
pub fn emf_line(function: &str, model_version: &str, latency_ms: f64, probabilities: &[f64], timestamp_ms: u128) -> String {
    let mut histogram = [0u64; BUCKETS];
    for p in probabilities {
        histogram[churn_core::metrics::probability_bin(*p, BUCKETS)] += 1;
    }
    let line = Line { function, model_version, latency_ms, batch_size: probabilities.len(), histogram, timestamp_ms: timestamp_ms as u64 };
    // Static keys, strings and numbers (a non-finite one becomes null): this cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
