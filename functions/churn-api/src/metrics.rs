//! What the function tells CloudWatch: Embedded Metric Format (EMF) lines — JSON on stdout that
//! CloudWatch Logs turns into metrics without an API call on the request path — and hashed
//! customer ids, so logs can follow a customer without holding the raw id.

use serde_json::json;

/// Namespace of every metric.
pub const NAMESPACE: &str = "ChurnPrediction";

/// Buckets of the probability histogram: `[0, 0.1), [0.1, 0.2), … [0.9, 1]`. A shift between
/// buckets over days is the drift signal the monitoring dashboards watch.
pub const BUCKETS: usize = 10;

/// One EMF line for a scored request.
pub fn emf_line(function: &str, model_version: &str, latency_ms: f64, probabilities: &[f64], timestamp_ms: u128) -> String {
    let mut hist = [0u64; BUCKETS];
    for p in probabilities {
        hist[((p * BUCKETS as f64) as usize).min(BUCKETS - 1)] += 1;
    }
    let mut metrics = vec![
        json!({"Name": "Latency", "Unit": "Milliseconds"}),
        json!({"Name": "BatchSize", "Unit": "Count"}),
    ];
    let mut doc = json!({
        "Function": function,
        "ModelVersion": model_version,
        "Latency": latency_ms,
        "BatchSize": probabilities.len(),
    });
    for (i, n) in hist.iter().enumerate() {
        let name = format!("Probability{:02}to{:02}", i * 10, (i + 1) * 10);
        metrics.push(json!({"Name": name, "Unit": "Count"}));
        doc[&name] = json!(n);
    }
    doc["_aws"] = json!({
        "Timestamp": timestamp_ms as u64,
        "CloudWatchMetrics": [{
            "Namespace": NAMESPACE,
            "Dimensions": [["Function", "ModelVersion"]],
            "Metrics": metrics,
        }],
    });
    doc.to_string()
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
    }

}
