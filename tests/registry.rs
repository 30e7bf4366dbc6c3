//! Bundles on a real S3-protocol server and runs / versions in a real MLflow server (both
//! started by `tests/run.sh` through `infra/local/servers.sh`): upload, log, register, promote,
//! read back by alias from Rust and from Python's `mlflow.pyfunc`, and the fault cases.

use churn_core::Bundle;
use churn_e2e::*;
use serde_json::Value;

fn ok(o: &std::process::Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "churn failed\nstdout:\n{out}\nstderr:\n{err}");
    out
}

fn failed(o: &std::process::Output) -> String {
    let (out, err) = text(o);
    assert!(!o.status.success(), "churn should have failed\nstdout:\n{out}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn versions(name: &str) -> Vec<Value> {
    serde_json::from_str(&aws_mlflow(&["versions", name])).expect("versions JSON")
}

/// The line `prefix …` of `out`, trimmed to the word after `prefix`.
fn word_after<'a>(out: &'a str, prefix: &str) -> &'a str {
    let i = out.find(prefix).unwrap_or_else(|| panic!("no `{prefix}` in:\n{out}")) + prefix.len();
    out[i..].split_whitespace().next().unwrap()
}

#[test]
fn train_upload_register_promote_and_load_by_alias_from_rust_and_python() {
    require_servers();
    let dir = scratch("registry");
    let d = dir.path();
    let bucket = test_bucket("churn-e2e");
    let name = unique("churn-e2e");
    let prefix = format!("s3://{bucket}/models");

    // Train, upload, log and register.
    let out = ok(&churn_in(d, &[], &["train", "--seed", "3", "--out", &prefix, "--register", &name]));
    let uri = word_after(&out, "bundle uploaded to ").to_string();
    assert!(uri.starts_with(&format!("{prefix}/churn-mlp/")), "{out}");
    assert!(out.contains(&format!("registered {name} version 1")), "{out}");
    let upload_s: f64 = word_after(&out, " in ").trim_end_matches(',').parse().unwrap_or(f64::NAN);
    println!("upload seconds {upload_s}");
    let v = versions(&name);
    assert_eq!(v.len(), 1, "{v:?}");
    // The run behind it, as MLflow's own client reads it.
    let run: Value = serde_json::from_str(&aws_mlflow(&["run", word_after(&out, "from run ")])).unwrap();
    assert_eq!(run["status"], "FINISHED", "{run}");
    for p in ["seed", "learning_rate", "hidden", "dropout", "batch_size", "model_name", "data_rows"] {
        assert!(run["params"][p].is_string(), "param {p} missing: {run}");
    }
    assert_eq!(run["params"]["seed"], "3");
    assert_eq!(run["tags"]["data_sha256"].as_str().map(str::len), Some(64), "{run}");
    assert!(run["tags"]["git_commit"].is_string(), "{run}");
    for curve in ["train_loss", "validation_loss", "validation_auc"] {
        assert!(run["curves"][curve].as_u64().unwrap() > 5, "{curve}: {run}");
    }
    assert!(run["metrics"]["test_roc_auc"].as_f64().unwrap() > 0.8, "{run}");
    assert_eq!(run["datasets"].as_array().map(Vec::len), Some(1), "{run}");
    for f in ["model/MLmodel", "model/model.onnx", "model/feature_spec.json", "model/manifest.json", "model/python_env.yaml"] {
        assert!(run["artifacts"].as_array().unwrap().contains(&Value::String(f.into())), "{f}: {run}");
    }
    assert_eq!(v[0]["aliases"], serde_json::json!(["challenger"]));
    assert_eq!(v[0]["tags"]["bundle_uri"], Value::String(uri.clone()));

    // Registering the same bundle again changes nothing.
    let again = ok(&churn_in(d, &[], &["register", "--bundle", &uri, "--name", &name]));
    assert!(again.contains("already") && again.contains("version 1"), "{again}");
    assert_eq!(versions(&name).len(), 1);

    // First promotion: no champion yet.
    let p = ok(&churn_in(d, &[], &["promote", "--name", &name, "--version", "1"]));
    assert!(p.contains("no champion before"), "{p}");

    // A second model must beat the champion by the margin, or be forced.
    let out2 = ok(&churn_in(d, &[], &["train", "--seed", "4", "--out", &prefix, "--register", &name]));
    assert!(out2.contains(&format!("registered {name} version 2")), "{out2}");
    let refused = failed(&churn_in(d, &[], &["promote", "--name", &name, "--version", "2", "--margin", "0.5"]));
    assert!(refused.contains("does not beat champion version 1") && refused.contains("--force"), "{refused}");
    let forced = ok(&churn_in(d, &[], &["promote", "--name", &name, "--version", "2", "--margin", "0.5", "--force"]));
    assert!(forced.contains("forced"), "{forced}");
    let v = versions(&name);
    let v2 = v.iter().find(|x| x["version"] == "2").unwrap();
    assert_eq!(v2["tags"]["promotion_forced"], "true", "{v:?}");
    assert!(v2["aliases"].as_array().unwrap().contains(&Value::String("champion".into())), "{v:?}");

    // Read the champion back: Rust through the alias (bundle from S3), Python through
    // mlflow.pyfunc on the same raw customer rows (the transform is inside the logged model).
    let champion = format!("models:/{name}@champion");
    let scored = d.join("scored.csv");
    ok(&churn_in(d, &[], &["score", "--model", &champion, "--input", telco_csv().to_str().unwrap(), "--output", scored.to_str().unwrap()]));
    let bundle_uri = v2["tags"]["bundle_uri"].as_str().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = d.join("champion");
    rt.block_on(churn_store::Store::new().download_bundle(&churn_store::Location::parse(bundle_uri).unwrap(), &local)).unwrap();
    let rows = 1000;
    let py: Value = serde_json::from_str(&aws_mlflow(&["pyfunc", &champion, telco_csv().to_str().unwrap(), &rows.to_string()])).unwrap();
    let py_p: Vec<f64> = py["p"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(py_p.len(), rows);
    let scored_text = std::fs::read_to_string(&scored).unwrap();
    let rust_p: Vec<f64> = scored_text.lines().skip(1).take(rows).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    let diff = rust_p.iter().zip(&py_p).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(diff <= 1e-6, "churn score vs mlflow.pyfunc on {rows} raw Telco rows: max |diff| {diff}");
    // The signature names every raw input (none required: a missing field is missing), the
    // input example is recorded and scores.
    let n_inputs = Bundle::load_dir(&local).unwrap().spec.input_names().count();
    let schema = py["schema"].as_array().unwrap();
    assert_eq!(schema.len(), n_inputs, "{py}");
    assert!(schema.iter().all(|c| c["required"] == false && (c["type"] == "Any" || c["type"] == "string")), "{py}");
    assert!(schema.iter().any(|c| c["name"] == "contract" && c["type"] == "string"), "{py}");
    assert!(schema.iter().any(|c| c["name"] == "tenure" && c["type"] == "Any"), "{py}");
    assert_eq!(py["example"]["artifact_path"], "input_example.json", "{py}");
    assert!(py["example_p"][0].as_f64().is_some_and(|p| (0.0..=1.0).contains(&p)), "{py}");
    assert_eq!(py["flavors"], serde_json::json!(["onnx", "python_function"]), "{py}");

    // The deployable package of the champion: it names the registry version it serves, and a
    // function (or `churn score`) reading it gives the alias's probabilities byte for byte.
    let pkg = d.join("layer/model");
    let archive = format!("s3://{bucket}/packages/{name}.tar");
    let out = ok(&churn_in(d, &[], &["package", "--model", &champion, "--out", pkg.to_str().unwrap(), "--archive", &archive]));
    assert!(out.contains(&format!("packaged {name} version 2 (@")) && out.contains("@champion") && out.contains(bundle_uri), "{out}");
    let source: Value = serde_json::from_str(&std::fs::read_to_string(pkg.join("source.json")).unwrap()).unwrap();
    assert_eq!((source["registered_model"].as_str(), source["version"].as_str()), (Some(name.as_str()), Some("2")), "{source}");
    assert_eq!(source["bundle_sha256"], v2["tags"]["bundle_sha256"], "{source}");
    assert_eq!(source["model_uri"], champion.as_str(), "{source}");
    // Packaging the S3 bundle directly gives the same bundle, unregistered.
    let from_s3 = ok(&churn_in(d, &[], &["package", "--model", bundle_uri, "--out", d.join("from-s3").to_str().unwrap()]));
    assert!(from_s3.contains("unregistered bundle") && from_s3.contains(source["bundle_sha256"].as_str().unwrap()), "{from_s3}");
    for model in [pkg.to_str().unwrap(), archive.as_str()] {
        let o = d.join("packaged.csv");
        ok(&churn_in(d, &[], &["score", "--model", model, "--input", telco_csv().to_str().unwrap(), "--output", o.to_str().unwrap()]));
        assert_eq!(std::fs::read_to_string(&o).unwrap(), scored_text, "{model}");
    }
    // `sam build` with MLflow configured packages the registry's champion into the model layer
    // (CHURN_MODEL_NAME names the registered model; the default is churn).
    let build = d.join("sam-build");
    let o = std::process::Command::new("sam")
        .args(["build", "ModelLayer", "--build-dir"])
        .arg(&build)
        .current_dir(root())
        .env("SAM_CLI_TELEMETRY", "0")
        .env("CHURN", binary("churn"))
        .env("CHURN_MODEL_NAME", &name)
        .env_remove("CHURN_MODEL")
        .output()
        .expect("sam (installed by tests/run.sh)");
    let (so, se) = text(&o);
    assert!(o.status.success(), "sam build ModelLayer:\n{so}\n{se}");
    let layered: Value = serde_json::from_str(&std::fs::read_to_string(build.join("ModelLayer/model/source.json")).unwrap()).unwrap();
    assert_eq!((layered["model_uri"].as_str(), layered["version"].as_str()), (Some(champion.as_str()), Some("2")), "{layered}");

    // The function on the package reports the registry version, without asking MLflow.
    let port = churn_e2e::lambda::free_port();
    let mut c = std::process::Command::new(binary("predict"));
    c.env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("MLFLOW_TRACKING_URI")
        .env("MODEL_URI", &pkg)
        .env("BIND", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _f = churn_e2e::lambda::spawn(c);
    churn_e2e::lambda::wait_for_port(port, "predict on the package");
    let (status, m) = churn_e2e::lambda::http_json(port, "GET", "/model", None);
    assert_eq!(status, 200, "{m}");
    assert_eq!((m["name"].as_str(), m["version"].as_str()), (Some(manifest_name(&local).as_str()), Some("2")), "{m}");
    assert_eq!(m["sha256"], source["bundle_sha256"], "{m}");

    // A margin is a number >= 0; promoting anyway is what --force is for.
    for m in ["--margin=-1", "--margin=NaN"] {
        let e = failed(&churn_in(d, &[], &["promote", "--name", &name, "--version", "1", m]));
        assert!(e.contains("--margin must be a number >= 0") && e.contains("--force"), "{m}: {e}");
    }
    // A bundle that is not the one registered is never served under the version.
    aws_mlflow(&["set-version-tag", &name, "1", "bundle_sha256", &"0".repeat(64)]);
    let e = failed(&churn_in(
        d,
        &[],
        &[
            "score",
            "--model",
            &format!("models:/{name}/1"),
            "--input",
            telco_csv().to_str().unwrap(),
            "--output",
            d.join("v1.csv").to_str().unwrap(),
        ],
    ));
    assert!(
        e.contains(&format!("models:/{name}/1"))
            && e.contains("bundle_sha256 tag says 0000")
            && e.contains("replaced after it was registered"),
        "{e}"
    );
    assert!(!d.join("v1.csv").exists());
    // Nor packaged.
    let e = failed(&churn_in(d, &[], &["package", "--model", &format!("models:/{name}/1"), "--out", d.join("v1").to_str().unwrap()]));
    assert!(e.contains("bundle_sha256 tag says 0000") && e.contains("replaced after it was registered"), "{e}");
    assert!(!d.join("v1").exists());
}

fn manifest_name(bundle: &std::path::Path) -> String {
    Bundle::load_dir(bundle).unwrap().manifest.model_name
}

#[test]
fn mlflow_unreachable_keeps_the_bundle_and_says_how_to_register_it_later() {
    require_servers();
    let dir = scratch("mlflow-down");
    let d = dir.path();
    let name = unique("churn-down");
    let out = d.join("bundle");
    let err = failed(&churn_in(
        d,
        &[("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")],
        &["train", "--seed", "5", "--out", out.to_str().unwrap(), "--register", &name],
    ));
    assert!(err.contains("unreachable") && err.contains(&format!("churn register --bundle {} --name {name}", out.display())), "{err}");
    assert!(Bundle::load_dir(&out).is_ok(), "the local bundle must survive");
    assert!(versions(&name).is_empty());
    // The command it printed works once MLflow is back.
    let later = ok(&churn_in(d, &[], &["register", "--bundle", out.to_str().unwrap(), "--name", &name]));
    assert!(later.contains(&format!("registered {name} version 1")), "{later}");
}

#[test]
fn s3_unreachable_or_corrupt_registers_nothing() {
    require_servers();
    let dir = scratch("s3-faults");
    let d = dir.path();
    let bucket = test_bucket("churn-faults");
    let name = unique("churn-faults");

    // S3 down: the upload fails after bounded retries, nothing is registered, the local copy stays.
    let err = failed(&churn_in(
        d,
        &[("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")],
        &["train", "--seed", "6", "--out", &format!("s3://{bucket}/m"), "--register", &name],
    ));
    assert!(err.contains("uploading to s3://") && err.contains("the bundle is kept at"), "{err}");
    assert!(versions(&name).is_empty());
    let kept: Vec<_> = std::fs::read_dir(d.join("out/bundles")).unwrap().flatten().collect();
    assert_eq!(kept.len(), 1);
    let kept = kept[0].path();
    assert!(Bundle::load_dir(&kept).is_ok());
    let kept_rel = format!("out/bundles/{}", kept.file_name().unwrap().to_string_lossy());
    let upload = format!("churn upload --bundle {kept_rel} --out s3://{bucket}/m");
    assert!(err.contains(&upload) && err.contains(&format!("--name {name}")), "{err}");

    // The printed command works once S3 is back.
    let out = ok(&churn_in(d, &[], &["upload", "--bundle", &kept_rel, "--out", &format!("s3://{bucket}/m")]));
    let uri = word_after(&out, "bundle uploaded to ").to_string();
    assert!(uri.starts_with(&format!("s3://{bucket}/m/churn-mlp/")), "{out}");

    // A corrupted object: registration refuses before MLflow hears of it.
    let key = format!("{}/model.onnx", uri.trim_start_matches(&format!("s3://{bucket}/")));
    aws_mlflow(&["corrupt", &bucket, &key]);
    let err = failed(&churn_in(d, &[], &["register", "--bundle", &uri, "--name", &name]));
    assert!(err.contains("model.onnx") && err.to_lowercase().contains("checksum"), "{err}");
    assert!(versions(&name).is_empty());
    let err = failed(&churn_in(d, &[], &["score", "--model", &uri, "--input", telco_csv().to_str().unwrap(), "--output", "x.csv"]));
    assert!(err.contains("model.onnx"), "{err}");
}

/// With no credentials in the environment, bundle reads (the signed GETs) and writes (the SDK)
/// take them from the SDK's chain: here a shared credentials file, as a developer's profile
/// gives them. With none anywhere, the error says so.
#[test]
fn credentials_come_from_a_profile_when_the_environment_has_none() {
    require_servers();
    let (Ok(id), Ok(secret)) = (std::env::var("AWS_ACCESS_KEY_ID"), std::env::var("AWS_SECRET_ACCESS_KEY")) else {
        // Only a remote run (CHURN_REMOTE=1) may take its credentials from a profile, and then
        // the whole suite already runs on the chain; the local servers' set-up always exports them.
        assert_eq!(
            std::env::var("CHURN_REMOTE").as_deref(),
            Ok("1"),
            "the local test set-up exports AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        );
        return;
    };
    let dir = scratch("profile-credentials");
    let d = dir.path();
    let file = d.join("credentials");
    let token = std::env::var("AWS_SESSION_TOKEN").map(|t| format!("aws_session_token = {t}\n")).unwrap_or_default();
    std::fs::write(&file, format!("[churn-test]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n{token}")).unwrap();
    let missing = d.join("no-such-file").to_string_lossy().to_string();
    let file = file.to_string_lossy().to_string();
    let base = [
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_SESSION_TOKEN", ""),
        ("AWS_CONFIG_FILE", missing.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let with_profile: Vec<(&str, &str)> =
        base.iter().copied().chain([("AWS_SHARED_CREDENTIALS_FILE", file.as_str()), ("AWS_PROFILE", "churn-test")]).collect();
    let bundle = trained_bundle().to_string_lossy().to_string();
    let dest = format!("s3://{}/profile", test_bucket("churn-profile"));
    let upload = ["upload", "--bundle", bundle.as_str(), "--out", dest.as_str()];
    let out = ok(&churn_in(d, &with_profile, &upload));
    let uri = word_after(&out, "bundle uploaded to ").to_string();
    // Again: every object is now read back and found identical (signed GETs only).
    let again = ok(&churn_in(d, &with_profile, &upload));
    assert_eq!(word_after(&again, "bundle uploaded to "), uri, "{again}");
    let data = telco_csv().to_string_lossy().to_string();
    let evaluated = ok(&churn_in(d, &with_profile, &["evaluate", "--model", &uri, "--data", &data, "--json"]));
    let figures: Value = serde_json::from_str(&evaluated).unwrap_or_else(|e| panic!("{e}: {evaluated}"));
    assert!(figures.to_string().contains("roc_auc"), "{figures}");

    let nowhere: Vec<(&str, &str)> = base.iter().copied().chain([("AWS_SHARED_CREDENTIALS_FILE", missing.as_str())]).collect();
    let err = failed(&churn_in(d, &nowhere, &upload));
    assert!(err.contains("credentials") && err.contains("AWS_ACCESS_KEY_ID"), "{err}");
}

/// A scorer requests the files it loads together with the manifest; a file the manifest does not
/// list (a bundle written before explanations has no background sample) is simply absent.
#[test]
fn a_bundle_without_optional_files_loads_from_s3() {
    require_servers();
    let dir = scratch("s3-old-bundle");
    let d = dir.path();
    let old = bundle_without_background(d);
    let dest = format!("s3://{}/old", test_bucket("churn-old"));
    let out = ok(&churn_in(d, &[], &["upload", "--bundle", old.to_str().unwrap(), "--out", &dest]));
    let uri = word_after(&out, "bundle uploaded to ").to_string();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = churn_store::Store::new();
    let loaded = rt.block_on(store.load_bundle(&churn_store::Location::parse(&uri).unwrap())).unwrap();
    assert!(loaded.background.is_none());
    let missing =
        rt.block_on(store.load_bundle(&churn_store::Location::parse(&dest).unwrap().join("missing"))).expect_err("no bundle there");
    assert!(missing.to_string().contains("manifest.json") && missing.to_string().contains("NoSuchKey"), "{missing}");
    let with_background = Bundle::load_dir(trained_bundle()).unwrap();
    assert!(with_background.background.is_some());
}
