//! `churn`: train, score, evaluate and compare churn models. A thin layer over the
//! `churn_training` and `churn_core` libraries: it parses flags, calls them, and prints.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use churn_core::metrics::Evaluation;
use churn_store::{Location, Mlflow, Store};
use churn_training::params::{ModelKind, TrainConfig};
use churn_training::pipeline::{self, TrainJob};
use churn_training::{BUNDLED_CONFIG, BUNDLED_DATA};
use churn_training::{explanations, track};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(name = "churn", version, about = "Train, evaluate and score customer churn models")]
struct Cli {
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
    Train {
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
    },
    /// Score a table: one output row per input row (id, churn_probability, risk_tier, ...).
    Score {
        /// Bundle: a directory, s3://bucket/prefix/…, or models:/<name>@<alias>.
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
    },
    /// Evaluate a bundle on labelled data, and check for concept drift: a figure worse than
    /// the bundle's own test figure by more than sampling noise allows (3 standard deviations
    /// of the difference, from bootstrap spreads) plus --margin is flagged.
    Evaluate {
        /// Bundle: a directory, s3://bucket/prefix/…, or models:/<name>@<alias>.
        #[arg(long)]
        model: String,
        #[arg(long)]
        data: PathBuf,
        /// Print the figures as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Extra worsening of ROC AUC, PR AUC, Brier or ECE (absolute) tolerated beyond noise.
        #[arg(long, default_value_t = churn_training::monitor::DEFAULT_MARGIN)]
        margin: f64,
        /// Exit with an error when concept drift is flagged (for scheduled checks).
        #[arg(long)]
        fail_on_drift: bool,
    },
    /// Data drift of a table against the bundle's training reference: population stability
    /// index per feature, flagged above --threshold.
    Drift {
        /// Bundle: a directory, s3://bucket/prefix/…, or models:/<name>@<alias>.
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
    },
    /// Explain customers' scores: Shapley values over the raw fields (and the API's occlusion
    /// reasons beside them, with how well the two agree).
    Explain {
        /// Bundle: a directory, s3://bucket/prefix/…, or models:/<name>@<alias>.
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
    },
    /// Upload a local bundle to s3://bucket/prefix (after a training run could not reach S3).
    Upload {
        /// The local bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// s3://bucket/prefix; the bundle goes under <prefix>/<model-name>/<bundle-id>/.
        #[arg(long)]
        out: String,
    },
    /// Log an existing bundle as an MLflow run and register it (after a training run could not reach MLflow).
    Register {
        /// The bundle: a directory or s3://… prefix holding manifest.json.
        #[arg(long)]
        bundle: String,
        /// Registered model name.
        #[arg(long)]
        name: String,
    },
    /// Point the `champion` alias at a version if it beats the current champion on the same data.
    Promote {
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
    },
    /// k-fold cross-validation of training recipes over one or more tables: quality (ROC AUC,
    /// PR AUC, Brier, ECE against its floor), training time and serving cost per recipe.
    /// Writes benchmark.json (every fold, and the fold of every row) and benchmark.html.
    Benchmark {
        /// A table as PATH:TARGET[:POSITIVE]; repeat for several. Default: the bundled telco,
        /// hr_turnover and saas tables.
        #[arg(long = "table")]
        tables: Vec<churn_training::benchmark::BenchTable>,
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
        /// Directory for benchmark.json and benchmark.html.
        #[arg(long, default_value = "out/benchmark")]
        out: PathBuf,
    },
    /// Train the MLP and the logistic baseline on several seeds and compare test figures.
    Compare {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, default_value_t = 5)]
        seeds: u64,
        /// Also write every run's figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn load_config(a: &DataArgs) -> anyhow::Result<(PathBuf, TrainConfig)> {
    let (data, default_config) = match &a.data {
        Some(d) => (d.clone(), None),
        None => (PathBuf::from(BUNDLED_DATA), Some(PathBuf::from(BUNDLED_CONFIG))),
    };
    let mut config = match a.config.clone().or(default_config) {
        Some(p) => TrainConfig::load(&p)?,
        None => TrainConfig::default(),
    };
    if let Some(t) = &a.target {
        config.dataset.target_column = Some(t.clone());
    }
    if let Some(p) = &a.positive {
        config.dataset.positive_label = Some(p.clone());
    }
    if let Some(k) = a.model {
        config.model.kind = k;
    }
    Ok((data, config))
}

/// What sees every training epoch.
type OnEpoch = Box<dyn FnMut(&churn_training::train::EpochRecord)>;

fn progress(max_epochs: usize, quiet: bool) -> (ProgressBar, OnEpoch) {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(max_epochs as u64) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} epoch {pos}/{len} [{bar:30}] {msg}").expect("valid template").progress_chars("=> "),
    );
    let b = bar.clone();
    // Ensemble members each start again at epoch 1.
    let mut member = 0;
    (
        bar,
        Box::new(move |r| {
            if r.epoch == 1 {
                member += 1;
            }
            b.set_position(r.epoch as u64);
            b.set_message(format!("member {member}: val AUC {:.4} loss {:.4}", r.validation_auc, r.validation_loss));
        }),
    )
}

fn print_evaluation(title: &str, e: &Evaluation, threshold: f64) {
    println!("{title}");
    let rows = [
        ("rows / churners", format!("{} / {} ({:.1} %)", e.rows, e.positives, 100.0 * e.base_rate)),
        ("ROC AUC", format!("{:.4}", e.roc_auc)),
        ("PR AUC", format!("{:.4}", e.pr_auc)),
        ("log loss", format!("{:.4}", e.log_loss)),
        ("Brier", format!("{:.4}", e.brier)),
        (
            "ECE",
            format!(
                "{:.4} (sampling noise: a calibrated model shows {:.4} on these rows, 90 % of the time ≤ {:.4})",
                e.ece, e.ece_floor, e.ece_floor_p90
            ),
        ),
        ("top-decile lift", format!("{:.2} (captures {:.1} % of churners)", e.top_decile_lift, 100.0 * e.top_decile_capture)),
        (
            "at threshold",
            format!(
                "{threshold:.2}: precision {:.3} recall {:.3} F1 {:.3} accuracy {:.3}",
                e.at_threshold.precision, e.at_threshold.recall, e.at_threshold.f1, e.at_threshold.accuracy
            ),
        ),
        (
            "at 0.5",
            format!(
                "precision {:.3} recall {:.3} F1 {:.3} accuracy {:.3}",
                e.at_half.precision, e.at_half.recall, e.at_half.f1, e.at_half.accuracy
            ),
        ),
        (
            "campaign profit",
            format!(
                "{:.0} at the threshold (best on this data: {:.0} at {:.2})",
                e.profit_at_threshold, e.best_profit, e.best_profit_threshold
            ),
        ),
    ];
    for (k, v) in rows {
        println!("  {k:<18} {v}");
    }
    println!("  {:<10} {:>9} {:>9} {:>10} {:>12} {:>7}  action", "tier", "customers", "churners", "churn rate", "profit", "ROI");
    for t in &e.tiers {
        println!(
            "  {:<10} {:>9} {:>9} {:>9.1}% {:>12.0} {:>7.2}  {}",
            t.tier,
            t.customers,
            t.churners,
            100.0 * t.churn_rate,
            t.realised_profit,
            t.roi,
            t.action
        );
    }
}

fn main() -> std::process::ExitCode {
    // Rust ignores SIGPIPE, which turns a closed pipe (`churn drift … | head`) into a panic on
    // the next print; a command-line tool should just stop, as other Unix tools do.
    #[cfg(unix)]
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CHURN_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    // A corrupt input file is reported as that file's error, without a panic message first.
    churn_core::table::quiet_decoder_panics();
    // `{:#}` prints the error with its causes on one line, and never a backtrace: these are
    // messages for users, not crash reports.
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// 1-based row list (`1-20`, `3,7,12`, or a mix) to 0-based indices, checked against the table.
fn parse_rows(spec: &str, rows: usize) -> anyhow::Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || anyhow::anyhow!("--rows {spec:?}: {part:?} is not a row number or range like 1-20");
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>().map_err(|_| bad())?, b.trim().parse::<usize>().map_err(|_| bad())?),
            None => {
                let n = part.parse::<usize>().map_err(|_| bad())?;
                (n, n)
            }
        };
        anyhow::ensure!(a >= 1 && a <= b, "--rows {spec:?}: {part:?} must count from 1 upwards");
        anyhow::ensure!(b <= rows, "--rows {spec:?}: the table has {rows} rows");
        out.extend(a - 1..b);
    }
    anyhow::ensure!(!out.is_empty(), "--rows {spec:?} names no row");
    Ok(out)
}

fn mlflow_client(uri: &Option<String>) -> anyhow::Result<Option<Mlflow>> {
    uri.as_deref().filter(|u| !u.is_empty()).map(Mlflow::new).transpose().map_err(Into::into)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let mlflow = mlflow_client(&cli.mlflow_uri)?;
    let store = Store::new();
    match cli.command {
        Command::Train { data, out, register, seed, force } => {
            let (data_path, mut config) = load_config(&data)?;
            if let Some(s) = seed {
                config.model.seed = s;
            }
            if register.is_some() && mlflow.is_none() {
                anyhow::bail!("--register needs MLflow: set MLFLOW_TRACKING_URI or pass --mlflow-uri");
            }
            let dest = Location::parse(&out)?;
            // An S3 destination is staged locally first: the local copy is what survives if the
            // upload or MLflow fails.
            let local = match &dest {
                Location::Local(dir) => dir.clone(),
                Location::S3 { .. } => PathBuf::from("out/bundles").join(format!(".staging-{}", std::process::id())),
            };
            let (bar, on_epoch) = progress(config.model.max_epochs, false);
            let o = pipeline::run(TrainJob {
                data: data_path.clone(),
                config,
                out: Some(local.clone()),
                force: force || dest.is_s3(),
                on_epoch,
            })?;
            bar.finish_and_clear();
            let p = &o.prepared;
            let epochs = match o.trained.member_best_epochs.as_slice() {
                [one] => format!("best epoch {one} of {}", o.trained.history.len()),
                many => format!(
                    "{} members{}, best epochs {many:?}",
                    many.len(),
                    if o.params.cross_fit { " (cross-fitted on train + validation)" } else { "" }
                ),
            };
            println!(
                "trained {} on {} ({} rows: {} train / {} validation / {} test, {} features) in {:.2} s; {epochs}",
                o.params.kind.name(),
                data_path.display(),
                p.table.rows,
                p.train.rows(),
                p.validation.rows(),
                p.test.rows(),
                p.spec.width(),
                o.seconds,
            );
            println!("candle vs tract on {} test rows: max |diff| {:.2e}", o.candle_test_p.len(), o.parity_max_abs_diff);
            print_evaluation("held-out test figures:", &o.test, o.threshold);
            let manifest = o.manifest.as_ref().context("the bundle was written")?;
            let (local, published) = match &dest {
                Location::Local(_) => (local.clone(), dest.clone()),
                Location::S3 { .. } => {
                    let id = &manifest.short_id();
                    let kept = PathBuf::from("out/bundles").join(format!("{}-{id}", manifest.model_name));
                    let _ = std::fs::remove_dir_all(&kept);
                    std::fs::rename(&local, &kept).with_context(|| format!("moving the bundle to {}", kept.display()))?;
                    let start = Instant::now();
                    let uploaded = rt.block_on(track::upload(&store, &kept, &dest)).with_context(|| {
                        let reg = register.as_deref().map(|n| format!(" and then churn register --bundle <the s3:// address it prints> --name {n}")).unwrap_or_default();
                        format!(
                            "uploading to {dest} failed; the bundle is kept at {k}. Once S3 is reachable, run: churn upload --bundle {k} --out {dest}{reg}",
                            k = kept.display()
                        )
                    })?;
                    println!("bundle uploaded to {uploaded} in {:.2} s (local copy {})", start.elapsed().as_secs_f64(), kept.display());
                    (kept, uploaded)
                }
            };
            println!("bundle written to {} (open report.html there)", local.display());
            if let Some(m) = &mlflow {
                let start = Instant::now();
                let files = rt.block_on(track::BundleFiles::fetch(&store, &published))?;
                let outcome = match &register {
                    Some(name) => rt.block_on(track::register(m, &cli.experiment, name, &files)).map(|(v, new)| {
                        format!(
                            "registered {} version {}{} (alias {}) from run {}",
                            name,
                            v.version,
                            if new { "" } else { " (already registered; unchanged)" },
                            track::CHALLENGER,
                            v.run_id
                        )
                    }),
                    None => rt.block_on(track::log_run(m, &cli.experiment, &files)).map(|r| format!("logged MLflow run {}", r.run_id)),
                };
                match outcome {
                    Ok(text) => println!("{text} at {} in {:.2} s", m.uri(), start.elapsed().as_secs_f64()),
                    Err(e) => {
                        let name = register.as_deref().unwrap_or("<name>");
                        anyhow::bail!(
                            "{e:#}\nthe bundle is saved at {published}; once MLflow is reachable, record it with:\n  churn register --bundle {published} --name {name}"
                        );
                    }
                }
            }
        }
        Command::Score { model, input, output, reasons } => {
            let start = Instant::now();
            let bundle = rt.block_on(track::resolve_model(&store, mlflow.as_ref(), &model))?;
            let reader = churn_core::table::TableReader::open_for(&input, &bundle.spec)?;
            let s = churn_core::scoring::score_table(&bundle, reader, &output, reasons.into())?;
            let secs = start.elapsed().as_secs_f64();
            println!(
                "scored {} rows ({} failed, {} with warnings) into {} in {:.2} s ({:.0} rows/s)",
                s.rows,
                s.failed,
                s.warned,
                output.display(),
                secs,
                s.rows as f64 / secs.max(1e-9)
            );
            for (tier, n) in &s.tiers {
                println!("  {tier:<10} {n}");
            }
            if !s.offers.is_empty() {
                let offers: Vec<String> = s.offers.iter().map(|(o, n)| format!("{o} {n}")).collect();
                println!("offers (contacted customers with reasons): {}", offers.join(", "));
            }
            if s.failed > 0 {
                println!("rows that could not be scored are kept with the reason in the `error` column");
            }
        }
        Command::Evaluate { model, data, json, margin, fail_on_drift } => {
            anyhow::ensure!(margin.is_finite() && margin >= 0.0, "--margin must be a number >= 0, not {margin}");
            let bundle = rt.block_on(track::resolve_model(&store, mlflow.as_ref(), &model))?;
            let (e, p, y) = pipeline::evaluate_with_predictions(&bundle, &data)?;
            let spread = churn_core::metrics::bootstrap_spread(&p, &y, churn_training::monitor::RESAMPLES)?;
            let checks = churn_training::monitor::concept_drift(&bundle.metrics, &e, &spread, margin);
            if json {
                // The evaluation's own fields at the top level, where scripts reading the figures
                // find them, with the drift check beside them.
                let mut doc = serde_json::to_value(&e)?;
                doc["concept_drift"] = serde_json::to_value(&checks)?;
                doc["concept_drift_margin"] = margin.into();
                doc["spread"] = serde_json::to_value(spread)?;
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print_evaluation(&format!("{} on {}:", bundle.manifest.model_name, data.display()), &e, bundle.manifest.threshold);
                match &checks {
                    None => println!("concept drift: the bundle has no test figures to compare with"),
                    Some(c) => {
                        println!(
                            "concept drift against the bundle's test figures (worse by more than {} sd of sampling noise{}):",
                            churn_training::monitor::NOISE_Z,
                            if margin > 0.0 { format!(" + margin {margin}") } else { String::new() }
                        );
                        for f in c {
                            println!(
                                "  {:<10} at training {:.4}  now {:.4}  {}",
                                f.metric,
                                f.at_training,
                                f.now,
                                if f.drifted {
                                    format!("WORSE by {:.4} (noise allows {:.4}): retrain", f.worse_by, f.allowed)
                                } else if f.worse_by > 0.0 {
                                    format!("ok (worse by {:.4}, within the {:.4} noise allows)", f.worse_by, f.allowed)
                                } else {
                                    "ok".into()
                                }
                            );
                        }
                    }
                }
            }
            let drifted: Vec<&str> = checks.iter().flatten().filter(|f| f.drifted).map(|f| f.metric).collect();
            if fail_on_drift && !drifted.is_empty() {
                anyhow::bail!("concept drift: {} worse than at training by more than sampling noise allows", drifted.join(", "));
            }
        }
        Command::Drift { model, data, threshold, json, fail_on_drift } => {
            anyhow::ensure!(threshold.is_finite() && threshold > 0.0, "--threshold must be a number > 0, not {threshold}");
            let bundle = rt.block_on(track::resolve_model(&store, mlflow.as_ref(), &model))?;
            let reader = churn_core::table::TableReader::open_for(&data, &bundle.spec)?;
            let r = churn_core::scoring::drift_table(&bundle, reader, threshold)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} rows of {} against the training reference of {} (PSI threshold {threshold}; {} rows could not be scored)",
                    r.summary.rows, r.file, bundle.manifest.model_name, r.summary.failed
                );
                let mut features = r.features.clone();
                features.sort_by(|a, b| b.psi.total_cmp(&a.psi));
                for f in &features {
                    println!("  {:<24} PSI {:>8.4}  {}", f.feature, f.psi, if f.drifted { "DRIFTED" } else { "" });
                }
                println!(
                    "{} of {} features drifted; mean churn probability {:.3}",
                    r.drifted().count(),
                    r.features.len(),
                    r.summary.mean_probability
                );
            }
            if fail_on_drift && r.drifted().next().is_some() {
                let names: Vec<&str> = r.drifted().map(|f| f.feature.as_str()).collect();
                anyhow::bail!("data drift above PSI {threshold} in: {}", names.join(", "));
            }
        }
        Command::Explain { model, data, rows, permutations, seed, top, json } => {
            anyhow::ensure!(permutations >= 1, "--permutations must be at least 1");
            let bundle = rt.block_on(track::resolve_model(&store, mlflow.as_ref(), &model))?;
            let table = churn_core::table::Table::read(&data)?;
            let rows = parse_rows(&rows, table.rows)?;
            let pseudonyms = churn_core::privacy::Pseudonymizer::from_env()?;
            let start = Instant::now();
            let bar = ProgressBar::new(rows.len() as u64);
            let params = churn_core::explain::ShapleyParams { permutations, seed };
            let e = explanations::explain_rows(&bundle, &table, &rows, params, &pseudonyms, |n| bar.set_position(n as u64))?;
            bar.finish_and_clear();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "Shapley values of {} customers ({} permutations x {} background customers each) in {:.2} s ({:.1} ms per customer)",
                e.customers.len(),
                permutations.div_ceil(2) * 2,
                e.background_rows,
                secs,
                1e3 * secs / e.customers.len().max(1) as f64
            );
            let names: Vec<&str> = bundle.spec.input_names().collect();
            let view = table.view(&names)?;
            for c in &e.customers {
                println!(
                    "row {} ({}): churn probability {:.3} = base {:.3} {:+.3}",
                    c.row + 1,
                    c.pseudonym.as_deref().unwrap_or("no id"),
                    c.prediction,
                    c.base_value,
                    c.prediction - c.base_value
                );
                for r in churn_core::explain::top_reasons(&bundle.spec, &view.row(c.row), &c.shapley, top) {
                    println!("    {:<18} {:<28} {:+.4}", r.feature, r.value, r.contribution);
                }
            }
            let g = e.occlusion_agreement();
            println!(
                "API occlusion reasons vs Shapley: Spearman mean {:.3} (min {:.3}); same top-3 fields for {:.0} % of customers",
                g.mean_spearman,
                g.min_spearman,
                100.0 * g.same_top3
            );
            if !pseudonyms.configured {
                println!("(customer pseudonyms use a random key: set {} for stable ones)", churn_core::privacy::KEY_VARIABLE);
            }
            if let Some(p) = json {
                std::fs::write(&p, serde_json::to_vec_pretty(&e)?).with_context(|| p.display().to_string())?;
            }
        }
        Command::Upload { bundle, out } => {
            let dest = Location::parse(&out)?;
            anyhow::ensure!(dest.is_s3(), "--out must be an s3://bucket/prefix address, not {out}");
            let start = Instant::now();
            let uploaded = rt.block_on(track::upload(&store, &bundle, &dest))?;
            println!("bundle uploaded to {uploaded} in {:.2} s", start.elapsed().as_secs_f64());
        }
        Command::Register { bundle, name } => {
            let m = mlflow.context("register needs MLflow: set MLFLOW_TRACKING_URI or pass --mlflow-uri")?;
            let files = rt.block_on(track::BundleFiles::fetch(&store, &Location::parse(&bundle)?))?;
            let (v, new) = rt.block_on(track::register(&m, &cli.experiment, &name, &files))?;
            if new {
                println!("registered {name} version {} (alias {}) from run {}", v.version, track::CHALLENGER, v.run_id);
            } else {
                println!("{bundle} is already {name} version {}; nothing changed", v.version);
            }
        }
        Command::Promote { name, version, data, margin, force } => {
            let m = mlflow.context("promote needs MLflow: set MLFLOW_TRACKING_URI or pass --mlflow-uri")?;
            let data = data.unwrap_or_else(|| PathBuf::from(BUNDLED_DATA));
            let p = rt.block_on(track::promote(&store, &m, &name, &version, &data, margin, force))?;
            match &p.previous {
                Some((v, auc)) => println!(
                    "{name}@{} -> version {} (ROC AUC {:.4}; was version {v} with {auc:.4}){}",
                    track::CHAMPION,
                    p.version,
                    p.candidate_auc,
                    if p.forced { "; forced" } else { "" }
                ),
                None => {
                    println!("{name}@{} -> version {} (ROC AUC {:.4}; no champion before)", track::CHAMPION, p.version, p.candidate_auc)
                }
            }
        }
        Command::Benchmark { tables, recipes, folds, seed, out } => {
            use churn_training::benchmark::{self, Recipe};
            let tables = if tables.is_empty() { benchmark::bundled_tables() } else { tables };
            let names = if recipes.is_empty() { vec!["default".to_string(), "logistic".to_string()] } else { recipes };
            let recipes = names.iter().map(|r| Recipe::parse(r)).collect::<anyhow::Result<Vec<_>>>()?;
            let bar = ProgressBar::new((tables.len() * recipes.len() * folds) as u64);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}").expect("valid template").progress_chars("=> "),
            );
            let report = benchmark::run(&tables, &recipes, folds, seed, &mut |what| {
                bar.set_message(what.to_string());
                bar.inc(1);
            })?;
            bar.finish_and_clear();
            benchmark::print(&report);
            std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
            let json = out.join("benchmark.json");
            std::fs::write(&json, serde_json::to_vec_pretty(&report)?).with_context(|| json.display().to_string())?;
            let html = out.join("benchmark.html");
            std::fs::write(&html, benchmark::html(&report)).with_context(|| html.display().to_string())?;
            println!("written: {} and {}", json.display(), html.display());
        }
        Command::Compare { data, seeds, json } => {
            let (data_path, config) = load_config(&data)?;
            let mut runs = Vec::new();
            for kind in [ModelKind::Mlp, ModelKind::Logistic] {
                for seed in 1..=seeds {
                    let mut c = config.clone();
                    c.model.kind = kind;
                    c.model.seed = seed;
                    let (bar, on_epoch) = progress(c.model.max_epochs, false);
                    bar.set_prefix(format!("{} seed {seed}", kind.name()));
                    let o = pipeline::run(TrainJob { data: data_path.clone(), config: c, out: None, force: false, on_epoch })
                        .with_context(|| format!("{} seed {seed}", kind.name()))?;
                    bar.finish_and_clear();
                    runs.push(serde_json::json!({
                        "kind": kind.name(), "seed": seed, "seconds": o.seconds,
                        "best_epoch": o.trained.best_epoch, "threshold": o.threshold, "test": o.test,
                    }));
                }
            }
            println!("test figures over seeds 1..={seeds} on {} (mean ± sd)", data_path.display());
            println!(
                "{:<9} {:>16} {:>16} {:>16} {:>16} {:>16} {:>16} {:>9}",
                "model", "ROC AUC", "PR AUC", "Brier", "ECE", "ECE floor", "log loss", "s/run"
            );
            for kind in ["mlp", "logistic"] {
                let pick = |f: &dyn Fn(&serde_json::Value) -> f64| -> String {
                    let v: Vec<f64> = runs.iter().filter(|r| r["kind"] == kind).map(f).collect();
                    churn_training::benchmark::MeanSd::of(&v).to_string()
                };
                let t = |k: &'static str| move |r: &serde_json::Value| r["test"][k].as_f64().unwrap_or(f64::NAN);
                let secs = pick(&|r| r["seconds"].as_f64().unwrap_or(f64::NAN));
                println!(
                    "{kind:<9} {:>16} {:>16} {:>16} {:>16} {:>16} {:>16} {:>9}",
                    pick(&t("roc_auc")),
                    pick(&t("pr_auc")),
                    pick(&t("brier")),
                    pick(&t("ece")),
                    pick(&t("ece_floor")),
                    pick(&t("log_loss")),
                    secs.split(' ').next().unwrap_or("")
                );
            }
            println!(
                "ECE floor: the ECE a perfectly calibrated model shows on each test split by sampling noise alone (labels drawn from its own probabilities)"
            );
            if let Some(p) = json {
                std::fs::write(&p, serde_json::to_vec_pretty(&runs)?).with_context(|| p.display().to_string())?;
            }
        }
    }
    Ok(())
}
