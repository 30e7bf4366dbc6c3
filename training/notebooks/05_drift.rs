// %% [markdown]
// # 05 · Drift
//
// Is today's customer base still the one the model learned from? The bundle carries the
// training distribution of every feature (`reference.json`: deciles for numbers, one bin per
// category). The population stability index (PSI) compares a batch with it:
// PSI = Σ (actual − expected) · ln(actual / expected) over the bins. Below 0.1 the feature is
// stable, 0.1–0.2 worth watching, above 0.2 (the default alert threshold of the batch scorer
// and `churn drift`) a significant shift.
//
// Two batches: the held-out test customers as they are (no drift expected), and the same
// customers after a simulated price rise (monthly charges +20 %) and a shift of one-year
// contracts to month-to-month.

// %%
use churn_core::drift::DEFAULT_PSI_THRESHOLD;
use churn_core::scoring::drift_table;
use churn_core::table::TableReader;
use churn_training::notebook::{self, Notebook, bar_chart};

let mut nb = Notebook::start("05_drift")?;
let bundle = notebook::shared_model(&nb)?;
let test = notebook::test_split(&nb, &bundle)?;
let source = std::fs::read_to_string(churn_training::BUNDLED_DATA)?;
let mut lines = source.lines();
let header = lines.next().unwrap_or_default().to_string();
let column = |name: &str| header.split(',').position(|h| h == name).ok_or_else(|| anyhow::anyhow!("no column {name}"));
let (charges, contract) = (column("monthlycharges")?, column("contract")?);
let rows: Vec<&str> = lines.collect();
let batch = |shift: bool| -> anyhow::Result<std::path::PathBuf> {
    let mut out = header.clone() + "\n";
    for &i in &test.rows {
        let mut f: Vec<String> = rows[i].split(',').map(String::from).collect();
        if shift {
            f[charges] = format!("{:.2}", f[charges].parse::<f64>()? * 1.2);
            if f[contract] == "One year" {
                f[contract] = "Month-to-month".into();
            }
        }
        out += &f.join(",");
        out.push('\n');
    }
    let path = nb.reports_dir().join(if shift { "05_shifted_batch.csv" } else { "05_test_batch.csv" });
    std::fs::write(&path, out)?;
    Ok(path)
};
let same = drift_table(&bundle, TableReader::open(&batch(false)?)?, DEFAULT_PSI_THRESHOLD)?;
let shifted = drift_table(&bundle, TableReader::open(&batch(true)?)?, DEFAULT_PSI_THRESHOLD)?;
let sorted = |r: &churn_core::scoring::TableDrift| {
    let mut v: Vec<(String, f64)> = r.drift.features.iter().map(|f| (f.feature.clone(), f.psi)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
};

// %% [markdown]
// ## PSI per feature

// %%
nb.charts(vec![
    bar_chart("PSI: test customers as they are", "PSI", &sorted(&same), Some(("alert threshold", DEFAULT_PSI_THRESHOLD))),
    bar_chart("PSI: after the simulated shift", "PSI", &sorted(&shifted), Some(("alert threshold", DEFAULT_PSI_THRESHOLD))),
]);
let names = |r: &churn_core::scoring::TableDrift| r.drift.drifted_features().map(|f| f.feature.clone()).collect::<Vec<_>>().join(", ");
nb.text(format!(
    "as they are: {} of {} features above {DEFAULT_PSI_THRESHOLD} ({}); after the shift: {} ({}); mean churn probability {:.3} -> {:.3}",
    same.drift.drifted_features().count(),
    same.drift.features.len(),
    names(&same),
    shifted.drift.drifted_features().count(),
    names(&shifted),
    same.summary.mean_probability,
    shifted.summary.mean_probability
));

// %% [markdown]
// The price rise moves `monthlycharges` and the derived `price_trend` (today's bill against the
// lifetime average) and the contract change moves `contract`; fields that did not change stay
// near zero. The same check runs in production: the batch scorer writes these PSIs into each
// `scored/<key>.summary.json`, and `churn drift --model <bundle> --data <file>` runs it on any
// table. When labels arrive later, `churn evaluate` checks for concept drift against the
// bundle's own test figures.

// %%
nb.finish()?;
