//! The model bundle: everything needed to use a trained model, with checksums.
//!
//! A bundle is a flat set of files (a directory locally, a prefix on S3):
//! `model.onnx`, `feature_spec.json`, `playbook.json`, `metrics.json`, `split.json`,
//! `history.json`, `reference.json` (training feature distributions, for drift),
//! `background.json` (the Shapley background sample), `report.html`
//! and `manifest.json`. The manifest lists the SHA-256 of every
//! other file and how the model was made; it is written last, so a bundle without a manifest is
//! incomplete, and every file is verified against it when the bundle is loaded.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::drift::{DriftReference, REFERENCE};
use crate::error::{CoreError, Result};
use crate::explain::{BACKGROUND, Background, Explainer};
use crate::network::Network;
use crate::playbook::Playbook;
use crate::scorer::Scorer;
use crate::spec::FeatureSpec;

pub const MANIFEST: &str = "manifest.json";
pub const MODEL: &str = "model.onnx";
pub const FEATURE_SPEC: &str = "feature_spec.json";
pub const PLAYBOOK: &str = "playbook.json";
pub const METRICS: &str = "metrics.json";

/// The files a loaded [`Bundle`] is made of. Loading fetches and verifies these only; the
/// others (report, split, history) are for people and for `churn upload`/downloads, which
/// verify every file. Fewer fetches keep a Lambda's cold start short.
pub const LOADED_FILES: [&str; 6] = [MODEL, FEATURE_SPEC, PLAYBOOK, METRICS, REFERENCE, BACKGROUND];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub schema_version: u32,
    pub model_name: String,
    /// `mlp` or `logistic`.
    pub model_kind: String,
    pub created_unix: u64,
    pub crate_version: String,
    /// Commit of the code that trained the model (`unknown` outside a git checkout).
    pub git_commit: String,
    /// SHA-256 of the training data file's bytes.
    pub data_sha256: String,
    pub data_rows: usize,
    pub seed: u64,
    /// The decision threshold chosen on validation data (maximum expected profit).
    pub threshold: f64,
    pub hyperparameters: serde_json::Value,
    /// File name -> SHA-256 of every file in the bundle but the manifest.
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    /// SHA-256 of the manifest's canonical JSON: identifies the bundle as a whole.
    pub fn bundle_sha256(&self) -> String {
        crate::sha256_hex(serde_json::to_string(self).expect("manifest serialises").as_bytes())
    }

    /// The bundle's short id, the first 12 hex digits of [`bundle_sha256`](Self::bundle_sha256):
    /// the model version outputs carry when no registry version names the bundle.
    pub fn short_id(&self) -> String {
        self.bundle_sha256()[..12].to_string()
    }
}

/// Which model answered: what every API response, batch summary and log line names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    pub name: String,
    /// The registry version when loaded through `models:/…`, else the bundle's short id (first 12
    /// hex digits of its SHA-256).
    pub version: String,
    /// SHA-256 of the bundle's manifest.
    pub sha256: String,
}

impl ModelInfo {
    /// The model of `manifest`, under its registry `version` when it has one.
    pub fn of(manifest: &Manifest, version: Option<String>) -> Self {
        ModelInfo {
            name: manifest.model_name.clone(),
            version: version.unwrap_or_else(|| manifest.short_id()),
            sha256: manifest.bundle_sha256(),
        }
    }
}

/// Where a bundle's loading spent its time (milliseconds), for the start-up log line: a cold
/// start is on a request's path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LoadTimings {
    /// Reading (or receiving) the files and checking their SHA-256.
    pub verify_ms: f64,
    /// Parsing the JSON files (spec, playbook, metrics, reference, background).
    pub parse_ms: f64,
    /// Reading the ONNX model: a dense stack's layers, matched to the feature spec (tract plans
    /// it on first use), or tract's plan of any other graph.
    pub plan_ms: f64,
    /// Preparing the Shapley evaluator (the background sample through the first layer).
    pub explainer_ms: f64,
}

/// A loaded, verified bundle, ready to score.
#[derive(Debug)]
pub struct Bundle {
    pub manifest: Manifest,
    pub spec: FeatureSpec,
    pub playbook: Playbook,
    pub metrics: serde_json::Value,
    pub scorer: Scorer,
    /// Training distribution of the features for drift checks (`reference.json`; bundles
    /// written before it existed have none).
    pub reference: Option<DriftReference>,
    /// Customers Shapley values are measured against (`background.json`; older bundles have none).
    pub background: Option<Background>,
    /// The model evaluated from slot values, when it is a dense stack this project wrote: the
    /// batch scorer's path (tract's plan scores anything else).
    pub network: Option<Arc<Network>>,
    /// The fast Shapley evaluator over `background`, when the model is one this project wrote.
    pub explainer: Option<Explainer>,
    pub timings: LoadTimings,
}

impl Bundle {
    /// Loads a bundle directory.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let label = dir.display().to_string();
        Self::load_with(&label, |name| std::fs::read(dir.join(name)).map_err(|e| CoreError::io(dir.join(name).display(), e)))
    }

    /// Loads a bundle from files already fetched, keyed by name (`label` says where they came
    /// from in errors).
    pub fn from_files(label: &str, files: &BTreeMap<String, Vec<u8>>) -> Result<Self> {
        Self::load_with(label, |name| {
            files.get(name).cloned().ok_or_else(|| CoreError::Bundle { dir: label.to_string(), message: format!("{name} is missing") })
        })
    }

    /// Loads a bundle from any store: `fetch(name)` returns a file's bytes. Every file of
    /// [`LOADED_FILES`] the manifest lists is fetched and checked against its SHA-256 before
    /// anything is parsed.
    pub fn load_with(label: &str, mut fetch: impl FnMut(&str) -> Result<Vec<u8>>) -> Result<Self> {
        let mut clock = std::time::Instant::now();
        let mut lap = || {
            let ms = clock.elapsed().as_secs_f64() * 1e3;
            clock = std::time::Instant::now();
            ms
        };
        let bad = |m: String| CoreError::Bundle { dir: label.to_string(), message: m };
        let in_bundle = |e: CoreError| CoreError::InBundle { dir: label.to_string(), error: Box::new(e) };
        let manifest: Manifest = serde_json::from_slice(&fetch(MANIFEST)?).map_err(|e| bad(format!("{MANIFEST} is not valid: {e}")))?;
        if manifest.schema_version != crate::SCHEMA_VERSION {
            return Err(bad(format!(
                "schema version {} (this build reads {}): use a matching churn version",
                manifest.schema_version,
                crate::SCHEMA_VERSION
            )));
        }
        let mut files = BTreeMap::new();
        for required in [MODEL, FEATURE_SPEC, PLAYBOOK, METRICS] {
            if !manifest.files.contains_key(required) {
                return Err(bad(format!("the manifest does not list {required}")));
            }
        }
        for (name, expected) in manifest.files.iter().filter(|(n, _)| LOADED_FILES.contains(&n.as_str())) {
            let bytes = fetch(name)?;
            let actual = crate::sha256_hex(&bytes);
            if &actual != expected {
                return Err(CoreError::Checksum { dir: label.into(), file: name.clone(), expected: expected.clone(), actual });
            }
            files.insert(name.as_str(), bytes);
        }
        let verify_ms = lap();
        let text = |n: &str| String::from_utf8(files[n].clone()).map_err(|_| bad(format!("{n} is not UTF-8")));
        let spec = FeatureSpec::from_json(&text(FEATURE_SPEC)?)?;
        fn json<T: serde::de::DeserializeOwned>(name: &str, text: Result<String>, bad: &dyn Fn(String) -> CoreError) -> Result<T> {
            serde_json::from_str(&text?).map_err(|e| bad(format!("{name}: {e}")))
        }
        let playbook = json::<Playbook>(PLAYBOOK, text(PLAYBOOK), &bad)?.check()?;
        playbook.check_fields(spec.input_names()).map_err(|e| bad(e.to_string()))?;
        let metrics = json(METRICS, text(METRICS), &bad)?;
        let mut parse_ms = lap();
        // The ONNX protobuf is read once: whether tract plans it now (any other graph) or on
        // first use, and the network the batch scorer and the explainer evaluate.
        let layers = crate::onnx::dense_stack_from_onnx(&files[MODEL])?;
        let scorer = Scorer::new(&files[MODEL], spec.width(), layers.is_some())?;
        let network = layers.map(|l| Network::new(&spec, l).map(Arc::new)).transpose()?;
        let plan_ms = lap();
        // Files older bundles lack: parsed and checked against the spec when present.
        let reference: Option<DriftReference> =
            files.contains_key(REFERENCE).then(|| json(REFERENCE, text(REFERENCE), &bad)).transpose()?;
        if let Some(r) = &reference {
            r.check(&spec).map_err(in_bundle)?;
        }
        let background: Option<Background> =
            files.contains_key(BACKGROUND).then(|| json(BACKGROUND, text(BACKGROUND), &bad)).transpose()?;
        if let Some(b) = &background {
            b.check_shape(&spec).map_err(in_bundle)?;
        }
        parse_ms += lap();
        // Building the explainer transforms every background row once, which is also the check
        // that they transform; without one, the rows are checked on their own.
        let explainer = match (&background, &network) {
            (Some(b), Some(net)) => Some(Explainer::with_network(&spec, net.clone(), b).map_err(in_bundle)?),
            (Some(b), None) => {
                b.check(&spec).map_err(in_bundle)?;
                None
            }
            (None, _) => None,
        };
        let timings = LoadTimings { verify_ms, parse_ms, plan_ms, explainer_ms: lap() };
        Ok(Bundle { manifest, spec, playbook, metrics, scorer, reference, background, network, explainer, timings })
    }
}

/// Writes a bundle directory atomically: files go to a temporary sibling directory which is
/// renamed into place once the manifest (with every checksum) is written. An existing bundle at
/// `dir` is only replaced when `replace` is set.
pub fn write_dir(dir: &Path, files: &[(String, Vec<u8>)], mut manifest: Manifest, replace: bool) -> Result<Manifest> {
    if dir.join(MANIFEST).exists() && !replace {
        return Err(CoreError::Bundle {
            dir: dir.display().to_string(),
            message: "a bundle already exists here; choose another --out or pass --force to replace it".into(),
        });
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| CoreError::io(parent.display(), e))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "bundle".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| CoreError::io(tmp.display(), e))?;
    manifest.files.clear();
    for (name, bytes) in files {
        std::fs::write(tmp.join(name), bytes).map_err(|e| CoreError::io(tmp.join(name).display(), e))?;
        manifest.files.insert(name.clone(), crate::sha256_hex(bytes));
    }
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    std::fs::write(tmp.join(MANIFEST), json).map_err(|e| CoreError::io(tmp.join(MANIFEST).display(), e))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| CoreError::io(dir.display(), e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| CoreError::io(dir.display(), e))?;
    Ok(manifest)
}
