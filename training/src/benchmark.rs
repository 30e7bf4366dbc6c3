//! `churn benchmark`: k-fold cross-validation of training recipes over one or more tables.
//!
//! A *recipe* is a training configuration without a table: model hyperparameters and the
//! transform settings (`dataset.numeric_bins`, …). Each table is read once and its rows dealt
//! into stratified, seeded folds ([`data::stratified_folds`]; with `group_duplicates`, rows
//! whose model inputs repeat one record's stay in one fold: [`data::stratified_group_folds`]).
//! Every recipe is trained on the same folds exactly as `churn train` trains (the spec fitted
//! on the training rows only, a validation share of them for early stopping, calibration and
//! the threshold) and evaluated on the held-out fold. The fold of every row is written to the JSON report, so an independent
//! reference (`infra/bench/sklearn_reference.py --folds`) scores the very same splits.
//!
//! Besides quality it measures what a recipe costs to serve, on the last fold's model: the
//! model's multiply-adds per row (dense), the rate of slot values plus the network evaluated from
//! them (what `churn score` does per row), and one customer's Shapley reasons with the API's estimator.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use churn_core::DatasetConfig;
use churn_core::explain::{Explainer, ShapleyParams};
use churn_core::metrics::Evaluation;
use churn_core::network::Network;
use serde::{Deserialize, Serialize};

use crate::data;
use crate::params::{ModelKind, TrainConfig, TrainParams};
use crate::pipeline::{self, Fitted};
use crate::report;

/// A table to benchmark on: `PATH:TARGET[:POSITIVE]` on the command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchTable {
    pub name: String,
    pub path: PathBuf,
    pub target: String,
    pub positive: Option<String>,
}

impl std::str::FromStr for BenchTable {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let (Some(path), Some(target)) = (parts.next(), parts.next()) else {
            return Err(format!("{s:?}: write a table as PATH:TARGET or PATH:TARGET:POSITIVE"));
        };
        let positive = parts.next().map(str::to_string);
        if parts.next().is_some() || path.is_empty() || target.is_empty() {
            return Err(format!("{s:?}: write a table as PATH:TARGET or PATH:TARGET:POSITIVE"));
        }
        let path = PathBuf::from(path);
        let name = table_name(&path);
        Ok(BenchTable { name, path, target: target.into(), positive })
    }
}

/// `telco` for `…/telco/customers.csv`: the folder names the shared tables.
fn table_name(path: &Path) -> String {
    path.parent()
        .and_then(|p| p.file_name())
        .or_else(|| path.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The tables shipped in `training/data/` with their targets.
pub fn bundled_tables() -> Vec<BenchTable> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    [("telco/customers.csv", "churn", "Yes"), ("hr_turnover/employees.csv", "left", "1"), ("saas/accounts.csv", "churned", "1")]
        .into_iter()
        .map(|(file, target, positive)| {
            let path = dir.join(file);
            BenchTable { name: table_name(&path), path, target: target.into(), positive: Some(positive.into()) }
        })
        .collect()
}

/// A named training configuration, applied to every table.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub config: TrainConfig,
}

impl Recipe {
    /// `default` (what `churn train` uses on a table without a config) and `logistic` (the
    /// baseline: one linear layer on standardised numbers and one-hot categories).
    pub fn builtin(name: &str) -> Option<Recipe> {
        let mut config = TrainConfig::default();
        match name {
            "default" => {}
            "logistic" => {
                config.model.kind = ModelKind::Logistic;
                config.model.ensemble = 1;
                config.dataset.numeric_bins = 0;
            }
            _ => return None,
        }
        Some(Recipe { name: name.into(), config })
    }

    /// `NAME` of a built-in recipe, or `NAME=BASE:KEY=VALUE;KEY=VALUE…` where BASE is a
    /// built-in recipe and each KEY is a `[model]` key (`model.hidden=[64]`) or one of
    /// `dataset.numeric_bins`, `dataset.bin_edges`, `dataset.max_categories`,
    /// `dataset.min_category_count`.
    pub fn parse(text: &str) -> anyhow::Result<Recipe> {
        let Some((name, rest)) = text.split_once('=') else {
            return Recipe::builtin(text.trim()).ok_or_else(|| {
                anyhow::anyhow!("--recipe {text:?}: no built-in recipe of that name (default, logistic); write NAME=BASE:KEY=VALUE;…")
            });
        };
        let (base, overrides) = rest.split_once(':').unwrap_or((rest, ""));
        let mut recipe = Recipe::builtin(base.trim())
            .ok_or_else(|| anyhow::anyhow!("--recipe {text:?}: base {base:?} is not a built-in recipe (default, logistic)"))?;
        recipe.name = name.trim().to_string();
        let mut model = toml::Table::try_from(&recipe.config.model).context("model parameters as TOML")?;
        for item in overrides.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item.split_once('=').ok_or_else(|| anyhow::anyhow!("--recipe {text:?}: {item:?} is not KEY=VALUE"))?;
            let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .map_err(|e| anyhow::anyhow!("--recipe {text:?}: {item:?}: the value is not TOML: {e}"))?
                .remove("v")
                .expect("parsed one key");
            let as_usize = || {
                value
                    .as_integer()
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| anyhow::anyhow!("--recipe {text:?}: {key} must be a whole number >= 0"))
            };
            let d = &mut recipe.config.dataset;
            match key.trim() {
                "dataset.numeric_bins" => d.numeric_bins = as_usize()?,
                "dataset.max_categories" => d.max_categories = as_usize()?,
                "dataset.min_category_count" => d.min_category_count = as_usize()?,
                "dataset.bin_edges" => {
                    d.bin_edges = value
                        .clone()
                        .try_into()
                        .map_err(|_| anyhow::anyhow!("--recipe {text:?}: dataset.bin_edges is \"quantile\" or \"tree\""))?
                }
                k if k.starts_with("model.") => {
                    model.insert(k["model.".len()..].to_string(), value);
                }
                k => anyhow::bail!(
                    "--recipe {text:?}: unknown key {k:?}; use model.<key> or dataset.numeric_bins / bin_edges / max_categories / min_category_count"
                ),
            }
        }
        recipe.config.model = model.try_into().map_err(|e| anyhow::anyhow!("--recipe {text:?}: {e}"))?;
        recipe.config.model.clone().check().map_err(|e| anyhow::anyhow!("--recipe {text:?}: {e}"))?;
        Ok(recipe)
    }
}

/// Mean and sample standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSd {
    pub mean: f64,
    pub sd: f64,
}

impl MeanSd {
    pub fn of(v: &[f64]) -> MeanSd {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = if v.len() > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
        MeanSd { mean, sd }
    }
}

impl std::fmt::Display for MeanSd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.4} ± {:.4}", self.mean, self.sd)
    }
}

/// One recipe on one fold of one table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FoldRun {
    pub table: String,
    pub recipe: String,
    pub fold: usize,
    pub train_rows: usize,
    pub features: usize,
    pub seconds: f64,
    pub best_epochs: Vec<usize>,
    pub test: Evaluation,
}

/// What serving a recipe's model costs (measured on the last fold's model).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ServingCost {
    /// Multiply-adds of the network per row, as a dense input (the size of the model).
    pub macs_per_row: usize,
    /// Rows per second through slot values and the network evaluated from them (the batch
    /// scorer's per-row work without reading and writing files), one thread.
    pub batch_rows_per_second: f64,
    /// One customer's Shapley reasons with the API's estimator (median).
    pub reasons_us: f64,
}

/// A recipe on a table, over all folds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub table: String,
    pub recipe: String,
    pub roc_auc: MeanSd,
    pub pr_auc: MeanSd,
    pub brier: MeanSd,
    pub ece: MeanSd,
    pub ece_floor: MeanSd,
    /// Folds whose ECE is within the 90th percentile of its sampling floor.
    pub ece_within_floor: usize,
    pub folds: usize,
    pub train_seconds: MeanSd,
    pub serving: ServingCost,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableFolds {
    pub table: BenchTable,
    pub rows: usize,
    pub positives: usize,
    /// Rows whose model inputs repeat an earlier row's (copies of one record: across folds they
    /// put test rows' twins among the training rows, which favours models that memorise).
    #[serde(default)]
    pub repeated_rows: usize,
    /// The fold of every data row (0-based, file order).
    pub fold_of_row: Vec<usize>,
}

/// Everything a benchmark run measured; written as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub folds: usize,
    pub seed: u64,
    /// Whether the copies of one record were kept in one fold.
    #[serde(default)]
    pub group_duplicates: bool,
    pub tables: Vec<TableFolds>,
    pub recipes: Vec<String>,
    pub runs: Vec<FoldRun>,
    pub summaries: Vec<Summary>,
}

/// How rows are dealt into folds.
#[derive(Debug, Clone, Copy)]
pub struct FoldPlan {
    pub folds: usize,
    pub seed: u64,
    /// Keep the rows whose model inputs are equal in one fold.
    pub group_duplicates: bool,
}

/// Runs every recipe on every fold of every table. `progress` hears what starts.
pub fn run(tables: &[BenchTable], recipes: &[Recipe], plan: FoldPlan, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Report> {
    let FoldPlan { folds, seed, group_duplicates } = plan;
    anyhow::ensure!((2..=20).contains(&folds), "--folds {folds}: must be in [2, 20]");
    let mut report = Report {
        folds,
        seed,
        group_duplicates,
        tables: vec![],
        recipes: recipes.iter().map(|r| r.name.clone()).collect(),
        runs: vec![],
        summaries: vec![],
    };
    for t in tables {
        let config =
            DatasetConfig { target_column: Some(t.target.clone()), positive_label: t.positive.clone(), ..DatasetConfig::default() };
        // Errors name the file already.
        let (table, schema, y) = data::read_labelled(&t.path, &config)?;
        let groups = data::input_duplicate_groups(&table, &schema)?;
        let repeated_rows = groups.iter().enumerate().filter(|(i, g)| i != *g).count();
        let fold_of_row = if group_duplicates {
            data::stratified_group_folds(&y, &groups, folds, seed)?
        } else {
            data::stratified_folds(&y, folds, seed)?
        };
        drop(table);
        for recipe in recipes {
            let mut config = recipe.config.clone();
            config.dataset.target_column = Some(t.target.clone());
            config.dataset.positive_label = t.positive.clone();
            let params = config.model.clone().check()?;
            let playbook = config.playbook.clone().check()?;
            let mut runs = Vec::with_capacity(folds);
            let mut last = None;
            // The schema is resolved on the whole file, as `churn train` does (the recipe's
            // transform settings included); each fold fits the transform on its training rows.
            let (table, schema, y) = data::read_labelled(&t.path, &config.dataset)?;
            for fold in 0..folds {
                progress(&format!("{} · {} · fold {}/{folds}", t.name, recipe.name, fold + 1));
                let start = Instant::now();
                let fold_seed = seed.wrapping_add(fold as u64);
                let split = data::fold_split(&y, &fold_of_row, fold, params.validation_fraction, fold_seed)?;
                let prepared = data::prepare_split(table.clone(), &schema, &y, split, String::new())?;
                // Each fold trains from its own seed, so fold-to-fold spread includes seed-to-seed spread.
                let params = TrainParams { seed: fold_seed, ..config.model.clone() }.check()?;
                let fitted = pipeline::fit_and_evaluate(&params, &playbook, &prepared, &mut |_| {})
                    .with_context(|| format!("{} · {} · fold {}", t.name, recipe.name, fold + 1))?;
                runs.push(FoldRun {
                    table: t.name.clone(),
                    recipe: recipe.name.clone(),
                    fold,
                    train_rows: prepared.train.rows(),
                    features: prepared.spec.width(),
                    seconds: start.elapsed().as_secs_f64(),
                    best_epochs: fitted.trained.member_best_epochs.clone(),
                    test: fitted.test.clone(),
                });
                last = Some((prepared, fitted, params));
            }
            let (prepared, fitted, params) = last.expect("at least two folds");
            let serving = serving_cost(&prepared, &fitted, &params)?;
            report.summaries.push(summarise(&t.name, &recipe.name, &runs, serving));
            report.runs.extend(runs);
        }
        report.tables.push(TableFolds {
            table: t.clone(),
            rows: y.len(),
            positives: y.iter().filter(|b| **b).count(),
            repeated_rows,
            fold_of_row,
        });
    }
    Ok(report)
}

fn summarise(table: &str, recipe: &str, runs: &[FoldRun], serving: ServingCost) -> Summary {
    let of = |f: fn(&Evaluation) -> f64| MeanSd::of(&runs.iter().map(|r| f(&r.test)).collect::<Vec<_>>());
    Summary {
        table: table.into(),
        recipe: recipe.into(),
        roc_auc: of(|e| e.roc_auc),
        pr_auc: of(|e| e.pr_auc),
        brier: of(|e| e.brier),
        ece: of(|e| e.ece),
        ece_floor: of(|e| e.ece_floor),
        ece_within_floor: runs.iter().filter(|r| r.test.ece <= r.test.ece_floor_p90).count(),
        folds: runs.len(),
        train_seconds: MeanSd::of(&runs.iter().map(|r| r.seconds).collect::<Vec<_>>()),
        serving,
    }
}

/// Serving figures of a fold's model, exported exactly as a bundle exports it.
fn serving_cost(prepared: &data::Prepared, fitted: &Fitted, params: &crate::params::ValidParams) -> anyhow::Result<ServingCost> {
    let layers = crate::train::export_layers(&fitted.trained)?;
    let macs_per_row = layers.iter().map(|l| l.inputs * l.outputs).sum();
    // Through the ONNX bytes and back, as a bundle is written and loaded; one network serves
    // both figures.
    let onnx = churn_core::onnx::dense_stack_to_onnx(&layers, &[])?;
    let read = churn_core::onnx::dense_stack_from_onnx(&onnx)?.context("the exported model is not a dense stack")?;
    let network = Arc::new(Network::new(&prepared.spec, read)?);
    let (table, spec, rows) = (&prepared.table, &prepared.spec, &prepared.split.test);
    let names: Vec<&str> = spec.input_names().collect();
    let view = table.view(&names)?;
    // Slot values, first layer from them, probability: the batch scorer's path per row,
    // repeated until the clock has something to measure.
    let (mut slots, mut active, mut buffers) = Default::default();
    let mut z = vec![0.0f32; network.hidden()];
    let start = Instant::now();
    let mut scored = 0usize;
    while scored < 200_000 || start.elapsed().as_secs_f64() < 0.2 {
        for &i in rows {
            spec.checked_slot_values(&view.row(i), &mut slots).map_err(|e| anyhow::anyhow!("test row {i}: {e}"))?;
            network.first_layer(spec, &slots, &mut z, &mut active);
            std::hint::black_box(network.probability(&z, &mut buffers)?);
        }
        scored += rows.len();
        if start.elapsed().as_secs_f64() > 2.0 {
            break;
        }
    }
    let batch_rows_per_second = scored as f64 / start.elapsed().as_secs_f64();
    let background = data::background(table, spec, &prepared.split.train, params.background_rows, params.seed)?;
    let explainer = Explainer::with_network(spec, network, &background)?;
    let mut times: Vec<f64> = rows
        .iter()
        .take(200)
        .map(|&i| {
            let t = Instant::now();
            let api = ShapleyParams { permutations: churn_core::explain::REASON_PERMUTATIONS, seed: 0 };
            explainer.explain(spec, &view.row(i), api).map(|_| t.elapsed().as_secs_f64() * 1e6)
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    Ok(ServingCost { macs_per_row, batch_rows_per_second, reasons_us: times[times.len() / 2] })
}

/// The summary as a text table, one line per table and recipe.
pub fn print(report: &Report) {
    println!(
        "{}-fold cross-validation ({}, seed {}); mean ± sd over folds; ECE ok = folds within the 90th percentile of their sampling floor",
        report.folds,
        fold_kind(report),
        report.seed
    );
    for note in repeated_rows_notes(report) {
        println!("{note}");
    }
    println!(
        "{:<12} {:<14} {:>16} {:>16} {:>16} {:>16} {:>6} {:>8} {:>8} {:>10} {:>9}",
        "table", "recipe", "ROC AUC", "PR AUC", "Brier", "ECE", "ECE ok", "train s", "MACs", "rows/s", "reasons µs"
    );
    for s in &report.summaries {
        println!(
            "{:<12} {:<14} {:>16} {:>16} {:>16} {:>16} {:>6} {:>8.2} {:>8} {:>10.0} {:>9.1}",
            s.table,
            s.recipe,
            s.roc_auc.to_string(),
            s.pr_auc.to_string(),
            s.brier.to_string(),
            s.ece.to_string(),
            format!("{}/{}", s.ece_within_floor, s.folds),
            s.train_seconds.mean,
            s.serving.macs_per_row,
            s.serving.batch_rows_per_second,
            s.serving.reasons_us
        );
    }
}

/// One sentence per table with copies of a record: how many, and what the folds did with them.
fn repeated_rows_notes(report: &Report) -> impl Iterator<Item = String> + '_ {
    report.tables.iter().filter(|t| t.repeated_rows > 0).map(|t| {
        format!(
            "{}: {} of {} rows repeat another row's model inputs; {}",
            t.table.name,
            t.repeated_rows,
            t.rows,
            if report.group_duplicates {
                "each record's copies are in one fold"
            } else {
                "folds split such copies between training and test, which favours models that memorise (--group-duplicates keeps them together)"
            }
        )
    })
}

fn fold_kind(report: &Report) -> &'static str {
    if report.group_duplicates { "stratified, repeated rows kept in one fold" } else { "stratified" }
}

/// A self-contained HTML page: the summary table and a chart of ROC AUC per table and recipe
/// with each fold's figure.
pub fn html(report: &Report) -> String {
    let mut body = String::new();
    body.push_str(&format!(
        "<p>{}-fold cross-validation ({}), seed {}. Every recipe is trained on the same folds; mean ± sd over folds.</p>",
        report.folds,
        fold_kind(report),
        report.seed
    ));
    for note in repeated_rows_notes(report) {
        body.push_str(&format!("<p>{}</p>", report::escape(&note)));
    }
    body.push_str("<table><tr><th>table</th><th>recipe</th><th>ROC AUC</th><th>PR AUC</th><th>Brier</th><th>ECE</th><th>ECE within floor</th><th>train s</th><th>MACs/row</th><th>batch rows/s</th><th>reasons µs</th></tr>");
    for s in &report.summaries {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{:.2}</td><td>{}</td><td>{:.0}</td><td>{:.1}</td></tr>",
            s.table, s.recipe, s.roc_auc, s.pr_auc, s.brier, s.ece, s.ece_within_floor, s.folds, s.train_seconds.mean,
            s.serving.macs_per_row, s.serving.batch_rows_per_second, s.serving.reasons_us
        ));
    }
    body.push_str("</table>");
    for t in &report.tables {
        let series: Vec<(String, Vec<(f64, f64)>)> = report
            .recipes
            .iter()
            .map(|r| {
                let points = report
                    .runs
                    .iter()
                    .filter(|run| run.table == t.table.name && &run.recipe == r)
                    .map(|run| ((run.fold + 1) as f64, run.test.roc_auc))
                    .collect();
                (r.clone(), points)
            })
            .collect();
        let lines: Vec<report::Series<'_>> = series.iter().map(|(n, p)| report::Series::line(n, p.clone())).collect();
        body.push_str(&format!("<h2>{}</h2>", t.table.name));
        body.push_str(&report::line_chart(&format!("ROC AUC per fold: {}", t.table.name), "fold", "ROC AUC", &lines));
    }
    report::page("churn benchmark", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_recipes_parse_or_say_what_is_wrong() {
        let t: BenchTable = "data/saas/accounts.csv:churned:1".parse().unwrap();
        assert_eq!((t.name.as_str(), t.target.as_str(), t.positive.as_deref()), ("saas", "churned", Some("1")));
        assert!("nothing".parse::<BenchTable>().unwrap_err().contains("PATH:TARGET"));
        let r = Recipe::parse("wide=default:model.hidden=[64];model.ensemble=3;dataset.numeric_bins=16").unwrap();
        assert_eq!(
            (r.name.as_str(), r.config.model.hidden.clone(), r.config.model.ensemble, r.config.dataset.numeric_bins),
            ("wide", vec![64], 3, 16)
        );
        assert_eq!(Recipe::parse("logistic").unwrap().config.model.kind, ModelKind::Logistic);
        assert!(Recipe::parse("x=default:model.dropout=1.5").unwrap_err().to_string().contains("model.dropout"));
        assert!(Recipe::parse("x=default:model.nope=1").unwrap_err().to_string().contains("nope"));
        assert!(Recipe::parse("x=default:dataset.target=1").unwrap_err().to_string().contains("unknown key"));
        assert!(Recipe::parse("fancy").is_err());
    }

    #[test]
    fn folds_are_stratified_and_seeded() {
        let y: Vec<bool> = (0..103).map(|i| i % 4 == 0).collect();
        let f = data::stratified_folds(&y, 5, 1).unwrap();
        for k in 0..5 {
            let rows: Vec<usize> = (0..y.len()).filter(|&i| f[i] == k).collect();
            let pos = rows.iter().filter(|&&i| y[i]).count();
            assert!((5..=6).contains(&pos), "fold {k}: {pos} positives");
            let split = data::fold_split(&y, &f, k, 0.2, 3).unwrap();
            assert_eq!(split.test, rows);
            assert_eq!(split.train.len() + split.validation.len() + split.test.len(), y.len());
            assert!(split.train.iter().chain(&split.validation).all(|i| f[*i] != k));
        }
        assert_eq!(f, data::stratified_folds(&y, 5, 1).unwrap());
        assert_ne!(f, data::stratified_folds(&y, 5, 2).unwrap());
    }
}
