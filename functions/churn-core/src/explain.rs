//! Per-customer explanations: which raw fields push this customer's churn probability up, so a
//! retention offer can address them. Two methods, both over the raw input fields (what a person
//! knows: `contract`, `tenure`, …), both through the same transform and model as a prediction.
//!
//! **Shapley values** ([`shapley`]): the reference method. Each field's share of
//! `p(customer) - E[p(background customer)]`, estimated by sampling permutations of the fields
//! (Štrumbelj & Kononenko 2014, the same estimator as `shap`'s `PermutationExplainer`): for a
//! permutation and a background customer, fields are switched from the background customer's
//! values to this customer's one at a time, and each switch's change in probability is credited
//! to the field switched. Every permutation is walked against every background customer, so
//! the values add up exactly to `prediction - base_value`; permutations come in antithetic pairs
//! (a permutation and its reverse) to cut variance, from a seeded ChaCha generator
//! (deterministic). The background sample is stored in the bundle (`background.json`, training
//! rows without their ids). Cost: `permutations × background × (fields + 1)` rows through the
//! model, in one batched tract call per customer: the reference path, used by `churn explain`,
//! the reports and the check against Python's `shap` (under a millisecond per customer with
//! the API's budget, release build).
//!
//! **[`Explainer`]**: the same values without running the model through tract, for the API's
//! per-request budget. It walks the same permutations against the same background customers,
//! but updates the model's first layer by the inputs each switched field changes instead of
//! transforming and scoring every mix (tens of microseconds per customer); tested equal to the
//! reference path to 1e-5.
//!
//! **Occlusion against a typical customer** ([`occlusion_rows`]): the API's opt-in
//! microsecond method. For each input field, the record is scored
//! again with that one field replaced by its typical training value (the median for a number,
//! the most frequent category for a category), through the same transform — so derived features
//! that use the field (ratios, buckets, counts) change with it — and the same model. A field's
//! contribution is how much lower the probability would be if the field were typical:
//! `p(customer) - p(customer with this field typical)`. Positive values raise the risk.
//! Contributions are exact answers to that what-if question; they are not additive like
//! Shapley values. How well its top reasons agree with the Shapley ones is printed by
//! `churn explain` and tested (tests/explain.rs).

use std::borrow::Cow;
use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::network::{Active, Buffers, Network};
use crate::onnx::dense_stack_from_onnx;
use crate::row::{RawRow, RawValue};
use crate::scorer::Scorer;
use crate::spec::{FeatureSpec, InputKind, SlotValues, SwitchScratch};

/// Permutations behind the prediction API's reasons (and the report's offer mix): two agree
/// with a 40-permutation estimate at Spearman 0.98 on Telco customers (tests/explain.rs).
pub const REASON_PERMUTATIONS: usize = 2;

/// File name of the Shapley background sample inside a bundle.
pub const BACKGROUND: &str = "background.json";

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

/// Occlusion contributions from the probabilities of [`occlusion_rows`]: `p - occluded[i]` for
/// input `i`.
pub fn occlusion_contributions(p: f32, occluded: &[f32]) -> Vec<f64> {
    occluded.iter().map(|q| f64::from(p) - f64::from(*q)).collect()
}

/// The `top_k` fields that raise the risk the most (positive contributions only, largest first)
/// from per-input `contributions` (occlusion or Shapley).
pub fn top_reasons(spec: &FeatureSpec, row: &(impl RawRow + ?Sized), contributions: &[f64], top_k: usize) -> Vec<Reason> {
    let mut reasons: Vec<Reason> = spec
        .inputs
        .iter()
        .enumerate()
        .zip(contributions)
        .filter(|(_, contribution)| **contribution > 1e-6)
        .map(|((i, input), &contribution)| {
            let v = row.value(i, &input.name).display();
            Reason { feature: input.name.clone(), value: if v.trim().is_empty() { "missing".into() } else { v }, contribution }
        })
        .collect();
    reasons.sort_by(|a, b| b.contribution.total_cmp(&a.contribution).then_with(|| a.feature.cmp(&b.feature)));
    reasons.truncate(top_k);
    reasons
}

/// The playbook's offer chosen for a customer, with where it sits in `playbook.offers`.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferPick<'p> {
    pub index: usize,
    pub offer: &'p crate::playbook::Offer,
    /// The reason (input field) the offer addresses.
    pub field: String,
}

/// What a customer in `tier` is told, from per-input `contributions`: the `top_k` reasons, and
/// the playbook's offer chosen from *every* positive reason (an offer may address a field below
/// the top few). The one rule the API, `churn score` and the reports share.
pub fn reasons_and_offer<'p>(
    spec: &FeatureSpec,
    playbook: &'p crate::Playbook,
    tier: &crate::playbook::Tier,
    row: &(impl RawRow + ?Sized),
    contributions: &[f64],
    top_k: usize,
) -> (Vec<Reason>, Option<OfferPick<'p>>) {
    let mut reasons = top_reasons(spec, row, contributions, spec.inputs.len());
    let pick = playbook.offer_for(tier, reasons.iter().map(|r| (r.feature.as_str(), r.value.as_str()))).map(|(offer, field)| OfferPick {
        index: playbook.offers.iter().position(|o| std::ptr::eq(o, offer)).expect("an offer of this playbook"),
        offer,
        field: field.to_string(),
    });
    reasons.truncate(top_k);
    (reasons, pick)
}

/// Training customers the Shapley values are measured against: raw values as text (as they read
/// in a CSV), `None` for blank, in the order of `columns` (the spec's inputs). No id column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Background {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Background {
    /// Checks that the sample fits `spec`: same inputs in the same order, whole rows
    /// ([`Self::check_shape`]), and every row transforms.
    pub fn check(&self, spec: &FeatureSpec) -> Result<()> {
        self.check_shape(spec)?;
        for (i, row) in self.rows.iter().enumerate() {
            spec.transform(&BackgroundRow(row)).map_err(|error| bad_background_row(i, error))?;
        }
        Ok(())
    }

    /// Checks the sample's columns and row lengths against `spec`, not its values (building an
    /// [`Explainer`] transforms every row and reports a bad one as [`Self::check`] does).
    pub fn check_shape(&self, spec: &FeatureSpec) -> Result<()> {
        let bad = |problem: String| CoreError::ModelFile { file: BACKGROUND, problem };
        let inputs: Vec<&str> = spec.input_names().collect();
        if self.columns.iter().map(String::as_str).ne(inputs.iter().copied()) {
            return Err(bad(format!("columns {:?} are not the model's inputs {inputs:?}", self.columns)));
        }
        if self.rows.is_empty() {
            return Err(bad("no rows".into()));
        }
        for (i, row) in self.rows.iter().enumerate() {
            if row.len() != inputs.len() {
                return Err(bad(format!("row {i} has {} values, expected {}", row.len(), inputs.len())));
            }
        }
        Ok(())
    }
}

/// One background row read as a raw record.
pub struct BackgroundRow<'a>(pub &'a [Option<String>]);

fn background_value(row: &[Option<String>], index: usize) -> RawValue<'_> {
    match row.get(index) {
        Some(Some(v)) => RawValue::Text(Cow::Borrowed(v)),
        _ => RawValue::Missing,
    }
}

impl RawRow for BackgroundRow<'_> {
    fn value(&self, index: usize, _name: &str) -> RawValue<'_> {
        background_value(self.0, index)
    }
}

/// A customer's fields where `from_x` is set, a background customer's elsewhere. Both sides
/// are resolved to values once per explanation (the customer's fields looked up by name, the
/// background's numbers parsed), so the thousands of mixed rows cost no lookups or parsing.
struct Mixed<'a> {
    x: &'a [RawValue<'a>],
    background: &'a [RawValue<'a>],
    from_x: &'a [bool],
}

impl RawRow for Mixed<'_> {
    fn value(&self, index: usize, _name: &str) -> RawValue<'_> {
        if self.from_x[index] { self.x[index].clone() } else { self.background[index].clone() }
    }
}

/// A background row as values: numbers of numeric inputs parsed (text that does not parse is
/// left for the transform to report), everything else as text.
fn resolve_background<'a>(spec: &FeatureSpec, row: &'a [Option<String>]) -> Vec<RawValue<'a>> {
    spec.inputs
        .iter()
        .zip(row)
        .map(|(input, v)| match (v, &input.kind) {
            (None, _) => RawValue::Missing,
            (Some(t), InputKind::Numeric { .. }) => match t.trim().parse::<f64>() {
                Ok(x) => RawValue::Number(x),
                Err(_) => RawValue::Text(Cow::Borrowed(t)),
            },
            (Some(t), InputKind::Categorical) => RawValue::Text(Cow::Borrowed(t)),
        })
        .collect()
}

/// Budget and seed of the Shapley estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShapleyParams {
    /// Permutations of the fields (rounded up to an even number: antithetic pairs). Each is
    /// walked against every background customer.
    pub permutations: usize,
    pub seed: u64,
}

impl Default for ShapleyParams {
    fn default() -> Self {
        ShapleyParams { permutations: 10, seed: 0 }
    }
}

/// Shapley values of one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// Mean probability of the background customers.
    pub base_value: f64,
    /// This customer's probability.
    pub prediction: f64,
    /// One value per input field (the spec's order); they sum to `prediction - base_value`.
    pub values: Vec<f64>,
}

/// The field orders walked: `params.permutations` rounded up to antithetic pairs, seeded.
fn orders(m: usize, params: ShapleyParams) -> Vec<Vec<usize>> {
    let pairs = params.permutations.div_ceil(2).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut orders: Vec<Vec<usize>> = Vec::with_capacity(2 * pairs);
    for _ in 0..pairs {
        let mut order: Vec<usize> = (0..m).collect();
        order.shuffle(&mut rng);
        let reversed: Vec<usize> = order.iter().rev().copied().collect();
        orders.push(order);
        orders.push(reversed);
    }
    orders
}

/// Row `i` of the background sample, which the feature transform refuses.
fn bad_background_row(i: usize, error: crate::error::RowError) -> CoreError {
    CoreError::Row { file: BACKGROUND.into(), location: format!("row {i}"), error }
}

/// Shapley values are measured against background customers, over at least one input.
fn no_background() -> CoreError {
    CoreError::ModelFile { file: BACKGROUND, problem: "Shapley values need a background sample and at least one input".into() }
}

/// Shapley values of `row` against `background` (see the module documentation).
pub fn shapley(
    spec: &FeatureSpec,
    scorer: &Scorer,
    background: &Background,
    row: &(impl RawRow + ?Sized),
    params: ShapleyParams,
) -> Result<Attribution> {
    let m = spec.inputs.len();
    let n = background.rows.len();
    if n == 0 || m == 0 {
        return Err(no_background());
    }
    let orders = orders(m, params);
    let width = spec.width();
    let chain = m + 1;
    let mut features = vec![0.0f32; orders.len() * n * chain * width];
    let mut scratch = SlotValues::default();
    let mut from_x = vec![false; m];
    let mut rows = features.chunks_mut(width);
    let x: Vec<RawValue<'_>> = spec.inputs.iter().enumerate().map(|(i, input)| row.value(i, &input.name)).collect();
    let resolved: Vec<Vec<RawValue<'_>>> = background.rows.iter().map(|b| resolve_background(spec, b)).collect();
    for order in &orders {
        for b in &resolved {
            from_x.fill(false);
            for step in 0..chain {
                if step > 0 {
                    from_x[order[step - 1]] = true;
                }
                let mixed = Mixed { x: &x, background: b, from_x: &from_x };
                let out = rows.next().expect("sized for every chain row");
                spec.transform_into(&mixed, &mut scratch, out, None)
                    .map_err(|error| CoreError::Untransformable { what: "a mix of this customer and a background customer", error })?;
            }
        }
    }
    let p = scorer.predict(&features)?;
    let mut values = vec![0.0f64; m];
    let mut base = 0.0f64;
    let walks = (orders.len() * n) as f64;
    for (walk, probs) in p.chunks(chain).enumerate() {
        let order = &orders[walk / n];
        base += f64::from(probs[0]);
        for (step, &field) in order.iter().enumerate() {
            values[field] += f64::from(probs[step + 1]) - f64::from(probs[step]);
        }
    }
    values.iter_mut().for_each(|v| *v /= walks);
    Ok(Attribution { base_value: base / walks, prediction: f64::from(p[chain - 1]), values })
}

/// The same Shapley values as [`shapley`], computed without tract, for models written by this
/// project (a stack of dense layers: [`Network`]): the prediction API's path. Same estimator,
/// permutations, background customers and arithmetic on probabilities; only the evaluation of
/// each mixed customer differs. Along a walk, consecutive mixes differ in one field, and the
/// first layer is linear: switching a field changes a few model inputs (its own, and derived
/// features that read it: [`FeatureSpec::switch_field`]), so the first layer's pre-activation
/// is updated by those inputs' weight columns instead of transforming the whole mix and
/// multiplying the whole vector; the rest of the network (a hidden layer or two) is evaluated
/// as usual. A switch that changes nothing (the customer and the background customer agree on
/// the field) costs nothing. Walk starts (the background customers, transformed once) are
/// prepared when the bundle loads.
#[derive(Debug)]
pub struct Explainer {
    net: Arc<Network>,
    starts: Vec<WalkStart>,
}

#[derive(Debug)]
struct WalkStart {
    slots: SlotValues,
    /// The numeric part of the customer's model input.
    numeric: Vec<f32>,
    /// First layer pre-activation (bias included).
    z: Vec<f32>,
    logit: f32,
}

impl Explainer {
    /// Prepares the walks for `spec`, the model in `onnx` and `background`. `Ok(None)` when the
    /// model is not a dense stack (use [`shapley`]).
    pub fn new(spec: &FeatureSpec, onnx: &[u8], background: &Background) -> Result<Option<Self>> {
        let Some(layers) = dense_stack_from_onnx(onnx)? else { return Ok(None) };
        Self::with_network(spec, Arc::new(Network::new(spec, layers)?), background).map(Some)
    }

    /// Prepares the walks for `spec`, the network `net` and `background`.
    pub fn with_network(spec: &FeatureSpec, net: Arc<Network>, background: &Background) -> Result<Self> {
        let mut explainer = Explainer { net, starts: Vec::with_capacity(background.rows.len()) };
        let mut buffers = Buffers::default();
        for (i, row) in background.rows.iter().enumerate() {
            let mut slots = SlotValues::default();
            spec.checked_slot_values(&BackgroundRow(row), &mut slots).map_err(|error| bad_background_row(i, error))?;
            let (z, numeric) = explainer.first_layer(spec, &slots);
            let logit = explainer.net.logit(&z, &mut buffers);
            explainer.starts.push(WalkStart { slots, numeric, z, logit });
        }
        Ok(explainer)
    }

    /// The first layer's pre-activation for `slots`, and the numeric part of the model input.
    fn first_layer(&self, spec: &FeatureSpec, slots: &SlotValues) -> (Vec<f32>, Vec<f32>) {
        let mut z = vec![0.0f32; self.net.hidden()];
        self.net.first_layer(spec, slots, &mut z, &mut Active::default());
        let numeric = slots.numeric.iter().enumerate().map(|(s, x)| spec.encode_numeric(s, *x)).collect();
        (z, numeric)
    }

    /// Shapley values of `row`: equal to [`shapley`] with the same `params` and background, up
    /// to float rounding (tests/explain.rs checks 1e-5 on Telco customers).
    pub fn explain(&self, spec: &FeatureSpec, row: &(impl RawRow + ?Sized), params: ShapleyParams) -> Result<Attribution> {
        let mut x = SlotValues::default();
        spec.checked_slot_values(row, &mut x).map_err(|error| CoreError::Untransformable { what: "this customer", error })?;
        self.explain_slots(spec, &x, params)
    }

    /// [`explain`](Self::explain) from the customer's slot values, as
    /// [`FeatureSpec::slot_values`] gives them for a record without problems (the API has them
    /// from scoring the customer).
    pub fn explain_slots(&self, spec: &FeatureSpec, x: &SlotValues, params: ShapleyParams) -> Result<Attribution> {
        let m = spec.inputs.len();
        let n = self.starts.len();
        if n == 0 || m == 0 {
            return Err(no_background());
        }
        let mut buffers = Buffers::default();
        let p_x = self.net.probability(&self.first_layer(spec, x).0, &mut buffers)?;
        let h = self.net.hidden();
        let mut values = vec![0.0f64; m];
        let mut base = 0.0f64;
        let mut mixed = SlotValues::default();
        let mut z = vec![0.0f32; h];
        let mut numeric = vec![0.0f32; spec.numeric.len()];
        let mut scratch = SwitchScratch::default();
        let orders = orders(m, params);
        // Two passes: the walks record the logit of every mix (a step that changes nothing
        // repeats the previous one, so the crediting pass needs no branch), one call of tract's
        // vectorised sigmoid turns them all into probabilities, and the second pass credits the
        // differences along the same walks. Slot 0 of each walk is its start.
        let steps = m - 1;
        let stride = steps + 1;
        let mut logits = vec![0.0f32; orders.len() * n * stride];
        let mut walk = logits.chunks_exact_mut(stride);
        for order in &orders {
            for (start, walk) in self.starts.iter().zip(&mut walk) {
                // Field by field: reuses the buffers (a derived `clone_from` would not).
                mixed.numeric.clone_from(&start.slots.numeric);
                mixed.categorical.clone_from(&start.slots.categorical);
                z.copy_from_slice(&start.z);
                numeric.copy_from_slice(&start.numeric);
                let mut last = start.logit;
                walk[0] = last;
                for (&field, slot) in order[..steps].iter().zip(&mut walk[1..]) {
                    let net = &self.net;
                    let changed = spec.switch_field(field, x, &mut mixed, &mut numeric, &mut scratch, |c| net.apply(&mut z, c));
                    if changed {
                        last = net.logit(&z, &mut buffers);
                    }
                    *slot = last;
                }
            }
        }
        self.net.sigmoids(&mut logits)?;
        for (order, walks) in orders.iter().zip(logits.chunks_exact(n * stride)) {
            for walk in walks.chunks_exact(stride) {
                let mut prev = walk[0];
                base += f64::from(prev);
                for (&field, &p) in order[..steps].iter().zip(&walk[1..]) {
                    values[field] += f64::from(p) - f64::from(prev);
                    prev = p;
                }
                // The walk ends at the customer.
                values[order[steps]] += f64::from(p_x) - f64::from(prev);
            }
        }
        let walks = (orders.len() * n) as f64;
        values.iter_mut().for_each(|v| *v /= walks);
        Ok(Attribution { base_value: base / walks, prediction: f64::from(p_x), values })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Dense, dense_stack_to_onnx};
    use crate::spec::tests::{fitted, fitted_binned, rows};

    /// A one-layer model over the spec's feature vector: sigmoid(w · x).
    fn model(spec: &FeatureSpec, weights: &[(&str, f32)]) -> Scorer {
        let mut weight = vec![0.0; spec.width()];
        for (name, w) in weights {
            let i = spec.feature_names.iter().position(|f| f == name).expect("feature exists");
            weight[i] = *w;
        }
        let layer = Dense { weight, bias: vec![0.0], inputs: spec.width(), outputs: 1, relu: false };
        Scorer::from_onnx(&dense_stack_to_onnx(&[layer], &[]).unwrap(), spec.width()).unwrap()
    }

    fn background(spec: &FeatureSpec) -> Background {
        let columns: Vec<String> = spec.input_names().map(String::from).collect();
        let rows =
            rows().iter().map(|r| columns.iter().map(|c| r.iter().find(|(n, _)| n == c).map(|(_, v)| v.to_string())).collect()).collect();
        Background { columns, rows }
    }

    #[test]
    fn a_field_the_model_ignores_gets_nothing_and_values_add_up() {
        let spec = fitted();
        let bg = background(&spec);
        bg.check(&spec).unwrap();
        let scorer = model(&spec, &[("plan=b", 2.0)]);
        let x = [("tenure", "5"), ("total", "50"), ("plan", "b"), ("tv", "No")];
        let a = shapley(&spec, &scorer, &bg, x.as_slice(), ShapleyParams { permutations: 4, seed: 1 }).unwrap();
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        // Background: plan a, b, a, a -> base = (3·σ(0) + σ(2)) / 4.
        let base = (3.0 * sig(0.0) + sig(2.0)) / 4.0;
        assert!((a.base_value - base).abs() < 1e-6, "{a:?}");
        assert!((a.prediction - sig(2.0)).abs() < 1e-6);
        let plan = spec.input_names().position(|n| n == "plan").unwrap();
        for (i, v) in a.values.iter().enumerate() {
            if i == plan {
                assert!((v - (sig(2.0) - base)).abs() < 1e-6, "{v}");
            } else {
                assert!(v.abs() < 1e-7, "field {i}: {v}");
            }
        }
    }

    #[test]
    fn interacting_fields_share_the_gap_exactly_and_the_seed_decides() {
        let spec = fitted();
        let bg = background(&spec);
        // tenure moves several features (tenure, avg, bucket): an explanation over raw fields
        // credits all of them to `tenure`.
        let scorer = model(&spec, &[("tenure", 1.5), ("avg", -0.7), ("plan=b", 1.0), ("tv=Yes", 0.8)]);
        let x = [("tenure", "2"), ("total", "90"), ("plan", "b"), ("tv", "Yes")];
        let p = ShapleyParams { permutations: 6, seed: 3 };
        let a = shapley(&spec, &scorer, &bg, x.as_slice(), p).unwrap();
        let sum: f64 = a.values.iter().sum();
        assert!((sum - (a.prediction - a.base_value)).abs() < 1e-5, "{sum} vs {}", a.prediction - a.base_value);
        assert_eq!(a, shapley(&spec, &scorer, &bg, x.as_slice(), p).unwrap());
        let other = shapley(&spec, &scorer, &bg, x.as_slice(), ShapleyParams { seed: 4, ..p }).unwrap();
        assert_ne!(a.values, other.values);
    }

    #[test]
    fn the_fast_evaluator_gives_the_reference_values() {
        // Plain and piecewise-linear encodings: switching a number moves its bins too.
        for spec in [fitted(), fitted_binned()] {
            fast_equals_reference(&spec);
        }
    }

    fn fast_equals_reference(spec: &FeatureSpec) {
        let spec = spec.clone();
        let bg = background(&spec);
        let w = spec.width();
        // Weights on every input, hidden ReLU units that switch on and off along the walks.
        let weight: Vec<f32> = (0..3 * w).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
        let layers = vec![
            Dense { weight, bias: vec![0.2, -0.1, 0.05], inputs: w, outputs: 3, relu: true },
            Dense { weight: vec![1.5, -2.0, 0.7], bias: vec![-0.3], inputs: 3, outputs: 1, relu: false },
        ];
        // The same model with a calibration head after its logit (a spline: relu(z), relu(-z)
        // and two hinges, then their combination).
        let mut calibrated = layers.clone();
        calibrated.push(Dense { weight: vec![1.0, -1.0, 1.0, 1.0], bias: vec![0.0, 0.0, 0.5, -0.5], inputs: 1, outputs: 4, relu: true });
        calibrated.push(Dense { weight: vec![0.8, -0.8, 0.6, -0.3], bias: vec![0.1], inputs: 4, outputs: 1, relu: false });
        for layers in [layers, calibrated] {
            fast_equals_reference_for(&spec, &bg, &layers);
        }
    }

    fn fast_equals_reference_for(spec: &FeatureSpec, bg: &Background, layers: &[Dense]) {
        let (spec, bg, w) = (spec.clone(), bg.clone(), spec.width());
        let onnx = dense_stack_to_onnx(layers, &[]).unwrap();
        let scorer = Scorer::from_onnx(&onnx, w).unwrap();
        let fast = Explainer::new(&spec, &onnx, &bg).unwrap().expect("a dense stack");
        let customers: [&[(&str, &str)]; 3] = [
            &[("tenure", "2"), ("total", "90"), ("plan", "b"), ("tv", "Yes")],
            // A blank total (imputed), tenure 0 (the ratio's zero branch), an unseen plan.
            &[("tenure", "0"), ("total", ""), ("plan", "z"), ("tv", "No")],
            &[("tenure", "30"), ("total", "300"), ("plan", "a"), ("tv", "Yes")],
        ];
        for x in customers {
            for p in [ShapleyParams { permutations: 2, seed: 0 }, ShapleyParams { permutations: 8, seed: 5 }] {
                let reference = shapley(&spec, &scorer, &bg, x, p).unwrap();
                let a = fast.explain(&spec, x, p).unwrap();
                assert!((a.base_value - reference.base_value).abs() < 1e-6, "{a:?} vs {reference:?}");
                assert!((a.prediction - reference.prediction).abs() < 1e-6, "{a:?} vs {reference:?}");
                for (v, r) in a.values.iter().zip(&reference.values) {
                    assert!((v - r).abs() < 1e-6, "{x:?}: {:?} vs {:?}", a.values, reference.values);
                }
            }
        }
        let bad = [("tenure", "-4"), ("total", "1"), ("plan", "a"), ("tv", "No")];
        assert!(fast.explain(&spec, bad.as_slice(), ShapleyParams::default()).unwrap_err().to_string().contains("tenure"));
    }

    #[test]
    fn a_background_for_another_model_is_refused() {
        let spec = fitted();
        let mut bg = background(&spec);
        bg.columns.swap(0, 1);
        let err = bg.check(&spec).unwrap_err();
        assert!(matches!(&err, CoreError::ModelFile { file: BACKGROUND, problem } if problem.contains("not the model's inputs")), "{err}");
        let mut bg = background(&spec);
        bg.rows[1][0] = Some("-5".into());
        let err = bg.check(&spec).unwrap_err();
        assert!(matches!(&err, CoreError::Row { file, location, .. } if file == BACKGROUND && location == "row 1"), "{err}");
    }

    #[test]
    fn reasons_keep_only_what_raises_the_risk() {
        let spec = fitted();
        let x = [("tenure", "2"), ("total", ""), ("plan", "b"), ("tv", "Yes")];
        let r = top_reasons(&spec, x.as_slice(), &[0.1, 0.3, -0.2, 0.05], 2);
        assert_eq!(r.iter().map(|r| (r.feature.as_str(), r.value.as_str())).collect::<Vec<_>>(), [("total", "missing"), ("tenure", "2")]);
    }
}
