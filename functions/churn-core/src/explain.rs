//! Per-customer reasons: which raw fields push this customer's churn probability up, so a
//! retention offer can address them.
//!
//! Method: **occlusion against a typical customer**. For each input field, the record is scored
//! again with that one field replaced by its typical training value (the median for a number,
//! the most frequent category for a category), through the same transform — so derived features
//! that use the field (ratios, buckets, counts) change with it — and the same model. A field's
//! contribution is how much lower the probability would be if the field were typical:
//! `p(customer) - p(customer with this field typical)`. Positive values raise the risk.
//! Contributions are exact answers to that what-if question; they are not additive like SHAP
//! values (the explanations issue brings those).

use crate::row::{RawRow, RawValue};
use crate::spec::{FeatureSpec, SlotValues};

/// One field's part in a customer's score.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reason {
    /// The input field.
    pub feature: String,
    /// The customer's value of it, as text (`missing` when blank).
    pub value: String,
    /// Probability drop if the field were typical; > 0 means the field raises the risk.
    pub contribution: f64,
}

/// `row` with input `index` replaced by `value`.
struct Substituted<'a, R: ?Sized> {
    row: &'a R,
    index: usize,
    value: RawValue<'a>,
}

impl<R: RawRow + ?Sized> RawRow for Substituted<'_, R> {
    fn value(&self, index: usize, name: &str) -> RawValue<'_> {
        if index == self.index { self.value.clone() } else { self.row.value(index, name) }
    }
}

/// Appends to `out` one feature vector per input field of `spec`: `row` with that field made
/// typical. `row` must already transform without problems (it was scored).
pub fn occlusion_rows(spec: &FeatureSpec, row: &(impl RawRow + ?Sized), scratch: &mut SlotValues, out: &mut Vec<f32>) {
    let width = spec.width();
    for index in 0..spec.inputs.len() {
        let start = out.len();
        out.resize(start + width, 0.0);
        let typical = Substituted { row, index, value: spec.typical_value(index) };
        // A row that transformed cleanly still does with one field set to a training value;
        // should it not, the unchanged row is used and the field's contribution is 0.
        if spec.transform_into(&typical, scratch, &mut out[start..], None).is_err() {
            let _ = spec.transform_into(row, scratch, &mut out[start..], None);
        }
    }
}

/// The `top_k` fields that raise `p` the most (positive contributions only, largest first),
/// from the probabilities of [`occlusion_rows`] (`occluded[i]` for input `i`).
pub fn top_reasons(spec: &FeatureSpec, row: &(impl RawRow + ?Sized), p: f32, occluded: &[f32], top_k: usize) -> Vec<Reason> {
    let mut reasons: Vec<Reason> = spec
        .inputs
        .iter()
        .enumerate()
        .zip(occluded)
        .filter_map(|((i, input), q)| {
            let contribution = f64::from(p) - f64::from(*q);
            (contribution > 1e-6).then(|| {
                let v = row.value(i, &input.name).display();
                Reason {
                    feature: input.name.clone(),
                    value: if v.trim().is_empty() { "missing".into() } else { v },
                    contribution,
                }
            })
        })
        .collect();
    reasons.sort_by(|a, b| b.contribution.total_cmp(&a.contribution).then_with(|| a.feature.cmp(&b.feature)));
    reasons.truncate(top_k);
    reasons
}
