// %% [markdown]
// # 04 · Explain
//
// Which fields drive the model, overall and for one customer. Two global views on the held-out
// test rows: **permutation importance** (how much ROC AUC drops when a field's values are
// shuffled among customers) and **mean |Shapley value|** (the average size of a field's share
// in a customer's probability). Then per-customer Shapley values for a few real customers,
// and the retention offer the playbook picks from them. Shapley values are computed in Rust
// with batched tract inference against the bundle's background sample (`churn_core::explain`);
// they agree with Python's `shap` package (tests/explain.rs). Customer ids are shown as keyed
// pseudonyms (`ID_PSEUDONYM_KEY`), never as ids.

// %%
use churn_core::explain::{self, ShapleyParams};
use churn_core::privacy::Pseudonymizer;
use churn_training::explanations;
use churn_training::notebook::{self, Notebook, bar_chart};

let mut nb = Notebook::start("04_explain")?;
let bundle = notebook::shared_model(&nb)?;
let test = notebook::test_split(&nb, &bundle)?;
let pseudonyms = Pseudonymizer::from_env()?;

// %% [markdown]
// ## Global importance

// %%
let permutation = explanations::permutation_importance(&bundle, &test.table, &test.rows, &test.y, 3, 1)?;
let sample: Vec<usize> = test.rows.iter().copied().take(200).collect();
let shap = explanations::explain_rows(&bundle, &test.table, &sample, ShapleyParams { permutations: 10, seed: 0 }, &pseudonyms, |_| {})?;
nb.charts(vec![
    bar_chart(
        "Permutation importance (test rows, 3 shuffles)",
        "ROC AUC drop",
        &permutation.iter().map(|f| (f.field.clone(), f.auc_drop)).collect::<Vec<_>>(),
        None,
    ),
    bar_chart("Mean |Shapley value| (200 test customers)", "probability", &shap.mean_abs_shapley(), None),
]);
let g = shap.occlusion_agreement();
nb.text(format!(
    "Shapley: {} permutations x {} background customers per customer. The API's fast occlusion method agrees with it at Spearman {:.2} (mean), same top-3 fields for {:.0} % of customers; the API therefore returns Shapley reasons.",
    shap.params.permutations, shap.background_rows, g.mean_spearman, 100.0 * g.same_top3
));

// %% [markdown]
// ## Three customers
//
// The riskiest, a middle and a low-risk test customer. Bars are Shapley values: positive ones
// raise the churn probability above the average customer's (the base value), negative ones
// lower it; together they add up to the difference. The offer is the playbook's: the first
// offer, going down the customer's reasons, that addresses that reason's field.

// %%
let mut order: Vec<usize> = (0..shap.customers.len()).collect();
order.sort_by(|&a, &b| shap.customers[b].prediction.total_cmp(&shap.customers[a].prediction));
let names: Vec<&str> = bundle.spec.input_names().collect();
let view = test.table.view(&names)?;
let mut charts = Vec::new();
for &k in &[order[0], order[order.len() / 2], order[order.len() - 1]] {
    let c = &shap.customers[k];
    let row = view.row(c.row);
    let mut bars: Vec<(String, f64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("{n} = {}", churn_core::RawRow::value(&row, i, n).display()), c.shapley[i]))
        .collect();
    bars.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    bars.truncate(8);
    let tier = bundle.playbook.tier(c.prediction);
    let reasons = explain::top_reasons(&bundle.spec, &row, &c.shapley, names.len());
    let offer = bundle.playbook.offer_for(tier, reasons.iter().map(|r| (r.feature.as_str(), r.value.as_str())));
    nb.text(format!(
        "customer {}: churn probability {:.3} (base {:.3}); tier {} -> {}; offer: {}",
        c.pseudonym.as_deref().unwrap_or("?"),
        c.prediction,
        c.base_value,
        tier.name,
        tier.action,
        offer.map(|(o, f)| format!("{} (addresses {f}): {}", o.name, o.action)).unwrap_or_else(|| "none".into())
    ));
    charts.push(bar_chart(&format!("Customer {} (p = {:.2})", c.pseudonym.as_deref().unwrap_or("?"), c.prediction), "Shapley value", &bars, None));
}
nb.charts(charts);

// %% [markdown]
// ## The offers the playbook picks for contacted test customers

// %%
let mix = explanations::offer_mix(
    &bundle.spec,
    &bundle.scorer,
    bundle.background.as_ref().expect("bundles from this version carry a background sample"),
    &bundle.playbook,
    &test.table,
    &test.rows,
    &bundle.scorer.predict(&test.x)?,
    explain::REASON_PERMUTATIONS,
)?;
nb.table(
    &["offer", "action", "customers", "expected profit"],
    &mix.iter().map(|m| vec![m.offer.clone(), m.action.clone(), m.customers.to_string(), format!("{:.0}", m.expected_value)]).collect::<Vec<_>>(),
);

// %%
nb.finish()?;
