//! Shared helpers of the end-to-end tests: where the project and its binaries are, running the
//! `churn` CLI, the Python interpreter that carries onnxruntime, and one trained bundle per test
//! binary (training takes seconds; every test that needs a model reuses it).

pub mod lambda;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

pub fn telco_csv() -> PathBuf {
    root().join("training/data/telco/customers.csv")
}

pub fn telco_config() -> PathBuf {
    root().join("training/configs/telco.toml")
}

/// Directory of the workspace's binaries in the profile these tests were built with.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

/// Path of a workspace binary, brought up to date once per test process: `cargo test` does not
/// rebuild binaries, and a stale `churn` would test old code. The whole workspace is built (not
/// `-p`): a per-package build unifies features differently and rebuilds candle and tract.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--quiet", "--workspace", "--bins"]).current_dir(root());
        without_test_cargo_env(&mut cargo);
        let status = cargo.status().expect("cargo build");
        assert!(status.success(), "building the workspace binaries failed");
    });
    bin_dir().join(name)
}

/// Removes the variables `cargo test` gives this process (the package's CARGO_MANIFEST_DIR,
/// CARGO_PKG_* and friends) from a command that runs cargo: ring's build script tracks
/// CARGO_MANIFEST_DIR, so inheriting them would make that build (and the next plain one)
/// recompile the TLS stack for minutes.
pub fn without_test_cargo_env(c: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_MANIFEST_")
            || k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_")
            || matches!(&*k, "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "CARGO_RUSTC_CURRENT_DIR")
        {
            c.env_remove(&key);
        }
    }
}

/// Runs `churn` with `args`; returns the output (status not checked).
pub fn churn(args: &[&str]) -> Output {
    Command::new(binary("churn")).args(args).current_dir(root()).output().expect("run churn")
}

pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Runs `churn` and asserts success; returns stdout.
pub fn churn_ok(args: &[&str]) -> String {
    let o = churn(args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "churn {args:?} failed\nstdout:\n{out}\nstderr:\n{err}");
    out
}

/// Runs `churn`, asserts failure without a panic, and returns stderr.
pub fn churn_err(args: &[&str]) -> String {
    let o = churn(args);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "churn {args:?} should fail\nstdout:\n{out}");
    assert!(!err.contains("panicked"), "churn {args:?} panicked:\n{err}");
    err
}

/// The Python with onnxruntime, onnx and friends (tests/run.sh sets CHURN_PYTHON).
pub fn python() -> PathBuf {
    std::env::var_os("CHURN_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("python3"))
}

/// A scratch directory outside the project (a `cargo lambda watch` in another test rebuilds on
/// every change inside the project folder).
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("churn-{name}-")).tempdir().expect("temp dir")
}

/// One model bundle trained on the bundled Telco data (seed 7), shared by the tests of a binary.
pub fn trained_bundle() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("bundle");
        let out = dir.path().join("model");
        churn_ok(&["train", "--seed", "7", "--out", out.to_str().unwrap()]);
        dir
    })
    .path()
    .join("model")
    .leak()
}

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write fixture");
    p.to_string_lossy().into_owned()
}

/// The bundled Telco CSV with `edit(line_no, line)` applied to each line (line 1 is the header).
pub fn telco_with(edit: impl Fn(usize, &str) -> Option<String>) -> String {
    let text = std::fs::read_to_string(telco_csv()).expect("telco csv");
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        if let Some(l) = edit(i + 1, line) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// Runs `churn` in `dir` with extra environment variables; returns the output.
pub fn churn_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(binary("churn"));
    c.args(args).current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run churn")
}

/// MLflow and S3 as `tests/run.sh` sets them up (local servers by default, or remote ones with
/// CHURN_REMOTE=1): the tests that need them fail with this message instead of passing
/// vacuously when run without them.
pub fn require_servers() {
    if std::env::var_os("MLFLOW_TRACKING_URI").is_none() {
        panic!("MLFLOW_TRACKING_URI is not set: this test talks to MLflow and S3; run it through `bash tests/run.sh`");
    }
}

/// A bucket for one test: `CHURN_TEST_BUCKET` when set (real AWS, where creating buckets per
/// test is unwelcome), otherwise a new uniquely named bucket on the S3 server.
pub fn test_bucket(prefix: &str) -> String {
    if let Ok(b) = std::env::var("CHURN_TEST_BUCKET") {
        return b;
    }
    let bucket = unique(prefix).to_lowercase();
    aws_mlflow(&["create-bucket", &bucket]);
    bucket
}

/// Runs `tests/support/aws_mlflow.py` with the test Python; returns stdout, panics on failure.
pub fn aws_mlflow(args: &[&str]) -> String {
    let o = Command::new(python()).arg(root().join("tests/support/aws_mlflow.py")).args(args).output().expect("run python");
    let (out, err) = text(&o);
    assert!(o.status.success(), "aws_mlflow.py {args:?} failed:\n{err}");
    out
}

/// A name unique to this test process (bucket and model names on shared servers).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A copy of [`trained_bundle`]'s files in `to` (created), except those named in `except`, for
/// a test to tamper with.
pub fn bundle_copy(to: &Path, except: &[&str]) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(trained_bundle()).unwrap().flatten() {
        if !except.iter().any(|e| f.file_name() == *e) {
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
    to.to_path_buf()
}

/// A copy of the trained bundle in `dir/old` as bundles were before explanations: no
/// `background.json`, and a manifest that does not list it.
pub fn bundle_without_background(dir: &Path) -> PathBuf {
    let old = bundle_copy(&dir.join("old"), &["background.json"]);
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(old.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["files"].as_object_mut().unwrap().remove("background.json").is_some(), "the trained bundle has a background sample");
    std::fs::write(old.join("manifest.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    old
}

/// The Telco table with three more columns: `state` (51 values), `ticket` (unique per row) and
/// `note` (free text: most values unique), as a new user's export might have them.
pub fn telco_with_wide_text() -> String {
    const STATES: [&str; 51] = [
        "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "ME", "MD", "MA",
        "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX",
        "UT", "VT", "VA", "WA", "WV", "WI", "WY",
    ];
    telco_with(|i, l| {
        let (head, label) = l.rsplit_once(',').expect("a label column");
        Some(if i == 1 {
            format!("{head},state,ticket,note,{label}")
        } else {
            let note = if i % 3 == 0 { "called about the bill".to_string() } else { format!("asked about offer {}", i * 7919 % 100_003) };
            format!("{head},{},T{:06},{note},{label}", STATES[(i * 31) % 51], i * 13)
        })
    })
}

/// Whether two renderings of a value are the same value: equal text, or equal numbers (a CSV
/// keeps `80.0` as written; a typed column or a JSON number is formatted as `80`).
pub fn same_value(a: &str, b: &str) -> bool {
    a == b || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
}

/// The reasons of a `top_reasons` text (`feature=value (+0.1234); …`) as (feature, value,
/// contribution) texts.
pub fn reasons_of(text: &str) -> Vec<(String, String, String)> {
    text.split("; ")
        .map(|s| {
            let (fv, c) = s.rsplit_once(" (").unwrap_or_else(|| panic!("{s:?} is not `feature=value (contribution)`"));
            let (f, v) = fv.split_once('=').unwrap_or_else(|| panic!("{s:?} is not `feature=value (contribution)`"));
            (f.to_string(), v.to_string(), c.trim_end_matches(')').to_string())
        })
        .collect()
}

/// Whether two `top_reasons` texts list the same reasons: the same features and contributions
/// in the same order, and the same values by [`same_value`].
pub fn same_reasons(a: &str, b: &str) -> bool {
    let (a, b) = (reasons_of(a), reasons_of(b));
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.0 == y.0 && x.2 == y.2 && same_value(&x.1, &y.1))
}
