//! Training/serving parity on real rows: the model trained with candle, the exported ONNX run by
//! tract, and the same file run by onnxruntime give the same probabilities on every test row; the
//! features the serving side computes from raw rows (CSV or parquet, via the bundle's
//! `feature_spec.json`) are the very features training used.

use std::process::Command;

use churn_core::Bundle;
use churn_core::table::{Table, TableWriter};
use churn_e2e::*;
use churn_training::params::TrainConfig;
use churn_training::pipeline::{self, TrainJob};

const TOL: f32 = 1e-5;

/// Runs `tests/support/<script> ARGS… OUT` (an independent Python reader) and returns the JSON
/// it wrote to `out`, with its probabilities `p`.
fn python_check(script: &str, args: &[&std::path::Path], out: &std::path::Path) -> (serde_json::Value, Vec<f32>) {
    let status = Command::new(python())
        .arg(root().join("tests/support").join(script))
        .args(args)
        .arg(out)
        .status()
        .expect("python with onnxruntime and pandas (run the suite with tests/run.sh)");
    assert!(status.success(), "{script} failed");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    let p = r["p"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    (r, p)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn telco_with_its_config_agrees_on_every_test_row() {
    let mut config = TrainConfig::load(&telco_config()).unwrap();
    config.model.seed = 11;
    // Edges at training quantiles here (the default places them by the label, as the other
    // tests do): both kinds are held to parity on real rows.
    config.dataset.bin_edges = churn_core::BinEdges::Quantile;
    let o = parity(&telco_csv(), config, &["tenure", "monthlycharges", "totalcharges", "seniorcitizen"]);
    // The configured derived features and the piecewise-linear bins are in the vector.
    assert!(o.prepared.spec.feature_names.iter().any(|f| f == "tenure~bin0") && o.prepared.spec.derived.len() == 4);
}

#[test]
fn the_default_recipe_on_an_interaction_table_agrees_on_every_test_row() {
    // No config: inferred types, the default ensemble (cross-fitted members merged into one
    // graph) and piecewise-linear bins on every number.
    let data = root().join("training/data/hr_turnover/employees.csv");
    let mut config = TrainConfig::default();
    config.dataset.target_column = Some("left".into());
    config.dataset.positive_label = Some("1".into());
    let numeric = [
        "satisfaction_level",
        "last_evaluation",
        "number_projects",
        "average_montly_hours",
        "time_spend_company",
        "work_accident",
        "promotion_last_5years",
    ];
    let o = parity(&data, config, &numeric);
    assert!(o.params.ensemble > 1, "the default is an ensemble");
    assert!(o.prepared.spec.numeric.iter().filter(|f| !f.bins.is_empty()).count() >= 4);
}

#[test]
fn pooled_categories_tree_bins_and_left_out_columns_agree_on_every_test_row() {
    // A 51-value state column with only the 20 most frequent values kept (the rest pooled),
    // an id and a free-text column left out by inference, and bin edges placed by the label
    // (`bin_edges = "tree"`, the default, set here because the assertions below are about it).
    let dir = scratch("wide-data");
    let path = dir.path().join("wide.csv");
    std::fs::write(&path, telco_with_wide_text()).unwrap();
    let mut config = TrainConfig::default();
    config.dataset.target_column = Some("churn".into());
    config.dataset.positive_label = Some("Yes".into());
    config.dataset.max_categories = 20;
    config.dataset.bin_edges = churn_core::BinEdges::Tree;
    config.model.ensemble = 2;
    let o = parity(&path, config, &["tenure", "monthlycharges", "totalcharges", "seniorcitizen"]);
    // Tenure's edges are where a tree on the label splits it (midpoints between whole months),
    // not its training quantiles (whole months, as tenure is).
    let tenure = o.prepared.spec.numeric.iter().find(|f| f.name == "tenure").unwrap();
    let inner = &tenure.bins[1..tenure.bins.len() - 1];
    assert!(inner.len() >= 2 && inner.iter().all(|e| e.fract() == 0.5), "{:?}", tenure.bins);
    let state = o.prepared.spec.categorical.iter().find(|c| c.name == "state").unwrap();
    assert_eq!(state.vocabulary.len(), 20);
    assert!(o.prepared.spec.input_names().all(|n| n != "ticket" && n != "note"));
}

/// Trains on `data` with `config` and checks every parity on the test rows; `numeric` are the
/// columns written as numbers (not text) in the parquet copy.
fn parity(data: &std::path::Path, config: TrainConfig, numeric: &[&str]) -> pipeline::Outcome {
    let dir = scratch("parity");
    let bundle_dir = dir.path().join("model");
    let o = pipeline::run(TrainJob {
        data: data.to_path_buf(),
        config,
        out: Some(bundle_dir.clone()),
        force: false,
        on_epoch: Box::new(|_| {}),
    })
    .unwrap();
    let test_rows = &o.prepared.split.test;
    assert_eq!(o.candle_test_p.len(), test_rows.len());

    // Serving side: the bundle as a Lambda loads it, features recomputed from the raw CSV rows.
    let bundle = Bundle::load_dir(&bundle_dir).unwrap();
    let table = Table::read(data).unwrap();
    let names: Vec<&str> = bundle.spec.input_names().collect();
    let view = table.view(&names).unwrap();
    let width = bundle.spec.width();
    let mut serving_x = Vec::with_capacity(test_rows.len() * width);
    for &i in test_rows {
        serving_x.extend(bundle.spec.transform(&view.row(i)).unwrap());
    }
    assert_eq!(serving_x, o.prepared.test.x, "serving features differ from training features");

    // candle vs tract.
    let tract_p = bundle.scorer.predict(&serving_x).unwrap();
    let d = max_diff(&o.candle_test_p, &tract_p);
    assert!(d <= TOL, "candle vs tract: {d}");

    // onnxruntime (and onnx's full checker) on the same file and rows.
    let feats = dir.path().join("features.json");
    let out = dir.path().join("ort.json");
    std::fs::write(&feats, serde_json::to_vec(&serde_json::json!({"rows": test_rows.len(), "width": width, "x": serving_x})).unwrap())
        .unwrap();
    let (r, ort_p) = python_check("onnx_check.py", &[&bundle_dir.join("model.onnx"), &feats], &out);
    let d = max_diff(&ort_p, &tract_p);
    assert!(d <= TOL, "onnxruntime vs tract: {d}");
    assert_eq!(r["input"]["name"], "features");
    assert_eq!(r["output"]["name"], "churn_probability");
    assert!(r["input"]["shape"][0].as_str().unwrap().parse::<usize>().is_err(), "batch dimension is symbolic: {}", r["input"]);

    // Parquet input (typed columns) gives the same features as CSV text: write the test rows
    // with numbers as numbers and score them through the batch path.
    let pq = dir.path().join("test.parquet");
    let source = std::fs::read_to_string(data).unwrap();
    let csv_text: String = source
        .lines()
        .enumerate()
        .filter(|(i, _)| *i == 0 || test_rows.binary_search(&(i - 1)).is_ok())
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let csv_path = dir.path().join("test.csv");
    std::fs::write(&csv_path, csv_text).unwrap();
    // Python on raw rows: the transform compiled into ONNX in front of the network, called
    // through the module MLflow loads, on the same raw CSV rows read by pandas.
    let raw = dir.path().join("model_raw.onnx");
    std::fs::write(&raw, bundle.spec.raw_rows_onnx(&std::fs::read(bundle_dir.join("model.onnx")).unwrap()).unwrap()).unwrap();
    let out = dir.path().join("raw.json");
    let (r, raw_p) = python_check("raw_rows_check.py", &[&raw, &csv_path], &out);
    let d = max_diff(&raw_p, &tract_p);
    assert!(d <= 1e-6, "raw-row ONNX in Python (onnxruntime) vs tract on the serving features: {d}");
    assert_eq!(r["inputs"].as_object().unwrap().len(), names.len(), "one graph input per raw input: {}", r["inputs"]);

    let typed = typed_copy(&Table::read(&csv_path).unwrap(), numeric);
    let mut w = TableWriter::create(&pq, typed[0].schema()).unwrap();
    for b in &typed {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    let batch_scores = |bundle: &Bundle, name: &str| -> Vec<f32> {
        let scored_path = dir.path().join(name);
        let summary =
            churn_core::scoring::score_table(bundle, churn_core::table::TableReader::open(&pq).unwrap(), &scored_path, 0).unwrap();
        assert_eq!(summary.rows, test_rows.len());
        assert_eq!(summary.failed, 0);
        let scored = Table::read(&scored_path).unwrap();
        let col = scored.column_values("churn_probability").unwrap();
        col.iter()
            .map(|v| match v {
                churn_core::RawValue::Number(x) => *x as f32,
                other => panic!("no probability: {other:?}"),
            })
            .collect()
    };
    let batch_p = batch_scores(&bundle, "scored.parquet");
    // The batch scorer's path for any other graph: the dense input vector through tract.
    let mut through_tract = Bundle::load_dir(&bundle_dir).unwrap();
    through_tract.network = None;
    let d = max_diff(&batch_scores(&through_tract, "scored-tract.parquet"), &tract_p);
    assert!(d <= 1e-6, "parquet batch scoring through tract vs tract on the serving features: {d}");
    let d = max_diff(&batch_p, &o.candle_test_p);
    assert!(d <= TOL, "parquet batch scoring vs candle: {d}");
    // The batch path evaluates the project's dense stacks from the slot values (no input
    // vector, no tract): the same probabilities as tract on the dense features.
    assert!(bundle.network.is_some(), "the trained model is a dense stack");
    let d = max_diff(&batch_p, &tract_p);
    assert!(d <= 1e-6, "parquet batch scoring (first layer from the slot values) vs tract: {d}");
    o
}

/// The raw-row model (the transform compiled into ONNX, through the module MLflow loads) on
/// the values the API treats specially — an unseen category, blank numbers and categories,
/// whitespace around a category, a column the caller does not have — scores as `churn score`
/// does; a value that is not a number is an error naming the column and the row.
#[test]
fn the_raw_row_model_treats_odd_values_as_churn_score_does() {
    let dir = scratch("raw-rows");
    let d = dir.path();
    let bundle = trained_bundle();
    let spec = Bundle::load_dir(bundle).unwrap().spec;
    let raw = d.join("model_raw.onnx");
    std::fs::write(&raw, spec.raw_rows_onnx(&std::fs::read(bundle.join("model.onnx")).unwrap()).unwrap()).unwrap();
    let header: Vec<String> =
        std::fs::read_to_string(telco_csv()).unwrap().lines().next().unwrap().split(',').map(str::to_string).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let edits = [
        (2, "contract", "Crypto contract"),
        (3, "totalcharges", " "),
        (4, "gender", ""),
        (5, "tenure", ""),
        (6, "seniorcitizen", ""),
        (7, "paperlessbilling", " Yes "),
    ];
    let rows = |blank: Option<&str>, bad: bool| {
        telco_with(|i, line| {
            if i > 41 {
                return None;
            }
            let mut f: Vec<String> = line.split(',').map(str::to_string).collect();
            for (row, name, value) in edits {
                if i == row {
                    f[col(name)] = value.to_string();
                }
            }
            if let Some(b) = blank.filter(|_| i > 1) {
                f[col(b)] = String::new();
            }
            if bad && i == 4 {
                f[col("tenure")] = "abc".into();
            }
            Some(f.join(","))
        })
    };
    let python = |csv: &str, dropped: Option<&str>| {
        let out = d.join("raw.json");
        let o = Command::new(python())
            .arg(root().join("tests/support/raw_rows_check.py"))
            .args([raw.to_str().unwrap(), csv, out.to_str().unwrap()])
            .args(dropped)
            .output()
            .unwrap();
        let v: Option<Vec<f64>> = o.status.success().then(|| {
            let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
            r["p"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
        });
        (v, String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let churn_score = |csv: &str| -> Vec<f64> {
        let out = d.join("scored.csv");
        churn_ok(&["score", "--model", bundle.to_str().unwrap(), "--input", csv, "--output", out.to_str().unwrap()]);
        std::fs::read_to_string(&out).unwrap().lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect()
    };
    let edited = write(d, "edited.csv", &rows(None, false));
    let (py, err) = python(&edited, None);
    let rust = churn_score(&edited);
    let diff = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let py = py.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(py.len(), 40);
    assert!(diff(&py, &rust) <= 1e-6, "odd values: {}", diff(&py, &rust));
    // A column the caller does not have scores as that column blank in every row.
    let blanked = write(d, "blanked.csv", &rows(Some("techsupport"), false));
    let (py, err) = python(&edited, Some("techsupport"));
    let py = py.unwrap_or_else(|| panic!("{err}"));
    assert!(diff(&py, &churn_score(&blanked)) <= 1e-6, "missing column: {}", diff(&py, &churn_score(&blanked)));
    // Not a number: refused, with the column and row.
    let bad = write(d, "bad.csv", &rows(None, true));
    let (py, err) = python(&bad, None);
    assert!(py.is_none(), "a non-number must be refused");
    assert!(err.contains("ValueError") && err.contains("'tenure', row 2") && err.contains("'abc' is not a number"), "{err}");
}

/// The table with numeric-looking columns cast to Float64 (blank -> null), as a parquet export
/// from a warehouse would carry them.
fn typed_copy(t: &Table, numeric: &[&str]) -> Vec<arrow::array::RecordBatch> {
    use arrow::array::{Array, AsArray, Float64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    t.batches
        .iter()
        .map(|b| {
            let mut fields = Vec::new();
            let mut cols: Vec<Arc<dyn Array>> = Vec::new();
            for (f, c) in b.schema().fields().iter().zip(b.columns()) {
                if numeric.contains(&f.name().as_str()) {
                    let s = c.as_string::<i32>();
                    let v: Float64Array = (0..s.len()).map(|i| s.value(i).trim().parse::<f64>().ok()).collect();
                    fields.push(Field::new(f.name(), DataType::Float64, true));
                    cols.push(Arc::new(v));
                } else {
                    fields.push(f.as_ref().clone());
                    cols.push(c.clone());
                }
            }
            arrow::array::RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
        })
        .collect()
}
