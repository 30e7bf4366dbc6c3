//! Benchmarks of the prediction function, printed (not asserted):
//!
//! - `warm`: in-process handler time (`Predictor::predict_body`) for one customer and for a
//!   batch of 100, median and p99 over many calls, with each reason method (Shapley values,
//!   the default, occlusion, and none);
//! - `init`: the steps of start-up in process, on a bundle directory (a package): reading and
//!   verifying, parsing, tract's plan, the Shapley evaluator, the predictor, the first answer;
//!   and what an unoptimised tract plan would save at start-up and cost per request;
//! - `cold`: exec of a function binary to its first successful answer through the Lambda runtime
//!   API of `cargo lambda watch --only-lambda-apis` (which must be on PATH), repeated; also the
//!   binary's peak RSS and, for `predict`, the medians of the steps its start-up log lines name.
//!   Run it for `predict` and for the hello-world baseline built with the same profile, and
//!   compare.
//!
//! ```sh
//! cargo build --release -p predict --features bench --bin predict-bench --bin predict --example hello
//! target/release/predict-bench warm --model out/model
//! target/release/predict-bench init --model out/package
//! target/release/predict-bench cold --binary target/release/predict --model s3://bucket/models/churn-mlp/<id>
//! target/release/predict-bench cold --binary target/release/examples/hello
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use churn_api::{Predictor, Reasons};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// In-process handler time.
    Warm {
        /// A bundle directory.
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 20000)]
        iterations: usize,
        /// Only this reason method (for `perf record`); every one when absent.
        #[arg(long, value_parser = ["shapley", "occlusion", "none"])]
        reasons: Option<String>,
    },
    /// The steps of start-up, in process.
    Init {
        /// A bundle directory.
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 200)]
        repeat: usize,
    },
    /// Exec to first answer through the runtime API emulator.
    Cold {
        #[arg(long)]
        binary: PathBuf,
        /// MODEL_URI for the function (ignored by the hello-world baseline).
        #[arg(long, default_value = "")]
        model: String,
        #[arg(long, default_value_t = 20)]
        repeat: usize,
    },
}

const EVENT: &str = include_str!("../../../../events/apigw-http-predict.json");

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Warm { model, iterations, reasons } => warm(&model, iterations, reasons.as_deref()),
        Cmd::Init { model, repeat } => init(&model, repeat),
        Cmd::Cold { binary, model, repeat } => cold(&binary, &model, repeat),
    }
}

fn init(model: &Path, repeat: usize) -> anyhow::Result<()> {
    let event: serde_json::Value = serde_json::from_str(EVENT)?;
    let body = event["body"].as_str().context("event body")?.as_bytes().to_vec();
    let mut steps: Vec<(&str, Vec<f64>)> =
        ["verify", "parse", "plan", "explainer", "predictor", "first answer", "total"].iter().map(|s| (*s, Vec::new())).collect();
    for _ in 0..repeat {
        let start = Instant::now();
        let bundle = churn_core::Bundle::load_dir(model)?;
        let t = bundle.timings;
        let loaded = Instant::now();
        let p = Predictor::new(bundle, None, 1000, 3);
        let built = Instant::now();
        std::hint::black_box(p.predict_body(&body).map_err(|e| anyhow::anyhow!("{:?}", e.body))?);
        let answered = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        for (i, v) in [t.verify_ms, t.parse_ms, t.plan_ms, t.explainer_ms, ms(loaded, built), ms(built, answered), ms(start, answered)]
            .into_iter()
            .enumerate()
        {
            steps[i].1.push(v);
        }
    }
    for (name, mut v) in steps {
        println!("init {name:<13} median {:7.3} ms  p90 {:7.3} ms", percentile(&mut v, 0.5), percentile(&mut v, 0.9));
    }
    // tract's plan with and without its optimisation pass: the start-up saved against the
    // time per one-customer prediction lost.
    use tract_onnx::prelude::*;
    let bytes = std::fs::read(model.join(churn_core::bundle::MODEL))?;
    let width = churn_core::Bundle::load_dir(model)?.spec.width();
    let input: Tensor = tract_ndarray::Array2::<f32>::zeros((1, width)).into();
    // Where the optimised plan's time goes.
    let mut split: [Vec<f64>; 4] = Default::default();
    for _ in 0..repeat {
        let t = Instant::now();
        let m = tract_onnx::onnx().model_for_read(&mut std::io::Cursor::new(&bytes))?;
        let t1 = Instant::now();
        let typed = m.into_typed()?;
        let t2 = Instant::now();
        let opt = typed.into_optimized()?;
        let t3 = Instant::now();
        std::hint::black_box(opt.into_runnable()?);
        let t4 = Instant::now();
        for (v, (a, b)) in split.iter_mut().zip([(t, t1), (t1, t2), (t2, t3), (t3, t4)]) {
            v.push((b - a).as_secs_f64() * 1e3);
        }
    }
    let [mut read, mut typed, mut optimised, mut runnable] = split;
    println!(
        "tract plan steps: read ONNX {:.3} ms, typed {:.3} ms, optimised {:.3} ms, runnable {:.3} ms (medians)",
        percentile(&mut read, 0.5),
        percentile(&mut typed, 0.5),
        percentile(&mut optimised, 0.5),
        percentile(&mut runnable, 0.5)
    );
    let rows = 4096;
    let values: Vec<f32> = (0..rows * width).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let batch: Tensor = tract_ndarray::Array2::from_shape_vec((rows, width), values)?.into();
    let mut reference: Option<Vec<f32>> = None;
    for (label, how) in [("optimised", 0), ("codegen only", 1), ("decluttered", 2)] {
        let mut build = Vec::new();
        let mut run = Vec::new();
        let mut plan = None;
        for _ in 0..repeat {
            let t = Instant::now();
            let m = tract_onnx::onnx().model_for_read(&mut std::io::Cursor::new(&bytes))?;
            let typed = match how {
                0 => m.into_optimized()?,
                1 => {
                    let mut typed = m.into_typed()?;
                    typed.optimize()?;
                    typed
                }
                _ => m.into_typed()?.into_decluttered()?,
            };
            plan = Some(typed.into_runnable()?);
            build.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let plan = plan.context("repeat must be at least 1")?;
        for _ in 0..repeat * 50 {
            let t = Instant::now();
            std::hint::black_box(plan.run(tvec!(input.clone().into_tvalue()))?);
            run.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let mut batch_run = Vec::new();
        let mut out = Vec::new();
        for _ in 0..repeat.min(50) {
            let t = Instant::now();
            out = plan.run(tvec!(batch.clone().into_tvalue()))?[0].to_plain_array_view::<f32>()?.iter().copied().collect::<Vec<f32>>();
            batch_run.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let reference = reference.get_or_insert_with(|| out.clone());
        let diff = reference.iter().zip(&out).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        println!(
            "tract {label:<12} plan median {:7.3} ms; one row median {:6.2} µs; 4096 rows median {:8.1} µs (max |p - optimised p| {diff:.1e})",
            percentile(&mut build, 0.5),
            percentile(&mut run, 0.5),
            percentile(&mut batch_run, 0.5)
        );
    }
    Ok(())
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn warm(model: &Path, iterations: usize, only: Option<&str>) -> anyhow::Result<()> {
    let methods = [
        ("shapley", Reasons::Shapley { permutations: Reasons::DEFAULT_PERMUTATIONS }),
        ("occlusion", Reasons::Occlusion),
        ("none", Reasons::None),
    ];
    for (_, reasons) in methods.into_iter().filter(|(name, _)| only.is_none_or(|o| o == *name)) {
        let p = Predictor::new(churn_core::Bundle::load_dir(model)?, None, 1000, 3).with_reasons(reasons);
        anyhow::ensure!(p.reasons() == reasons, "{} has no background sample for Shapley reasons", model.display());
        warm_with(&p, &format!("{reasons:?}"), iterations)?;
    }
    Ok(())
}

fn warm_with(p: &Predictor, label: &str, iterations: usize) -> anyhow::Result<()> {
    let event: serde_json::Value = serde_json::from_str(EVENT)?;
    let one = event["body"].as_str().context("event body")?.as_bytes().to_vec();
    let customer: serde_json::Value = serde_json::from_slice(&one)?;
    let batch = serde_json::to_vec(&serde_json::json!({ "customers": vec![customer; 100] }))?;
    for (name, body, n) in [("1 customer", &one, iterations), ("100 customers", &batch, iterations / 50)] {
        for _ in 0..n / 10 {
            p.predict_body(body).map_err(|e| anyhow::anyhow!("{:?}", e.body))?;
        }
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let r = p.predict_body(body).map_err(|e| anyhow::anyhow!("{:?}", e.body))?;
            times.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(r);
        }
        let median = percentile(&mut times, 0.5);
        let p99 = percentile(&mut times, 0.99);
        println!("warm {name:<14} median {median:8.1} µs  p99 {p99:8.1} µs  ({n} calls, reasons: {label})");
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Posts an invocation to the emulator and waits for the function's answer.
fn invoke(port: u16) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "POST /2015-03-31/functions/_/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{EVENT}",
        EVENT.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// A child ended when dropped, on every way out of [`cold`] (errors included): the emulator with
/// its whole process group and its scratch project, a function by itself.
struct Running {
    child: std::process::Child,
    group: bool,
    scratch: Option<PathBuf>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.group {
            // The explicit form: procps-ng 4.0's kill misreads `kill -TERM -PGID` (see tests/support/lambda.rs).
            let _ = Command::new("kill").args(["-s", "TERM", "--", &format!("-{}", self.child.id())]).status();
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn cold(binary: &Path, model: &str, repeat: usize) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let scratch = std::env::temp_dir().join(format!("predict-bench-{}", std::process::id()));
    std::fs::create_dir_all(scratch.join("src"))?;
    std::fs::write(scratch.join("Cargo.toml"), "[package]\nname = \"bench\"\nversion = \"0.1.0\"\nedition = \"2021\"\n")?;
    std::fs::write(scratch.join("src/main.rs"), "fn main() {}\n")?;
    let port = free_port()?;
    let emu = Command::new("cargo")
        .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
        .current_dir(&scratch)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting cargo lambda watch (pip install cargo-lambda)")?;
    let _emu = Running { child: emu, group: true, scratch: Some(scratch.clone()) };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the emulator did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut times = Vec::new();
    let mut rss = Vec::new();
    // The timings the function's own start-up log lines name, when it writes them.
    let mut steps: Vec<(&str, Vec<f64>)> =
        ["init_ms", "fetch_ms", "verify_ms", "parse_ms", "plan_ms", "explainer_ms"].iter().map(|s| (*s, Vec::new())).collect();
    for _ in 0..repeat {
        let t = Instant::now();
        let f = Command::new(binary)
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
            .env("MODEL_URI", model)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut f = Running { child: f, group: false, scratch: None };
        // The invocation waits in the emulator until the function asks for it: the time to the
        // answer is exec + init + first request.
        let resp = invoke(port).with_context(|| {
            format!(
                "no answer from {}: it most likely failed at start-up (run it with MODEL_URI={model} to see its error)",
                binary.display()
            )
        })?;
        let elapsed = t.elapsed().as_secs_f64() * 1e3;
        if !resp.contains("\\\"statusCode\\\"") && !resp.contains("\"statusCode\":200") && !resp.contains("200") {
            bail!("unexpected answer: {resp}");
        }
        rss.push(peak_rss_kib(f.child.id()).unwrap_or(0) as f64 / 1024.0);
        let stderr = f.child.stderr.take();
        drop(f);
        times.push(elapsed);
        if let Some(fields) = stderr.and_then(start_up_fields) {
            for (name, v) in &mut steps {
                if let Some(ms) = fields.get(*name).and_then(serde_json::Value::as_f64) {
                    v.push(ms);
                }
            }
        }
    }
    drop(_emu);
    let median = percentile(&mut times, 0.5);
    let max_rss = rss.iter().copied().fold(0.0, f64::max);
    println!(
        "cold {}: exec -> first answer median {median:.2} ms, p90 {:.2} ms over {repeat} starts; peak RSS {max_rss:.1} MiB",
        binary.display(),
        percentile(&mut times, 0.9)
    );
    if steps[0].1.len() == repeat {
        let medians: Vec<String> =
            steps.iter_mut().filter(|(_, v)| !v.is_empty()).map(|(name, v)| format!("{name} {:.2}", percentile(v, 0.5))).collect();
        println!("  start-up log, medians (ms): {}", medians.join(", "));
    }
    Ok(())
}

/// The fields of the JSON log lines a function writes while it starts (`package fetched` or
/// `bundle fetched`, then `model loaded`), read from its ended stderr.
fn start_up_fields(stderr: std::process::ChildStderr) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut text = String::new();
    std::io::BufReader::new(stderr).read_to_string(&mut text).ok()?;
    let fields: serde_json::Map<String, serde_json::Value> =
        text.lines().filter_map(|l| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(l).ok()).flatten().collect();
    fields.contains_key("init_ms").then_some(fields)
}
