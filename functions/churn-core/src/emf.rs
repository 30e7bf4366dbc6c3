//! CloudWatch Embedded Metric Format (EMF): one JSON line on stdout per event, which CloudWatch
//! Logs turns into metrics without an API call on the request path. Both functions write their
//! lines here, under [`METRIC_NAMESPACE`](crate::METRIC_NAMESPACE).

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// One metric a line declares: its name (also the line's key for its value) and CloudWatch unit.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Metric {
    #[serde(rename = "Name")]
    pub name: &'static str,
    #[serde(rename = "Unit")]
    pub unit: &'static str,
}

impl Metric {
    pub const fn count(name: &'static str) -> Metric {
        Metric { name, unit: "Count" }
    }
}

#[derive(Serialize)]
struct Directive<'a> {
    #[serde(rename = "Namespace")]
    namespace: &'static str,
    #[serde(rename = "Dimensions")]
    dimensions: [Vec<&'a str>; 1],
    #[serde(rename = "Metrics")]
    metrics: &'a [Metric],
}

#[derive(Serialize)]
struct Aws<'a> {
    #[serde(rename = "Timestamp")]
    timestamp: u64,
    #[serde(rename = "CloudWatchMetrics")]
    directives: [Directive<'a>; 1],
}

/// A line's contents, serialised as one flat map (EMF puts every value at the top level).
struct Line<'a> {
    dimensions: &'a [(&'static str, &'a str)],
    properties: &'a [(&'static str, &'a str)],
    metrics: &'a [Metric],
    values: &'a [f64],
    timestamp_ms: u64,
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.dimensions.len() + self.properties.len() + self.metrics.len() + 1))?;
        for (k, v) in self.dimensions.iter().chain(self.properties) {
            m.serialize_entry(k, v)?;
        }
        for (metric, v) in self.metrics.iter().zip(self.values) {
            // Counts read as integers; a non-finite value becomes null.
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                m.serialize_entry(metric.name, &(*v as i64))?;
            } else {
                m.serialize_entry(metric.name, v)?;
            }
        }
        let dimensions = [self.dimensions.iter().map(|(k, _)| *k).collect()];
        let directive = Directive { namespace: crate::METRIC_NAMESPACE, dimensions, metrics: self.metrics };
        m.serialize_entry("_aws", &Aws { timestamp: self.timestamp_ms, directives: [directive] })?;
        m.end()
    }
}

/// One EMF line: the `dimensions` (name, value) pairs are the metrics' dimension set,
/// `properties` are logged beside them without being dimensions, and `values[i]` is the value
/// of `metrics[i]`.
pub fn line(
    dimensions: &[(&'static str, &str)],
    properties: &[(&'static str, &str)],
    metrics: &[Metric],
    values: &[f64],
    timestamp_ms: u64,
) -> String {
    debug_assert_eq!(metrics.len(), values.len());
    let line = Line { dimensions, properties, metrics, values, timestamp_ms };
    // Static keys, strings and numbers: this cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// Milliseconds since the Unix epoch, for a line's timestamp.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_declares_every_metric_it_carries() {
        let metrics = [Metric::count("Rows"), Metric { name: "Latency", unit: "Milliseconds" }];
        let l = line(&[("Function", "f")], &[("ModelVersion", "3")], &metrics, &[4.0, 1.5], 7);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!((v["Function"].as_str(), v["ModelVersion"].as_str()), (Some("f"), Some("3")));
        assert_eq!(v["Rows"], 4, "counts are integers");
        assert_eq!(v["Latency"], 1.5);
        let d = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], crate::METRIC_NAMESPACE);
        assert_eq!(d["Dimensions"], serde_json::json!([["Function"]]));
        assert_eq!(d["Metrics"], serde_json::json!([{"Name": "Rows", "Unit": "Count"}, {"Name": "Latency", "Unit": "Milliseconds"}]));
        assert_eq!(v["_aws"]["Timestamp"], 7);
    }
}
