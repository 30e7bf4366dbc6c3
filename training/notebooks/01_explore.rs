// %% [markdown]
// # 01 · Explore the Telco customers
//
// Data quality first (missing values, types, outliers), then who churns: the churn rate by
// contract, tenure, payment method and services. Everything here reads the bundled table
// `training/data/telco/customers.csv` (4,930 customers) with the training configuration
// `training/configs/telco.toml`, through the same reader and schema resolution as training.

// %%
use churn_core::RawValue;
use churn_core::spec::ColumnKind;
use churn_training::notebook::{Notebook, bar_chart, line_chart};
use churn_training::params::TrainConfig;
use churn_training::report::Series;
use churn_training::{BUNDLED_CONFIG, BUNDLED_DATA, data};

let mut nb = Notebook::start("01_explore")?;
let config = TrainConfig::load(std::path::Path::new(BUNDLED_CONFIG))?;
let (table, schema, churned) = data::read_labelled(std::path::Path::new(BUNDLED_DATA), &config.dataset)?;
let rate = |ys: &[bool]| ys.iter().filter(|y| **y).count() as f64 / ys.len().max(1) as f64;
nb.text(format!(
    "{} customers, {} columns; {} churned ({:.1} %)",
    table.rows,
    table.columns.len(),
    churned.iter().filter(|y| **y).count(),
    100.0 * rate(&churned)
));

// %% [markdown]
// ## Data quality
//
// Types as the schema resolves them, blank values per column, and outliers by Tukey's fences
// (beyond 1.5 interquartile ranges outside the quartiles). Blank `totalcharges` belong to
// customers in their first month: training imputes them with the median and the derived
// `avg_monthly_charge` falls back to the monthly charge.

// %%
let text_of = |v: &RawValue| v.display().trim().to_string();
let mut quality = Vec::new();
for (name, kind) in &schema.inputs {
    let values = table.column_values(name)?;
    let blank = values.iter().filter(|v| text_of(v).is_empty()).count();
    let (kind_name, outliers) = match kind {
        ColumnKind::Numeric => {
            let mut x: Vec<f64> = values.iter().filter_map(|v| text_of(v).parse::<f64>().ok()).collect();
            x.sort_by(f64::total_cmp);
            let q = |p: f64| x[((x.len() - 1) as f64 * p).round() as usize];
            let (q1, q3) = (q(0.25), q(0.75));
            let (lo, hi) = (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1));
            ("numeric", format!("{} (fences {lo:.1} .. {hi:.1}; range {:.1} .. {:.1})", x.iter().filter(|v| **v < lo || **v > hi).count(), x[0], x[x.len() - 1]))
        }
        ColumnKind::Categorical => ("categorical", format!("{} distinct values", table.distinct(name))),
    };
    quality.push(vec![name.clone(), kind_name.into(), blank.to_string(), outliers]);
}
nb.table(&["column", "type", "blank", "outliers / values"], &quality);

// %% [markdown]
// ## Distributions
//
// Tenure and monthly charge for customers who stayed and who left (share of each group per
// bin). Churners are concentrated in the first months and at higher monthly charges.

// %%
let numbers = |name: &str| -> anyhow::Result<Vec<Option<f64>>> {
    Ok(table.column_values(name)?.iter().map(|v| text_of(v).parse::<f64>().ok()).collect())
};
let histogram = |x: &[Option<f64>], keep: bool, lo: f64, hi: f64, bins: usize| -> Vec<(f64, f64)> {
    let mut counts = vec![0usize; bins];
    let mut n = 0;
    for (v, y) in x.iter().zip(&churned) {
        if let (Some(v), true) = (v, *y == keep) {
            let b = (((v - lo) / (hi - lo)) * bins as f64).floor().clamp(0.0, bins as f64 - 1.0) as usize;
            counts[b] += 1;
            n += 1;
        }
    }
    counts.iter().enumerate().map(|(i, c)| (lo + (i as f64 + 0.5) * (hi - lo) / bins as f64, *c as f64 / n.max(1) as f64)).collect()
};
let tenure = numbers("tenure")?;
let charges = numbers("monthlycharges")?;
nb.charts(vec![
    line_chart("Tenure", "months", "share of group", &[
        Series::line("stayed", histogram(&tenure, false, 0.0, 72.0, 18)),
        Series::line("churned", histogram(&tenure, true, 0.0, 72.0, 18)),
    ]),
    line_chart("Monthly charge", "charge", "share of group", &[
        Series::line("stayed", histogram(&charges, false, 18.0, 120.0, 17)),
        Series::line("churned", histogram(&charges, true, 18.0, 120.0, 17)),
    ]),
]);

// %% [markdown]
// ## Churn rate by segment
//
// The churn rate of each value of a segment column, against the overall rate (dashed). The
// tenure buckets and the count of add-on services are the derived features of the training
// configuration, computed here from the raw columns.

// %%
let overall = rate(&churned);
let by = |labels: Vec<String>| -> Vec<(String, f64)> {
    let mut groups: std::collections::BTreeMap<String, Vec<bool>> = Default::default();
    for (l, y) in labels.into_iter().zip(&churned) {
        groups.entry(l).or_default().push(*y);
    }
    let mut v: Vec<(String, f64)> = groups.into_iter().map(|(k, ys)| (format!("{k} ({})", ys.len()), rate(&ys))).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
};
let column = |name: &str| -> anyhow::Result<Vec<String>> { Ok(table.column_values(name)?.iter().map(text_of).collect()) };
let bucket = |t: &Option<f64>| match t.unwrap_or(0.0) {
    t if t < 6.0 => "0-5 months",
    t if t < 12.0 => "6-11 months",
    t if t < 24.0 => "12-23 months",
    t if t < 48.0 => "24-47 months",
    _ => "48+ months",
}
.to_string();
let services = ["phoneservice", "multiplelines", "onlinesecurity", "onlinebackup", "deviceprotection", "techsupport", "streamingtv", "streamingmovies"];
let mut counts = vec![0usize; table.rows];
for s in services {
    for (c, v) in counts.iter_mut().zip(column(s)?) {
        *c += usize::from(v == "Yes");
    }
}
let mut charts = Vec::new();
for (title, labels) in [
    ("Churn rate by contract", column("contract")?),
    ("Churn rate by tenure bucket", tenure.iter().map(bucket).collect()),
    ("Churn rate by payment method", column("paymentmethod")?),
    ("Churn rate by internet service", column("internetservice")?),
    ("Churn rate by add-on services", counts.iter().map(|c| format!("{c} services")).collect()),
] {
    let rates = by(labels);
    charts.push(bar_chart(title, "churn rate", &rates, Some(("overall", overall))));
}
nb.charts(charts);

// %% [markdown]
// Month-to-month contracts, the first year, electronic-check payment and fibre internet are
// where churn concentrates — the signals the model and the retention playbook's offers use.

// %%
nb.finish()?;
