//! Benchmarks of the speed targets, printed rather than asserted (timed tests are flaky
//! on shared CI machines):
//!
//! - `train`: wall time of whole training runs on the bundled Telco data (split, fit, calibrate,
//!   export, tract parity check, bundle with report written), repeated `--repeat` times;
//! - `score`: builds a parquet of `--rows` customers by repeating the Telco rows, then times the
//!   exact code path of `churn score` (read parquet → transform → tract → write parquet).
//!
//! Run it in release on one core: `taskset -c 0 cargo run --release -p churn-training --bin churn-bench`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use churn_core::Bundle;
use churn_core::table::{Table, TableReader, TableWriter};
use churn_training::params::TrainConfig;
use churn_training::pipeline::{self, TrainJob};
use churn_training::{BUNDLED_CONFIG, BUNDLED_DATA};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Measure training time and batch scoring throughput")]
struct Args {
    /// Rows in the generated scoring input.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Training runs to time.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Working directory for the bundle and the generated files.
    #[arg(long, default_value = "target/bench")]
    dir: PathBuf,
}

/// Peak resident memory of this process so far (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let bundle_dir = args.dir.join("model");

    let mut times = Vec::new();
    for i in 0..args.repeat.max(1) {
        let config = TrainConfig::load(BUNDLED_CONFIG.as_ref())?;
        let start = Instant::now();
        pipeline::run(TrainJob {
            data: BUNDLED_DATA.into(),
            config,
            out: Some(bundle_dir.clone()),
            force: true,
            on_epoch: Box::new(|_| {}),
        })?;
        times.push(start.elapsed().as_secs_f64());
        println!("train run {}: {:.3} s", i + 1, times[i]);
    }
    times.sort_by(f64::total_cmp);
    println!("train: median {:.3} s over {} runs (4,930 Telco rows, bundle written)", times[times.len() / 2], times.len());

    let telco = Table::read(BUNDLED_DATA.as_ref())?;
    let input = args.dir.join(format!("customers-{}.parquet", args.rows));
    let mut writer = TableWriter::create(&input, telco.batches[0].schema())?;
    let mut written = 0;
    'fill: loop {
        for b in &telco.batches {
            let take = b.num_rows().min(args.rows - written);
            writer.write(&b.slice(0, take))?;
            written += take;
            if written == args.rows {
                break 'fill;
            }
        }
    }
    writer.finish()?;
    let size = std::fs::metadata(&input)?.len() as f64 / 1e6;
    println!("generated {} ({written} rows, {size:.1} MB)", input.display());

    let output = args.dir.join("scored.parquet");
    let start = Instant::now();
    let bundle = Bundle::load_dir(&bundle_dir)?;
    let summary = churn_core::scoring::score_table(&bundle, TableReader::open_for(&input, &bundle.spec)?, &output, 0)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "score: {} rows parquet -> parquet in {:.3} s = {:.0} rows/s ({} failed); peak RSS {:.0} MiB",
        summary.rows,
        secs,
        summary.rows as f64 / secs,
        summary.failed,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}
