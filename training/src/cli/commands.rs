//! One function per `churn` subcommand, and the printing they share.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use churn_core::metrics::Evaluation;
use churn_store::Location;
use indicatif::{ProgressBar, ProgressStyle};

use super::*;
use crate::params::TrainConfig;
use crate::pipeline::{self, TrainJob};
use crate::{BUNDLED_CONFIG, BUNDLED_DATA, explanations, track};

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
type OnEpoch = Box<dyn FnMut(&crate::train::EpochRecord)>;

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

pub(super) fn train(ctx: &Ctx, a: TrainArgs) -> anyhow::Result<()> {
    let Ctx { rt, mlflow, store, experiment } = ctx;
    let TrainArgs { data, out, register, seed, force } = a;
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
    let o = pipeline::run(TrainJob { data: data_path.clone(), config, out: Some(local.clone()), force: force || dest.is_s3(), on_epoch })?;
    bar.finish_and_clear();
    let p = &o.prepared;
    let epochs = match o.trained.member_best_epochs.as_slice() {
        [one] => format!("best epoch {one} of {}", o.trained.history.len()),
        many => format!(
            "{} members{}, best epochs {many:?}",
            many.len(),
            match (o.params.cross_fit, o.params.refit) {
                (true, true) => " (cross-fitted on train + validation, then refitted on all of it for those epochs)",
                (true, false) => " (cross-fitted on train + validation)",
                _ => "",
            }
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
            let uploaded = rt.block_on(track::upload(store, &kept, &dest)).with_context(|| {
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
        let files = rt.block_on(track::BundleFiles::fetch(store, &published))?;
        let outcome = match &register {
            Some(name) => rt.block_on(track::register(m, experiment, name, &files)).map(|(v, new)| {
                format!(
                    "registered {} version {}{} (alias {}) from run {}",
                    name,
                    v.version,
                    if new { "" } else { " (already registered; unchanged)" },
                    track::CHALLENGER,
                    v.run_id
                )
            }),
            None => rt.block_on(track::log_run(m, experiment, &files)).map(|r| format!("logged MLflow run {}", r.run_id)),
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
    Ok(())
}

pub(super) fn score(ctx: &Ctx, a: ScoreArgs) -> anyhow::Result<()> {
    let Ctx { rt, mlflow, store, .. } = ctx;
    let ScoreArgs { model, input, output, reasons } = a;
    let start = Instant::now();
    let bundle = rt.block_on(track::resolve_model(store, mlflow.as_ref(), &model))?;
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
    Ok(())
}

pub(super) fn evaluate(ctx: &Ctx, a: EvaluateArgs) -> anyhow::Result<()> {
    let Ctx { rt, mlflow, store, .. } = ctx;
    let EvaluateArgs { model, data, json, margin, fail_on_drift } = a;
    anyhow::ensure!(margin.is_finite() && margin >= 0.0, "--margin must be a number >= 0, not {margin}");
    let bundle = rt.block_on(track::resolve_model(store, mlflow.as_ref(), &model))?;
    let (e, p, y) = pipeline::evaluate_with_predictions(&bundle, &data)?;
    let spread = churn_core::metrics::bootstrap_spread(&p, &y, crate::monitor::RESAMPLES)?;
    let metrics: serde_json::Value = serde_json::from_str(bundle.metrics.get()).context("the bundle's metrics.json")?;
    let checks = crate::monitor::concept_drift(&metrics, &e, &spread, margin);
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
                    crate::monitor::NOISE_Z,
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
    Ok(())
}

pub(super) fn drift(ctx: &Ctx, a: DriftArgs) -> anyhow::Result<()> {
    let Ctx { rt, mlflow, store, .. } = ctx;
    let DriftArgs { model, data, threshold, json, fail_on_drift } = a;
    anyhow::ensure!(threshold.is_finite() && threshold > 0.0, "--threshold must be a number > 0, not {threshold}");
    let bundle = rt.block_on(track::resolve_model(store, mlflow.as_ref(), &model))?;
    let reader = churn_core::table::TableReader::open_for(&data, &bundle.spec)?;
    let r = churn_core::scoring::drift_table(&bundle, reader, threshold)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{} rows of {} against the training reference of {} (PSI threshold {threshold}; {} rows could not be scored)",
            r.summary.rows, r.file, bundle.manifest.model_name, r.summary.failed
        );
        let mut features = r.drift.features.clone();
        features.sort_by(|a, b| b.psi.total_cmp(&a.psi));
        for f in &features {
            println!("  {:<24} PSI {:>8.4}  {}", f.feature, f.psi, if f.drifted { "DRIFTED" } else { "" });
        }
        println!(
            "{} of {} features drifted; mean churn probability {:.3}",
            r.drift.drifted_features().count(),
            r.drift.features.len(),
            r.summary.mean_probability
        );
    }
    if fail_on_drift && r.drift.drifted_features().next().is_some() {
        let names: Vec<&str> = r.drift.drifted_features().map(|f| f.feature.as_str()).collect();
        anyhow::bail!("data drift above PSI {threshold} in: {}", names.join(", "));
    }
    Ok(())
}

pub(super) fn explain(ctx: &Ctx, a: ExplainArgs) -> anyhow::Result<()> {
    let Ctx { rt, mlflow, store, .. } = ctx;
    let ExplainArgs { model, data, rows, permutations, seed, top, json } = a;
    anyhow::ensure!(permutations >= 1, "--permutations must be at least 1");
    let bundle = rt.block_on(track::resolve_model(store, mlflow.as_ref(), &model))?;
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
    Ok(())
}

pub(super) fn upload(ctx: &Ctx, a: UploadArgs) -> anyhow::Result<()> {
    let Ctx { rt, store, .. } = ctx;
    let UploadArgs { bundle, out } = a;
    let dest = Location::parse(&out)?;
    anyhow::ensure!(dest.is_s3(), "--out must be an s3://bucket/prefix address, not {out}");
    let start = Instant::now();
    let uploaded = rt.block_on(track::upload(store, &bundle, &dest))?;
    println!("bundle uploaded to {uploaded} in {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}

pub(super) fn register(ctx: &Ctx, a: RegisterArgs) -> anyhow::Result<()> {
    let Ctx { rt, mlflow, store, experiment } = ctx;
    let RegisterArgs { bundle, name } = a;
    let m = mlflow.as_ref().context("register needs MLflow: set MLFLOW_TRACKING_URI or pass --mlflow-uri")?;
    let files = rt.block_on(track::BundleFiles::fetch(store, &Location::parse(&bundle)?))?;
    let (v, new) = rt.block_on(track::register(m, experiment, &name, &files))?;
    if new {
        println!("registered {name} version {} (alias {}) from run {}", v.version, track::CHALLENGER, v.run_id);
    } else {
        println!("{bundle} is already {name} version {}; nothing changed", v.version);
    }
    Ok(())
}

pub(super) fn export(a: ExportArgs) -> anyhow::Result<()> {
    let ExportArgs { model, out } = a;
    let bundle = churn_core::Bundle::load_dir(&model)?;
    let network_path = model.join(churn_core::bundle::MODEL);
    let network = std::fs::read(&network_path).with_context(|| format!("reading {}", network_path.display()))?;
    let raw = bundle.spec.raw_rows_onnx(&network)?;
    std::fs::write(&out, &raw).with_context(|| format!("writing {}", out.display()))?;
    let inputs: Vec<String> = bundle
        .spec
        .raw_input_types()
        .iter()
        .map(|(name, t)| format!("{name}: {}", if *t == churn_core::RawInputType::Double { "double" } else { "string" }))
        .collect();
    println!("wrote {} ({} bytes): inputs {}; output {}", out.display(), raw.len(), inputs.join(", "), churn_core::onnx::OUTPUT_NAME);
    Ok(())
}

pub(super) fn package(ctx: &Ctx, a: PackageArgs) -> anyhow::Result<()> {
    let Ctx { rt, mlflow, store, .. } = ctx;
    let PackageArgs { model, out, archive, force } = a;
    anyhow::ensure!(out.is_some() || archive.is_some(), "nothing to write: give --out DIR, --archive PATH.tar, or both");
    let start = Instant::now();
    let p = rt.block_on(churn_store::package::fetch(store, mlflow.as_ref(), &model))?;
    let s = &p.source;
    let what = match (&s.registered_model, &s.version) {
        (Some(n), Some(v)) => {
            format!("{n} version {v}{}", if s.aliases.is_empty() { String::new() } else { format!(" (@{})", s.aliases.join(", @")) })
        }
        _ => format!("unregistered bundle {}", &s.bundle_sha256[..12]),
    };
    if let Some(dir) = &out {
        p.write_dir(dir, force)?;
        println!("packaged {what} from {} into {}", s.bundle_location, dir.display());
    }
    if let Some(a) = &archive {
        let dest = Location::parse(a)?;
        anyhow::ensure!(churn_store::package::is_archive(&dest), "--archive must end in .tar, not {a}");
        let bytes = p.archive();
        let size = bytes.len();
        match &dest {
            Location::Local(path) => std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?,
            Location::S3 { .. } => rt.block_on(store.put_immutable(&dest, bytes))?,
        }
        println!("packaged {what} as {dest} ({:.1} KiB)", size as f64 / 1024.0);
    }
    println!("bundle SHA-256 {} ({:.2} s)", s.bundle_sha256, start.elapsed().as_secs_f64());
    Ok(())
}

pub(super) fn promote(ctx: &Ctx, a: PromoteArgs) -> anyhow::Result<()> {
    let Ctx { rt, mlflow, store, .. } = ctx;
    let PromoteArgs { name, version, data, margin, force } = a;
    let m = mlflow.as_ref().context("promote needs MLflow: set MLFLOW_TRACKING_URI or pass --mlflow-uri")?;
    let data = data.unwrap_or_else(|| PathBuf::from(BUNDLED_DATA));
    let p = rt.block_on(track::promote(store, m, &name, &version, &data, margin, force))?;
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
    Ok(())
}

pub(super) fn benchmark(a: BenchmarkArgs) -> anyhow::Result<()> {
    let BenchmarkArgs { tables, recipes, folds, seed, group_duplicates, out } = a;
    use crate::benchmark::{self, Recipe};
    let tables = if tables.is_empty() { benchmark::bundled_tables() } else { tables };
    let names = if recipes.is_empty() { vec!["default".to_string(), "logistic".to_string()] } else { recipes };
    let recipes = names.iter().map(|r| Recipe::parse(r)).collect::<anyhow::Result<Vec<_>>>()?;
    let bar = ProgressBar::new((tables.len() * recipes.len() * folds) as u64);
    bar.set_style(ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}").expect("valid template").progress_chars("=> "));
    let plan = benchmark::FoldPlan { folds, seed, group_duplicates };
    let report = benchmark::run(&tables, &recipes, plan, &mut |what| {
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
    Ok(())
}

/// One training run of `churn compare`, as its JSON output records it.
#[derive(serde::Serialize)]
struct CompareRun {
    kind: ModelKind,
    seed: u64,
    seconds: f64,
    best_epoch: usize,
    threshold: f64,
    test: Evaluation,
}

pub(super) fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let CompareArgs { data, seeds, json } = a;
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
            runs.push(CompareRun {
                kind,
                seed,
                seconds: o.seconds,
                best_epoch: o.trained.best_epoch,
                threshold: o.threshold,
                test: o.test,
            });
        }
    }
    println!("test figures over seeds 1..={seeds} on {} (mean ± sd)", data_path.display());
    println!(
        "{:<9} {:>16} {:>16} {:>16} {:>16} {:>16} {:>16} {:>9}",
        "model", "ROC AUC", "PR AUC", "Brier", "ECE", "ECE floor", "log loss", "s/run"
    );
    for kind in [ModelKind::Mlp, ModelKind::Logistic] {
        let of_kind: Vec<&CompareRun> = runs.iter().filter(|r| r.kind == kind).collect();
        let pick = |f: &dyn Fn(&CompareRun) -> f64| crate::benchmark::MeanSd::of(&of_kind.iter().map(|r| f(r)).collect::<Vec<_>>());
        let secs = pick(&|r| r.seconds).mean;
        println!(
            "{:<9} {:>16} {:>16} {:>16} {:>16} {:>16} {:>16} {:>9.2}",
            kind.name(),
            pick(&|r| r.test.roc_auc).to_string(),
            pick(&|r| r.test.pr_auc).to_string(),
            pick(&|r| r.test.brier).to_string(),
            pick(&|r| r.test.ece).to_string(),
            pick(&|r| r.test.ece_floor).to_string(),
            pick(&|r| r.test.log_loss).to_string(),
            secs
        );
    }
    println!(
        "ECE floor: the ECE a perfectly calibrated model shows on each test split by sampling noise alone (labels drawn from its own probabilities)"
    );
    if let Some(p) = json {
        std::fs::write(&p, serde_json::to_vec_pretty(&runs)?).with_context(|| p.display().to_string())?;
    }
    Ok(())
}
