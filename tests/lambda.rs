//! The prediction function as Lambda runs it: the real `predict` binary talks to the Lambda
//! runtime API of `cargo lambda watch` (its `--only-lambda-apis` emulator, so the binary under
//! test is the one cargo built, not a rebuild), loads its bundle from the local S3 server, and
//! answers the sample events in `events/` sent with `cargo lambda invoke`. Also: the same binary
//! serving HTTP outside Lambda, and start-up failures ending init with one clear line.

use std::process::{Command, Stdio};

use churn_e2e::lambda::*;
use churn_e2e::*;
use serde_json::Value;

fn body(resp: &Value) -> Value {
    serde_json::from_str(resp["body"].as_str().expect("a body")).expect("JSON body")
}

#[test]
fn sample_events_through_the_lambda_runtime_api() {
    let uri = model_on_s3();
    let emu = emulator();
    let (_f, logs) = start_function("predict", emu.port, &[("MODEL_URI", uri), ("MAX_BATCH", "100")]);

    let r = invoke(emu.port, &event("apigw-http-predict.json"));
    assert_eq!(r["statusCode"], 200, "{r}");
    let b = body(&r);
    let p = &b["predictions"][0];
    assert_eq!(p["customer_id"], "8879-ZKJOF");
    assert!(
        p["churn_probability"].as_f64().is_some() && p["risk_tier"].is_string() && p["action"].is_string() && p["reasons"].is_array(),
        "{b}"
    );
    assert!(r["headers"]["content-type"].as_str().unwrap_or("").contains("application/json"), "{r}");

    // Same event shape from a REST API (payload v1): same answer.
    let rest = body(&invoke(emu.port, &event("apigw-rest-predict.json")));
    assert_eq!(rest["predictions"], b["predictions"]);

    let batch = body(&invoke(emu.port, &event("apigw-http-predict-batch.json")));
    let preds = batch["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 4);
    assert!(preds[3]["warnings"].to_string().contains("totalcharges"), "blank totalcharges is imputed with a warning: {}", preds[3]);

    let unseen = body(&invoke(emu.port, &event("apigw-http-predict-unseen-category.json")));
    assert!(unseen["predictions"][0]["warnings"].to_string().contains("Crypto wallet"), "{unseen}");

    let r = invoke(emu.port, &event("apigw-http-predict-invalid.json"));
    assert_eq!(r["statusCode"], 400, "{r}");
    let fields: Vec<String> = body(&r)["problems"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap().to_string()).collect();
    for f in ["tenure", "monthlycharges", "contract", "favourite_colour"] {
        assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
    }
    let r = invoke(emu.port, &event("apigw-http-predict-bad-json.json"));
    assert_eq!((r["statusCode"].as_u64(), body(&r)["error"].as_str().map(str::to_string)), (Some(400), Some("invalid_json".into())));
    let r = invoke(emu.port, &event("apigw-http-predict-wrong-content-type.json"));
    assert_eq!(r["statusCode"], 415, "{r}");

    for (e, key) in [("apigw-http-health.json", "status"), ("apigw-http-model.json", "inputs"), ("apigw-http-openapi.json", "openapi")] {
        let r = invoke(emu.port, &event(e));
        assert_eq!(r["statusCode"], 200, "{e}: {r}");
        assert!(body(&r).get(key).is_some(), "{e}: {r}");
    }

    // Logs: JSON lines with the Lambda request id and model version, and no raw customer id.
    // Until the function has been quiet for a moment: its two streams are read by two threads.
    let lines: Vec<String> = std::iter::from_fn(|| logs.recv_timeout(std::time::Duration::from_millis(300)).ok()).collect();
    let scored: Vec<Value> =
        lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["message"] == "scored").collect();
    assert!(scored.len() >= 4, "{lines:#?}");
    for v in &scored {
        assert!(v["request_id"].as_str().is_some_and(|s| !s.starts_with("local-")), "{v}");
        assert!(v["model_version"].is_string(), "{v}");
    }
    assert!(!lines.iter().any(|l| l.contains("8879-ZKJOF")), "raw customer ids must not be logged");
    // Start-up says where its time went: waiting for S3, then the whole init.
    let logged = |m: &str| {
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == m)
            .unwrap_or_else(|| panic!("no {m:?} line: {lines:#?}"))
    };
    let (fetched, loaded) = (logged("bundle fetched"), logged("model loaded"));
    let fetch_ms = fetched["fetch_ms"].as_f64().unwrap_or(f64::NAN);
    assert!(fetched["files"].as_u64().is_some_and(|n| n >= 5) && fetched["bytes"].as_u64().is_some_and(|n| n > 1000), "{fetched}");
    assert!(fetch_ms > 0.0 && loaded["init_ms"].as_f64().is_some_and(|t| t >= fetch_ms), "{fetched} {loaded}");

    // Metrics: one CloudWatch EMF line per scored request, every declared metric with a value.
    let emf: Vec<Value> = lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("_aws").is_some()).collect();
    assert_eq!(emf.len(), scored.len(), "{lines:#?}");
    for v in &emf {
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], churn_core::METRIC_NAMESPACE, "{v}");
        assert!(v["_aws"]["Timestamp"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "{v}");
        assert_eq!((v["Function"].as_str(), v["ModelVersion"].is_string()), (Some("predict"), true), "{v}");
        assert!(v["Latency"].as_f64().is_some_and(|l| l > 0.0), "{v}");
        let names: Vec<&str> = directive["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
        assert_eq!(names.len(), 12, "{v}");
        for n in &names {
            assert!(v[n].is_number(), "{n} has no value: {v}");
        }
        let histogram: u64 = names.iter().filter(|n| n.starts_with("Probability")).map(|n| v[n].as_u64().unwrap()).sum();
        assert_eq!(histogram, v["BatchSize"].as_u64().unwrap(), "every scored customer lands in one bucket: {v}");
    }
}

#[test]
fn start_up_failures_end_init_with_one_clear_line() {
    let emu = emulator();
    for (env, expect) in [
        (vec![("MODEL_URI", "s3://no-such-bucket-churn/models/x")], "MODEL_URI=s3://no-such-bucket-churn/models/x"),
        (vec![("MODEL_URI", "s3://b/m"), ("MAX_BATCH", "zero")], "MAX_BATCH"),
        (vec![("MODEL_URI", "models:/churn@champion"), ("MLFLOW_TRACKING_URI", "")], "MLFLOW_TRACKING_URI"),
    ] {
        let mut c = Command::new(binary("predict"));
        lambda_env(&mut c, emu.port, "predict");
        c.env_remove("MLFLOW_TRACKING_URI");
        for (k, v) in &env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{env:?} should fail");
        let errors: Vec<&str> = err.lines().filter(|l| l.contains("\"level\":\"ERROR\"")).collect();
        assert_eq!(errors.len(), 1, "{env:?}: {err}");
        assert!(errors[0].contains("start-up failed") && errors[0].contains(expect), "{env:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn outside_lambda_the_same_binary_serves_http() {
    let port = free_port();
    let mut c = Command::new(binary("predict"));
    c.env_remove("AWS_LAMBDA_RUNTIME_API")
        .env("MODEL_URI", trained_bundle())
        .env("BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _p = spawn(c);
    wait_for_port(port, "predict (HTTP mode)");
    let ev: Value = serde_json::from_str(&std::fs::read_to_string(event("apigw-http-predict.json")).unwrap()).unwrap();
    let (status, v) = http_json(port, "POST", "/predict", ev["body"].as_str());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["predictions"][0]["customer_id"], "8879-ZKJOF");
}

/// The deployable form of a model (`churn package`): a directory the function reads from its
/// layer, and one archive object read with one GET. Both answer the sample events and report the
/// packaged bundle; the archive's start-up log says it was one fetch.
#[test]
fn a_packaged_model_serves_from_a_directory_and_from_one_s3_object() {
    let dir = scratch("package");
    let d = dir.path();
    let bucket = test_bucket("churn-packages");
    let archive = format!("s3://{bucket}/packages/churn.tar");
    let layer = d.join("layer/model");
    let out = churn_in(
        d,
        &[],
        &["package", "--model", trained_bundle().to_str().unwrap(), "--out", layer.to_str().unwrap(), "--archive", &archive],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let sha = churn_core::Bundle::load_dir(trained_bundle()).unwrap().manifest.bundle_sha256();
    assert!(stdout.contains(&sha) && stdout.contains("unregistered bundle"), "{stdout}");
    let mut names: Vec<String> =
        std::fs::read_dir(&layer).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut expected: Vec<String> = churn_core::bundle::LOADED_FILES.iter().map(|s| s.to_string()).collect();
    expected.extend(["manifest.json".to_string(), "source.json".to_string()]);
    expected.sort();
    assert_eq!(names, expected, "the package holds what serving loads, and where it came from");

    let emu = emulator();
    for uri in [layer.to_str().unwrap(), archive.as_str()] {
        let (f, logs) = start_function("predict", emu.port, &[("MODEL_URI", uri)]);
        let r = invoke(emu.port, &event("apigw-http-predict.json"));
        assert_eq!(r["statusCode"], 200, "{uri}: {r}");
        if !uri.starts_with("s3://") {
            // A thread costs a cold start its stack and a malloc arena: from the layer, the
            // function loads and answers on its one thread (no blocking-pool reads).
            let threads = std::fs::read_dir(format!("/proc/{}/task", f.0.id())).unwrap().count();
            assert_eq!(threads, 1, "{uri}: threads of the function after its first answer");
        }
        assert_eq!(body(&r)["predictions"][0]["customer_id"], "8879-ZKJOF");
        let m = body(&invoke(emu.port, &event("apigw-http-model.json")));
        assert_eq!((m["sha256"].as_str(), m["version"].as_str()), (Some(sha.as_str()), Some(&sha[..12])), "{uri}: {m}");
        let lines: Vec<String> = std::iter::from_fn(|| logs.recv_timeout(std::time::Duration::from_millis(300)).ok()).collect();
        let loaded = lines.iter().find(|l| l.contains("\"model loaded\"")).unwrap_or_else(|| panic!("{lines:#?}"));
        assert!(loaded.contains(&format!("\"packaged_from\":\"{}\"", trained_bundle().display())), "{loaded}");
        if uri.starts_with("s3://") {
            assert!(lines.iter().any(|l| l.contains("\"package fetched\"")), "one GET for the whole package: {lines:#?}");
            assert!(!lines.iter().any(|l| l.contains("\"bundle fetched\"")), "{lines:#?}");
        }
    }
}
