//! Publishing a bundle: upload to the artifact store, log the run in MLflow, register a model
//! version, and promote versions between aliases.
//!
//! Everything logged is read back from the bundle's own files (manifest, metrics, history), so
//! `churn train` and a later `churn register --bundle …` record exactly the same run. Order
//! matters for "nothing lost": the bundle is complete in its store before MLflow hears of it,
//! and a version is only registered after its artifacts uploaded; a failure at any step leaves
//! no registry entry pointing at a missing or corrupt artifact.

use std::collections::BTreeMap;

use anyhow::Context;
use churn_core::bundle::{self, Manifest};
use churn_store::mlflow::{Metric, ModelVersion, now_millis};
use churn_store::{Location, Mlflow, Store};
use serde_json::Value;

use crate::train::EpochRecord;

pub use churn_store::registry::{CHALLENGER, CHAMPION, TAG_BUNDLE_SHA, TAG_BUNDLE_URI, bundle_location, load_version};

/// A bundle's files, verified against its manifest.
pub struct BundleFiles {
    pub uri: Location,
    pub files: BTreeMap<String, Vec<u8>>,
    pub manifest: Manifest,
}

impl BundleFiles {
    pub async fn fetch(store: &Store, uri: &Location) -> anyhow::Result<BundleFiles> {
        let files = match uri {
            Location::Local(dir) => churn_store::store::read_verified(dir)?,
            Location::S3 { .. } => store.fetch_bundle_files(uri).await?,
        };
        let manifest: Manifest = serde_json::from_slice(&files[bundle::MANIFEST]).context("manifest.json")?;
        Ok(BundleFiles { uri: uri.clone(), files, manifest })
    }

    /// Short id of the bundle: its S3 folder name and its MLflow run name.
    pub fn id(&self) -> String {
        self.manifest.short_id()
    }

    fn json(&self, name: &str) -> Value {
        self.files.get(name).and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null)
    }
}

/// Uploads the local bundle under `<prefix>/<model-name>/<bundle-id>/`; returns where it went.
pub async fn upload(store: &Store, local: &std::path::Path, prefix: &Location) -> anyhow::Result<Location> {
    let files = BundleFiles::fetch(store, &Location::Local(local.to_path_buf())).await?;
    let dest = prefix.join(&files.manifest.model_name).join(&files.id());
    store.upload_bundle(local, &dest).await?;
    Ok(dest)
}

/// What [`log_run`] recorded.
pub struct LoggedRun {
    pub run_id: String,
    pub artifact_uri: String,
}

/// Logs the bundle as an MLflow run: hyperparameters and provenance as params/tags, per-epoch
/// curves as metric steps, test/validation figures, the dataset, and the bundle (+ `MLmodel`)
/// as artifacts under `model/` through the server's artifact proxy.
pub async fn log_run(mlflow: &Mlflow, experiment: &str, b: &BundleFiles) -> anyhow::Result<LoggedRun> {
    let m = &b.manifest;
    let exp = mlflow.experiment(experiment).await?;
    let tags = vec![
        ("git_commit".to_string(), m.git_commit.clone()),
        ("data_sha256".to_string(), m.data_sha256.clone()),
        (TAG_BUNDLE_SHA.to_string(), m.bundle_sha256()),
        (TAG_BUNDLE_URI.to_string(), b.uri.to_string()),
        ("mlflow.source.name".to_string(), "churn train".to_string()),
    ];
    let run = mlflow.create_run(&exp, &format!("{}-{}", m.model_name, b.id()), &tags).await?;
    let result = async {
        let mut params: Vec<(String, String)> = match &m.hyperparameters {
            Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_string())).collect(),
            _ => vec![],
        };
        params.extend([
            ("model_name".to_string(), m.model_name.clone()),
            ("data_rows".to_string(), m.data_rows.to_string()),
            ("threshold".to_string(), m.threshold.to_string()),
            ("crate_version".to_string(), m.crate_version.clone()),
        ]);
        let now = now_millis();
        let mut metrics = Vec::new();
        let history: Vec<EpochRecord> = serde_json::from_value(b.json("history.json")).unwrap_or_default();
        for r in &history {
            for (key, value) in [("train_loss", r.train_loss), ("validation_loss", r.validation_loss), ("validation_auc", r.validation_auc)]
            {
                metrics.push(Metric { key: key.into(), value, step: r.epoch as i64, timestamp: now });
            }
        }
        let figures = b.json(bundle::METRICS);
        for split in ["test", "validation"] {
            if let Value::Object(o) = &figures[split] {
                for (k, v) in o {
                    if let Some(x) = v.as_f64().filter(|x| x.is_finite()) {
                        metrics.push(Metric { key: format!("{split}_{k}"), value: x, step: 0, timestamp: now });
                    }
                }
            }
        }
        mlflow.log_batch(&run.run_id, &params, &metrics, &[]).await?;
        let source = figures["data"]["file"].as_str().unwrap_or("unknown").to_string();
        mlflow.log_dataset(&run.run_id, "customers", &m.data_sha256, &source, m.data_rows).await?;
        // Artifacts go up concurrently: one at a time, the round trips dominated registration.
        let model = crate::mlmodel::files(&run.run_id, m, &b.files)?;
        let mut uploads: Vec<(String, &[u8])> = b.files.iter().map(|(name, bytes)| (format!("model/{name}"), bytes.as_slice())).collect();
        uploads.extend(model.iter().map(|(name, bytes)| (format!("model/{name}"), bytes.as_slice())));
        if let Some(report) = b.files.get("report.html") {
            uploads.push(("report.html".into(), report.as_slice()));
        }
        futures::future::try_join_all(uploads.iter().map(|(path, bytes)| mlflow.upload_artifact(&run.artifact_uri, path, bytes))).await?;
        anyhow::Ok(())
    }
    .await;
    // A run whose logging failed is closed as FAILED so nobody mistakes it for a good one.
    let status = if result.is_ok() { "FINISHED" } else { "FAILED" };
    let closed = mlflow.finish_run(&run.run_id, status).await;
    result?;
    closed?;
    Ok(LoggedRun { run_id: run.run_id, artifact_uri: run.artifact_uri })
}

/// The version of `name` already registered for this bundle, if any.
pub async fn existing_version(mlflow: &Mlflow, name: &str, bundle_sha: &str) -> anyhow::Result<Option<ModelVersion>> {
    mlflow.ensure_registered_model(name).await?;
    Ok(mlflow.model_versions(name).await?.into_iter().find(|v| v.tags.get(TAG_BUNDLE_SHA).map(String::as_str) == Some(bundle_sha)))
}

/// Logs (unless the bundle is already registered) and registers the bundle as a new version of
/// `name` with the `challenger` alias. Registering the same bundle again returns the existing
/// version instead of creating a duplicate.
pub async fn register(mlflow: &Mlflow, experiment: &str, name: &str, b: &BundleFiles) -> anyhow::Result<(ModelVersion, bool)> {
    let sha = b.manifest.bundle_sha256();
    if let Some(v) = existing_version(mlflow, name, &sha).await? {
        return Ok((v, false));
    }
    let run = log_run(mlflow, experiment, b).await?;
    let tags = vec![(TAG_BUNDLE_SHA.to_string(), sha), (TAG_BUNDLE_URI.to_string(), b.uri.to_string())];
    let v = mlflow.create_model_version(name, &format!("{}/model", run.artifact_uri), &run.run_id, &tags).await?;
    mlflow.set_alias(name, CHALLENGER, &v.version).await?;
    Ok((mlflow.model_version(name, &v.version).await?, true))
}

/// Resolves any `--model` argument: a directory, `s3://…`, or `models:/<name>@<alias>` /
/// `models:/<name>/<version>` (through MLflow, which must then be configured).
pub async fn resolve_model(store: &Store, mlflow: Option<&Mlflow>, uri: &str) -> anyhow::Result<churn_core::Bundle> {
    let r = churn_store::registry::resolve_model(store, mlflow, uri).await.with_context(|| format!("loading the model bundle at {uri}"))?;
    Ok(r.bundle)
}

/// The outcome of [`promote`].
pub struct Promotion {
    pub version: String,
    pub previous: Option<(String, f64)>,
    pub candidate_auc: f64,
    pub forced: bool,
}

/// Moves `champion` to `version` if it beats the current champion's ROC AUC on `data` by at
/// least `margin`; with `force`, moves it regardless and records that in a version tag.
pub async fn promote(
    store: &Store,
    mlflow: &Mlflow,
    name: &str,
    version: &str,
    data: &std::path::Path,
    margin: f64,
    force: bool,
) -> anyhow::Result<Promotion> {
    anyhow::ensure!(
        margin.is_finite() && margin >= 0.0,
        "--margin must be a number >= 0, not {margin}; to promote a version that does not beat the champion, pass --force"
    );
    let candidate = mlflow.model_version(name, version).await?;
    let cand_bundle = load_version(store, &candidate).await?;
    let candidate_auc = crate::pipeline::evaluate(&cand_bundle, data)?.roc_auc;
    let current = mlflow.alias(name, CHAMPION).await?;
    let previous = match &current {
        Some(c) if c.version != version => {
            let b = load_version(store, c).await?;
            Some((c.version.clone(), crate::pipeline::evaluate(&b, data)?.roc_auc))
        }
        _ => None,
    };
    let beats = previous.as_ref().is_none_or(|(_, auc)| candidate_auc >= auc + margin);
    if !beats && !force {
        let (v, auc) = previous.as_ref().expect("only a champion can be unbeaten");
        anyhow::bail!(
            "version {version} of {name} (ROC AUC {candidate_auc:.4}) does not beat champion version {v} (ROC AUC {auc:.4}) by the margin {margin} on {}; champion unchanged. Pass --force to promote anyway (recorded on the version)",
            data.display()
        );
    }
    // The tags first: a version never carries the alias without the record of why.
    mlflow.set_version_tag(name, version, "promotion_roc_auc", &format!("{candidate_auc:.6}")).await?;
    if let Some((v, auc)) = &previous {
        mlflow.set_version_tag(name, version, "promoted_over", &format!("version {v} (ROC AUC {auc:.6})")).await?;
    }
    let forced = !beats;
    if forced {
        mlflow.set_version_tag(name, version, "promotion_forced", "true").await?;
    }
    // Someone else may have promoted while the versions were evaluated: the comparison would
    // then be against a champion that is no longer the champion.
    let now = mlflow.alias(name, CHAMPION).await?.map(|v| v.version);
    let before = current.map(|v| v.version);
    anyhow::ensure!(
        now == before,
        "the {CHAMPION} alias of {name} moved from {} to {} while this promotion was evaluated; champion unchanged by this command. Run churn promote again",
        before.as_deref().map_or("no version".to_string(), |v| format!("version {v}")),
        now.as_deref().map_or("no version".to_string(), |v| format!("version {v}"))
    );
    mlflow.set_alias(name, CHAMPION, version).await?;
    Ok(Promotion { version: version.into(), previous, candidate_auc, forced })
}
