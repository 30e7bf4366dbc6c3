//! Running the real function binaries as Lambda runs them: `cargo lambda watch --only-lambda-apis`
//! emulates the Lambda runtime API (so the binary under test is the one cargo built, not a
//! rebuild), the function process is started with the environment Lambda gives it, and events
//! are sent with `cargo lambda invoke`.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{binary, churn_in, require_servers, root, scratch, test_bucket, text, trained_bundle};

/// A process started by a test, stopped (its whole process group) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // `kill -s TERM -- -PGID`: procps-ng 4.0's kill reads `kill -TERM -18897` as
        // `kill(-1, SIGTERM)` (every process); the explicit form is parsed correctly.
        let _ = Command::new("kill").args(["-s", "TERM", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(mut c: Command) -> Proc {
    use std::os::unix::process::CommandExt;
    c.process_group(0);
    Proc(c.spawn().expect("spawn"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(60), "{what} did not listen on {port} within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The trained bundle, uploaded once per test process to the local S3 server; its s3:// address.
pub fn model_on_s3() -> &'static str {
    static URI: OnceLock<String> = OnceLock::new();
    URI.get_or_init(|| {
        require_servers();
        let bucket = test_bucket("churn-models");
        let dir = scratch("lambda-upload");
        let out = churn_in(
            dir.path(),
            &[],
            &["upload", "--bundle", trained_bundle().to_str().unwrap(), "--out", &format!("s3://{bucket}/models")],
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        stdout.split_whitespace().find(|w| w.starts_with("s3://")).expect("uploaded address").to_string()
    })
}

/// `cargo lambda watch --only-lambda-apis`, run from an empty scratch project so its file
/// watcher never sees (and rebuilds) this workspace.
pub struct Emulator {
    pub port: u16,
    _watch: Proc,
    _dir: tempfile::TempDir,
}

pub fn emulator() -> Emulator {
    let dir = scratch("lambda-watch");
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"emulated\"\nversion = \"0.1.0\"\nedition = \"2021\"\n").unwrap();
    std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
    let port = free_port();
    let mut c = Command::new("cargo");
    c.args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let watch = spawn(c);
    wait_for_port(port, "cargo lambda watch");
    Emulator { port, _watch: watch, _dir: dir }
}

/// The environment Lambda gives a function, pointed at the emulator.
pub fn lambda_env(c: &mut Command, port: u16, function: &str) {
    c.env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function}"));
}

/// Starts the workspace binary `name` inside the emulator with `env`; the lines of its stderr
/// (JSON logs) and stdout (EMF metric lines), both of which Lambda sends to CloudWatch, arrive
/// on the returned channel.
pub fn start_function(name: &str, port: u16, env: &[(&str, &str)]) -> (Proc, Receiver<String>) {
    let mut c = Command::new(binary(name));
    lambda_env(&mut c, port, name);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut p = spawn(c);
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr: Box<dyn std::io::Read + Send> = Box::new(p.0.stderr.take().unwrap());
    let stdout: Box<dyn std::io::Read + Send> = Box::new(p.0.stdout.take().unwrap());
    for stream in [stderr, stdout] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (p, rx)
}

/// `cargo lambda invoke` with an event file; returns the function's answer (status not checked)
/// as (succeeded, stdout, stderr).
pub fn try_invoke(port: u16, event: &Path) -> (bool, String, String) {
    let o = Command::new("cargo")
        .args(["lambda", "invoke", "_", "-A", "127.0.0.1", "-P", &port.to_string(), "-F"])
        .arg(event)
        .args(["-o", "json"])
        .output()
        .expect("cargo lambda invoke");
    let (out, err) = text(&o);
    (o.status.success(), out, err)
}

/// `cargo lambda invoke` with an event file; returns the function's response document.
pub fn invoke(port: u16, event: &Path) -> Value {
    let (ok, out, err) = try_invoke(port, event);
    assert!(ok, "invoke {}: {err}", event.display());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("invoke output is not JSON ({e}): {out}"))
}

/// A sample event from `events/`.
pub fn event(name: &str) -> PathBuf {
    root().join("events").join(name)
}

/// One HTTP/1.1 request to a local server (the functions' HTTP mode): its status and JSON body.
pub fn http_json(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("not HTTP: {resp}"));
    let json = resp.split("\r\n\r\n").nth(1).unwrap_or_else(|| panic!("no body: {resp}"));
    (status, serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {resp}")))
}
