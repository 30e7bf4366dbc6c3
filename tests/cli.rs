//! The `churn` CLI end to end: training on the bundled data, scoring, evaluation, training on a
//! non-Telco table with inferred types, and every bad input the issue lists.

use churn_e2e::*;
use serde_json::Value;

#[test]
fn train_writes_a_complete_verified_bundle() {
    let dir = trained_bundle();
    for f in [
        "model.onnx",
        "feature_spec.json",
        "playbook.json",
        "metrics.json",
        "split.json",
        "history.json",
        "report.html",
        "manifest.json",
        "background.json",
        "reference.json",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["seed"], 7);
    assert_eq!(manifest["data_rows"], 4930);
    let data = std::fs::read(telco_csv()).unwrap();
    assert_eq!(manifest["data_sha256"], churn_core::sha256_hex(&data));
    let bundle = churn_core::Bundle::load_dir(dir).expect("bundle loads and verifies");
    assert!(bundle.spec.width() > 40);
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for chart in ["ROC", "Precision-recall", "Calibration", "Cumulative gains", "Campaign profit", "Training curves"] {
        assert!(report.contains(chart), "report lacks {chart}");
    }
    assert!(report.matches("<svg").count() >= 6);
    // The playbook drives the report: its offers, with how many contacted test customers get each.
    assert!(report.contains("Personalised offers") && report.contains("contract_upgrade") && report.contains("onboarding_call"));
    // The split is recorded and disjoint.
    let split: Value = serde_json::from_slice(&std::fs::read(dir.join("split.json")).unwrap()).unwrap();
    let n = |k: &str| split[k].as_array().unwrap().len();
    assert_eq!(n("train") + n("validation") + n("test"), 4930);
    // A model that learned something: the test AUC is far above chance (not a target check).
    let metrics: Value = serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    assert!(metrics["test"]["roc_auc"].as_f64().unwrap() > 0.75, "{}", metrics["test"]);
}

/// `churn compare`: the MLP and the logistic baseline on the same seeds, a table of mean ± sd
/// test figures and every run as JSON.
#[test]
fn compare_trains_both_kinds_per_seed_and_writes_every_run() {
    let d = scratch("compare");
    let json = d.path().join("runs.json");
    let out = churn_ok(&["compare", "--seeds", "1", "--json", json.to_str().unwrap()]);
    assert!(out.lines().any(|l| l.starts_with("mlp ")) && out.lines().any(|l| l.starts_with("logistic ")), "{out}");
    let runs: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(runs.iter().map(|r| r["kind"].as_str().unwrap()).collect::<Vec<_>>(), ["mlp", "logistic"]);
    for r in &runs {
        assert_eq!(r["seed"], 1);
        assert!(r["test"]["roc_auc"].as_f64().unwrap() > 0.8, "{r}");
        assert!(r["seconds"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let d = scratch("det");
    let a = d.path().join("a");
    let out = churn_ok(&["train", "--seed", "7", "--out", a.to_str().unwrap()]);
    assert!(out.contains("ROC AUC") && out.contains("very_high"), "{out}");
    let onnx = |p: &std::path::Path| std::fs::read(p.join("model.onnx")).unwrap();
    assert_eq!(onnx(&a), onnx(trained_bundle()), "same seed, same model bytes");
    // An existing bundle is not overwritten without --force.
    let err = churn_err(&["train", "--seed", "7", "--out", a.to_str().unwrap()]);
    assert!(err.contains("--force"), "{err}");
}

#[test]
fn score_keeps_every_row_and_reports_bad_ones() {
    let d = scratch("score");
    // Line 3 gets a bad tenure; the target column stays in and must be ignored.
    let csv = telco_with(|i, l| {
        if i == 3 {
            let mut f: Vec<&str> = l.split(',').collect();
            f[5] = "abc";
            Some(f.join(","))
        } else {
            Some(l.to_string())
        }
    });
    let input = write(d.path(), "in.csv", &csv);
    let output = d.path().join("scored.parquet");
    let model = trained_bundle().to_str().unwrap();
    let out = churn_ok(&["score", "--model", model, "--input", &input, "--output", output.to_str().unwrap()]);
    assert!(out.contains("scored 4930 rows (1 failed"), "{out}");
    // Read back through the library and check shape and content.
    let t = churn_core::table::Table::read(&output).unwrap();
    assert_eq!(t.rows, 4930);
    assert_eq!(t.columns, ["customerid", "churn_probability", "risk_tier", "recommended_action", "warnings", "error"]);
    let v = t.view(&["customerid", "churn_probability", "error"]).unwrap();
    let err = v.row(1).value_text(2).expect("row 2 has an error");
    assert!(err.contains("line 3") && err.contains("tenure") && err.contains("abc"), "{err}");
    assert!(v.row(1).value_text(1).is_none());
    assert_eq!(v.row(0).value_text(0).as_deref(), Some("8879-ZKJOF"));
    let p: f64 = v.row(0).value_text(1).unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&p));

    // CSV out, from the parquet we just wrote? No: score the original as parquet input instead.
    let csv_out = d.path().join("scored.csv");
    churn_ok(&["score", "--model", model, "--input", telco_csv().to_str().unwrap(), "--output", csv_out.to_str().unwrap()]);
    let text = std::fs::read_to_string(&csv_out).unwrap();
    assert_eq!(text.lines().count(), 4931);
}

/// `churn package` on bad input: each refusal names what is wrong and how to go on, and writes
/// nothing.
#[test]
fn package_refuses_bad_input_with_clear_messages() {
    let d = scratch("package-bad");
    let out = d.path().join("pkg");
    let model = trained_bundle().to_str().unwrap();
    let o = out.to_str().unwrap();
    let e = churn_err(&["package", "--model", model]);
    assert!(e.contains("nothing to write") && e.contains("--out") && e.contains("--archive"), "{e}");
    let e = churn_err(&["package", "--model", d.path().join("nowhere").to_str().unwrap(), "--out", o]);
    assert!(e.contains("nowhere") && e.contains("manifest.json"), "{e}");
    let e = churn_err(&["package", "--model", model, "--archive", d.path().join("model.zip").to_str().unwrap()]);
    assert!(e.contains("--archive must end in .tar") && e.contains("model.zip"), "{e}");
    let e = churn_err(&["package", "--model", "models:/churn@champion", "--out", o, "--mlflow-uri", ""]);
    assert!(e.contains("models:/churn@champion") && e.contains("MLFLOW_TRACKING_URI"), "{e}");
    // A corrupted file: refused by its checksum.
    let copy = bundle_copy(&d.path().join("bundle"), &[]);
    std::fs::write(copy.join("playbook.json"), "{}").unwrap();
    let e = churn_err(&["package", "--model", copy.to_str().unwrap(), "--out", o]);
    assert!(e.contains("checksum mismatch for playbook.json"), "{e}");
    assert!(!out.exists(), "nothing written");
    // An existing package is replaced only when asked.
    churn_ok(&["package", "--model", model, "--out", o]);
    let e = churn_err(&["package", "--model", model, "--out", o]);
    assert!(e.contains("--force"), "{e}");
    churn_ok(&["package", "--model", model, "--out", o, "--force"]);
}

/// Parquet as pandas writes it (`df.to_parquet`: text as `large_string`, a number column with
/// blanks as text) scores exactly as the CSV it came from: the fast dictionary path covers
/// `large_string` as well as `string`.
#[test]
fn pandas_written_parquet_scores_as_its_csv() {
    let d = scratch("pandas");
    let pq = d.path().join("pandas.parquet");
    let types: Value = serde_json::from_str(&aws_mlflow(&["pandas-parquet", telco_csv().to_str().unwrap(), pq.to_str().unwrap()])).unwrap();
    assert_eq!((types["contract"].as_str(), types["totalcharges"].as_str()), (Some("large_string"), Some("large_string")), "{types}");
    let model = trained_bundle().to_str().unwrap();
    let (from_pq, from_csv) = (d.path().join("pq.csv"), d.path().join("csv.csv"));
    churn_ok(&["score", "--model", model, "--input", pq.to_str().unwrap(), "--output", from_pq.to_str().unwrap()]);
    churn_ok(&["score", "--model", model, "--input", telco_csv().to_str().unwrap(), "--output", from_csv.to_str().unwrap()]);
    let (a, b) = (std::fs::read_to_string(&from_pq).unwrap(), std::fs::read_to_string(&from_csv).unwrap());
    assert_eq!(a.lines().count(), 4931);
    assert!(a == b, "pandas parquet and CSV score differently");
}

/// The id column is echoed unchanged whatever text type the writer gave it (`string`,
/// `large_string` as pandas writes, string views as Polars does), blanks included.
#[test]
fn ids_of_every_text_type_are_echoed_unchanged() {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::DataType;
    let bundle = churn_core::Bundle::load_dir(trained_bundle()).unwrap();
    let table = churn_core::table::Table::read(&telco_csv()).unwrap();
    let batch = &table.batches[0];
    let id = bundle.spec.id_column.clone().expect("Telco has an id column");
    let position = batch.schema().index_of(&id).unwrap();
    // One blank id, which the plain `string` path keeps as a blank.
    let mut ids: Vec<String> = batch.column(position).as_string::<i32>().iter().map(|v| v.unwrap().to_string()).collect();
    ids[3] = String::new();
    let utf8: arrow::array::ArrayRef = std::sync::Arc::new(arrow::array::StringArray::from(ids.clone()));
    for t in [DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View] {
        let mut columns = batch.columns().to_vec();
        columns[position] = arrow::compute::cast(&utf8, &t).unwrap();
        let named = table.columns.iter().zip(columns);
        let input = arrow::array::RecordBatch::try_from_iter(named).unwrap();
        let mut scorer = churn_core::scoring::BatchScorer::new(&bundle, &table.columns);
        let out = scorer.score(&input, 0, &|i| format!("row {i}")).unwrap();
        let echoed = out.column(0).as_string::<i32>();
        assert_eq!(echoed.null_count(), 0, "{t}");
        assert_eq!(echoed.iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>(), ids, "{t}");
    }
}

#[test]
fn evaluate_on_the_test_rows_reproduces_the_training_figures() {
    let dir = trained_bundle();
    let split: Value = serde_json::from_slice(&std::fs::read(dir.join("split.json")).unwrap()).unwrap();
    let test: std::collections::HashSet<usize> = split["test"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    // Data row i is file line i + 2.
    let csv = telco_with(|line, l| (line == 1 || test.contains(&(line - 2))).then(|| l.to_string()));
    let d = scratch("eval");
    let path = write(d.path(), "test.csv", &csv);
    let out = churn_ok(&["evaluate", "--model", dir.to_str().unwrap(), "--data", &path, "--json"]);
    let e: Value = serde_json::from_str(&out).unwrap();
    let metrics: Value = serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    for k in ["roc_auc", "brier", "ece", "ece_floor", "ece_floor_p90", "log_loss"] {
        let (a, b) = (e[k].as_f64().unwrap(), metrics["test"][k].as_f64().unwrap());
        assert!((a - b).abs() < 1e-5, "{k}: evaluate {a} vs training {b}");
    }
    // The calibration noise of ~1,000 test rows: about 0.03 (why the ECE <= 0.03 is at
    // the edge of what this test split can show), above it in a tenth of the draws.
    let (floor, p90) = (e["ece_floor"].as_f64().unwrap(), e["ece_floor_p90"].as_f64().unwrap());
    assert!((0.015..0.045).contains(&floor) && floor < p90, "ECE floor {floor}, 90th percentile {p90}");
    let table = churn_ok(&["evaluate", "--model", dir.to_str().unwrap(), "--data", &path]);
    assert!(table.contains("PR AUC") && table.contains("campaign profit") && table.contains("sampling noise"), "{table}");
}

/// A churn-like table that is not Telco: other names, a 0/1 target, types inferred.
fn synthetic_table() -> String {
    let mut s = String::from("account_id,age,plan,monthly_usage,support_calls,churned\n");
    let mut x: u64 = 12345;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 10_000.0
    };
    for i in 0..800 {
        let age = 18.0 + (next() * 60.0).floor();
        let plan = ["basic", "plus", "pro"][(next() * 3.0) as usize];
        let usage = (next() * 200.0).round();
        let calls = (next() * 8.0).floor();
        let z = -1.0 + 0.5 * calls - usage / 100.0 + if plan == "basic" { 0.8 } else { 0.0 };
        let churned = (next() < 1.0 / (1.0 + (-z).exp())) as u8;
        let usage = if i % 50 == 0 { String::new() } else { usage.to_string() };
        s.push_str(&format!("A{i:05},{age},{plan},{usage},{calls},{churned}\n"));
    }
    s
}

#[test]
fn trains_on_any_churn_like_table_given_target_and_label() {
    let d = scratch("generic");
    let path = write(d.path(), "accounts.csv", &synthetic_table());
    let out_dir = d.path().join("m");
    let out = churn_ok(&["train", "--data", &path, "--target", "churned", "--positive", "1", "--out", out_dir.to_str().unwrap()]);
    assert!(out.contains("800 rows"), "{out}");
    let spec: Value = serde_json::from_slice(&std::fs::read(out_dir.join("feature_spec.json")).unwrap()).unwrap();
    assert_eq!(spec["id_column"], "account_id", "id inferred");
    let kinds: Vec<(String, String)> = spec["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["kind"].as_str().unwrap().to_string()))
        .collect();
    assert!(kinds.contains(&("plan".into(), "categorical".into())), "{kinds:?}");
    assert!(kinds.contains(&("monthly_usage".into(), "numeric".into())), "{kinds:?}");
    let metrics: Value = serde_json::from_slice(&std::fs::read(out_dir.join("metrics.json")).unwrap()).unwrap();
    assert!(metrics["test"]["roc_auc"].as_f64().unwrap() > 0.6, "{}", metrics["test"]);
}

#[test]
fn a_table_with_many_valued_text_an_id_and_free_text_trains_without_a_config() {
    let d = scratch("wide");
    let path = write(d.path(), "wide.csv", &telco_with_wide_text());
    let out_dir = d.path().join("m");
    // No --positive: the target's two values are Yes and No, and Yes is the one that means churned.
    let o = churn(&["train", "--data", &path, "--target", "churn", "--out", out_dir.to_str().unwrap()]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("\"Yes\" counts as churned") && stderr.contains("--positive"), "{stderr}");
    assert!(stderr.contains("`ticket` left out") && stderr.contains("unique per row"), "{stderr}");
    assert!(stderr.contains("`note` left out") && stderr.contains("free text"), "{stderr}");
    let spec: Value = serde_json::from_slice(&std::fs::read(out_dir.join("feature_spec.json")).unwrap()).unwrap();
    assert_eq!(spec["id_column"], "customerid");
    assert_eq!(spec["positive_label"], "Yes");
    let inputs: Vec<&str> = spec["inputs"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(inputs.contains(&"state") && !inputs.contains(&"ticket") && !inputs.contains(&"note"), "{inputs:?}");
    let state = spec["categorical"].as_array().unwrap().iter().find(|c| c["name"] == "state").unwrap();
    assert_eq!(state["vocabulary"].as_array().unwrap().len(), 51, "every state is seen often enough to keep");
    // Serving takes the same rows: the new column is a field of the API's records too.
    let scored = d.path().join("scored.csv");
    let out = churn_ok(&["score", "--model", out_dir.to_str().unwrap(), "--input", &path, "--output", scored.to_str().unwrap()]);
    assert!(out.contains("scored 4930 rows (0 failed"), "{out}");
}

#[test]
fn numeric_and_boolean_targets_work_with_or_without_positive() {
    // The SaaS table's target is 1.0 / 0.0: `--positive 1` and `--positive 1.0` name the same
    // label, and without --positive the 1 is chosen (and said).
    let saas = root().join("training/data/saas/accounts.csv");
    let d = scratch("targets");
    let mut positives = vec![];
    for extra in [&["--positive", "1"][..], &["--positive", "1.0"][..], &[][..]] {
        let out_dir = d.path().join(format!("m{}", positives.len()));
        let mut args = vec!["train", "--data", saas.to_str().unwrap(), "--target", "churned", "--out", out_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = churn(&args);
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "{stdout}{stderr}");
        assert!(extra.is_empty() == stderr.contains("counts as churned"), "{stderr}");
        let metrics: Value = serde_json::from_slice(&std::fs::read(out_dir.join("metrics.json")).unwrap()).unwrap();
        positives.push(metrics["test"]["positives"].as_u64().unwrap());
    }
    assert!(positives.iter().all(|p| *p == positives[0] && *p > 100), "{positives:?}");
    // true / false labels, and a two-valued target with no clearly positive value.
    let bools = telco_with(|i, l| {
        let (head, label) = l.rsplit_once(',').unwrap();
        Some(if i == 1 { l.to_string() } else { format!("{head},{}", if label == "Yes" { "true" } else { "false" }) })
    });
    let path = write(d.path(), "bools.csv", &bools);
    let o = churn(&["train", "--data", &path, "--target", "churn", "--out", d.path().join("b").to_str().unwrap()]);
    assert!(o.status.success() && text(&o).1.contains("\"true\" counts as churned"), "{:?}", text(&o));
    // Telco has customers whose every model input equals an earlier customer's.
    assert!(text(&o).1.contains("30 of 4930 rows repeat another row's model inputs"), "{:?}", text(&o).1);
    let colours = telco_with(|i, l| {
        let (head, label) = l.rsplit_once(',').unwrap();
        Some(if i == 1 { l.to_string() } else { format!("{head},{}", if label == "Yes" { "red" } else { "blue" }) })
    });
    let path = write(d.path(), "colours.csv", &colours);
    let err = churn_err(&["train", "--data", &path, "--target", "churn", "--out", d.path().join("c").to_str().unwrap()]);
    assert!(err.contains("no positive label") && err.contains("--positive") && err.contains("red") && err.contains("blue"), "{err}");
}

#[test]
fn benchmark_cross_validates_recipes_on_the_same_folds_and_writes_its_reports() {
    let d = scratch("benchmark");
    let path = write(d.path(), "accounts.csv", &synthetic_table());
    let out = d.path().join("bench");
    let table = format!("{path}:churned:1");
    let printed = churn_ok(&[
        "benchmark",
        "--table",
        &table,
        "--folds",
        "3",
        "--recipe",
        "logistic",
        "--recipe",
        "small=default:model.ensemble=2;dataset.numeric_bins=4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(printed.contains("3-fold cross-validation") && printed.contains("small") && printed.contains("logistic"), "{printed}");
    let r: Value = serde_json::from_slice(&std::fs::read(out.join("benchmark.json")).unwrap()).unwrap();
    let folds: Vec<u64> = r["tables"][0]["fold_of_row"].as_array().unwrap().iter().map(|f| f.as_u64().unwrap()).collect();
    assert_eq!(folds.len(), 800);
    assert!((0..3).all(|k| folds.iter().filter(|f| **f == k).count() > 250), "three folds of about 267 rows");
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 6);
    for run in runs {
        // Each fold's test part is exactly that fold's rows.
        let k = run["fold"].as_u64().unwrap();
        assert_eq!(run["test"]["rows"].as_u64().unwrap() as usize, folds.iter().filter(|f| **f == k).count(), "{run}");
    }
    let small = r["summaries"].as_array().unwrap().iter().find(|s| s["recipe"] == "small").unwrap();
    assert!(small["roc_auc"]["mean"].as_f64().unwrap() > 0.6, "{small}");
    assert!(small["serving"]["macs_per_row"].as_u64().unwrap() > 20 && small["serving"]["reasons_us"].as_f64().unwrap() > 0.0, "{small}");
    let html = std::fs::read_to_string(out.join("benchmark.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("ROC AUC per fold"), "chart in the report");
    let err = churn_err(&["benchmark", "--table", &table, "--recipe", "x=default:model.dropout=2", "--out", out.to_str().unwrap()]);
    assert!(err.contains("model.dropout"), "{err}");
    // A target the table lacks is named as a missing column (before any label question).
    let err = churn_err(&["benchmark", "--table", &format!("{path}:churn"), "--out", out.to_str().unwrap()]);
    assert!(err.contains("missing column") && err.contains("churn") && err.contains("accounts.csv"), "{err}");
}

#[test]
fn benchmark_keeps_copies_of_a_record_in_one_fold_when_asked() {
    let d = scratch("benchmark-groups");
    // The first 100 accounts again under new ids: the same model inputs (ids are left out).
    let table = synthetic_table();
    let copies: String = table.lines().skip(1).take(100).map(|l| format!("B{}\n", &l[1..])).collect();
    let path = write(d.path(), "accounts.csv", &format!("{table}{copies}"));
    let out = d.path().join("bench");
    let spec = format!("{path}:churned:1");
    let run = |extra: &[&str]| {
        let mut args = vec!["benchmark", "--table", &spec, "--folds", "3", "--recipe", "logistic", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let printed = churn_ok(&args);
        let r: Value = serde_json::from_slice(&std::fs::read(out.join("benchmark.json")).unwrap()).unwrap();
        let folds: Vec<u64> = r["tables"][0]["fold_of_row"].as_array().unwrap().iter().map(|f| f.as_u64().unwrap()).collect();
        (printed, r, folds)
    };
    let split_apart = |folds: &[u64]| (0..100).filter(|i| folds[*i] != folds[800 + i]).count();
    let (printed, r, folds) = run(&[]);
    assert!(printed.contains("rows repeat another row's model inputs") && printed.contains("--group-duplicates"), "{printed}");
    assert!(
        r["tables"][0]["repeated_rows"].as_u64().unwrap() >= 100 && r["group_duplicates"] == false,
        "{}",
        r["tables"][0]["repeated_rows"]
    );
    assert!(split_apart(&folds) > 30, "stratified folds split most copies from their originals");
    let (printed, r, folds) = run(&["--group-duplicates"]);
    assert!(printed.contains("repeated rows kept in one fold") && r["group_duplicates"] == true, "{printed}");
    assert_eq!(split_apart(&folds), 0, "every copy in its original's fold");
    assert!((0..3).all(|k| folds.iter().filter(|f| **f == k).count() > 280), "three folds of about 300 rows");
}

// ---- bad inputs: each gives a clear error naming what, where and how to fix, never a panic ----

fn train_err(csv: &str, extra: &[&str]) -> String {
    let d = scratch("bad");
    let path = write(d.path(), "bad.csv", csv);
    let out = d.path().join("m");
    let mut args =
        vec!["train", "--data", &path, "--config", telco_config().to_str().unwrap().to_owned().leak(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let err = churn_err(&args);
    assert!(!out.exists(), "no bundle after a failure");
    err
}

#[test]
fn missing_column_is_named() {
    // Drop tenure (field 6) and the churn target (last field).
    let csv = telco_with(|_, l| {
        let f: Vec<&str> = l.split(',').collect();
        let n = f.len();
        Some(f.iter().enumerate().filter(|(i, _)| *i != 5 && *i != n - 1).map(|(_, v)| *v).collect::<Vec<_>>().join(","))
    });
    let err = train_err(&csv, &[]);
    assert!(err.contains("missing column") && err.contains("tenure") && err.contains("churn"), "{err}");
    assert!(err.contains("Add the column(s)"), "{err}");
    // The same table saved with semicolons reads as one column: the error says why.
    let err = train_err(&telco_with(|_, l| Some(l.replace(',', ";"))), &[]);
    assert!(err.contains("missing column") && err.contains("one column holding ';'") && err.contains("comma-separated"), "{err}");
}

#[test]
fn inferred_types_name_the_value_that_spoils_a_numeric_column() {
    // No configuration: types are inferred. monthlycharges (third field from the end) of line 5
    // becomes "inf" and of line 9 "n/a": bad values in a numeric column, not a category with
    // thousands of values.
    let csv = telco_with(|i, l| {
        let mut f: Vec<String> = l.split(',').map(String::from).collect();
        let n = f.len();
        match i {
            5 => f[n - 3] = "inf".into(),
            9 => f[n - 3] = "n/a".into(),
            _ => {}
        }
        Some(f.join(","))
    });
    let d = scratch("infer");
    let path = write(d.path(), "bad.csv", &csv);
    let out = d.path().join("m");
    let err = churn_err(&["train", "--data", &path, "--target", "churn", "--positive", "Yes", "--out", out.to_str().unwrap()]);
    assert!(err.contains("bad.csv, line 5") && err.contains("`monthlycharges` = \"inf\"") && err.contains("not a finite number"), "{err}");
    assert!(err.contains("(2 are not)") && err.contains("categorical"), "{err}");
}

#[test]
fn target_labels_in_another_case_are_refused_and_extra_values_named() {
    // Line 7's label "Yes" written "yes": an error naming the line, not a silent non-churner.
    let relabel = |l: &str, label: &str| format!("{},{label}", l.rsplit_once(',').unwrap().0);
    let csv = telco_with(|i, l| Some(if i == 7 { relabel(l, "yes") } else { l.to_string() }));
    let err = train_err(&csv, &[]);
    assert!(err.contains("line 7") && err.contains("churn") && err.contains("\"yes\"") && err.contains("only in case"), "{err}");
    // A third value is allowed, and the warning says it counts as not churned.
    let csv = telco_with(|i, l| Some(if i > 1 && i % 10 == 0 && l.ends_with(",No") { relabel(l, "Paused") } else { l.to_string() }));
    let d = scratch("labels");
    let path = write(d.path(), "three.csv", &csv);
    let out = d.path().join("m");
    let o = churn(&["train", "--data", &path, "--config", telco_config().to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("holds 3 values") && stderr.contains("counts as not churned") && stderr.contains("Paused"), "{stderr}");
}

#[test]
fn unparseable_value_names_file_line_column_and_value() {
    // monthlycharges (third field from the end) of line 10 becomes text.
    let csv = telco_with(|i, l| {
        let mut f: Vec<&str> = l.split(',').collect();
        let n = f.len();
        if i == 10 {
            f[n - 3] = "seventy";
        }
        Some(f.join(","))
    });
    let err = train_err(&csv, &[]);
    assert!(
        err.contains("bad.csv")
            && err.contains("line 10")
            && err.contains("monthlycharges")
            && err.contains("seventy")
            && err.contains("not a number"),
        "{err}"
    );
}

#[test]
fn empty_and_header_only_files_are_refused() {
    let err = train_err("", &[]);
    assert!(err.contains("no data rows"), "{err}");
    let header = telco_with(|i, l| (i == 1).then(|| l.to_string()));
    let err = train_err(&header, &[]);
    assert!(err.contains("no data rows"), "{err}");
}

#[test]
fn one_class_target_is_refused() {
    let csv = telco_with(|i, l| Some(if i == 1 { l.to_string() } else { format!("{},No", l.rsplit_once(',').unwrap().0) }));
    let err = train_err(&csv, &[]);
    assert!(err.contains("one class") && err.contains("churn"), "{err}");
}

#[test]
fn a_missing_model_names_the_file_once() {
    let d = scratch("nomodel");
    let model = d.path().join("nowhere");
    let err = churn_err(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--input",
        telco_csv().to_str().unwrap(),
        "--output",
        d.path().join("o.csv").to_str().unwrap(),
    ]);
    assert!(err.contains("nowhere/manifest.json"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "the cause once: {err}");
}

#[test]
fn unknown_positive_label_lists_the_labels_found() {
    let err = train_err(&std::fs::read_to_string(telco_csv()).unwrap(), &["--positive", "yes"]);
    assert!(err.contains("\"yes\"") && err.contains("\"Yes\"") && err.contains("--positive"), "{err}");
}

#[test]
fn blank_label_names_the_line() {
    let csv = telco_with(|i, l| Some(if i == 5 { format!("{},", l.rsplit_once(',').unwrap().0) } else { l.to_string() }));
    let err = train_err(&csv, &[]);
    assert!(err.contains("line 5") && err.contains("label is blank"), "{err}");
}

#[test]
fn config_mistakes_are_named() {
    let d = scratch("cfg");
    let cfg = write(d.path(), "c.toml", "[model]\nlerning_rate = 0.1\n");
    let err =
        churn_err(&["train", "--config", &cfg, "--target", "churn", "--positive", "Yes", "--out", d.path().join("m").to_str().unwrap()]);
    assert!(err.contains("c.toml") && err.contains("lerning_rate"), "{err}");
    let cfg = write(d.path(), "d.toml", "[model]\ndropout = 1.5\n");
    let err =
        churn_err(&["train", "--config", &cfg, "--target", "churn", "--positive", "Yes", "--out", d.path().join("m").to_str().unwrap()]);
    assert!(err.contains("model.dropout = 1.5"), "{err}");
    let err = churn_err(&["train", "--data", "nope.xlsx", "--target", "churn", "--positive", "Yes"]);
    assert!(err.contains("*.csv or *.parquet"), "{err}");
}

#[test]
fn scoring_bad_inputs_are_clear() {
    let d = scratch("score-bad");
    let model = trained_bundle().to_str().unwrap();
    // A file without an input column.
    let csv = "customerid,gender\nA,Male\n";
    let input = write(d.path(), "few.csv", csv);
    let out = d.path().join("o.csv");
    let err = churn_err(&["score", "--model", model, "--input", &input, "--output", out.to_str().unwrap()]);
    assert!(err.contains("missing column") && err.contains("tenure"), "{err}");
    assert!(!out.exists(), "no partial output");
    // A tampered bundle.
    let copy = bundle_copy(&d.path().join("bundle"), &[]);
    let spec = copy.join("feature_spec.json");
    let t = std::fs::read_to_string(&spec).unwrap().replacen("\"tenure\"", "\"tenurx\"", 1);
    std::fs::write(&spec, t).unwrap();
    let err = churn_err(&[
        "score",
        "--model",
        copy.to_str().unwrap(),
        "--input",
        telco_csv().to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("checksum mismatch for feature_spec.json"), "{err}");
    // Loading verifies the files a model is made of; an edited report does not stop scoring,
    // but uploading the bundle (which copies every file) refuses it.
    std::fs::copy(trained_bundle().join("feature_spec.json"), &spec).unwrap();
    std::fs::write(copy.join("report.html"), "<html>edited</html>").unwrap();
    churn_ok(&["score", "--model", copy.to_str().unwrap(), "--input", telco_csv().to_str().unwrap(), "--output", out.to_str().unwrap()]);
    let err = churn_err(&["upload", "--bundle", copy.to_str().unwrap(), "--out", "s3://unreachable-bucket/models"]);
    assert!(err.contains("checksum mismatch for report.html"), "{err}");
}

/// Every file of the corrupt corpus (`tests/data/corrupt/`: truncated, re-magicked, negative
/// offsets, a corrupt page, mangled CSV): `churn score` fails with the file's name and what is
/// wrong, never panics (`churn_err` checks), and leaves no output behind.
#[test]
fn corrupt_files_fail_cleanly_and_write_nothing() {
    let d = scratch("score-corrupt");
    let model = trained_bundle().to_str().unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("tests/data/corrupt")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let out = d.path().join(format!("scored-{name}"));
        let err = churn_err(&["score", "--model", model, "--input", path.to_str().unwrap(), "--output", out.to_str().unwrap()]);
        assert!(err.contains(&name) && err.lines().count() == 1, "{name}: {err}");
        assert!(err.contains("corrupt") || err.contains("not a readable") || err.contains("Csv error"), "{name}: {err}");
        assert!(!out.exists(), "{name}: partial output left behind");
        n += 1;
    }
    assert!(n >= 12, "{n} files");
}

/// The Telco rows with monthly charges 30 % higher and every contract month-to-month, and
/// (when `scramble`) labels that no longer follow the customers.
fn shifted_telco(scramble: bool) -> String {
    let header: Vec<String> = std::fs::read_to_string(telco_csv()).unwrap().lines().next().unwrap().split(',').map(String::from).collect();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let (mc, contract, churn) = (col("monthlycharges"), col("contract"), col("churn"));
    telco_with(|i, line| {
        if i == 1 {
            return Some(line.to_string());
        }
        let mut f: Vec<String> = line.split(',').map(String::from).collect();
        f[mc] = format!("{:.2}", f[mc].parse::<f64>().unwrap() * 1.3);
        f[contract] = "Month-to-month".into();
        if scramble {
            f[churn] = if i % 3 == 0 { "Yes" } else { "No" }.into();
        }
        Some(f.join(","))
    })
}

#[test]
fn drift_flags_the_shifted_features_only() {
    let bundle = trained_bundle().to_str().unwrap();
    let same = churn_ok(&["drift", "--model", bundle, "--data", telco_csv().to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_str(&same).unwrap();
    let drifted = |v: &Value| -> Vec<String> {
        v["features"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["drifted"] == true)
            .map(|f| f["feature"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(drifted(&v).is_empty(), "the training data itself does not drift: {v}");
    assert_eq!(v["summary"]["rows"], 4930);

    let d = scratch("drift");
    let path = write(d.path(), "shifted.csv", &shifted_telco(false));
    let v: Value = serde_json::from_str(&churn_ok(&["drift", "--model", bundle, "--data", &path, "--json"])).unwrap();
    let got = drifted(&v);
    for f in ["monthlycharges", "contract", "price_trend"] {
        assert!(got.iter().any(|g| g == f), "{f} should drift: {got:?}");
    }
    for f in ["tenure", "gender", "paymentmethod"] {
        assert!(!got.iter().any(|g| g == f), "{f} did not change: {got:?}");
    }
    let err = churn_err(&["drift", "--model", bundle, "--data", &path, "--fail-on-drift"]);
    assert!(err.contains("data drift above PSI 0.2") && err.contains("contract"), "{err}");
    let err = churn_err(&["drift", "--model", bundle, "--data", &path, "--threshold", "0"]);
    assert!(err.contains("--threshold"), "{err}");
    let no_contract = write(
        d.path(),
        "no-contract.csv",
        &telco_with(|_, l| Some(l.split(',').take(15).chain(l.split(',').skip(16)).collect::<Vec<_>>().join(","))),
    );
    let err = churn_err(&["drift", "--model", bundle, "--data", &no_contract]);
    assert!(err.contains("contract") && err.contains("no-contract.csv"), "{err}");
}

#[test]
fn customers_like_the_training_ones_never_say_retrain() {
    // Train on the first 2,800 customers, evaluate on the other 2,130: the same population, so
    // any difference from the bundle's test figures is sampling noise and must not alarm.
    let d = scratch("nodrift");
    let train = write(d.path(), "first.csv", &telco_with(|i, l| (i <= 2801).then(|| l.to_string())));
    let header = telco_with(|i, l| (i == 1).then(|| l.to_string()));
    let rest = write(d.path(), "rest.csv", &format!("{header}{}", telco_with(|i, l| (i > 2801).then(|| l.to_string()))));
    let model = d.path().join("m");
    churn_ok(&["train", "--data", &train, "--config", telco_config().to_str().unwrap(), "--out", model.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&churn_ok(&["evaluate", "--model", model.to_str().unwrap(), "--data", &rest, "--json"])).unwrap();
    assert_eq!(v["rows"], 2130);
    for c in v["concept_drift"].as_array().unwrap() {
        assert_eq!(c["drifted"], false, "{c}");
        assert!(c["allowed"].as_f64().unwrap() > 0.0, "{c}");
    }
    assert!(v["spread"]["roc_auc"].as_f64().unwrap() > 0.0, "{}", v["spread"]);
    churn_ok(&["evaluate", "--model", model.to_str().unwrap(), "--data", &rest, "--fail-on-drift"]);
}

#[test]
fn evaluate_flags_concept_drift_when_labels_stop_following_the_model() {
    let bundle = trained_bundle().to_str().unwrap();
    let out = churn_ok(&["evaluate", "--model", bundle, "--data", telco_csv().to_str().unwrap(), "--fail-on-drift"]);
    assert!(out.contains("concept drift against the bundle's test figures") && !out.contains("WORSE"), "{out}");
    let d = scratch("concept");
    let path = write(d.path(), "relabelled.csv", &shifted_telco(true));
    let v: Value = serde_json::from_str(&churn_ok(&["evaluate", "--model", bundle, "--data", &path, "--json"])).unwrap();
    let checks = v["concept_drift"].as_array().unwrap();
    let auc = checks.iter().find(|c| c["metric"] == "roc_auc").unwrap();
    assert_eq!(auc["drifted"], true, "{auc}");
    assert!(auc["now"].as_f64().unwrap() < 0.6, "labels unrelated to the customers: {auc}");
    let err = churn_err(&["evaluate", "--model", bundle, "--data", &path, "--fail-on-drift"]);
    assert!(err.contains("concept drift: roc_auc"), "{err}");
}

/// `churn export` writes the raw-row model (the transform compiled into ONNX in front of the
/// network): onnxruntime, through the module MLflow loads, on 200 raw Telco rows gives the
/// probabilities `churn score` gives; a directory that is not a bundle is refused naming the
/// missing file.
#[test]
fn export_writes_the_raw_row_model_that_scores_as_churn_score() {
    let dir = scratch("export");
    let bundle = trained_bundle().to_str().unwrap();
    let raw = dir.path().join("model_raw.onnx");
    let said = churn_ok(&["export", "--model", bundle, "--out", raw.to_str().unwrap()]);
    assert!(said.contains("tenure: double") && said.contains("contract: string"), "{said}");
    let text: String = std::fs::read_to_string(telco_csv()).unwrap().lines().take(201).map(|l| format!("{l}\n")).collect();
    let rows = write(dir.path(), "rows.csv", &text);
    let out = dir.path().join("raw.json");
    let status = std::process::Command::new(python())
        .arg(root().join("tests/support/raw_rows_check.py"))
        .args([raw.as_os_str(), std::ffi::OsStr::new(&rows), out.as_os_str()])
        .status()
        .unwrap();
    assert!(status.success(), "raw_rows_check.py failed");
    let r: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let python: Vec<f64> = r["p"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let scored = dir.path().join("scored.csv");
    churn_ok(&["score", "--model", bundle, "--input", &rows, "--output", scored.to_str().unwrap()]);
    let table = churn_core::table::Table::read(&scored).unwrap();
    let ours: Vec<f64> = table.column_values("churn_probability").unwrap().iter().map(|v| v.display().parse().unwrap()).collect();
    assert_eq!(ours.len(), 200);
    let d = ours.iter().zip(&python).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(d <= 1e-6, "churn score vs the exported model in onnxruntime: {d}");
    let e = churn_err(&["export", "--model", dir.path().to_str().unwrap(), "--out", raw.to_str().unwrap()]);
    assert!(e.contains("manifest.json"), "{e}");
}

/// A bundle whose background sample has a value the transform refuses (with its checksum
/// updated, as a hand edit would) is refused at load, naming the file, the row and the field,
/// by the same check that builds the explainer.
#[test]
fn a_background_row_that_does_not_transform_is_refused_at_load() {
    let dir = scratch("bad-background");
    let model = bundle_copy(&dir.path().join("model"), &[]);
    let mut background: Value = serde_json::from_slice(&std::fs::read(model.join("background.json")).unwrap()).unwrap();
    let tenure = background["columns"].as_array().unwrap().iter().position(|c| c == "tenure").unwrap();
    background["rows"][3][tenure] = "abc".into();
    let bytes = serde_json::to_vec(&background).unwrap();
    std::fs::write(model.join("background.json"), &bytes).unwrap();
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(model.join("manifest.json")).unwrap()).unwrap();
    manifest["files"]["background.json"] = churn_core::sha256_hex(&bytes).into();
    std::fs::write(model.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = dir.path().join("scored.csv");
    let e = churn_err(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--input",
        telco_csv().to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("background.json") && e.contains("row 3") && e.contains("tenure") && e.contains("abc"), "{e}");
    assert!(!out.exists());
}
