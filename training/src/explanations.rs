//! Explanations of a bundle on a customer table: per-customer Shapley values (with the API's
//! occlusion reasons beside them, and how well the two agree) and global importance (mean
//! |Shapley| and permutation importance). Used by `churn explain` and the `04_explain` notebook.
//!
//! The methods themselves live in `churn_core::explain`; this module runs them over table rows
//! and summarises.

use churn_core::explain::{self, Attribution, ShapleyParams};
use churn_core::metrics::average_ranks;
use churn_core::privacy::Pseudonymizer;
use churn_core::spec::SlotValues;
use churn_core::table::{Table, TableView};
use churn_core::{Bundle, CoreError, RawRow, RawValue};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// One explained customer.
#[derive(Debug, Clone, Serialize)]
pub struct CustomerExplanation {
    /// 0-based data row in the table.
    pub row: usize,
    /// Keyed pseudonym of the customer id (never the id itself); `None` without an id column.
    pub pseudonym: Option<String>,
    pub prediction: f64,
    pub base_value: f64,
    /// Shapley value per input field (the bundle's input order).
    pub shapley: Vec<f64>,
    /// The API's occlusion contribution per input field.
    pub occlusion: Vec<f64>,
}

/// Explanations of several customers.
#[derive(Debug, Clone, Serialize)]
pub struct Explanations {
    pub fields: Vec<String>,
    pub background_rows: usize,
    pub params: ShapleyParams,
    pub customers: Vec<CustomerExplanation>,
}

/// How two attributions of the same customers agree.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Agreement {
    /// Mean over customers of the Spearman rank correlation of the two attribution vectors.
    pub mean_spearman: f64,
    pub min_spearman: f64,
    /// Share of customers whose three largest fields (by value) are the same set.
    pub same_top3: f64,
}

fn not_explainable(bundle: &Bundle) -> anyhow::Error {
    anyhow::anyhow!(
        "{} has no background sample (background.json): it was trained before explanations existed; retrain it with this version of churn",
        bundle.manifest.model_name
    )
}

/// Shapley values and occlusion contributions of `rows` (0-based data rows) of `table`.
pub fn explain_rows(
    bundle: &Bundle,
    table: &Table,
    rows: &[usize],
    params: ShapleyParams,
    pseudonyms: &Pseudonymizer,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<Explanations> {
    let background = bundle.background.as_ref().ok_or_else(|| not_explainable(bundle))?;
    let spec = &bundle.spec;
    let names: Vec<&str> = spec.input_names().collect();
    table.require(names.iter().copied())?;
    let view = table.view(&names)?;
    let ids = match spec.id_column.as_deref().filter(|c| table.columns.iter().any(|t| t == c)) {
        Some(c) => Some(table.column_values(c)?),
        None => None,
    };
    let mut scratch = SlotValues::default();
    let mut customers = Vec::with_capacity(rows.len());
    for (done, &i) in rows.iter().enumerate() {
        anyhow::ensure!(i < table.rows, "row {} is past the end of {} ({} rows)", i + 1, table.file, table.rows);
        let row = view.row(i);
        let locate = |error| CoreError::Row { file: table.file.clone(), location: table.locate(i), error };
        // The customer's row, then its occlusion rows: one model call, as in the API.
        let mut batch = spec.transform(&row).map_err(locate)?;
        let Attribution { base_value, prediction, values } = explain::shapley(spec, &bundle.scorer, background, &row, params)?;
        explain::occlusion_rows(spec, &row, &mut scratch, &mut batch);
        let p = bundle.scorer.predict(&batch)?;
        let occlusion = explain::occlusion_contributions(p[0], &p[1..]);
        customers.push(CustomerExplanation {
            row: i,
            pseudonym: ids.as_ref().map(|v| pseudonyms.pseudonym(v[i].display().trim())),
            prediction,
            base_value,
            shapley: values,
            occlusion,
        });
        progress(done + 1);
    }
    Ok(Explanations { fields: names.iter().map(|s| s.to_string()).collect(), background_rows: background.rows.len(), params, customers })
}

/// Spearman rank correlation (Pearson correlation of the ranks). A dozen lines; the statistics
/// crates that have it would bring a linear-algebra stack for this one function.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (average_ranks(a), average_ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 { 0.0 } else { cov / (va * vb).sqrt() }
}

/// Indices of the `k` largest values, as a sorted set.
pub fn top_k(v: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    order.truncate(k);
    order.sort_unstable();
    order
}

/// How attributions `a` and `b` (one vector per customer) agree.
pub fn agreement<'a>(pairs: impl Iterator<Item = (&'a [f64], &'a [f64])>) -> Agreement {
    let (mut sum, mut min, mut same, mut n) = (0.0, f64::INFINITY, 0usize, 0usize);
    for (a, b) in pairs {
        let s = spearman(a, b);
        sum += s;
        min = min.min(s);
        same += usize::from(top_k(a, 3) == top_k(b, 3));
        n += 1;
    }
    let n = n.max(1) as f64;
    Agreement { mean_spearman: sum / n, min_spearman: if min.is_finite() { min } else { 0.0 }, same_top3: same as f64 / n }
}

impl Explanations {
    /// Agreement of the API's occlusion contributions with the Shapley values.
    pub fn occlusion_agreement(&self) -> Agreement {
        agreement(self.customers.iter().map(|c| (c.shapley.as_slice(), c.occlusion.as_slice())))
    }

    /// Mean |Shapley value| per field, largest first.
    pub fn mean_abs_shapley(&self) -> Vec<(String, f64)> {
        let n = self.customers.len().max(1) as f64;
        let mut v: Vec<(String, f64)> = self
            .fields
            .iter()
            .enumerate()
            .map(|(f, name)| (name.clone(), self.customers.iter().map(|c| c.shapley[f].abs()).sum::<f64>() / n))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }
}

/// A table row with one field read from another row.
struct Swapped<'a> {
    view: &'a TableView,
    row: usize,
    field: usize,
    from: usize,
}

impl RawRow for Swapped<'_> {
    fn value(&self, index: usize, name: &str) -> RawValue<'_> {
        let r = if index == self.field { self.from } else { self.row };
        // Owned: the view's rows are built per call.
        match self.view.row(r).value(index, name) {
            RawValue::Text(t) => RawValue::Text(std::borrow::Cow::Owned(t.into_owned())),
            RawValue::Number(x) => RawValue::Number(x),
            RawValue::Missing => RawValue::Missing,
            RawValue::Invalid(d) => RawValue::Invalid(d),
        }
    }
}

/// Permutation importance of one field: how much ROC AUC drops when its values are shuffled
/// among the rows (mean and standard deviation over `repeats` shuffles).
#[derive(Debug, Clone, Serialize)]
pub struct PermutationImportance {
    pub field: String,
    pub auc_drop: f64,
    pub sd: f64,
}

/// Permutation importance of every input field on labelled `rows` of `table`, largest first.
pub fn permutation_importance(
    bundle: &Bundle,
    table: &Table,
    rows: &[usize],
    y: &[bool],
    repeats: usize,
    seed: u64,
) -> anyhow::Result<Vec<PermutationImportance>> {
    let spec = &bundle.spec;
    let names: Vec<&str> = spec.input_names().collect();
    let view = table.view(&names)?;
    let width = spec.width();
    let mut scratch = SlotValues::default();
    let mut x = crate::data::features(table, spec, rows)?;
    let score = |x: &[f32]| -> anyhow::Result<f64> { Ok(churn_core::metrics::roc_auc(&bundle.scorer.predict(x)?, y)?) };
    let baseline = score(&x)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(names.len());
    for (field, name) in names.iter().enumerate() {
        let mut drops = Vec::with_capacity(repeats);
        for _ in 0..repeats.max(1) {
            let mut from = rows.to_vec();
            from.shuffle(&mut rng);
            for ((o, &i), &j) in x.chunks_mut(width).zip(rows).zip(&from) {
                let r = Swapped { view: &view, row: i, field, from: j };
                // A value another training row had transforms; should it not, the row keeps its own.
                if spec.transform_into(&r, &mut scratch, o, None).is_err() {
                    let _ = spec.transform_into(&view.row(i), &mut scratch, o, None);
                }
            }
            drops.push(baseline - score(&x)?);
        }
        let m = drops.iter().sum::<f64>() / drops.len() as f64;
        let sd = (drops.iter().map(|d| (d - m).powi(2)).sum::<f64>() / (drops.len().max(2) - 1) as f64).sqrt();
        out.push(PermutationImportance { field: name.to_string(), auc_drop: m, sd });
    }
    out.sort_by(|a, b| b.auc_drop.total_cmp(&a.auc_drop));
    Ok(out)
}

/// How many contacted customers get each personalised offer, and its expected value.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OfferCount {
    /// Offer name, or `(tier action only)` when no offer fits the customer's reasons.
    pub offer: String,
    pub action: String,
    pub customers: usize,
    /// Sum over these customers of the offer's expected profit.
    pub expected_value: f64,
}

/// The personalised offers the playbook picks for `rows` of `table` with probabilities `p`
/// (customers in tiers that are not contacted are skipped). Reasons are Shapley values with the
/// API's budget, so the mix is what the API would answer for these customers.
// The arguments are the bundle's parts and the rows' data; a struct for them would be used by
// this one function only.
#[allow(clippy::too_many_arguments)]
pub fn offer_mix(
    spec: &churn_core::FeatureSpec,
    scorer: &churn_core::Scorer,
    background: &explain::Background,
    playbook: &churn_core::Playbook,
    table: &Table,
    rows: &[usize],
    p: &[f32],
    permutations: usize,
) -> anyhow::Result<Vec<OfferCount>> {
    let names: Vec<&str> = spec.input_names().collect();
    let view = table.view(&names)?;
    let none = "(tier action only)";
    let mut counts: Vec<OfferCount> = playbook
        .offers
        .iter()
        .map(|o| OfferCount { offer: o.name.clone(), action: o.action.clone(), customers: 0, expected_value: 0.0 })
        .chain(std::iter::once(OfferCount { offer: none.into(), action: "the tier's action".into(), customers: 0, expected_value: 0.0 }))
        .collect();
    for (&i, &prob) in rows.iter().zip(p) {
        let tier = playbook.tier(f64::from(prob));
        if !tier.contact {
            continue;
        }
        let row = view.row(i);
        let a = explain::shapley(spec, scorer, background, &row, ShapleyParams { permutations, seed: 0 })?;
        let (_, pick) = explain::reasons_and_offer(spec, playbook, tier, &row, &a.values, 0);
        let (slot, value) = match pick {
            Some(p) => (p.index, p.offer.expected_value(f64::from(prob), &playbook.business)),
            None => (counts.len() - 1, playbook.expected_value(f64::from(prob))),
        };
        counts[slot].customers += 1;
        counts[slot].expected_value += value;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_matches_scipy() {
        // scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) -> 0.8207826816681233
        let r = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]);
        assert!((r - 0.8207826816681233).abs() < 1e-12, "{r}");
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn top3_and_agreement() {
        assert_eq!(top_k(&[0.1, 0.5, -1.0, 0.3, 0.2], 3), vec![1, 3, 4]);
        let a = [0.1, 0.5, -1.0, 0.3, 0.2];
        // Ranks 2, 4, 1, 3, 5 against a's 2, 5, 1, 4, 3: rho = 1 - 6·6/120 = 0.7, with the same
        // top three fields (1, 3, 4) in another order; c's top three differ.
        let b = [0.0, 0.4, -0.5, 0.35, 0.45];
        let c = [0.9, 0.4, -0.5, 0.35, 0.1];
        let g = agreement([(&a[..], &b[..]), (&a[..], &a[..]), (&a[..], &c[..])].into_iter());
        assert_eq!(g.same_top3, 2.0 / 3.0);
        // c ranks 5, 4, 1, 3, 2: rho = 1 - 6·12/120 = 0.4; the mean is (0.7 + 1 + 0.4) / 3.
        assert!((g.min_spearman - 0.4).abs() < 1e-12, "{}", g.min_spearman);
        assert!((g.mean_spearman - 0.7).abs() < 1e-12, "{}", g.mean_spearman);
    }
}
