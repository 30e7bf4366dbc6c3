//! Benchmark of the batch scorer, end to end against an S3 server (the local one from
//! `infra/local/servers.sh`, or AWS): the same `Scorer::run` the Lambda calls, timed in-process.
//!
//! ```sh
//! cargo build --release -p batch-score --features bench --bin batch-bench
//! source /tmp/srv/env                       # AWS_ENDPOINT_URL_S3 and credentials of the S3 server
//! target/release/batch-bench prepare --rows 1000000 --bucket bench --key incoming/1m.parquet
//! taskset -c 0 target/release/batch-bench score --model DIR --bucket bench --key incoming/1m.parquet
//! ```
//!
//! `prepare` repeats the bundled Telco rows (typed columns, fresh ids) into a parquet object with
//! 128 Ki-row groups. `score` prints rows/s and the process's peak RSS (VmHWM), which covers the
//! whole run: model load, S3 reads, scoring, and the multipart uploads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::DataType;
use batch_score::event::Task;
use batch_score::job::ModelInfo;
use batch_score::{BatchConfig, Scorer};
use churn_core::Bundle;
use churn_core::table::{Encoder, FileFormat, TableReader};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes an N-row parquet object made of the Telco rows, repeated.
    Prepare {
        #[arg(long)]
        rows: usize,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
        /// The Telco CSV to repeat.
        #[arg(long, default_value = "training/data/telco/customers.csv")]
        data: PathBuf,
    },
    /// Scores the object once through `Scorer::run` and prints the figures.
    Score {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
    },
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn client() -> aws_sdk_s3::Client {
    churn_store::Store::new().s3().await.clone()
}

async fn prepare(rows: usize, bucket: &str, key: &str, data: &Path) -> anyhow::Result<()> {
    let reader = TableReader::open(data)?;
    let numeric = ["seniorcitizen", "tenure", "monthlycharges", "totalcharges"];
    let id_col = reader.columns.iter().position(|c| c == "customerid").context("no customerid column")?;
    let mut batches = Vec::new();
    for b in reader {
        let b = b?;
        // Typed columns, as a data warehouse export has them; blanks become nulls.
        let safe = CastOptions { safe: true, ..Default::default() };
        let cols: Vec<ArrayRef> = b
            .schema()
            .fields()
            .iter()
            .zip(b.columns())
            .map(|(f, c)| {
                if numeric.contains(&f.name().as_str()) {
                    cast_with_options(c, &DataType::Float64, &safe).expect("cast")
                } else {
                    c.clone()
                }
            })
            .collect();
        let fields: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .zip(&cols)
            .map(|(f, c)| arrow::datatypes::Field::new(f.name(), c.data_type().clone(), true))
            .collect();
        batches.push(RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), cols)?);
    }
    let schema = batches[0].schema();
    let client = client().await;
    let mut up = batch_score::s3io::Upload::new(&client, bucket, key, "application/vnd.apache.parquet", 16 << 20);
    let mut enc = Encoder::new(FileFormat::Parquet, schema.clone())?;
    let mut written = 0usize;
    let mut round = 0usize;
    'outer: loop {
        for b in &batches {
            let n = b.num_rows().min(rows - written);
            if n == 0 {
                break 'outer;
            }
            let mut b = b.slice(0, n);
            let ids: StringArray = (0..n).map(|i| Some(format!("B{round:05}-{:07}", written + i))).collect();
            let mut cols = b.columns().to_vec();
            cols[id_col] = Arc::new(ids);
            b = RecordBatch::try_new(schema.clone(), cols)?;
            up.write(&enc.encode(&b)?).await?;
            written += n;
        }
        round += 1;
    }
    up.write(&enc.finish(schema)?).await?;
    let bytes = match up.finish(&batch_score::s3io::Precondition::Any).await {
        Ok(bytes) => bytes,
        Err(batch_score::s3io::Finish::Failed(e)) => return Err((*e).into()),
        Err(batch_score::s3io::Finish::Changed(_)) => unreachable!("no condition to fail"),
    };
    println!("prepared s3://{bucket}/{key}: {written} rows, {:.1} MiB", bytes as f64 / (1 << 20) as f64);
    Ok(())
}

async fn score(model: &Path, bucket: &str, key: &str) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let bundle = Bundle::load_dir(model)?;
    let config = BatchConfig::from_env(|k| match k {
        "MODEL_URI" => Some(model.display().to_string()),
        "MAX_ROWS_PER_INVOCATION" => Some("1000000000".into()),
        _ => None,
    })?;
    let scorer = Scorer {
        client: client().await,
        model: ModelInfo {
            name: bundle.manifest.model_name.clone(),
            version: bundle.manifest.short_id(),
            sha256: format!("bench-{}", std::process::id()),
        },
        bundle,
        config,
    };
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let task = Task { bucket: bucket.into(), key: key.into(), row_groups: None };
    let t = Instant::now();
    let s = scorer.run(&task, u64::MAX).await?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(s.status == batch_score::Status::Scored, "not scored: {:?}", s.error);
    println!(
        "rows {} scored {} rejected {} | {:.3} s end to end (S3 read + score + S3 write; read+score {:.3} s) = {:.0} rows/s | model load {:.0} ms | read {:.1} MiB, wrote {:.1} MiB | peak RSS {:.1} MiB",
        s.rows_in,
        s.rows_scored,
        s.rows_rejected,
        secs,
        s.timings.read_and_score_ms / 1e3,
        s.rows_in as f64 / secs,
        load_ms,
        s.timings.bytes_read as f64 / (1 << 20) as f64,
        s.timings.bytes_written as f64 / (1 << 20) as f64,
        peak_rss_mib()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        match cli.cmd {
            Cmd::Prepare { rows, bucket, key, data } => prepare(rows, &bucket, &key, &data).await,
            Cmd::Score { model, bucket, key } => score(&model, &bucket, &key).await,
        }
    })
}
