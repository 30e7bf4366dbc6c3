//! A small client of the MLflow REST API 2.0: experiments, runs (params, metrics with steps,
//! tags, dataset inputs), artifacts through the tracking server's proxy
//! (`mlflow-artifacts:/…`, `mlflow server --serve-artifacts`, the default since MLflow 2), and
//! the model registry including aliases.
//!
//! Why not `trs-mlflow` (0.8, the closest crate): it has no registered-model alias calls, which
//! promotion is built on, and its calls do not retry; wrapping it would have meant a second HTTP
//! layer beside it for half the calls. The REST API is small and stable, so the calls the
//! project needs live here, over `reqwest`, each with the same bounded retry.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::StoreError;
use crate::retry::{self, ATTEMPTS, Failure};

#[derive(Clone, Debug)]
pub struct Mlflow {
    base: String,
    http: reqwest::Client,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub step: i64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub run_id: String,
    pub source: String,
    pub tags: BTreeMap<String, String>,
    pub aliases: Vec<String>,
}

impl ModelVersion {
    fn from_json(v: &Value) -> ModelVersion {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let tags = v
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| Some((t.get("key")?.as_str()?.to_string(), t.get("value")?.as_str().unwrap_or_default().to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let aliases = v
            .get("aliases")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        ModelVersion { name: s("name"), version: s("version"), run_id: s("run_id"), source: s("source"), tags, aliases }
    }
}

/// `models:/<name>@<alias>` or `models:/<name>/<version>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    Alias { name: String, alias: String },
    Version { name: String, version: String },
}

impl ModelRef {
    pub fn parse(uri: &str) -> Option<ModelRef> {
        let rest = uri.strip_prefix("models:/")?;
        if let Some((name, alias)) = rest.split_once('@') {
            return Some(ModelRef::Alias { name: name.into(), alias: alias.into() });
        }
        let (name, version) = rest.rsplit_once('/')?;
        Some(ModelRef::Version { name: name.into(), version: version.into() })
    }
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Mlflow {
    /// A client of the tracking server at `uri` (`http://host:port`).
    pub fn new(uri: &str) -> Result<Mlflow, StoreError> {
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return Err(StoreError::Uri {
                uri: uri.into(),
                problem: "MLFLOW_TRACKING_URI must be an http(s):// address of a tracking server".into(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| StoreError::Mlflow { server: uri.into(), message: e.to_string() })?;
        Ok(Mlflow { base: uri.trim_end_matches('/').to_string(), http })
    }

    pub fn uri(&self) -> &str {
        &self.base
    }

    fn err(&self, message: impl Into<String>) -> StoreError {
        StoreError::Mlflow { server: self.base.clone(), message: message.into() }
    }

    /// Sends a request built by `make`, retrying transient failures; returns the status and body.
    async fn send(&self, what: &str, make: impl Fn() -> reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), StoreError> {
        retry::send("MLflow", what, make).await.map_err(|f| match f {
            Failure::Body(e) => self.err(format!("{what}: reading the answer: {e}")),
            Failure::Unreachable(e) => StoreError::Unreachable {
                service: "MLflow",
                target: self.base.clone(),
                detail: format!("{what}: {e}"),
                attempts: ATTEMPTS,
                hint: "is the tracking server running at this address?",
            },
        })
    }

    /// A JSON call; a non-2xx answer becomes an error carrying MLflow's `error_code` and message.
    async fn call(&self, method: reqwest::Method, path: &str, query: &[(&str, &str)], body: Option<Value>) -> Result<Value, StoreError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let (status, bytes) = self
            .send(path, || {
                let mut r = self.http.request(method.clone(), &url).query(query);
                if let Some(b) = &body {
                    r = r.json(b);
                }
                r
            })
            .await?;
        let value: Value = if bytes.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"message": String::from_utf8_lossy(&bytes)}))
        };
        if !(200..300).contains(&status) {
            let code = value.get("error_code").and_then(Value::as_str).unwrap_or("HTTP_ERROR");
            let message = value.get("message").and_then(Value::as_str).unwrap_or_default();
            return Err(self.err(format!("{path} answered {status} {code}: {message}")));
        }
        Ok(value)
    }

    fn is_missing(e: &StoreError) -> bool {
        matches!(e, StoreError::Mlflow { message, .. } if message.contains("RESOURCE_DOES_NOT_EXIST") || message.contains(" 404 "))
    }

    /// The id of the experiment called `name`, created if missing.
    pub async fn experiment(&self, name: &str) -> Result<String, StoreError> {
        match self.call(reqwest::Method::GET, "experiments/get-by-name", &[("experiment_name", name)], None).await {
            Ok(v) => v["experiment"]["experiment_id"].as_str().map(str::to_string).ok_or_else(|| self.err("experiment without id")),
            Err(e) if Self::is_missing(&e) => {
                let v = self.call(reqwest::Method::POST, "experiments/create", &[], Some(json!({"name": name}))).await?;
                v["experiment_id"].as_str().map(str::to_string).ok_or_else(|| self.err("experiments/create returned no id"))
            }
            Err(e) => Err(e),
        }
    }

    pub async fn create_run(&self, experiment_id: &str, run_name: &str, tags: &[(String, String)]) -> Result<RunInfo, StoreError> {
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
        let v = self
            .call(
                reqwest::Method::POST,
                "runs/create",
                &[],
                Some(json!({"experiment_id": experiment_id, "run_name": run_name, "start_time": now_millis(), "tags": tags})),
            )
            .await?;
        serde_json::from_value(v["run"]["info"].clone()).map_err(|e| self.err(format!("runs/create: {e}")))
    }

    /// Params, metrics and tags in batches within MLflow's per-request limits.
    pub async fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        metrics: &[Metric],
        tags: &[(String, String)],
    ) -> Result<(), StoreError> {
        let kv = |items: &[(String, String)]| items.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>();
        for chunk in params.chunks(100) {
            self.call(reqwest::Method::POST, "runs/log-batch", &[], Some(json!({"run_id": run_id, "params": kv(chunk)}))).await?;
        }
        for chunk in tags.chunks(100) {
            self.call(reqwest::Method::POST, "runs/log-batch", &[], Some(json!({"run_id": run_id, "tags": kv(chunk)}))).await?;
        }
        for chunk in metrics.chunks(1000) {
            self.call(reqwest::Method::POST, "runs/log-batch", &[], Some(json!({"run_id": run_id, "metrics": chunk}))).await?;
        }
        Ok(())
    }

    /// Records the training data as the run's dataset input.
    pub async fn log_dataset(&self, run_id: &str, name: &str, digest: &str, source: &str, rows: usize) -> Result<(), StoreError> {
        let dataset = json!({
            "dataset": {
                "name": name,
                "digest": &digest[..digest.len().min(36)],
                "source_type": "local",
                "source": json!({"uri": source}).to_string(),
                "profile": json!({"num_rows": rows}).to_string(),
            },
            "tags": [{"key": "mlflow.data.context", "value": "training"}],
        });
        self.call(reqwest::Method::POST, "runs/log-inputs", &[], Some(json!({"run_id": run_id, "datasets": [dataset]}))).await?;
        Ok(())
    }

    pub async fn finish_run(&self, run_id: &str, status: &str) -> Result<(), StoreError> {
        self.call(reqwest::Method::POST, "runs/update", &[], Some(json!({"run_id": run_id, "status": status, "end_time": now_millis()})))
            .await?;
        Ok(())
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Value, StoreError> {
        Ok(self.call(reqwest::Method::GET, "runs/get", &[("run_id", run_id)], None).await?["run"].clone())
    }

    /// The proxy URL of `artifact_uri` (`mlflow-artifacts:/<exp>/<run>/artifacts`) plus `path`.
    fn artifact_url(&self, artifact_uri: &str, path: &str) -> Result<String, StoreError> {
        let rest = artifact_uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
            self.err(format!(
                "artifact location {artifact_uri} is not served by the tracking server; start it with artifact serving (mlflow server --artifacts-destination …)"
            ))
        })?;
        // `mlflow-artifacts://host:port/path` names the server explicitly; the path is what matters.
        let rest = match rest.strip_prefix("//") {
            Some(hosted) => hosted.split_once('/').map(|(_, p)| p).unwrap_or(""),
            None => rest.trim_start_matches('/'),
        };
        let path = path.trim_start_matches('/');
        Ok(format!("{}/api/2.0/mlflow-artifacts/artifacts/{rest}{}{path}", self.base, if path.is_empty() { "" } else { "/" }))
    }

    pub async fn upload_artifact(&self, artifact_uri: &str, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let url = self.artifact_url(artifact_uri, path)?;
        let (status, body) = self.send(path, || self.http.put(&url).body(bytes.to_vec())).await?;
        if !(200..300).contains(&status) {
            return Err(self.err(format!("uploading artifact {path} answered {status}: {}", String::from_utf8_lossy(&body))));
        }
        Ok(())
    }

    pub async fn download_artifact(&self, artifact_uri: &str, path: &str) -> Result<Vec<u8>, StoreError> {
        let url = self.artifact_url(artifact_uri, path)?;
        let (status, body) = self.send(path, || self.http.get(&url)).await?;
        if !(200..300).contains(&status) {
            return Err(self.err(format!("downloading artifact {path} answered {status}")));
        }
        Ok(body)
    }

    /// Creates the registered model unless it exists.
    pub async fn ensure_registered_model(&self, name: &str) -> Result<(), StoreError> {
        match self.call(reqwest::Method::POST, "registered-models/create", &[], Some(json!({"name": name}))).await {
            Ok(_) => Ok(()),
            Err(StoreError::Mlflow { message, .. }) if message.contains("RESOURCE_ALREADY_EXISTS") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every version of `name`, with tags and aliases.
    pub async fn model_versions(&self, name: &str) -> Result<Vec<ModelVersion>, StoreError> {
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut q = vec![("filter", filter.as_str()), ("max_results", "1000")];
            if !token.is_empty() {
                q.push(("page_token", token.as_str()));
            }
            let v = self.call(reqwest::Method::GET, "model-versions/search", &q, None).await?;
            for mv in v["model_versions"].as_array().into_iter().flatten() {
                // Search results may omit aliases; `get` has them.
                let version = mv["version"].as_str().unwrap_or_default();
                out.push(self.model_version(name, version).await?);
            }
            match v["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => break,
            }
        }
        Ok(out)
    }

    pub async fn model_version(&self, name: &str, version: &str) -> Result<ModelVersion, StoreError> {
        let v = self.call(reqwest::Method::GET, "model-versions/get", &[("name", name), ("version", version)], None).await?;
        Ok(ModelVersion::from_json(&v["model_version"]))
    }

    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[(String, String)],
    ) -> Result<ModelVersion, StoreError> {
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
        let v = self
            .call(
                reqwest::Method::POST,
                "model-versions/create",
                &[],
                Some(json!({"name": name, "source": source, "run_id": run_id, "tags": tags})),
            )
            .await?;
        Ok(ModelVersion::from_json(&v["model_version"]))
    }

    pub async fn set_version_tag(&self, name: &str, version: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.call(
            reqwest::Method::POST,
            "model-versions/set-tag",
            &[],
            Some(json!({"name": name, "version": version, "key": key, "value": value})),
        )
        .await?;
        Ok(())
    }

    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), StoreError> {
        self.call(reqwest::Method::POST, "registered-models/alias", &[], Some(json!({"name": name, "alias": alias, "version": version})))
            .await?;
        Ok(())
    }

    /// The version an alias points at, or `None` when the alias is not set.
    pub async fn alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>, StoreError> {
        match self.call(reqwest::Method::GET, "registered-models/alias", &[("name", name), ("alias", alias)], None).await {
            Ok(v) => Ok(Some(ModelVersion::from_json(&v["model_version"]))),
            Err(e) if Self::is_missing(&e) => Ok(None),
            Err(StoreError::Mlflow { message, .. }) if message.contains("INVALID_PARAMETER_VALUE") && message.contains("alias") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Resolves a `models:/…` reference to its version.
    pub async fn resolve(&self, r: &ModelRef) -> Result<ModelVersion, StoreError> {
        match r {
            ModelRef::Alias { name, alias } => self
                .alias(name, alias)
                .await?
                .ok_or_else(|| self.err(format!("registered model {name} has no alias @{alias}; promote a version first (churn promote)"))),
            ModelRef::Version { name, version } => self.model_version(name, version).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_refs_parse() {
        assert_eq!(ModelRef::parse("models:/churn@champion"), Some(ModelRef::Alias { name: "churn".into(), alias: "champion".into() }));
        assert_eq!(ModelRef::parse("models:/churn/3"), Some(ModelRef::Version { name: "churn".into(), version: "3".into() }));
        assert_eq!(ModelRef::parse("s3://b/p"), None);
    }

    #[test]
    fn artifact_urls_go_through_the_proxy() {
        let m = Mlflow::new("http://127.0.0.1:5000/").unwrap();
        assert_eq!(
            m.artifact_url("mlflow-artifacts:/1/abc/artifacts", "model/model.onnx").unwrap(),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.onnx"
        );
        assert_eq!(
            m.artifact_url("mlflow-artifacts://host:5000/1/abc/artifacts", "x").unwrap(),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/x"
        );
        assert!(m.artifact_url("s3://b/1/abc", "x").unwrap_err().to_string().contains("artifact serving"));
        assert!(Mlflow::new("localhost:5000").unwrap_err().to_string().contains("MLFLOW_TRACKING_URI"));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_reported_as_such() {
        // Port 9 (discard) is closed on loopback: the connection is refused at once.
        let m = Mlflow::new("http://127.0.0.1:9").unwrap();
        let e = m.experiment("x").await.unwrap_err();
        assert!(e.is_unreachable() && e.to_string().contains("after 4 attempts"), "{e}");
    }
}
