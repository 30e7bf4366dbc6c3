//! The MLflow model every logged run carries under `model/`, so that
//! `mlflow.pyfunc.load_model("models:/NAME@ALIAS")` scores raw customer rows in Python:
//!
//! - `MLmodel` with two flavors: `python_function` (loader `churn_pyfunc` from `code/`, data
//!   `model_raw.onnx`: the bundle's transform compiled into ONNX in front of the network, see
//!   [`churn_core::FeatureSpec::raw_rows_onnx`]) and `onnx` (`model.onnx`, the network on the
//!   encoded feature vector, for `mlflow.onnx.load_model`);
//! - the input signature (one column per raw input, `double` or `string`, none required) and an
//!   input example (a training customer from the Shapley background), which the MLflow UI shows;
//! - the Python environment (`python_env.yaml`, `requirements.txt`).

use churn_core::bundle::{self, Manifest};
use churn_core::explain::{BACKGROUND, Background};
use churn_core::{CoreError, FeatureSpec};
use serde_json::{Value, json};

/// The loader module `mlflow.pyfunc` imports (from the model's `code/` directory).
const LOADER: &str = include_str!("../python/churn_pyfunc.py");
const PYTHON_REQUIREMENTS: &str = "mlflow==3.17.2\nonnx==1.23.2\nonnxruntime==1.32.0\nnumpy==2.4.6\npandas==3.1.1\n";
const PYTHON_ENV: &str = "python: 3.11.7\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n";
/// The raw-row model's file in the MLflow model.
pub const RAW_MODEL: &str = "model_raw.onnx";

/// The files of the MLflow model beside the bundle's own (paths relative to `model/`).
pub fn files(
    run_id: &str,
    manifest: &Manifest,
    bundle_files: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<Vec<(String, Vec<u8>)>, CoreError> {
    let bad = |file: &'static str, problem: String| CoreError::ModelFile { file, problem };
    let file = |name: &'static str| bundle_files.get(name).ok_or_else(|| bad(name, "missing from the bundle".into()));
    let spec_text = std::str::from_utf8(file(bundle::FEATURE_SPEC)?).map_err(|e| bad(bundle::FEATURE_SPEC, format!("not UTF-8: {e}")))?;
    let spec = FeatureSpec::from_json(spec_text)?;
    let network = file(bundle::MODEL)?;
    let raw = spec.raw_rows_onnx(network)?;
    let types = spec.raw_input_types();
    let inputs: Vec<Value> = types.iter().map(|(name, t)| json!({"type": t.mlflow_type(), "name": name, "required": false})).collect();
    let outputs = json!([{"type": "double", "name": churn_core::onnx::OUTPUT_NAME, "required": true}]);
    let mut out = vec![
        ("MLmodel".to_string(), mlmodel_text(run_id, manifest, &Value::Array(inputs), &outputs).into_bytes()),
        (RAW_MODEL.to_string(), raw),
        ("code/churn_pyfunc.py".to_string(), LOADER.as_bytes().to_vec()),
        ("python_env.yaml".to_string(), PYTHON_ENV.as_bytes().to_vec()),
        ("requirements.txt".to_string(), PYTHON_REQUIREMENTS.as_bytes().to_vec()),
    ];
    if let Some(b) = bundle_files.get(BACKGROUND) {
        let background: Background = serde_json::from_slice(b).map_err(|e| bad(BACKGROUND, format!("not valid: {e}")))?;
        if let Some(row) = background.rows.first() {
            // Numbers as numbers where the signature says double, so the example passes it.
            let data: Vec<Value> = row
                .iter()
                .zip(&types)
                .map(|(v, (_, t))| match (v, t) {
                    (None, _) => Value::Null,
                    (Some(s), churn_core::RawInputType::Double) => s.trim().parse::<f64>().map_or(Value::Null, |x| json!(x)),
                    (Some(s), churn_core::RawInputType::Text) => json!(s),
                })
                .collect();
            let example = json!({"columns": background.columns, "data": [data]});
            out.push(("input_example.json".to_string(), serde_json::to_vec(&example).expect("JSON values serialise")));
        }
    }
    Ok(out)
}

fn mlmodel_text(run_id: &str, manifest: &Manifest, inputs: &Value, outputs: &Value) -> String {
    // JSON strings are valid YAML scalars: the signature's two JSON documents are quoted that way.
    let quoted = |v: &Value| serde_json::to_string(&v.to_string()).expect("a string serialises");
    format!(
        "artifact_path: model\n\
         flavors:\n  \
           onnx:\n    code: null\n    data: model.onnx\n    onnx_version: 1.17.0\n    providers:\n    - CPUExecutionProvider\n  \
           python_function:\n    code: code\n    data: {RAW_MODEL}\n    env:\n      virtualenv: python_env.yaml\n    loader_module: churn_pyfunc\n    python_version: 3.11.7\n\
         mlflow_version: 3.17.2\n\
         model_uuid: {uuid}\n\
         run_id: {run_id}\n\
         utc_time_created: '{created}'\n\
         signature:\n  inputs: {inputs}\n  outputs: {outputs}\n  params: null\n\
         saved_input_example_info:\n  artifact_path: input_example.json\n  type: dataframe\n  pandas_orient: split\n\
         metadata:\n  churn_bundle_sha256: {sha}\n  churn_model_name: {name}\n",
        uuid = &manifest.bundle_sha256()[..32],
        created = manifest.created_unix,
        inputs = quoted(inputs),
        outputs = quoted(outputs),
        sha = manifest.bundle_sha256(),
        name = manifest.model_name,
    )
}
