//! The batch scorer as Lambda runs it: the real `batch-score` binary inside `cargo lambda
//! watch`'s runtime API, loading its model from the local S3 server and answering the S3 events
//! of `events/` (with the test's bucket put in) for objects the test uploads with boto3. Outputs
//! are read back with boto3 and pyarrow, independent of the Rust code under test.

use std::path::Path;

use churn_e2e::lambda::*;
use churn_e2e::*;
use serde_json::Value;

/// An event from `events/` pointed at `bucket` (and at `key`, raw as S3 sends it, when given).
fn s3_event(dir: &Path, template: &str, bucket: &str, key: Option<&str>) -> std::path::PathBuf {
    let mut ev: Value = serde_json::from_str(&std::fs::read_to_string(event(template)).unwrap()).unwrap();
    let s3 = &mut ev["Records"][0]["s3"];
    s3["bucket"]["name"] = bucket.into();
    s3["bucket"]["arn"] = format!("arn:aws:s3:::{bucket}").into();
    if let Some(k) = key {
        s3["object"]["key"] = k.into();
    }
    let path = dir.join(format!("{}.json", unique("event")));
    std::fs::write(&path, ev.to_string()).unwrap();
    path
}

fn put(bucket: &str, key: &str, file: &str) {
    aws_mlflow(&["put", bucket, key, file]);
}

fn keys(bucket: &str, prefix: &str) -> Vec<String> {
    serde_json::from_str(&aws_mlflow(&["keys", bucket, prefix])).unwrap()
}

fn get_json(dir: &Path, bucket: &str, key: &str) -> Value {
    let out = dir.join(unique("get"));
    aws_mlflow(&["get", bucket, key, out.to_str().unwrap()]);
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// A parquet object read back by pyarrow: (columns, rows).
fn get_parquet(dir: &Path, bucket: &str, key: &str) -> (Vec<String>, Vec<Vec<Value>>) {
    let out = dir.join(format!("{}.parquet", unique("get")));
    aws_mlflow(&["get", bucket, key, out.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&aws_mlflow(&["parquet-json", out.to_str().unwrap()])).unwrap();
    (serde_json::from_value(v["columns"].clone()).unwrap(), serde_json::from_value(v["rows"].clone()).unwrap())
}

/// The Telco data as parquet with typed columns (pyarrow's inference) and several row groups.
fn telco_parquet(dir: &Path, csv_text: Option<String>, rows_per_group: usize) -> String {
    let csv = match csv_text {
        Some(t) => write(dir, &format!("{}.csv", unique("in")), &t),
        None => telco_csv().to_string_lossy().into_owned(),
    };
    let pq = dir.join(format!("{}.parquet", unique("in")));
    aws_mlflow(&["csv-to-parquet", &csv, pq.to_str().unwrap(), &rows_per_group.to_string()]);
    pq.to_string_lossy().into_owned()
}

fn only_object(resp: &Value) -> &Value {
    let objects = resp["objects"].as_array().unwrap_or_else(|| panic!("no objects: {resp}"));
    assert_eq!(objects.len(), 1, "{resp}");
    &objects[0]
}

fn counts_add_up(s: &Value) {
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
    assert_eq!(n("rows_in"), n("rows_scored") + n("rows_rejected"), "{s}");
    let hist: u64 = s["probability_histogram"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(hist, n("rows_scored"), "{s}");
    let tiers: u64 = s["tiers"].as_array().unwrap().iter().map(|t| t[1].as_u64().unwrap()).sum();
    assert_eq!(tiers, n("rows_scored"), "{s}");
}

#[test]
fn scores_clean_and_bad_files_and_never_duplicates() {
    let model = model_on_s3();
    let bucket = test_bucket("churn-data");
    let dir = scratch("batch");
    let emu = emulator();
    let (_f, logs) = start_function("batch-score", emu.port, &[("MODEL_URI", model)]);

    // 1. A clean parquet file, as the S3 notification of `events/` announces it.
    let clean = telco_parquet(dir.path(), None, 1000);
    put(&bucket, "incoming/customers.parquet", &clean);
    let ev = s3_event(dir.path(), "s3-put-incoming.json", &bucket, None);
    let resp = invoke(emu.port, &ev);
    let s = only_object(&resp);
    assert_eq!(s["status"], "scored", "{s}");
    assert_eq!((s["rows_in"].as_u64(), s["rows_rejected"].as_u64()), (Some(4930), Some(0)), "{s}");
    counts_add_up(s);
    // The training data is the reference population: no feature drifts.
    assert!(s["drift"]["max_psi"].as_f64().unwrap() < 0.05, "{}", s["drift"]);
    assert_eq!(s["drift"]["drifted"], Value::Array(vec![]));
    let (cols, rows) = get_parquet(dir.path(), &bucket, "scored/customers.parquet");
    assert_eq!(cols, ["customerid", "churn_probability", "risk_tier", "recommended_action", "warnings", "model_version"]);
    assert_eq!(rows.len(), 4930);
    assert_eq!(rows[0][0], "8879-ZKJOF");
    assert!(!keys(&bucket, "rejected/").iter().any(|k| k == "rejected/customers.parquet"));
    let summary = get_json(dir.path(), &bucket, "scored/customers.parquet.summary.json");
    assert_eq!(summary["rows_scored"], 4930);

    // Same scores as `churn score` on the same file: one scoring core.
    let local = dir.path().join("local-scored.parquet");
    churn_ok(&["score", "--model", trained_bundle().to_str().unwrap(), "--input", &clean, "--output", local.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&aws_mlflow(&["parquet-json", local.to_str().unwrap()])).unwrap();
    let local_rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), local_rows.len());
    for (a, b) in rows.iter().zip(local_rows) {
        assert_eq!((&a[0], &a[1], &a[2]), (&b[0], &b[1], &b[2]));
    }

    // 2. A re-delivered event: nothing is scored again, the output is untouched.
    let before = aws_mlflow(&["head", &bucket, "scored/customers.parquet"]);
    let again = invoke(emu.port, &ev);
    assert_eq!(only_object(&again)["status"], "already_scored", "{again}");
    assert_eq!(aws_mlflow(&["head", &bucket, "scored/customers.parquet"]), before);
    assert_eq!(keys(&bucket, "scored/").len(), 2, "{:?}", keys(&bucket, "scored/"));

    // 3. Bad rows under a key with spaces and unicode (URL-encoded in the event as S3 does).
    let key = "incoming/march export/café & co.parquet";
    let bad = telco_with(|n, line| {
        let mut f: Vec<String> = line.split(',').map(String::from).collect();
        match n {
            4 => f[5] = "-5".into(),        // tenure: negative
            11 => f[18] = "lots".into(),    // monthlycharges: text
            21 => f[15] = "Forever".into(), // contract: unseen category -> scored with a warning
            _ => {}
        }
        Some(f.join(","))
    });
    put(&bucket, key, &telco_parquet(dir.path(), Some(bad), 1000));
    let resp = invoke(emu.port, &s3_event(dir.path(), "s3-put-incoming-encoded-key.json", &bucket, None));
    let s = only_object(&resp);
    assert_eq!(s["source"]["key"], key);
    assert_eq!((s["status"].as_str(), s["rows_in"].as_u64(), s["rows_rejected"].as_u64()), (Some("scored"), Some(4930), Some(2)), "{s}");
    assert!(s["rows_warned"].as_u64().unwrap() >= 1, "{s}");
    counts_add_up(s);
    let (cols, rejected) = get_parquet(dir.path(), &bucket, "rejected/march export/café & co.parquet");
    assert_eq!(&cols[..2], ["customerid", "gender"]);
    assert_eq!(&cols[cols.len() - 2..], ["_row", "_error"]);
    assert_eq!(rejected.len(), 2);
    let err = |r: &Vec<Value>| r.last().unwrap().as_str().unwrap().to_string();
    assert_eq!(rejected[0][cols.len() - 2], 3, "data row 3 is line 4");
    assert!(err(&rejected[0]).contains("row 3") && err(&rejected[0]).contains("tenure"), "{}", err(&rejected[0]));
    assert!(err(&rejected[1]).contains("row 10") && err(&rejected[1]).contains("monthlycharges"), "{}", err(&rejected[1]));
    let (_, scored) = get_parquet(dir.path(), &bucket, "scored/march export/café & co.parquet");
    assert_eq!(scored.len(), 4928);

    // 4. A CSV whose population has shifted: monthly charges up 60 % for everyone.
    let shifted = telco_with(|n, line| {
        let mut f: Vec<String> = line.split(',').map(String::from).collect();
        if n > 1 {
            let x: f64 = f[18].parse().unwrap();
            f[18] = format!("{:.2}", x * 1.6);
        }
        Some(f.join(","))
    });
    put(&bucket, "incoming/shifted.csv", &write(dir.path(), "shifted.csv", &shifted));
    let resp = invoke(emu.port, &s3_event(dir.path(), "s3-put-incoming.json", &bucket, Some("incoming/shifted.csv")));
    let s = only_object(&resp);
    assert_eq!(s["status"], "scored", "{s}");
    let drifted: Vec<String> = serde_json::from_value(s["drift"]["drifted"].clone()).unwrap();
    assert!(drifted.iter().any(|f| f == "monthlycharges"), "{}", s["drift"]);
    assert!(!drifted.iter().any(|f| f == "tenure"), "{}", s["drift"]);
    let csv_out = dir.path().join("shifted-scored.csv");
    aws_mlflow(&["get", &bucket, "scored/shifted.csv", csv_out.to_str().unwrap()]);
    let text = std::fs::read_to_string(&csv_out).unwrap();
    assert!(text.starts_with("customerid,churn_probability,risk_tier,recommended_action,warnings,model_version\n"), "{}", &text[..200]);
    assert_eq!(text.lines().count(), 4931);

    // 5. Inputs that cannot be scored: recorded as failed with the reason, nothing else written.
    let empty = write(dir.path(), "empty.parquet", "");
    let garbage = write(dir.path(), "garbage.parquet", "customerid,tenure\n1,2\n");
    let no_contract = telco_parquet(
        dir.path(),
        Some(telco_with(|_, l| Some(l.split(',').enumerate().filter(|(i, _)| *i != 15).map(|(_, f)| f).collect::<Vec<_>>().join(",")))),
        5000,
    );
    for (name, file, expect) in [
        ("empty.parquet", &empty, "empty (0 bytes)"),
        ("garbage.parquet", &garbage, "not a readable parquet file"),
        ("no-contract.parquet", &no_contract, "missing column(s) [\"contract\"]"),
        ("notes.txt", &empty, "unsupported file type"),
    ] {
        let k = format!("incoming/{name}");
        put(&bucket, &k, file);
        let resp = invoke(emu.port, &s3_event(dir.path(), "s3-put-incoming.json", &bucket, Some(&k)));
        let s = only_object(&resp);
        assert_eq!(s["status"], "failed", "{name}: {s}");
        assert!(s["error"].as_str().unwrap().contains(expect), "{name}: {s}");
        assert!(s["error"].as_str().unwrap().contains(&format!("s3://{bucket}/{k}")) || name == "notes.txt", "{name}: {s}");
        assert!(!keys(&bucket, &format!("scored/{name}")).iter().any(|x| x == &format!("scored/{name}")), "{name}");
        assert_eq!(get_json(dir.path(), &bucket, &format!("scored/{name}.summary.json"))["status"], "failed");
    }

    // 6. The function's own output never triggers scoring.
    let before = keys(&bucket, "");
    let resp = invoke(emu.port, &s3_event(dir.path(), "s3-put-scored-output.json", &bucket, None));
    assert_eq!(resp["objects"], Value::Array(vec![]), "{resp}");
    assert!(resp["skipped"][0]["reason"].as_str().unwrap().contains("input prefix"), "{resp}");
    assert_eq!(keys(&bucket, ""), before);

    // Logs: JSON lines; EMF metrics went to stdout (not captured here).
    let lines: Vec<String> = logs.try_iter().collect();
    assert!(lines.iter().any(|l| l.contains("\"message\":\"scored\"")), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{lines:#?}");
}

/// The input EventBridge gives the fan-out state machine for an object created at `key`, made
/// by the template's own `InputTransformer` (its `InputTemplate`, placeholders filled as
/// EventBridge fills them: a string value goes in as a JSON string).
fn fan_out_route_input(bucket: &str, key: &str) -> Value {
    let template = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let line = template.lines().find(|l| l.trim_start().starts_with("InputTemplate:")).expect("the fan-out route's InputTemplate");
    let text = line.split_once('\'').and_then(|(_, rest)| rest.rsplit_once('\'')).expect("a single-quoted InputTemplate").0;
    let filled = text.replace("<bucket>", &Value::from(bucket).to_string()).replace("<request>", &Value::from(key).to_string());
    serde_json::from_str(&filled).unwrap_or_else(|e| panic!("{filled}: {e}"))
}

#[test]
fn objects_too_large_for_one_invocation_start_their_own_fan_out() {
    let model = model_on_s3();
    let bucket = test_bucket("churn-split");
    let dir = scratch("batch-split");
    let emu = emulator();
    let env = [("MODEL_URI", model), ("MAX_ROWS_PER_INVOCATION", "3000"), ("FAN_OUT_PREFIX", "fanout/")];
    let (_f, logs) = start_function("batch-score", emu.port, &env);
    put(&bucket, "incoming/customers.parquet", &telco_parquet(dir.path(), None, 1000));

    // Refused, with a fan-out request written: the state machine's input, under the prefix
    // the template's EventBridge rule routes to the state machine.
    let resp = invoke(emu.port, &s3_event(dir.path(), "s3-put-incoming.json", &bucket, None));
    let s = only_object(&resp);
    assert_eq!(s["status"], "refused", "{s}");
    assert!(s["error"].as_str().unwrap().contains("MAX_ROWS_PER_INVOCATION=3000"), "{s}");
    assert!(keys(&bucket, "scored/customers.parquet").iter().all(|k| k.ends_with(".summary.json")), "nothing scored");
    let requests = keys(&bucket, "fanout/");
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(s["fan_out"].as_str(), Some(format!("s3://{bucket}/{}", requests[0]).as_str()), "{s}");
    let request = get_json(dir.path(), &bucket, &requests[0]);
    assert_eq!(request, serde_json::json!({"plan": {"bucket": bucket, "key": "incoming/customers.parquet", "row_groups_per_task": 4}}));
    // A re-delivered event for the same version finds its request and starts nothing more.
    let again = only_object(&invoke(emu.port, &s3_event(dir.path(), "s3-put-incoming.json", &bucket, None))).clone();
    assert_eq!((again["status"].as_str(), again["fan_out"].as_str()), (Some("refused"), s["fan_out"].as_str()), "{again}");
    let lines: Vec<String> = logs.try_iter().collect();
    let asked: Vec<&String> = lines.iter().filter(|l| l.contains("fan-out requested")).collect();
    assert_eq!(asked.len(), 2, "{lines:#?}");
    assert!(asked[0].contains("\"already\":false") && asked[1].contains("\"already\":true"), "{asked:#?}");
    assert_eq!(keys(&bucket, "fanout/"), requests);

    // What the state machine does, started by the route: a plan from the request, then each
    // item (a row-group range) scored; together the items cover the file exactly once.
    let plan = write(dir.path(), "plan.json", &fan_out_route_input(&bucket, &requests[0]).to_string());
    let plan = invoke(emu.port, Path::new(&plan));
    assert_eq!((plan["rows"].as_u64(), plan["row_groups"].as_u64()), (Some(4930), Some(5)), "{plan}");
    let items = plan["items"].as_array().unwrap();
    assert_eq!(
        items.iter().map(|i| i["row_groups"].clone()).collect::<Vec<_>>(),
        vec![serde_json::json!([0, 4]), serde_json::json!([4, 5])]
    );
    // A person can start it too, with the plan request itself (and another range size).
    let by_hand = write(
        dir.path(),
        "plan-by-hand.json",
        &format!(r#"{{"plan": {{"bucket": "{bucket}", "key": "incoming/customers.parquet", "row_groups_per_task": 3}}}}"#),
    );
    let by_hand = invoke(emu.port, Path::new(&by_hand));
    assert_eq!(
        by_hand["items"].as_array().unwrap().iter().map(|i| i["row_groups"].clone()).collect::<Vec<_>>(),
        vec![serde_json::json!([0, 3]), serde_json::json!([3, 5])]
    );
    // A request that names no request object is the plan step's clear error.
    let missing = write(dir.path(), "plan-missing.json", &fan_out_route_input(&bucket, "fanout/0000000000000000.json").to_string());
    let (ok, out, err) = try_invoke(emu.port, Path::new(&missing));
    assert!(!ok, "{out}");
    // cargo lambda wraps the function's error across lines behind a frame, breaking lines at
    // spaces and hyphens alike: compare without either.
    let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace() && *c != '│').collect::<String>();
    assert!(squeeze(&format!("{out}{err}")).contains(&squeeze("fanout/0000000000000000.json: no such fan-out request")), "{out}{err}");
    let mut total = 0;
    let mut scored_ids = Vec::new();
    for item in items {
        let (a, b) = (item["row_groups"][0].as_u64().unwrap(), item["row_groups"][1].as_u64().unwrap());
        let task = write(dir.path(), &format!("task-{a}.json"), &item.to_string());
        let resp = invoke(emu.port, Path::new(&task));
        let s = only_object(&resp);
        assert_eq!(s["status"], "scored", "{s}");
        counts_add_up(s);
        total += s["rows_in"].as_u64().unwrap();
        let (cols, rows) = get_parquet(dir.path(), &bucket, &format!("scored/customers.parquet.rowgroups-{a}-{b}.parquet"));
        assert_eq!(rows.len() as u64, s["rows_scored"].as_u64().unwrap());
        assert_eq!(cols[0], "customerid");
        scored_ids.extend(rows.into_iter().map(|r| r[0].clone()));
    }
    assert_eq!(total, 4930);
    // Row groups are fetched ahead while others are scored: every customer comes out once, in
    // the file's order, whatever the range.
    let (cols, rows) = get_parquet(dir.path(), &bucket, "incoming/customers.parquet");
    let id = cols.iter().position(|c| c == "customerid").unwrap();
    assert_eq!(scored_ids, rows.iter().map(|r| r[id].clone()).collect::<Vec<_>>());
    let task = write(
        dir.path(),
        "task-bad.json",
        &format!(r#"{{"bucket": "{bucket}", "key": "incoming/customers.parquet", "row_groups": [4, 9]}}"#),
    );
    let s = only_object(&invoke(emu.port, Path::new(&task))).clone();
    assert_eq!(s["status"], "failed");
    assert!(s["error"].as_str().unwrap().contains("the file has 5"), "{s}");

    // The state machine's last step merges the ranges into the object's own summary: the counts
    // add up to the file, the parts are named, and a re-delivered S3 event is then a no-op.
    let merge = write(dir.path(), "merge.json", &serde_json::json!({"merge": plan}).to_string());
    let m = only_object(&invoke(emu.port, Path::new(&merge))).clone();
    assert_eq!(m["status"], "scored", "{m}");
    assert_eq!((m["rows_in"].as_u64(), m["parts"].as_array().map(Vec::len)), (Some(4930), Some(2)), "{m}");
    counts_add_up(&m);
    let stored: Value = {
        let out = dir.path().join("merged.json");
        aws_mlflow(&["get", &bucket, "scored/customers.parquet.summary.json", out.to_str().unwrap()]);
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
    };
    assert_eq!(stored, m, "the merged summary is the object's summary");
    let again = only_object(&invoke(emu.port, &s3_event(dir.path(), "s3-put-incoming.json", &bucket, None))).clone();
    assert_eq!(again["status"], "already_scored", "{again}");
    // A plan whose range was never scored merges into a failed summary naming it.
    let mut partial = plan.clone();
    partial["items"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"bucket": bucket, "key": "incoming/customers.parquet", "row_groups": [5, 6]}));
    let merge = write(dir.path(), "merge-partial.json", &serde_json::json!({"merge": partial}).to_string());
    let m = only_object(&invoke(emu.port, Path::new(&merge))).clone();
    assert_eq!(m["status"], "failed", "{m}");
    assert!(
        m["error"].as_str().unwrap().contains("1 of 3 ranges not scored") && m["error"].as_str().unwrap().contains("rowgroups-5-6"),
        "{m}"
    );
}

/// Results always belong to the current object version: a refused object is scored when its
/// event comes again (after the limit is raised), the outputs carry the ETag they scored, and
/// a newer version that cannot be scored removes the older version's outputs. Every file of
/// the corrupt corpus fails cleanly, without a panic.
#[test]
fn results_always_belong_to_the_current_version_and_corrupt_files_fail_cleanly() {
    let model = model_on_s3();
    let bucket = test_bucket("churn-versions");
    let dir = scratch("batch-versions");
    let emu = emulator();
    let key = "incoming/customers.parquet";
    put(&bucket, key, &telco_parquet(dir.path(), None, 1000));
    let ev = s3_event(dir.path(), "s3-put-incoming.json", &bucket, None);
    let head = |k: &str| -> Value { serde_json::from_str(&aws_mlflow(&["head", &bucket, k])).unwrap() };
    {
        let (_f, _logs) = start_function("batch-score", emu.port, &[("MODEL_URI", model), ("MAX_ROWS_PER_INVOCATION", "3000")]);
        assert_eq!(only_object(&invoke(emu.port, &ev))["status"], "refused");
    }
    let (_f, logs) = start_function("batch-score", emu.port, &[("MODEL_URI", model)]);
    let s = only_object(&invoke(emu.port, &ev)).clone();
    assert_eq!(s["status"], "scored", "a refused object is scored when its event comes again: {s}");
    let etag = head(key)["etag"].clone();
    assert_eq!(s["source"]["etag"], etag);
    assert_eq!(head("scored/customers.parquet")["metadata"]["source-etag"], etag);
    assert_eq!(head("scored/customers.parquet.summary.json")["metadata"]["status"], "scored");
    assert_eq!(only_object(&invoke(emu.port, &ev))["status"], "already_scored");

    // A newer version that cannot be scored: the older version's scores go, the summary says why.
    put(&bucket, key, &write(dir.path(), "not-a-table.parquet", "this is not parquet"));
    let s = only_object(&invoke(emu.port, &ev)).clone();
    assert_eq!(s["status"], "failed", "{s}");
    assert_ne!(s["source"]["etag"], etag);
    assert_eq!(head("scored/customers.parquet"), Value::Null, "the older version's scores are gone");
    assert_eq!(head("rejected/customers.parquet"), Value::Null);
    assert_eq!(get_json(dir.path(), &bucket, "scored/customers.parquet.summary.json")["source"]["etag"], s["source"]["etag"]);

    // The corrupt corpus: each file fails with its name and what is wrong.
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("tests/data/corrupt")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let k = format!("incoming/corrupt/{name}");
        put(&bucket, &k, path.to_str().unwrap());
        let s = only_object(&invoke(emu.port, &s3_event(dir.path(), "s3-put-incoming.json", &bucket, Some(&k)))).clone();
        assert_eq!(s["status"], "failed", "{name}: {s}");
        let err = s["error"].as_str().unwrap();
        assert!(err.contains(&format!("s3://{bucket}/{k}")), "{name}: {err}");
        assert_eq!(head(&format!("scored/corrupt/{name}")), Value::Null, "{name}");
        n += 1;
    }
    assert!(n >= 12);
    let lines: Vec<String> = logs.try_iter().collect();
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{lines:#?}");
}

#[test]
fn large_outputs_go_up_as_multipart_uploads() {
    let model = model_on_s3();
    let bucket = test_bucket("churn-large");
    let dir = scratch("batch-large");
    let emu = emulator();
    // 5 MiB parts (S3's minimum): the scored output of ~1 M rows (over 5 MiB) takes several parts.
    let (_f, _logs) = start_function("batch-score", emu.port, &[("MODEL_URI", model), ("PART_SIZE_MB", "5")]);
    let big = dir.path().join("big.parquet");
    aws_mlflow(&["repeat-parquet", &telco_parquet(dir.path(), None, 5000), big.to_str().unwrap(), "200"]);
    put(&bucket, "incoming/big.parquet", big.to_str().unwrap());
    let resp = invoke(emu.port, &s3_event(dir.path(), "s3-put-incoming.json", &bucket, Some("incoming/big.parquet")));
    let s = only_object(&resp);
    assert_eq!((s["status"].as_str(), s["rows_in"].as_u64()), (Some("scored"), Some(986_000)), "{s}");
    counts_add_up(s);
    assert!(s["timings"]["bytes_written"].as_u64().unwrap() > 5 << 20, "{s}");
    // A multipart object's ETag ends in -<parts>.
    let head: Value = serde_json::from_str(&aws_mlflow(&["head", &bucket, "scored/big.parquet"])).unwrap();
    let parts = head["etag"].as_str().unwrap().trim_matches('"').rsplit_once('-').and_then(|(_, n)| n.parse::<u64>().ok());
    assert!(parts.is_some_and(|n| n >= 2), "{head}");
    let out = dir.path().join("big-scored.parquet");
    aws_mlflow(&["get", &bucket, "scored/big.parquet", out.to_str().unwrap()]);
    assert_eq!(aws_mlflow(&["parquet-rows", out.to_str().unwrap()]).trim(), "986000");
    println!("986,000 rows scored in {} ms", s["timings"]["total_ms"]);

    // The race: the object is replaced (by the 4,930-row file) while the big version is being
    // scored. Whatever moment the replacement lands, the outputs end up the new version's: the
    // old invocation is superseded (its reads are If-Match on the ETag, and it checks the ETag
    // again before completing its outputs), or it had finished before the replacement.
    let key = "incoming/race.parquet";
    put(&bucket, key, big.to_str().unwrap());
    let old_etag: Value = serde_json::from_str::<Value>(&aws_mlflow(&["head", &bucket, key])).unwrap()["etag"].clone();
    let ev = s3_event(dir.path(), "s3-put-incoming.json", &bucket, Some(key));
    let port = emu.port;
    let first = std::thread::spawn({
        let ev = ev.clone();
        move || invoke(port, &ev)
    });
    std::thread::sleep(std::time::Duration::from_millis(150));
    put(&bucket, key, &telco_parquet(dir.path(), None, 1000));
    let first = first.join().unwrap();
    let s = only_object(&first);
    match s["status"].as_str() {
        Some("superseded") => println!("race: superseded ({})", s["error"]),
        Some("scored") => assert_eq!(s["source"]["etag"], old_etag, "scored before the replacement: {s}"),
        _ => panic!("{s}"),
    }
    let s = only_object(&invoke(emu.port, &ev)).clone();
    assert_eq!((s["status"].as_str(), s["rows_in"].as_u64()), (Some("scored"), Some(4930)), "{s}");
    let new_etag = serde_json::from_str::<Value>(&aws_mlflow(&["head", &bucket, key])).unwrap()["etag"].clone();
    assert_eq!(s["source"]["etag"], new_etag);
    let scored: Value = serde_json::from_str(&aws_mlflow(&["head", &bucket, "scored/race.parquet"])).unwrap();
    assert_eq!(scored["metadata"]["source-etag"], new_etag, "{scored}");
    let out = dir.path().join("race-scored.parquet");
    aws_mlflow(&["get", &bucket, "scored/race.parquet", out.to_str().unwrap()]);
    assert_eq!(aws_mlflow(&["parquet-rows", out.to_str().unwrap()]).trim(), "4930");
}

#[test]
fn reasons_and_offers_when_asked_are_those_of_churn_score() {
    let model = model_on_s3();
    let bucket = test_bucket("churn-reasons");
    let dir = scratch("batch-reasons");
    let emu = emulator();
    let (_f, _logs) = start_function("batch-score", emu.port, &[("MODEL_URI", model), ("TOP_REASONS", "3")]);
    // 150 customers as typed parquet (categorical columns read through their dictionaries).
    let csv = telco_with(|i, l| (i <= 151).then(|| l.to_string()));
    put(&bucket, "incoming/reasons.parquet", &telco_parquet(dir.path(), Some(csv.clone()), 50));
    let resp = invoke(emu.port, &s3_event(dir.path(), "s3-put-incoming.json", &bucket, Some("incoming/reasons.parquet")));
    assert_eq!(only_object(&resp)["status"], "scored", "{resp}");
    let (columns, rows) = get_parquet(dir.path(), &bucket, "scored/reasons.parquet");
    let col = |name: &str| columns.iter().position(|c| c == name).unwrap_or_else(|| panic!("no {name} in {columns:?}"));
    assert_eq!(&columns[5..8], ["top_reasons", "offer", "offer_action"], "{columns:?}");

    // The same customers through `churn score --reasons 3` on a laptop.
    let input = write(dir.path(), "reasons.csv", &csv);
    let local = dir.path().join("local.csv");
    churn_ok(&["score", "--model", model, "--input", &input, "--output", local.to_str().unwrap(), "--reasons", "3"]);
    let table = churn_core::table::Table::read(&local).unwrap();
    let view = table.view(&["customerid", "top_reasons", "offer", "offer_action"]).unwrap();
    assert_eq!(rows.len(), 150);
    let mut with_reasons = 0;
    for (r, row) in rows.iter().enumerate() {
        let want = view.row(r);
        let text = |c: &str| row[col(c)].as_str().map(str::to_string);
        assert_eq!(text("customerid"), want.value_text(0), "row {r}");
        // Reasons name values as each input holds them: `80` from the typed parquet column,
        // `80.0` from the CSV text.
        let (got, expected) = (text("top_reasons"), want.value_text(1));
        let same = match (got.as_deref(), expected.as_deref()) {
            (Some(a), Some(b)) => same_reasons(a, b),
            (a, b) => a == b,
        };
        assert!(same, "row {r}, top_reasons: {got:?} against {expected:?}");
        for (i, c) in ["offer", "offer_action"].iter().enumerate() {
            assert_eq!(text(c), want.value_text(i + 2), "row {r}, {c}");
        }
        with_reasons += text("top_reasons").is_some() as usize;
    }
    assert!(with_reasons >= 20, "{with_reasons} of 150 customers have reasons");
    // The summary sizes each campaign: customers per offer, as in the file.
    let summary = get_json(dir.path(), &bucket, "scored/reasons.parquet.summary.json");
    for pair in summary["offers"].as_array().unwrap_or_else(|| panic!("no offers: {summary}")) {
        let (name, n) = (pair[0].as_str().unwrap(), pair[1].as_u64().unwrap());
        assert_eq!(rows.iter().filter(|row| row[col("offer")] == name).count() as u64, n, "{name}: {summary}");
    }
    let offered = rows.iter().filter(|row| !row[col("offer")].is_null()).count() as u64;
    assert_eq!(summary["offers"].as_array().unwrap().iter().map(|p| p[1].as_u64().unwrap()).sum::<u64>(), offered, "{summary}");
}

#[test]
fn running_out_of_time_writes_nothing_and_fails_the_invocation() {
    let model = model_on_s3();
    let bucket = test_bucket("churn-late");
    let dir = scratch("batch-late");
    let emu = emulator();
    // A margin as long as the emulator's whole timeout: the first batch is already too late.
    let (_f, _logs) = start_function("batch-score", emu.port, &[("MODEL_URI", model), ("TIME_MARGIN_MS", "600000")]);
    put(&bucket, "incoming/customers.parquet", &telco_parquet(dir.path(), None, 1000));
    let (ok, out, err) = try_invoke(emu.port, &s3_event(dir.path(), "s3-put-incoming.json", &bucket, None));
    assert!(!ok, "{out}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(keys(&bucket, "scored/"), Vec::<String>::new(), "no output, not even a summary: the retry scores it");
}

#[test]
fn start_up_failure_is_one_clear_line() {
    let emu = emulator();
    let mut c = std::process::Command::new(binary("batch-score"));
    lambda_env(&mut c, emu.port, "batch-score");
    c.env("MODEL_URI", "s3://b/m").env("SCORED_PREFIX", "incoming/out/");
    let o = c.output().unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("\"level\":\"ERROR\"")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("SCORED_PREFIX") && errors[0].contains("start-up failed"), "{err}");

    // Reasons asked of a bundle that cannot give them: said at start-up, naming the variable.
    let dir = scratch("batch-old-bundle");
    let old = bundle_without_background(dir.path());
    let mut c = std::process::Command::new(binary("batch-score"));
    lambda_env(&mut c, emu.port, "batch-score");
    c.env("MODEL_URI", &old).env("TOP_REASONS", "3");
    let o = c.output().unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("\"level\":\"ERROR\"")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("TOP_REASONS=3") && errors[0].contains("background"), "{err}");
    // The CLI says the same.
    let e = churn_err(&[
        "score",
        "--model",
        old.to_str().unwrap(),
        "--input",
        telco_csv().to_str().unwrap(),
        "--output",
        dir.path().join("o.csv").to_str().unwrap(),
        "--reasons",
        "3",
    ]);
    assert!(e.contains("background") && e.contains("without reasons"), "{e}");
}

/// Output completions are S3 conditional writes, against the S3 server: an upload completes only
/// over what its key held when the invocation looked. A write by someone else in between makes
/// the completion fail with nothing visible and hands the upload back, which then completes over
/// the new object once the invocation has decided it should. Both paths: one PutObject
/// (`If-Match` and `If-None-Match`), and a multipart upload (the local server checks
/// `If-None-Match: *` on CompleteMultipartUpload only, so `If-Match` there is exercised against
/// AWS, not here).
#[test]
fn output_completions_are_conditional_writes() {
    use batch_score::s3io::{self, Finish, Precondition, Upload};
    require_servers();
    let bucket = test_bucket("churn-conditional");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let store = churn_store::Store::new();
        let client = store.s3().await.clone();
        let body = |key: &str| {
            let (client, bucket, key) = (client.clone(), bucket.clone(), key.to_string());
            async move { s3io::get(&client, &bucket, &key).await.unwrap().map(|b| b.to_vec()) }
        };
        let etag = |key: &str| {
            let (client, bucket, key) = (client.clone(), bucket.clone(), key.to_string());
            async move { s3io::head(&client, &bucket, &key).await.unwrap().map(|o| o.etag) }
        };
        let upload = |key: &str, bytes: &[u8]| {
            let mut up = Upload::new(&client, &bucket, key, "application/octet-stream", 5 << 20);
            let bytes = bytes.to_vec();
            async move {
                up.write(&bytes).await.unwrap();
                up
            }
        };
        let changed = |r: Result<u64, Finish>| match r {
            Err(Finish::Changed(up)) => *up,
            Ok(_) => panic!("completed although the key changed"),
            Err(Finish::Failed(e)) => panic!("{e}"),
        };
        for (key, size) in [("scored/small.csv", 100), ("scored/multipart.parquet", (5 << 20) + 100)] {
            let v = |n: u8| vec![n; size];
            // Nothing there yet, as looked: completes.
            assert!(upload(key, &v(1)).await.finish(&Precondition::Absent).await.is_ok(), "{key}");
            let first = etag(key).await.unwrap();
            // Expecting nothing, but something is there: nothing changes.
            let up = changed(upload(key, &v(2)).await.finish(&Precondition::Absent).await);
            assert_eq!(body(key).await.unwrap(), v(1), "{key}");
            up.abort().await;
            if size > 5 << 20 {
                continue;
            }
            // Another writer replaced the object after this invocation looked: refused, nothing
            // visible; then completed over the object now there.
            upload(key, &v(3)).await.finish(&Precondition::Any).await.ok().unwrap();
            let up = changed(upload(key, &v(4)).await.finish(&Precondition::Unchanged(first.clone())).await);
            assert_eq!(body(key).await.unwrap(), v(3), "{key}: the other writer's object stays");
            let now = etag(key).await.unwrap();
            assert!(up.finish(&Precondition::Unchanged(now)).await.is_ok(), "{key}");
            assert_eq!(body(key).await.unwrap(), v(4), "{key}");
        }
    });
}

/// Holds every request of an S3 client once it has sent `after` requests to `path` with
/// `method`, until the test opens the gate: an invocation stopped at a chosen point.
#[derive(Debug)]
struct Gate {
    method: &'static str,
    path: String,
    after: usize,
    state: std::sync::Mutex<(usize, bool)>,
    changed: std::sync::Condvar,
    reached: std::sync::mpsc::SyncSender<()>,
}

impl Gate {
    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

/// The client's hold on a [`Gate`] the test keeps.
#[derive(Debug)]
struct Held(std::sync::Arc<Gate>);

impl aws_sdk_s3::config::Intercept for Held {
    fn name(&self) -> &'static str {
        "test gate"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let (gate, request) = (&self.0, context.request());
        let mut state = gate.state.lock().unwrap();
        if state.0 >= gate.after && !state.1 {
            let _ = gate.reached.try_send(());
            while !state.1 {
                state = gate.changed.wait(state).unwrap();
            }
        }
        if request.method() == gate.method && request.uri().split('?').next().unwrap().ends_with(&gate.path) {
            state.0 += 1;
        }
        Ok(())
    }
}

/// The race of two invocations on one key, staged for real against the S3 server: invocation A
/// scores version 1 of an object and is held right after its last check that version 1 is
/// still the current one (its second HEAD of the object), before it writes anything. Version 2
/// is uploaded and invocation B scores it completely. Then A goes on. A's writes are
/// conditional on what the output keys held when A started, so they fail; A finds that its
/// version was replaced and writes nothing: every output is B's. (An unconditional write, or
/// one conditional on what the key holds just before it, would put version 1's scores over B's.)
#[test]
fn a_stale_invocation_held_before_its_writes_never_overwrites_the_newer_results() {
    use batch_score::job::{Keys, ModelInfo, Scorer, Status};
    use batch_score::{BatchConfig, event::Task, s3io};
    require_servers();
    let bucket = test_bucket("churn-race");
    let dir = scratch("batch-staged-race");
    let key = "incoming/race.csv";
    put(&bucket, key, telco_csv().to_str().unwrap());
    let csv = std::fs::read_to_string(telco_csv()).unwrap();
    let v2 = write(dir.path(), "v2.csv", &(csv.lines().take(101).collect::<Vec<_>>().join("\n") + "\n"));

    let bundle_dir = trained_bundle().to_str().unwrap().to_string();
    let config = BatchConfig::from_env(|k| (k == "MODEL_URI").then(|| bundle_dir.clone())).unwrap();
    let task = Task { bucket: bucket.clone(), key: key.into(), row_groups: None };
    let keys = Keys::of(&task, &config);
    let deadline = batch_score::job::deadline_epoch_ms(120_000);
    let (reached_tx, reached) = std::sync::mpsc::sync_channel(1);
    let gate = std::sync::Arc::new(Gate {
        method: "HEAD",
        path: format!("/{bucket}/{key}"),
        after: 2,
        state: Default::default(),
        changed: Default::default(),
        reached: reached_tx,
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = rt.block_on(async { churn_store::Store::new().s3().await.clone() });
    let scorer = |client: aws_sdk_s3::Client| {
        let bundle = churn_core::Bundle::load_dir(trained_bundle()).unwrap();
        Scorer { client, model: ModelInfo::of(&bundle.manifest, None), bundle, config: config.clone() }
    };
    let held = client.config().to_builder().interceptor(Held(gate.clone())).build();
    let a = scorer(aws_sdk_s3::Client::from_conf(held));
    let b = scorer(client.clone());

    let a = std::thread::spawn({
        let task = task.clone();
        move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(a.run(&task, deadline)).unwrap()
        }
    });
    reached.recv_timeout(std::time::Duration::from_secs(60)).expect("A reaches its writes");
    put(&bucket, key, &v2);
    let v2_etag = rt.block_on(s3io::head(&client, &bucket, key)).unwrap().unwrap().etag;
    let by_b = rt.block_on(b.run(&task, deadline)).unwrap();
    assert_eq!((by_b.status, by_b.rows_in), (Status::Scored, 100), "{by_b:?}");
    gate.open();
    let by_a = a.join().unwrap();
    assert_eq!(by_a.status, Status::Superseded, "{by_a:?}");
    // A got past its check and was stopped by its conditional write, not by the check.
    assert!(by_a.error.as_deref().unwrap().contains("new version's results were written while this one finished"), "{by_a:?}");

    // Everything under the object's names is B's: version 2's rows, ETag and summary.
    rt.block_on(async {
        for k in [&keys.scored, &keys.summary] {
            let o = s3io::head(&client, &bucket, k).await.unwrap().unwrap();
            assert_eq!(o.metadata.get("source-etag"), Some(&v2_etag), "{k}: {o:?}");
        }
        let scored = s3io::get(&client, &bucket, &keys.scored).await.unwrap().unwrap();
        assert_eq!(String::from_utf8_lossy(&scored).lines().count(), 101, "a header and version 2's 100 rows");
        let summary: Value = serde_json::from_slice(&s3io::get(&client, &bucket, &keys.summary).await.unwrap().unwrap()).unwrap();
        assert_eq!((summary["status"].as_str(), summary["rows_in"].as_u64()), (Some("scored"), Some(100)), "{summary}");
        assert!(s3io::head(&client, &bucket, &keys.rejected).await.unwrap().is_none());
    });
}
