//! The `churn` command line: its flags (clap), and one function per subcommand
//! (`commands`) that calls the training and serving libraries and prints what a person needs.
//! The binary (`src/main.rs`) only sets up the process and calls [`run`].

use std::path::PathBuf;

use churn_store::{Mlflow, Store};
use clap::{Parser, Subcommand};

use crate::params::ModelKind;

mod commands;

#[derive(Parser)]
#[command(name = "churn", version, about = "Train, evaluate and score customer churn models")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// MLflow tracking server; when set, training runs are logged there.
    #[arg(long, global = true, env = "MLFLOW_TRACKING_URI")]
    mlflow_uri: Option<String>,
    /// MLflow experiment that receives the runs.
    #[arg(long, global = true, env = "MLFLOW_EXPERIMENT_NAME", default_value = "churn")]
    experiment: String,
}

#[derive(clap::Args, Clone)]
struct DataArgs {
    /// Customer table (CSV or parquet). Default: the bundled Telco customers with the Telco config.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Training configuration (TOML: [dataset], [model], [playbook]).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Target column (overrides the config).
    #[arg(long)]
    target: Option<String>,
    /// Label value meaning "churned" (overrides the config).
    #[arg(long)]
    positive: Option<String>,
    /// Model kind (overrides the config).
    #[arg(long, value_enum)]
    model: Option<ModelKind>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model and write its bundle.
    Train(TrainArgs),
    /// Score a table: one output row per input row (id, churn_probability, risk_tier, ...).
    Score(ScoreArgs),
    /// Evaluate a bundle on labelled data, and check for concept drift: a figure worse than
    /// the bundle's own test figure by more than sampling noise allows (3 standard deviations
    /// of the difference, from bootstrap spreads) plus --margin is flagged.
    Evaluate(EvaluateArgs),
    /// Data drift of a table against the bundle's training reference: population stability
    /// index per feature, flagged above --threshold.
    Drift(DriftArgs),
    /// Explain customers' scores: Shapley values over the raw fields (and the API's occlusion
    /// reasons beside them, with how well the two agree).
    Explain(ExplainArgs),
    /// Upload a local bundle to s3://bucket/prefix (after a training run could not reach S3).
    Upload(UploadArgs),
    /// Log an existing bundle as an MLflow run and register it (after a training run could not reach MLflow).
    Register(RegisterArgs),
    /// Fetch, verify and lay out a bundle for deployment (a Lambda layer's content, and
    /// optionally one archive object), with a record of which registry version it is.
    Package(PackageArgs),
    /// Point the `champion` alias at a version if it beats the current champion on the same data.
    Promote(PromoteArgs),
    /// Write a bundle's raw-row model: one ONNX file whose inputs are the customer columns (one
    /// per field, numbers as double, categories as string), with the feature transform in front
    /// of the network, for onnxruntime or any other ONNX runtime (the file MLflow serves).
    Export(ExportArgs),
    /// k-fold cross-validation of training recipes over one or more tables: quality (ROC AUC,
    /// PR AUC, Brier, ECE against its floor), training time and serving cost per recipe.
    /// Writes benchmark.json (every fold, and the fold of every row) and benchmark.html.
    Benchmark(BenchmarkArgs),
    /// Train the MLP and the logistic baseline on several seeds and compare test figures.
    Compare(CompareArgs),
}

#[derive(clap::Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Where the bundle goes: a directory, or s3://bucket/prefix (uploaded under
    /// <prefix>/<model-name>/<bundle-id>/, with a local copy under out/bundles/).
    #[arg(long, default_value = "out/model")]
    out: String,
    /// Register the run as a new version of this MLflow registered model (alias `challenger`).
    #[arg(long)]
    register: Option<String>,
    /// Seed for the split, initialisation and dropout (overrides the config).
    #[arg(long)]
    seed: Option<u64>,
    /// Replace an existing bundle at --out.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct ScoreArgs {
    /// Bundle: a directory, s3://bucket/prefix/…, a package archive (….tar), or models:/<name>@<alias>.
    #[arg(long)]
    model: String,
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
    /// Also write, for customers in tiers the playbook contacts, this many top reasons
    /// (Shapley values, as the API gives them) and the personalised offer: columns
    /// top_reasons, offer, offer_action. About 45 µs per contacted customer; 0 = none.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=50))]
    reasons: u16,
}

#[derive(clap::Args)]
struct ExportArgs {
    /// Bundle directory (checked as the functions check it: every file's SHA-256).
    #[arg(long)]
    model: PathBuf,
    /// The ONNX file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct EvaluateArgs {
    /// Bundle: a directory, s3://bucket/prefix/…, a package archive (….tar), or models:/<name>@<alias>.
    #[arg(long)]
    model: String,
    #[arg(long)]
    data: PathBuf,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Extra worsening of ROC AUC, PR AUC, Brier or ECE (absolute) tolerated beyond noise.
    #[arg(long, default_value_t = crate::monitor::DEFAULT_MARGIN)]
    margin: f64,
    /// Exit with an error when concept drift is flagged (for scheduled checks).
    #[arg(long)]
    fail_on_drift: bool,
}

#[derive(clap::Args)]
struct DriftArgs {
    /// Bundle: a directory, s3://bucket/prefix/…, a package archive (….tar), or models:/<name>@<alias>.
    #[arg(long)]
    model: String,
    /// Customer table (CSV or parquet; labels not needed).
    #[arg(long)]
    data: PathBuf,
    /// PSI above which a feature is flagged (0.1 = watch, 0.2 = significant shift).
    #[arg(long, default_value_t = churn_core::drift::DEFAULT_PSI_THRESHOLD)]
    threshold: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Exit with an error when a feature drifted (for scheduled checks).
    #[arg(long)]
    fail_on_drift: bool,
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// Bundle: a directory, s3://bucket/prefix/…, a package archive (….tar), or models:/<name>@<alias>.
    #[arg(long)]
    model: String,
    /// Customer table (CSV or parquet).
    #[arg(long)]
    data: PathBuf,
    /// Data rows to explain, 1-based, e.g. `1-20` or `3,7,12`. Default: the first 10.
    #[arg(long, default_value = "1-10")]
    rows: String,
    /// Permutations of the fields per customer (each walked against every background customer).
    #[arg(long, default_value_t = 10)]
    permutations: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Reasons printed per customer.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Also write every value as JSON here (customer ids as keyed pseudonyms).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args)]
struct UploadArgs {
    /// The local bundle directory.
    #[arg(long)]
    bundle: PathBuf,
    /// s3://bucket/prefix; the bundle goes under <prefix>/<model-name>/<bundle-id>/.
    #[arg(long)]
    out: String,
}

#[derive(clap::Args)]
struct PackageArgs {
    /// The model: models:/<name>@<alias>, models:/<name>/<version>, s3://bucket/prefix/… (a
    /// bundle, or a package archive ending in .tar), or a bundle directory.
    #[arg(long)]
    model: String,
    /// Directory the package is written to (the layer's `model/` directory; the functions read
    /// it with MODEL_URI=/opt/model).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the package as one tar archive here: a local path or s3://bucket/key.tar
    /// (MODEL_URI=s3://bucket/key.tar loads it with one GET).
    #[arg(long)]
    archive: Option<String>,
    /// Replace an existing --out directory.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct RegisterArgs {
    /// The bundle: a directory or s3://… prefix holding manifest.json.
    #[arg(long)]
    bundle: String,
    /// Registered model name.
    #[arg(long)]
    name: String,
}

#[derive(clap::Args)]
struct PromoteArgs {
    #[arg(long)]
    name: String,
    #[arg(long)]
    version: String,
    /// Labelled data both models are evaluated on. Default: the bundled Telco customers.
    #[arg(long)]
    data: Option<PathBuf>,
    /// ROC AUC the candidate must gain over the champion.
    #[arg(long, default_value_t = 0.0)]
    margin: f64,
    /// Promote even if the candidate does not beat the champion (recorded as a version tag).
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct BenchmarkArgs {
    /// A table as PATH:TARGET[:POSITIVE]; repeat for several. Default: the bundled telco,
    /// hr_turnover and saas tables.
    #[arg(long = "table")]
    tables: Vec<crate::benchmark::BenchTable>,
    /// A recipe: `default`, `logistic`, or NAME=BASE:KEY=VALUE;… (e.g.
    /// `wide=default:model.hidden=[64];dataset.numeric_bins=16`); repeat for several.
    /// Default: default and logistic.
    #[arg(long = "recipe")]
    recipes: Vec<String>,
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Seed of the fold assignment (each fold also trains from seed + fold).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep rows whose model inputs are equal (copies of one record) in one fold, so that no
    /// test row has a twin among the training rows.
    #[arg(long)]
    group_duplicates: bool,
    /// Directory for benchmark.json and benchmark.html.
    #[arg(long, default_value = "out/benchmark")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct CompareArgs {
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Also write every run's figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What every subcommand may need, built once.
struct Ctx {
    rt: tokio::runtime::Runtime,
    mlflow: Option<Mlflow>,
    store: Store,
    experiment: String,
}

/// Runs one command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    use anyhow::Context;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let mlflow = cli.mlflow_uri.as_deref().filter(|u| !u.is_empty()).map(Mlflow::new).transpose()?;
    let ctx = Ctx { rt, mlflow, store: Store::new(), experiment: cli.experiment };
    match cli.command {
        Command::Train(a) => commands::train(&ctx, a),
        Command::Score(a) => commands::score(&ctx, a),
        Command::Evaluate(a) => commands::evaluate(&ctx, a),
        Command::Drift(a) => commands::drift(&ctx, a),
        Command::Explain(a) => commands::explain(&ctx, a),
        Command::Upload(a) => commands::upload(&ctx, a),
        Command::Register(a) => commands::register(&ctx, a),
        Command::Package(a) => commands::package(&ctx, a),
        Command::Export(a) => commands::export(a),
        Command::Promote(a) => commands::promote(&ctx, a),
        Command::Benchmark(a) => commands::benchmark(a),
        Command::Compare(a) => commands::compare(a),
    }
}
