//! The deployment, checked offline by the real tools: `cfn-lint`, `sam validate --lint`, the SAM
//! translator's expansion of the template (the same one `sam deploy` runs) checked for
//! least-privilege policies, private encrypted buckets, the trigger on `incoming/` only, the
//! dead-letter destination, log retention and alarms; and `sam build`, which cross-compiles both
//! functions to arm64 with cargo-lambda and zig.

use std::collections::BTreeSet;
use std::process::Command;

use churn_e2e::*;
use serde_json::Value;

fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    c.current_dir(root()).env("SAM_CLI_TELEMETRY", "0");
    c
}

fn run_ok(c: &mut Command, what: &str) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("{what}: {e} (the tools come from `bash tests/run.sh`)"));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{what} failed:\n{out}\n{err}");
    out
}

fn template(kind: &str) -> Value {
    let mut c = Command::new(python());
    c.arg(root().join("tests/support/sam_template.py")).arg(kind).arg(root().join("template.yaml"));
    serde_json::from_str(&run_ok(&mut c, "sam_template.py")).unwrap()
}

fn resources_of<'a>(t: &'a Value, ty: &str) -> Vec<(&'a String, &'a Value)> {
    t["Resources"].as_object().unwrap().iter().filter(|(_, r)| r["Type"] == ty).collect()
}

#[test]
fn cfn_lint_and_sam_validate_pass() {
    run_ok(tool("cfn-lint").arg("template.yaml"), "cfn-lint template.yaml");
    let out = run_ok(tool("sam").args(["validate", "--lint"]), "sam validate --lint");
    assert!(out.contains("is a valid SAM Template"), "{out}");
}

/// `sam build` compiles each function on its own, so a crate both functions use that is resolved
/// with other features in each is compiled twice, with everything built on it. The differences
/// allowed here are the ones the functions need apart (HTTP/2 and the SDK's stack in the batch
/// scorer, hyper's server side and the OpenAPI types in the prediction function, arrow); a new
/// one, such as a default feature on one side only, would compile tract, rustls and ring twice
/// again (the feature-unification lines of functions/predict/Cargo.toml).
#[test]
fn the_two_functions_resolve_their_shared_crates_alike() {
    let features = |pkg: &str| {
        let mut c = Command::new(env!("CARGO"));
        c.args(["tree", "--locked", "-p", pkg, "-e", "normal,build", "--target", "aarch64-unknown-linux-gnu"])
            .args(["--prefix", "none", "-f", "{p}|{f}"])
            .current_dir(root());
        without_test_cargo_env(&mut c);
        let mut map: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
        for line in run_ok(&mut c, "cargo tree").lines() {
            if let Some((p, f)) = line.trim_end_matches(" (*)").split_once('|') {
                let key = p.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                map.entry(key).or_default().insert(f.to_string());
            }
        }
        map
    };
    let (p, b) = (features("predict"), features("batch-score"));
    assert!(p.keys().any(|k| k.starts_with("tract-core ")), "{p:?}");
    let allowed = [
        "aws-credential-types",
        "aws-sigv4",
        "aws-smithy-async",
        "aws-smithy-http",
        "aws-smithy-runtime-api",
        "aws-smithy-types",
        "aws_lambda_events",
        "churn-core",
        "churn-store",
        "hashbrown",
        "hyper",
        "hyper-rustls",
        "hyper-util",
        "indexmap",
        "tower",
    ];
    let differing: Vec<_> = p
        .iter()
        .filter(|(k, f)| b.get(*k).is_some_and(|g| g != *f))
        .map(|(k, _)| k.split(' ').next().unwrap().to_string())
        .filter(|name| !allowed.contains(&name.as_str()))
        .collect();
    assert!(differing.is_empty(), "resolved with other features in each function: {differing:?}");
}

#[test]
fn every_function_names_a_workspace_binary_built_for_arm64() {
    let t = template("raw");
    let meta: Value = {
        let mut c = Command::new(env!("CARGO"));
        c.args(["metadata", "--no-deps", "--format-version", "1", "--offline"]).current_dir(root());
        serde_json::from_str(&run_ok(&mut c, "cargo metadata")).unwrap()
    };
    let bins: BTreeSet<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    let globals = &t["Globals"]["Function"];
    let functions = resources_of(&t, "AWS::Serverless::Function");
    assert_eq!(functions.len(), 2);
    let function_sources = rust_sources(&root().join("functions"));
    for (name, f) in functions {
        let p = &f["Properties"];
        let get = |k: &str| if p[k].is_null() { globals[k].clone() } else { p[k].clone() };
        assert_eq!(get("Runtime"), "provided.al2023", "{name}");
        assert_eq!(get("Handler"), "bootstrap", "{name}");
        assert_eq!(get("Architectures"), serde_json::json!(["arm64"]), "{name}");
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
        let bin = f["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        assert!(bins.contains(bin), "{name}: binary {bin} is not a workspace binary ({bins:?})");
        let code = root().join(p["CodeUri"].as_str().unwrap());
        assert!(code.join("Cargo.toml").exists(), "{name}: CodeUri {} has no Cargo.toml", code.display());
        assert!(p["MemorySize"].as_u64().is_some() && p["Timeout"].as_u64().is_some(), "{name}");
        assert!(!p["Environment"]["Variables"]["MODEL_URI"].is_null(), "{name}");
        // Every variable the template sets is one the functions' code reads (a misspelt name
        // would be ignored silently and the default used).
        let set = [&p["Environment"]["Variables"], &globals["Environment"]["Variables"]];
        for var in set.iter().filter_map(|v| v.as_object()).flat_map(|v| v.keys()) {
            assert!(
                function_sources.contains(&format!("\"{var}\"")),
                "{name}: {var} is set by the template but read nowhere under functions/"
            );
        }
    }
}

/// Every statement of every role's inline policies, after the SAM transform.
fn statements(t: &Value, role: &str) -> Vec<Value> {
    let r = &t["Resources"][role];
    assert_eq!(r["Type"], "AWS::IAM::Role", "{role}");
    r["Properties"]["Policies"]
        .as_array()
        .map(|ps| ps.iter().flat_map(|p| p["PolicyDocument"]["Statement"].as_array().unwrap().clone()).collect())
        .unwrap_or_default()
}

fn list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.to_string()).collect(),
        other => vec![other.to_string()],
    }
}

#[test]
fn policies_are_least_privilege_and_resources_are_locked_down() {
    let t = template("transformed");

    // No role anywhere grants a wildcard S3 action or an S3 action on `*`.
    for (name, _) in resources_of(&t, "AWS::IAM::Role") {
        for s in statements(&t, name) {
            let actions = list(&s["Action"]);
            if actions.iter().any(|a| a.contains("s3:")) {
                assert!(!actions.iter().any(|a| a.contains('*')), "{name}: wildcard S3 action in {s}");
                for r in list(&s["Resource"]) {
                    assert!(r != "\"*\"" && !r.contains(":::*"), "{name}: S3 action on every resource: {s}");
                }
            }
        }
    }
    let s3_grants = |role: &str| -> Vec<(Vec<String>, Vec<String>)> {
        statements(&t, role)
            .into_iter()
            .filter(|s| list(&s["Action"]).iter().any(|a| a.contains("s3:")))
            .map(|s| (list(&s["Action"]), list(&s["Resource"])))
            .collect()
    };
    // The prediction function reads the model prefix, nothing else.
    let predict = s3_grants("PredictFunctionRole");
    assert_eq!(predict.len(), 1, "{predict:?}");
    assert_eq!(predict[0].0, vec!["\"s3:GetObject\""]);
    assert!(predict[0].1[0].contains("churn-models-") && predict[0].1[0].contains("${ModelKeyPrefix}*"), "{predict:?}");
    // The batch function: reads incoming/ and the models, writes scored/ and rejected/ and its
    // fan-out requests (fanout/) only.
    for (actions, resources) in s3_grants("BatchScoreFunctionRole") {
        let writes = actions.iter().any(|a| a.contains("Put") || a.contains("Delete") || a.contains("Abort"));
        for r in &resources {
            if writes {
                assert!(
                    r.contains("/scored/*") || r.contains("/rejected/*") || r.contains("/fanout/*"),
                    "writes outside the outputs: {actions:?} {r}"
                );
            } else if actions.iter().any(|a| a.contains("GetObject")) {
                assert!(r.contains("/incoming/*") || r.contains("${ModelKeyPrefix}*") || r.contains("/scored/*"), "{r}");
            } else {
                assert_eq!(actions, vec!["\"s3:ListBucket\""], "{resources:?}");
            }
        }
    }

    // Buckets: encrypted, no public access; the model bucket keeps versions.
    for (name, b) in resources_of(&t, "AWS::S3::Bucket") {
        let p = &b["Properties"];
        assert!(!p["BucketEncryption"].is_null(), "{name} is not encrypted");
        for k in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
            assert_eq!(p["PublicAccessBlockConfiguration"][k], true, "{name}: {k}");
        }
    }
    assert_eq!(t["Resources"]["ModelBucket"]["Properties"]["VersioningConfiguration"]["Status"], "Enabled");

    // The batch trigger covers incoming/ only, so outputs never re-trigger it.
    let n = &t["Resources"]["DataBucket"]["Properties"]["NotificationConfiguration"];
    let lambdas = n["LambdaConfigurations"].as_array().expect("a Lambda notification");
    assert_eq!(lambdas.len(), 1);
    assert_eq!(lambdas[0]["Filter"]["S3Key"]["Rules"], serde_json::json!([{"Name": "prefix", "Value": "incoming/"}]));

    // Failed asynchronous invocations are kept.
    let cfg = resources_of(&t, "AWS::Lambda::EventInvokeConfig");
    assert_eq!(cfg.len(), 1);
    assert!(!cfg[0].1["Properties"]["DestinationConfig"]["OnFailure"]["Destination"].is_null());

    // Every function logs to a group with a retention period.
    for (name, f) in resources_of(&t, "AWS::Lambda::Function") {
        let group = f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"].as_str().unwrap_or_else(|| panic!("{name} has no log group"));
        assert!(
            t["Resources"][group]["Properties"]["RetentionInDays"].is_object()
                || t["Resources"][group]["Properties"]["RetentionInDays"].is_number()
        );
    }

    // Every API route requires authorisation (IAM or JWT, never NONE).
    let routes = resources_of(&t, "AWS::ApiGatewayV2::Route");
    let keys: BTreeSet<&str> = routes.iter().map(|(_, r)| r["Properties"]["RouteKey"].as_str().unwrap()).collect();
    assert_eq!(keys, BTreeSet::from(["POST /predict", "GET /health", "GET /model", "GET /openapi.json"]));
    for (name, r) in &routes {
        let auth = r["Properties"]["AuthorizationType"].to_string();
        assert!(auth.contains("AWS_IAM") && !auth.contains("NONE"), "{name}: {auth}");
    }

    // Alarms on errors, throttles, p99 duration, failed objects, dead letters and drift.
    let alarms: Vec<String> = resources_of(&t, "AWS::CloudWatch::Alarm")
        .iter()
        .map(|(_, a)| format!("{}/{}", a["Properties"]["Namespace"].as_str().unwrap(), a["Properties"]["MetricName"].as_str().unwrap()))
        .collect();
    // The functions' own metrics: the namespace their EMF lines use.
    let ours = |m: &str| format!("{}/{m}", churn_core::METRIC_NAMESPACE);
    for m in [
        "AWS/Lambda/Errors".to_string(),
        "AWS/Lambda/Throttles".into(),
        "AWS/Lambda/Duration".into(),
        ours("MaxPsi"),
        ours("FailedObjects"),
        "AWS/SQS/ApproximateNumberOfMessagesVisible".into(),
        "AWS/States/ExecutionsFailed".into(),
    ] {
        assert!(alarms.contains(&m), "no alarm on {m}: {alarms:?}");
    }
    let p99 = resources_of(&t, "AWS::CloudWatch::Alarm").into_iter().find(|(_, a)| a["Properties"]["MetricName"] == "Duration").unwrap();
    assert_eq!(p99.1["Properties"]["ExtendedStatistic"], "p99");

    // The fan-out state machine maps over row-group items with a distributed map.
    let sm = resources_of(&t, "AWS::StepFunctions::StateMachine");
    assert_eq!(sm.len(), 1);
    assert!(sm[0].1["Properties"].to_string().contains("DISTRIBUTED"));
    let failed =
        resources_of(&t, "AWS::CloudWatch::Alarm").into_iter().find(|(_, a)| a["Properties"]["MetricName"] == "ExecutionsFailed").unwrap();
    assert_eq!(failed.1["Properties"]["Dimensions"][0]["Name"], "StateMachineArn", "{}", failed.1);

    for o in ["ApiUrl", "ModelBucketName", "DataBucketName"] {
        assert!(!t["Outputs"][o].is_null(), "output {o}");
    }
}

/// The model ships with the functions: a layer `sam build` fills (infra/model-layer/Makefile,
/// `churn package`), mounted at /opt/model where both functions read it unless ModelUri asks for
/// a fetch at start-up; the outputs say where the served model can be read; samconfig.toml
/// deploys in one pass (no placeholder to edit).
#[test]
fn the_model_ships_in_a_layer_both_functions_read() {
    let t = template("raw");
    assert_eq!(t["Parameters"]["ModelUri"]["Default"], "", "packaged model by default");
    let layer = &t["Resources"]["ModelLayer"];
    assert_eq!(layer["Type"], "AWS::Serverless::LayerVersion");
    assert_eq!(
        (layer["Metadata"]["BuildMethod"].as_str(), layer["Metadata"]["BuildArchitecture"].as_str()),
        (Some("makefile"), Some("arm64"))
    );
    let content = root().join(layer["Properties"]["ContentUri"].as_str().unwrap());
    let makefile = std::fs::read_to_string(content.join("Makefile")).unwrap();
    assert!(makefile.contains("build-ModelLayer:") && makefile.contains("package --model"), "{makefile}");
    assert!(makefile.contains("$(ARTIFACTS_DIR)/model"), "the layer's model/ is /opt/model in Lambda");
    for (name, f) in resources_of(&t, "AWS::Serverless::Function") {
        let p = &f["Properties"];
        assert_eq!(p["Layers"], serde_json::json!([{"Ref": "ModelLayer"}]), "{name}");
        assert_eq!(
            p["Environment"]["Variables"]["MODEL_URI"],
            serde_json::json!({"Fn::If": ["FetchModelAtInit", {"Ref": "ModelUri"}, "/opt/model"]}),
            "{name}"
        );
    }
    assert_eq!(t["Conditions"]["FetchModelAtInit"], serde_json::json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "ModelUri"}, ""]}]}));
    for o in ["ServedModelUrl", "ModelLayerVersionArn", "ModelSource"] {
        assert!(!t["Outputs"][o]["Value"].is_null(), "output {o}");
    }
    assert!(t["Outputs"]["ServedModelUrl"]["Value"].to_string().contains("/model"), "{}", t["Outputs"]["ServedModelUrl"]);

    // After the transform: each function's configuration names the layer version, and the
    // prediction function's `live` alias points at a published version (which a new layer
    // version replaces).
    let t = template("transformed");
    let layers = resources_of(&t, "AWS::Lambda::LayerVersion");
    assert_eq!(layers.len(), 1, "{layers:?}");
    let layer_id = layers[0].0;
    for (name, f) in resources_of(&t, "AWS::Lambda::Function") {
        assert_eq!(f["Properties"]["Layers"], serde_json::json!([{"Ref": layer_id}]), "{name}");
    }
    assert_eq!(t["Outputs"]["ModelLayerVersionArn"]["Value"], serde_json::json!({"Ref": layer_id}));
    let aliases = resources_of(&t, "AWS::Lambda::Alias");
    assert!(
        aliases.iter().any(|(_, a)| a["Properties"]["Name"] == "live" && a["Properties"]["FunctionVersion"]["Fn::GetAtt"].is_array()),
        "{aliases:?}"
    );

    let config = std::fs::read_to_string(root().join("samconfig.toml")).unwrap();
    for placeholder in ["ACCOUNT", "RUN_ID", "ModelUri="] {
        assert!(!config.contains(placeholder), "samconfig.toml still holds {placeholder}: a deployer would have to edit it");
    }
    assert_eq!(config.matches("build_in_source = true").count(), config.matches(".build.parameters]").count(), "{config}");
}

/// An object above the per-invocation limit reaches the fan-out with nobody in the loop: the
/// batch function writes a request under its `FAN_OUT_PREFIX`, the data bucket sends object
/// events to EventBridge (beside the Lambda trigger on incoming/), and a rule on that prefix
/// starts the state machine with the input the plan step reads (tests/batch.rs feeds the same
/// `InputTemplate` to the real function).
#[test]
fn a_refused_object_starts_the_fan_out_through_an_eventbridge_rule() {
    let t = template("transformed");
    let env = &t["Resources"]["BatchScoreFunction"]["Properties"]["Environment"]["Variables"];
    let prefix = env["FAN_OUT_PREFIX"].as_str().expect("FAN_OUT_PREFIX set on the batch function");
    let n = &t["Resources"]["DataBucket"]["Properties"]["NotificationConfiguration"];
    assert_eq!(n["EventBridgeConfiguration"]["EventBridgeEnabled"], true, "{n}");
    assert_eq!(n["LambdaConfigurations"].as_array().map(Vec::len), Some(1), "the Lambda trigger stays: {n}");
    let rules = resources_of(&t, "AWS::Events::Rule");
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = &rules[0].1["Properties"];
    let pattern = &rule["EventPattern"];
    assert_eq!((pattern["source"][0].as_str(), pattern["detail-type"][0].as_str()), (Some("aws.s3"), Some("Object Created")), "{pattern}");
    assert_eq!(pattern["detail"]["bucket"]["name"][0]["Ref"], "DataBucket", "{pattern}");
    assert_eq!(pattern["detail"]["object"]["key"][0]["prefix"].as_str(), Some(prefix), "{pattern}");
    let target = &rule["Targets"][0];
    assert_eq!(target["Arn"]["Ref"], "BatchFanOut", "{target}");
    let transformer = &target["InputTransformer"];
    assert_eq!(transformer["InputPathsMap"]["request"], "$.detail.object.key", "{transformer}");
    assert_eq!(transformer["InputPathsMap"]["bucket"], "$.detail.bucket.name", "{transformer}");
    assert!(transformer["InputTemplate"].as_str().unwrap().contains(r#""request": <request>"#), "{transformer}");
    // The rule's role may start this state machine and nothing else.
    let role = target["RoleArn"]["Fn::GetAtt"][0].as_str().expect("a role for the rule");
    let grants = statements(&t, role);
    assert!(!grants.is_empty(), "{role}");
    for s in grants {
        assert_eq!(list(&s["Action"]), vec!["\"states:StartExecution\""], "{s}");
        assert!(s["Resource"].to_string().contains("BatchFanOut"), "{s}");
    }
}

/// A row-group range the function answers with a failed or refused summary fails its child
/// execution (so the map and the execution fail, and the alarm fires) instead of passing as a
/// success; a scored range succeeds.
#[test]
fn a_range_that_could_not_be_scored_fails_the_fan_out() {
    let t = template("raw");
    let states = &t["Resources"]["BatchFanOut"]["Properties"]["Definition"]["States"]["ScoreRanges"]["ItemProcessor"]["States"];
    assert_eq!(states["Score"]["Next"], "RangeScored", "{states}");
    let choice = &states["RangeScored"];
    assert_eq!(choice["Type"], "Choice");
    let rule = &choice["Choices"][0];
    let statuses: BTreeSet<&str> = rule["Or"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["Variable"], "$.objects[0].status", "{c}");
            c["StringEquals"].as_str().unwrap()
        })
        .collect();
    assert_eq!(statuses, BTreeSet::from(["failed", "refused"]));
    assert_eq!(states[rule["Next"].as_str().unwrap()]["Type"], "Fail");
    assert_eq!(states[choice["Default"].as_str().unwrap()]["Type"], "Succeed");
    // After the map, the plan goes to the merge step, which writes the object's own summary.
    let top = &t["Resources"]["BatchFanOut"]["Properties"]["Definition"]["States"];
    assert_eq!((top["ScoreRanges"]["Next"].as_str(), top["ScoreRanges"]["ResultPath"].is_null()), (Some("Merge"), true), "{top}");
    assert_eq!(top["Merge"]["Parameters"]["Payload"]["merge.$"], "$", "{top}");
    assert!(rust_sources(&root().join("functions/batch-score")).contains("event.get(\"merge\")"));
    // The statuses named are the ones the function writes.
    for s in ["failed", "refused"] {
        assert!(rust_sources(&root().join("functions/batch-score")).contains(&format!("\"{s}\"")), "{s}");
    }
}

/// `sam build` as a deployer runs it: SAM calls cargo-lambda, which cross-compiles each
/// function's binary to arm64 with zig and lays out `bootstrap` per function. The release
/// profile's fat LTO and opt-level 3 would take most of the CI budget, so this build overrides
/// them through cargo's environment (the artifacts' real sizes, from the full profile, are in the
/// issue notes); everything else is the deployer's path.
#[test]
fn sam_build_cross_compiles_both_functions_to_arm64() {
    let dir = scratch("sam-build");
    let build = dir.path().join("build");
    let mut c = tool("sam");
    c.args(["build", "--beta-features", "--build-dir"])
        .arg(&build)
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "256")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        // The model layer: packaged by this build's churn from the tests' trained bundle.
        .env("CHURN", binary("churn"))
        .env("CHURN_MODEL", trained_bundle());
    without_test_cargo_env(&mut c);
    let out = run_ok(&mut c, "sam build");
    assert!(out.contains("Build Succeeded"), "{out}");
    for f in ["PredictFunction", "BatchScoreFunction"] {
        let bootstrap = build.join(f).join("bootstrap");
        let bytes = std::fs::read(&bootstrap).unwrap_or_else(|e| panic!("{}: {e}", bootstrap.display()));
        assert_eq!(&bytes[..4], b"\x7fELF", "{f}");
        // e_machine at offset 18: 0xB7 is AArch64.
        assert_eq!(u16::from_le_bytes([bytes[18], bytes[19]]), 0xB7, "{f} is not an arm64 binary");
        // e_type at offset 16: the prediction function is linked at a fixed address (2, an
        // executable; functions/predict/build.rs says why), the batch scorer the usual way (3).
        let e_type = u16::from_le_bytes([bytes[16], bytes[17]]);
        assert_eq!(e_type, if f == "PredictFunction" { 2 } else { 3 }, "{f}: ELF type {e_type}");
        println!("{f}: bootstrap {:.1} MiB (test profile override)", bytes.len() as f64 / (1 << 20) as f64);
        // Panic locations keep crate paths in a stripped binary. The prediction function reads
        // its bundle without the AWS SDK (a smaller zip); the batch scorer streams with it, which
        // also shows the search finds the SDK when it is there.
        let has_sdk = bytes.windows(b"aws-sdk-s3-".len()).any(|w| w == b"aws-sdk-s3-");
        assert_eq!(has_sdk, f == "BatchScoreFunction", "{f}: AWS SDK linked: {has_sdk}");
    }
    let built = std::fs::read_to_string(build.join("template.yaml")).unwrap();
    assert!(built.contains("CodeUri: PredictFunction") && built.contains("CodeUri: BatchScoreFunction"), "{built}");
    // The layer's model/ directory is /opt/model in Lambda: a bundle the functions load, which
    // says it is the tests' trained bundle.
    assert!(built.contains("ContentUri: ModelLayer"), "{built}");
    let model = build.join("ModelLayer/model");
    let bundle = churn_core::Bundle::load_dir(&model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let source: Value = serde_json::from_str(&std::fs::read_to_string(model.join("source.json")).unwrap()).unwrap();
    assert_eq!(source["bundle_sha256"].as_str(), Some(bundle.manifest.bundle_sha256().as_str()), "{source}");
    assert_eq!(source["bundle_location"].as_str(), Some(trained_bundle().to_str().unwrap()), "{source}");
}

/// Every sample event in `events/` is sent through a function by a test (tests/lambda.rs for the
/// API events, tests/batch.rs for the S3 events), so none can rot unnoticed.
#[test]
fn every_sample_event_is_exercised() {
    let sources = ["tests/lambda.rs", "tests/batch.rs"].map(|f| std::fs::read_to_string(root().join(f)).unwrap()).join("\n");
    let mut n = 0;
    for e in std::fs::read_dir(root().join("events")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            n += 1;
            assert!(sources.contains(&format!("\"{name}\"")), "events/{name} is not sent by any test");
            let v: Value = serde_json::from_str(&std::fs::read_to_string(root().join("events").join(&name)).unwrap()).unwrap();
            assert!(v.is_object(), "{name}");
        }
    }
    assert!(n >= 13, "{n} events");
}

/// Every `.rs` file under `dir`, concatenated.
fn rust_sources(dir: &std::path::Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&rust_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    text
}
