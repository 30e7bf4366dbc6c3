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
    /// `metrics.json` as written, checked to be JSON: `GET /model` returns it as is, and the
    /// few readers that look inside parse it then (a cold start does not build its tree).
    pub metrics: Box<serde_json::value::RawValue>,
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
    /// from in errors). Takes them, rather than copying each.
    pub fn from_files(label: &str, mut files: BTreeMap<String, Vec<u8>>) -> Result<Self> {
        Self::load_with(label, |name| {
            files.remove(name).ok_or_else(|| CoreError::Bundle { dir: label.to_string(), message: format!("{name} is missing") })
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
        // Each file is parsed where it lies and dropped once parsed: a start-up's fresh memory
        // pages are a large part of a cold start.
        fn utf8<'a>(name: &str, bytes: &'a [u8], bad: &dyn Fn(String) -> CoreError) -> Result<&'a str> {
            std::str::from_utf8(bytes).map_err(|_| bad(format!("{name} is not UTF-8")))
        }
        fn json<T: serde::de::DeserializeOwned>(name: &str, bytes: &[u8], bad: &dyn Fn(String) -> CoreError) -> Result<T> {
            serde_json::from_str(utf8(name, bytes, bad)?).map_err(|e| bad(format!("{name}: {e}")))
        }
        // Present: the manifest lists it, and every listed file was fetched above.
        let mut take = |name: &str| files.remove(name).ok_or_else(|| bad(format!("{name} is missing")));
        let spec = FeatureSpec::from_json(utf8(FEATURE_SPEC, &take(FEATURE_SPEC)?, &bad)?)?;
        let playbook = json::<Playbook>(PLAYBOOK, &take(PLAYBOOK)?, &bad)?.check()?;
        playbook.check_fields(spec.input_names()).map_err(|e| bad(e.to_string()))?;
        let metrics: Box<serde_json::value::RawValue> = json(METRICS, &take(METRICS)?, &bad)?;
        let mut parse_ms = lap();
        // The ONNX protobuf is read once: whether tract plans it now (any other graph) or on
        // first use, and the network the batch scorer and the explainer evaluate.
        let model = take(MODEL)?;
        let layers = crate::onnx::dense_stack_from_onnx(&model)?;
        let scorer = Scorer::new(model, spec.width(), layers.is_some())?;
        let network = layers.map(|l| Network::new(&spec, l).map(Arc::new)).transpose()?;
        let plan_ms = lap();
        // Files older bundles lack: parsed and checked against the spec when present.
        let reference: Option<DriftReference> = take(REFERENCE).ok().map(|b| json(REFERENCE, &b, &bad)).transpose()?;
        if let Some(r) = &reference {
            r.check(&spec).map_err(in_bundle)?;
        }
        let background: Option<Background> = take(BACKGROUND).ok().map(|b| json(BACKGROUND, &b, &bad)).transpose()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Dense, dense_stack_to_onnx};
    use crate::spec::tests::fitted_binned;

    /// The files of a small bundle: a binned spec, a one-hidden-layer stack, the default
    /// playbook; `edit` changes them before the manifest records their checksums.
    fn files(edit: impl FnOnce(&mut BTreeMap<String, Vec<u8>>)) -> BTreeMap<String, Vec<u8>> {
        let spec = fitted_binned();
        let w = spec.width();
        let weight = |n: usize| (0..n).map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0).collect::<Vec<_>>();
        let layers = [
            Dense { weight: weight(w * 4), bias: vec![0.1; 4], inputs: w, outputs: 4, relu: true },
            Dense { weight: weight(4), bias: vec![-0.2], inputs: 4, outputs: 1, relu: false },
        ];
        let mut files = BTreeMap::from([
            (MODEL.to_string(), dense_stack_to_onnx(&layers, &[]).unwrap()),
            (FEATURE_SPEC.to_string(), spec.to_json().into_bytes()),
            (PLAYBOOK.to_string(), serde_json::to_vec(&Playbook::default()).unwrap()),
            (METRICS.to_string(), br#"{"test": {"roc_auc": 0.8}}"#.to_vec()),
        ]);
        edit(&mut files);
        let manifest = Manifest {
            schema_version: crate::SCHEMA_VERSION,
            model_name: "m".into(),
            model_kind: "mlp".into(),
            created_unix: 0,
            crate_version: "0".into(),
            git_commit: "unknown".into(),
            data_sha256: String::new(),
            data_rows: 4,
            seed: 0,
            threshold: 0.5,
            hyperparameters: serde_json::Value::Null,
            files: files.iter().map(|(n, b)| (n.clone(), crate::sha256_hex(b))).collect(),
        };
        files.insert(MANIFEST.into(), serde_json::to_vec(&manifest).unwrap());
        files
    }

    #[test]
    fn a_bundle_loads_into_a_network_that_scores_as_its_onnx_model() {
        let bundle = Bundle::from_files("test", files(|_| ())).unwrap();
        let net = bundle.network.as_ref().expect("a dense stack is evaluated from slot values");
        let metrics: serde_json::Value = serde_json::from_str(bundle.metrics.get()).unwrap();
        assert_eq!(metrics["test"]["roc_auc"], 0.8);
        for row in crate::spec::tests::rows() {
            let row = row.as_slice();
            let dense = bundle.spec.transform(row).unwrap();
            let expected = bundle.scorer.predict(&dense).unwrap()[0];
            let mut slots = crate::spec::SlotValues::default();
            bundle.spec.checked_slot_values(row, &mut slots).unwrap();
            let mut z = vec![0.0; net.hidden()];
            net.first_layer(&bundle.spec, &slots, &mut z, &mut Default::default());
            let p = net.probability(&z, &mut Default::default()).unwrap();
            assert!((p - expected).abs() < 1e-6, "{p} against tract's {expected}");
        }
    }

    #[test]
    fn a_bad_file_is_named_in_the_error() {
        let cases: [(&str, Vec<u8>, &str); 3] = [
            (PLAYBOOK, vec![0xff, 0xfe], "playbook.json is not UTF-8"),
            (METRICS, b"{\"test\": ".to_vec(), "metrics.json: EOF while parsing"),
            (FEATURE_SPEC, vec![0xc3], "feature_spec.json is not UTF-8"),
        ];
        for (name, bytes, says) in cases {
            let e = Bundle::from_files(
                "test",
                files(|f| {
                    f.insert(name.into(), bytes);
                }),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(says), "{name}: {e}");
        }
        let mut missing = files(|_| ());
        missing.remove(PLAYBOOK);
        let e = Bundle::from_files("test", missing).unwrap_err().to_string();
        assert!(e.contains("playbook.json is missing"), "{e}");
    }
}
