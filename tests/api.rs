//! The prediction API in process, over the real trained bundle: valid and invalid requests
//! through the same axum router the Lambda serves, parity with `churn score` (one feature path),
//! the OpenAPI document, and a property test over the parser and handler (bounded cases).

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use churn_api::{Predictor, router};
use churn_core::Bundle;
use churn_e2e::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

const MAX_BODY: usize = 64 * 1024;

fn predictor() -> Arc<Predictor> {
    static P: OnceLock<Arc<Predictor>> = OnceLock::new();
    P.get_or_init(|| Arc::new(Predictor::new(Bundle::load_dir(trained_bundle()).unwrap(), None, 50, 3))).clone()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

/// Sends one request through the router; returns the status and the JSON body.
fn call(method: &str, path: &str, content_type: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
    let app = router(predictor(), MAX_BODY);
    let mut req = Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = runtime().block_on(app.oneshot(req.body(Body::from(body)).unwrap())).unwrap();
    let status = resp.status();
    let bytes = runtime().block_on(axum::body::to_bytes(resp.into_body(), usize::MAX)).unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{method} {path}: status {status}, body not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, v)
}

fn post(body: &Value) -> (StatusCode, Value) {
    call("POST", "/predict", Some("application/json"), serde_json::to_vec(body).unwrap())
}

/// Telco rows as API customers (numbers as numbers, blank as null, label dropped).
fn customers(n: usize) -> Vec<Value> {
    let text = std::fs::read_to_string(telco_csv()).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .take(n)
        .map(|line| {
            let mut o = serde_json::Map::new();
            for (k, v) in header.iter().zip(line.split(',')) {
                let value = match *k {
                    "churn" => continue,
                    "tenure" | "monthlycharges" | "totalcharges" if v.trim().is_empty() => Value::Null,
                    "tenure" | "monthlycharges" | "totalcharges" => json!(v.parse::<f64>().unwrap()),
                    _ => json!(v),
                };
                o.insert(k.to_string(), value);
            }
            Value::Object(o)
        })
        .collect()
}

#[test]
fn one_customer_gets_probability_tier_action_and_reasons() {
    let c = customers(1).remove(0);
    let (status, v) = post(&c);
    assert_eq!(status, StatusCode::OK, "{v}");
    let p = &v["predictions"][0];
    assert_eq!(p["customer_id"], c["customerid"]);
    let prob = p["churn_probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&prob));
    assert!(["very_high", "high", "medium", "low"].contains(&p["risk_tier"].as_str().unwrap()), "{p}");
    assert!(p["action"].is_string());
    assert_eq!(v["model"]["name"], "churn-mlp");
    assert_eq!(v["model"]["sha256"].as_str().unwrap().len(), 64);
    let reasons = p["reasons"].as_array().unwrap();
    // The predictor is built for three reasons; a customer always has three fields to name.
    assert_eq!(reasons.len(), 3, "{p}");
    for w in reasons.windows(2) {
        assert!(w[0]["contribution"].as_f64() >= w[1]["contribution"].as_f64(), "largest first: {reasons:?}");
    }
}

#[test]
fn batch_predictions_equal_churn_score_on_the_same_rows() {
    // 50 rows, blank totalcharges included (rows with blanks exist in the first lines? make sure).
    let mut batch = customers(40);
    let text = std::fs::read_to_string(telco_csv()).unwrap();
    let blank_ids: Vec<String> =
        text.lines().filter(|l| l.contains(", ,") || l.contains(",,")).filter_map(|l| l.split(',').next().map(str::to_string)).collect();
    assert!(!blank_ids.is_empty(), "the Telco data has blank totalcharges rows");
    let all = customers(5000);
    batch.extend(all.into_iter().filter(|c| blank_ids.iter().any(|id| c["customerid"] == json!(id))).take(10));
    let (status, v) = post(&json!({ "customers": batch }));
    assert_eq!(status, StatusCode::OK, "{v}");
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), batch.len());

    let dir = scratch("api-parity");
    let out = dir.path().join("scored.csv");
    churn_ok(&[
        "score",
        "--model",
        trained_bundle().to_str().unwrap(),
        "--input",
        telco_csv().to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    let scored: std::collections::HashMap<String, f64> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].parse().unwrap())
        })
        .collect();
    let mut max = 0.0f64;
    for (c, p) in batch.iter().zip(preds) {
        assert_eq!(p["customer_id"], c["customerid"]);
        let want = scored[c["customerid"].as_str().unwrap()];
        max = max.max((want - p["churn_probability"].as_f64().unwrap()).abs());
        if c["totalcharges"].is_null() {
            assert!(p["warnings"].to_string().contains("totalcharges") && p["warnings"].to_string().contains("imputed"), "{p}");
        }
    }
    assert!(max <= 1e-6, "API vs churn score: max |diff| {max}");
}

#[test]
fn scored_files_carry_the_apis_reasons_and_offers() {
    // The first 120 Telco customers through `churn score --reasons 3` (parquet out) and through
    // the API (default: three Shapley reasons): the same reasons, values and offers.
    let n = 120;
    let dir = scratch("reasons");
    let input = write(dir.path(), "in.csv", &telco_with(|i, l| (i <= n + 1).then(|| l.to_string())));
    let out = dir.path().join("scored.parquet");
    let printed = churn_ok(&[
        "score",
        "--model",
        trained_bundle().to_str().unwrap(),
        "--input",
        &input,
        "--output",
        out.to_str().unwrap(),
        "--reasons",
        "3",
    ]);
    let table = churn_core::table::Table::read(&out).unwrap();
    assert_eq!(table.rows, n);
    let view = table.view(&["customerid", "risk_tier", "top_reasons", "offer", "offer_action"]).unwrap();
    let mut preds = Vec::new();
    for chunk in customers(n).chunks(40) {
        let (status, v) = post(&json!({ "customers": chunk }));
        assert_eq!(status, StatusCode::OK, "{v}");
        preds.extend(v["predictions"].as_array().unwrap().iter().cloned());
    }
    let bundle = Bundle::load_dir(trained_bundle()).unwrap();
    let (mut contacted, mut offers) = (0, 0);
    for (r, p) in preds.iter().enumerate() {
        let row = view.row(r);
        let text = |c: usize| row.value_text(c);
        assert_eq!((text(0).as_deref(), text(1).as_deref()), (p["customer_id"].as_str(), p["risk_tier"].as_str()), "row {r}");
        let tier = bundle.playbook.tiers.iter().find(|t| p["risk_tier"] == t.name.as_str()).unwrap();
        if !tier.contact {
            assert!(
                text(2).is_none() && text(3).is_none() && text(4).is_none(),
                "row {r}: a customer who is not contacted gets no reasons"
            );
            continue;
        }
        contacted += 1;
        // `feature=value (+0.1234); …`
        let listed: Vec<(String, String, f64)> =
            reasons_of(&text(2).unwrap()).into_iter().map(|(f, v, c)| (f, v, c.parse().unwrap())).collect();
        let api = p["reasons"].as_array().unwrap();
        assert_eq!(listed.len(), api.len(), "row {r}: {listed:?} vs {api:?}");
        for ((f, v, c), want) in listed.iter().zip(api) {
            assert_eq!(Some(f.as_str()), want["feature"].as_str(), "row {r}");
            // A number reads as the file wrote it (`80.0`) and as the API formats the JSON
            // number it got (`80`).
            let want_v = want["value"].as_str().unwrap();
            assert!(same_value(v, want_v), "row {r}: {f}={v} in the file, {want_v} from the API");
            assert!((c - want["contribution"].as_f64().unwrap()).abs() < 6e-5, "row {r}: {c} vs {want}");
        }
        assert_eq!((text(3).as_deref(), text(4).as_deref()), (p["offer"]["name"].as_str(), p["offer"]["action"].as_str()), "row {r}");
        offers += text(3).is_some() as usize;
    }
    assert!(contacted >= 20 && offers >= 10, "{contacted} contacted customers, {offers} offers");
    // The CLI sizes each campaign: customers per offer, as in the file.
    let line =
        printed.lines().find(|l| l.starts_with("offers (contacted customers with reasons): ")).unwrap_or_else(|| panic!("{printed}"));
    let counted: usize =
        line.rsplit(": ").next().unwrap().split(", ").map(|p| p.rsplit(' ').next().unwrap().parse::<usize>().unwrap()).sum();
    assert_eq!(counted, offers, "{line}");
}

/// A new fiber customer on a monthly contract: a likely churner.
fn likely_churner() -> Value {
    let mut c = customers(200).into_iter().find(|c| c["contract"] == "Month-to-month" && c["internetservice"] == "Fiber optic").unwrap();
    c["tenure"] = json!(1);
    c["totalcharges"] = c["monthlycharges"].clone();
    c
}

#[test]
fn reasons_are_the_customers_largest_shapley_values() {
    // Recomputed here with the library's reference (tract) path against the bundle's background
    // sample, with the API's budget and seed: the API (the fast evaluator of the same
    // estimator) must return the top positive values, equal up to float rounding.
    let c = likely_churner();
    let (_, v) = post(&c);
    let p = &v["predictions"][0];
    let bundle = predictor();
    let b = bundle.bundle();
    assert_eq!(bundle.reasons(), churn_api::Reasons::Shapley { permutations: churn_api::Reasons::DEFAULT_PERMUTATIONS });
    let params = churn_core::explain::ShapleyParams { permutations: churn_api::Reasons::DEFAULT_PERMUTATIONS, seed: 0 };
    let record = c.as_object().unwrap();
    let a = churn_core::explain::shapley(&b.spec, &b.scorer, b.background.as_ref().unwrap(), record, params).unwrap();
    assert!((a.prediction - p["churn_probability"].as_f64().unwrap()).abs() < 1e-6);
    let sum: f64 = a.values.iter().sum();
    assert!((sum - (a.prediction - a.base_value)).abs() < 1e-5, "values add up to p - base");
    let mut want: Vec<(String, f64)> =
        b.spec.input_names().zip(&a.values).filter(|(_, v)| **v > 1e-6).map(|(n, v)| (n.to_string(), *v)).collect();
    want.sort_by(|x, y| y.1.total_cmp(&x.1));
    want.truncate(3);
    let got: Vec<(String, f64)> = p["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["feature"].as_str().unwrap().to_string(), r["contribution"].as_f64().unwrap()))
        .collect();
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for ((gf, gv), (wf, wv)) in got.iter().zip(&want) {
        assert_eq!(gf, wf);
        assert!((gv - wv).abs() < 1e-6, "{gf}: {gv} vs {wv}");
    }
    // For this customer the short tenure is the leading reason, and the playbook's offer for a
    // short tenure (the bundled Telco config) answers it.
    assert_eq!(got[0].0, "tenure", "{got:?}");
    assert_eq!(p["offer"]["name"], "onboarding_call", "{p}");
    assert_eq!(p["offer"]["addresses"], "tenure");
    let prob = p["churn_probability"].as_f64().unwrap();
    let o = b.playbook.offers.iter().find(|o| o.name == "onboarding_call").unwrap();
    assert!((p["offer"]["expected_value"].as_f64().unwrap() - o.expected_value(prob, &b.playbook.business)).abs() < 1e-9);
}

#[test]
fn offers_follow_the_reasons_and_skip_customers_not_contacted() {
    // A long-standing customer on a monthly fibre contract: tenure is no reason; the offer
    // answers the largest reason an offer exists for.
    let bundle = predictor();
    let mut seen = std::collections::BTreeMap::new();
    for c in customers(300) {
        let (_, v) = post(&c);
        let p = &v["predictions"][0];
        let tier = bundle.bundle().playbook.tiers.iter().find(|t| t.name == p["risk_tier"]).unwrap();
        if !tier.contact {
            assert!(p.get("offer").is_none(), "a customer who is not contacted gets no offer: {p}");
            continue;
        }
        if let Some(o) = p.get("offer") {
            let field = o["addresses"].as_str().unwrap();
            let offer = bundle.bundle().playbook.offers.iter().find(|x| x.name == o["name"]).unwrap();
            assert_eq!(offer.field, field);
            let value = match &c[field] {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            assert!(offer.applies(&value), "{} does not apply to {field}={value}", offer.name);
            *seen.entry(o["name"].as_str().unwrap().to_string()).or_insert(0) += 1;
        }
    }
    assert!(seen.len() >= 3, "offers picked for the first 300 customers: {seen:?}");
}

#[test]
fn occlusion_reasons_are_exact_what_ifs() {
    // REASONS_METHOD=occlusion: each categorical reason's contribution must be exactly
    // p - p(that field set to its most common category). Every positive reason is asked for,
    // so categorical ones are among them whichever fields rank first.
    let occlusion = Predictor::new(Bundle::load_dir(trained_bundle()).unwrap(), None, 50, 25).with_reasons(churn_api::Reasons::Occlusion);
    let score = |c: &Value| serde_json::to_value(occlusion.predict_body(&serde_json::to_vec(c).unwrap()).unwrap()).unwrap();
    let c = likely_churner();
    let v = score(&c);
    let p = &v["predictions"][0];
    let prob = p["churn_probability"].as_f64().unwrap();
    let reasons = p["reasons"].as_array().unwrap();
    assert!(!reasons.is_empty(), "{p}");
    let model: Value = call("GET", "/model", None, vec![]).1;
    let mut checked = 0;
    for r in reasons {
        let field = r["feature"].as_str().unwrap();
        let spec = model["inputs"].as_array().unwrap().iter().find(|i| i["name"] == field).unwrap();
        let mut typical = c.clone();
        typical[field] = if spec["type"] == "number" {
            // The median is not exposed; the contribution must at least be positive and below p.
            continue;
        } else {
            spec["categories"][0].clone()
        };
        let q = score(&typical)["predictions"][0]["churn_probability"].as_f64().unwrap();
        let c = r["contribution"].as_f64().unwrap();
        assert!((prob - q - c).abs() < 1e-6, "{field}: p {prob} - q {q} != contribution {c}");
        assert!(c > 0.0 && c < prob);
        checked += 1;
    }
    assert!(checked > 0, "no categorical reason to check: {reasons:?}");
}

#[test]
fn without_reasons_the_scores_tiers_and_actions_are_the_same() {
    // REASONS_METHOD=none: the same answer as with Shapley reasons, minus reasons and offers.
    let bundle = || Bundle::load_dir(trained_bundle()).unwrap();
    let plain = Predictor::new(bundle(), None, 50, 3).with_reasons(churn_api::Reasons::None);
    assert_eq!(plain.reasons(), churn_api::Reasons::None);
    let explained = Predictor::new(bundle(), None, 50, 3);
    // Occlusion scores through tract's plan; the other two through the network evaluator
    // (churn_core::network), from the slot values.
    let occluded = Predictor::new(bundle(), None, 50, 3).with_reasons(churn_api::Reasons::Occlusion);
    let body = serde_json::to_vec(&json!({ "customers": customers(40) })).unwrap();
    let a = serde_json::to_value(plain.predict_body(&body).unwrap()).unwrap();
    let b = serde_json::to_value(explained.predict_body(&body).unwrap()).unwrap();
    let t = serde_json::to_value(occluded.predict_body(&body).unwrap()).unwrap();
    let (a, b, t) = (a["predictions"].as_array().unwrap(), b["predictions"].as_array().unwrap(), t["predictions"].as_array().unwrap());
    assert_eq!(a.len(), 40);
    assert!(b.iter().any(|p| !p["reasons"].as_array().unwrap().is_empty()), "the explained run gives reasons");
    for ((p, q), r) in a.iter().zip(b).zip(t) {
        assert_eq!(p["customer_id"], q["customer_id"]);
        let (x, y, z) =
            (p["churn_probability"].as_f64().unwrap(), q["churn_probability"].as_f64().unwrap(), r["churn_probability"].as_f64().unwrap());
        assert!((x - y).abs() <= 1e-6 && (x - z).abs() <= 1e-6, "no reasons {x}, Shapley {y}, tract {z}");
        assert_eq!((&p["risk_tier"], &p["action"]), (&q["risk_tier"], &q["action"]));
        assert_eq!(p["reasons"], json!([]), "{p}");
        assert!(p["offer"].is_null(), "{p}");
    }
}

#[test]
fn unseen_category_is_scored_with_a_warning() {
    let mut c = customers(1).remove(0);
    c["paymentmethod"] = json!("Crypto wallet");
    let (status, v) = post(&c);
    assert_eq!(status, StatusCode::OK, "{v}");
    let w = &v["predictions"][0]["warnings"];
    assert!(w.to_string().contains("paymentmethod") && w.to_string().contains("Crypto wallet"), "{v}");
}

/// A value beyond anything in the training data is scored (it is within the valid range), with
/// a warning naming the field, the value and the training range.
#[test]
fn values_outside_the_training_range_are_scored_with_a_warning() {
    let mut c = customers(1).remove(0);
    c["tenure"] = json!(700);
    let (status, v) = post(&c);
    assert_eq!(status, StatusCode::OK, "{v}");
    let w = v["predictions"][0]["warnings"].as_array().unwrap();
    let tenure = w.iter().find(|w| w["field"] == "tenure").unwrap_or_else(|| panic!("no tenure warning: {v}"));
    let m = tenure["message"].as_str().unwrap();
    assert!(m.contains("700 is outside the training range [0, 72]"), "{m}");
    // A value the training data had: no warning.
    c["tenure"] = json!(72);
    let (_, v) = post(&c);
    assert!(!v["predictions"][0]["warnings"].to_string().contains("tenure"), "{v}");
}

/// The same key twice in one object is refused, naming the key, wherever the object is.
#[test]
fn duplicated_keys_are_refused_naming_the_key() {
    let c = serde_json::to_string(&customers(1)[0]).unwrap();
    let one = format!("{}, \"tenure\": 3}}", &c[..c.len() - 1]);
    for body in [one.clone(), format!("{{\"customers\": [{c}, {one}]}}")] {
        let (s, v) = call("POST", "/predict", Some("application/json"), body.into_bytes());
        assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("duplicate_key")), "{v}");
        assert_eq!(v["problems"][0]["field"], "tenure", "{v}");
        assert!(v["message"].as_str().unwrap().contains("`tenure` appears twice"), "{v}");
    }
    let (s, _) = call("POST", "/predict", Some("application/json"), c.into_bytes());
    assert_eq!(s, StatusCode::OK);
}

#[test]
fn every_problem_is_listed_with_its_field_path() {
    let mut a = customers(2);
    a[0]["tenure"] = json!(-5);
    a[0]["monthlycharges"] = json!("lots");
    a[1].as_object_mut().unwrap().remove("contract");
    a[1]["favourite_colour"] = json!("blue");
    a[1]["churn"] = json!("Yes");
    a[1]["seniorcitizen"] = json!(true);
    a[1]["totalcharges"] = json!("NaN");
    let (status, v) = post(&json!({ "customers": a }));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_request");
    let fields: Vec<&str> = v["problems"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap()).collect();
    for f in [
        "customers[0].tenure",
        "customers[0].monthlycharges",
        "customers[1].contract",
        "customers[1].favourite_colour",
        "customers[1].churn",
        "customers[1].seniorcitizen",
        "customers[1].totalcharges",
    ] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
    assert_eq!(fields.len(), 7, "{v}");
    assert!(v["problems"].to_string().contains("label"), "the label field gets its own hint: {v}");
}

#[test]
fn malformed_requests_get_4xx_json_never_500() {
    let (s, v) = call("POST", "/predict", Some("application/json"), b"{\"customerid\": ".to_vec());
    assert_eq!((s, v["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")), "{v}");
    assert!(v["problems"][0]["problem"].as_str().unwrap().contains("line 1"), "{v}");
    let (s, v) = call("POST", "/predict", Some("text/plain"), b"{}".to_vec());
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type")), "{v}");
    let (s, _) = call("POST", "/predict", None, b"{}".to_vec());
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, v) = post(&json!({ "customers": [] }));
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = post(&json!({ "customers": customers(51) }));
    assert_eq!((s, v["error"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")), "{v}");
    let big = vec![b' '; MAX_BODY + 1];
    let (s, v) = call("POST", "/predict", Some("application/json"), big);
    assert_eq!((s, v["error"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")), "{v}");
    for body in [json!([1, 2]), json!("text"), json!(null), json!({ "customers": {} }), json!({ "customers": [1] })] {
        let (s, v) = post(&body);
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(!v["problems"].as_array().unwrap().is_empty(), "{body}: {v}");
    }
    let (s, v) = call("GET", "/nope", None, vec![]);
    assert_eq!((s, v["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (s, v) = call("GET", "/predict", None, vec![]);
    assert_eq!((s, v["error"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));
}

#[test]
fn health_model_and_openapi() {
    let (s, v) = call("GET", "/health", None, vec![]);
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, m) = call("GET", "/model", None, vec![]);
    assert_eq!(s, StatusCode::OK);
    assert_eq!(m["id_field"], "customerid");
    let inputs = m["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 19, "{m}");
    let tenure = inputs.iter().find(|i| i["name"] == "tenure").unwrap();
    assert_eq!((tenure["type"].as_str(), tenure["min"].as_f64()), (Some("number"), Some(0.0)));
    assert!(m["metrics"]["test"]["roc_auc"].as_f64().unwrap() > 0.8);
    assert_eq!(m["tiers"].as_array().unwrap().len(), 4);
    let (s, doc) = call("GET", "/openapi.json", None, vec![]);
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/predict", "/health", "/model", "/openapi.json"] {
        assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    for schema in ["PredictResponse", "Prediction", "ErrorResponse", "ModelDescription", "ErrorCode"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    // Every error code a client may meet is listed.
    let codes = doc["components"]["schemas"]["ErrorCode"].to_string();
    for code in [
        "invalid_json",
        "duplicate_key",
        "invalid_request",
        "payload_too_large",
        "unsupported_media_type",
        "not_found",
        "method_not_allowed",
        "internal",
    ] {
        assert!(codes.contains(code), "{code} not in {codes}");
    }
}

/// A JSON value the parser should survive: anything at all, biased toward almost-valid customers.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_filter("JSON numbers are finite", |x| x.is_finite()).prop_map(|x| json!(x)),
        any::<i64>().prop_map(|x| json!(x)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("NaN")),
        Just(json!("1e309")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn mutated_customer() -> impl Strategy<Value = Value> {
    let base = customers(20);
    (0..base.len(), prop::collection::vec((0usize..21, arbitrary_json(), any::<bool>()), 0..4)).prop_map(move |(i, edits)| {
        let mut c = base[i].clone();
        let keys: Vec<String> = c.as_object().unwrap().keys().cloned().collect();
        for (k, v, remove) in edits {
            let key = keys.get(k).cloned().unwrap_or_else(|| format!("extra{k}"));
            if remove {
                c.as_object_mut().unwrap().remove(&key);
            } else {
                c[key] = v;
            }
        }
        c
    })
}

proptest! {
    // Bounded so CI time stays predictable; PROPTEST_CASES raises it for a longer hunt.
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_body_gets_a_json_answer_and_never_a_server_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let (s, v) = call("POST", "/predict", Some("application/json"), bytes);
        prop_assert!(s == StatusCode::BAD_REQUEST || s == StatusCode::OK, "{s}: {v}");
    }

    #[test]
    fn any_json_gets_200_or_a_listed_problem(body in prop_oneof![arbitrary_json(), mutated_customer(),
            prop::collection::vec(mutated_customer(), 1..5).prop_map(|c| json!({"customers": c}))]) {
        let (s, v) = post(&body);
        if s == StatusCode::OK {
            for p in v["predictions"].as_array().unwrap() {
                let x = p["churn_probability"].as_f64().unwrap();
                prop_assert!((0.0..=1.0).contains(&x), "{p}");
            }
        } else {
            prop_assert_eq!(s, StatusCode::BAD_REQUEST, "{}", v);
            prop_assert!(!v["problems"].as_array().map(Vec::is_empty).unwrap_or(true), "a 400 lists its problems: {}", v);
        }
    }
}
