//! The fitted feature spec and the one feature transform.
//!
//! [`FeatureSpec::fit`] learns, from training rows only, everything the transform needs:
//! imputation values for missing numbers (medians), outlier clipping bounds (quantiles), scaling
//! (mean and standard deviation after clipping), one-hot vocabularies, and the valid range of
//! every raw numeric input. [`FeatureSpec::transform_into`] turns one raw record into the model's
//! input vector. Training, `churn score`, the batch Lambda and the API all call it; the spec is
//! serialised as `feature_spec.json` in the model bundle.
//!
//! Pipeline for one record:
//! 1. raw numeric inputs are parsed (text is accepted, e.g. from CSV); blank → imputed median;
//!    a value outside the valid range (negative where training had none, or absurdly large) is an
//!    error, not something to clip silently;
//! 2. derived features are evaluated in order from the imputed values;
//! 3. every numeric feature is clipped to its fitted bounds and standardised;
//! 4. every categorical feature is one-hot encoded; a missing or unseen category encodes as all
//!    zeros (the "average" customer for that field) and is reported as a warning;
//! 5. numeric features with fitted bin edges also get a piecewise-linear encoding (Gorishniy et
//!    al., "On Embeddings for Numerical Features in Tabular Deep Learning", 2022): one input per
//!    bin between consecutive training quantiles, 0 below the bin, 1 above it and the position
//!    within it in between, so the first layer can learn a different slope per range.
//!
//! Vector layout: standardised numeric features, then the one-hot blocks, then the
//! piecewise-linear blocks (so the first `numeric.len()` positions are always the numbers).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{BinEdges, DerivedFeature};
use crate::error::{CoreError, Result, ValueProblem};
pub use crate::row::CatValue;
use crate::row::RawValue;

mod fit;
mod onnx;
mod plan;
mod schema;
mod switch;
mod transform;

pub use onnx::RawInputType;
pub use plan::SwitchScratch;
use plan::*;
pub use schema::*;
pub use switch::Change;

/// A raw input column the model expects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputColumn {
    pub name: String,
    #[serde(flatten)]
    pub kind: InputKind,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputKind {
    /// Values outside `[valid_min, valid_max]` are refused. Fitted: 0 as the floor when training
    /// had no negative value; ten training ranges beyond the extremes otherwise. Values inside
    /// it but outside `seen` (the training minimum and maximum) are scored with a warning: the
    /// model has seen no such customer and treats the value as the nearest clip bound.
    Numeric {
        valid_min: f64,
        valid_max: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seen: Option<[f64; 2]>,
    },
    Categorical,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NumericFeature {
    pub name: String,
    /// Value used when the input is blank (or a derived value is undefined): training median.
    pub impute: f64,
    pub clip_min: f64,
    pub clip_max: f64,
    pub mean: f64,
    pub std: f64,
    /// Edges of the piecewise-linear encoding (increasing training quantiles, within the clip
    /// bounds); empty when the feature has none. `edges.len() - 1` model inputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bins: Vec<f64>,
}

impl NumericFeature {
    /// Inputs of the piecewise-linear block.
    fn bin_count(&self) -> usize {
        self.bins.len().saturating_sub(1)
    }

    /// Value of piecewise-linear input `t` for the (unclipped) value `x`, bin by bin: the
    /// reference the encoding (`FeatureSpec::bin_state`) is tested against.
    #[cfg(test)]
    fn bin_value(&self, t: usize, x: f64) -> f32 {
        bin_fraction(x.clamp(self.clip_min, self.clip_max), self.bins[t], self.bins[t + 1])
    }
}

/// Where `x` lies in `[lo, hi]`, as a fraction clamped to `[0, 1]`. Only the bin holding `x`
/// divides: the others are 0 or 1 by comparison, which keeps the batch scorer's per-row cost
/// low (the result equals `((x - lo) / (hi - lo)).clamp(0, 1)` exactly).
#[inline]
fn bin_fraction(x: f64, lo: f64, hi: f64) -> f32 {
    if x >= hi {
        1.0
    } else if x <= lo {
        0.0
    } else {
        ((x - lo) / (hi - lo)) as f32
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CategoricalFeature {
    pub name: String,
    pub vocabulary: Vec<String>,
}

/// Summary of one raw input in the training data, kept for documentation and drift checks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputStats {
    pub missing: usize,
    pub rows: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub schema_version: u32,
    pub id_column: Option<String>,
    pub target_column: String,
    pub positive_label: String,
    pub inputs: Vec<InputColumn>,
    pub derived: Vec<DerivedFeature>,
    /// Numeric features in vector order: raw numeric inputs (input order), then numeric derived ones.
    pub numeric: Vec<NumericFeature>,
    /// Categorical features in vector order: raw categorical inputs, then derived ones.
    pub categorical: Vec<CategoricalFeature>,
    /// Names of the model's input vector, `numeric` first, then `<column>=<category>` one-hots.
    pub feature_names: Vec<String>,
    /// Missing-value counts of the raw inputs in the training rows.
    pub input_stats: BTreeMap<String, InputStats>,
    #[serde(skip)]
    plan: Plan,
}

/// Values of one record after steps 1–2, before scaling and encoding.
#[derive(Debug, Clone, Default)]
pub struct SlotValues {
    pub numeric: Vec<f64>,
    pub categorical: Vec<CatValue>,
    /// Numeric input slots that were blank and took their imputation value.
    pub imputed: Vec<usize>,
    /// Inputs (indexes into `FeatureSpec::inputs`) whose value lies outside the training range.
    pub unseen_range: Vec<usize>,
}

/// A nonzero part of a record's model input vector ([`FeatureSpec::encode_sparse`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Inputs {
    /// The input at `position` is `value`.
    Value { position: usize, value: f32 },
    /// The first `ones` inputs of numeric slot `slot`'s piecewise-linear block are 1.
    LeadingOnes { slot: usize, ones: usize },
}

/// A non-fatal note about a record, e.g. an unseen category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub field: String,
    pub message: String,
}

fn parse_number(v: &RawValue<'_>) -> std::result::Result<Option<f64>, ValueProblem> {
    match v {
        RawValue::Missing => Ok(None),
        RawValue::Number(x) => {
            if x.is_finite() {
                Ok(Some(*x))
            } else {
                Err(ValueProblem::NotFinite)
            }
        }
        RawValue::Text(s) => {
            let t = trim(s);
            if t.is_empty() {
                return Ok(None);
            }
            match t.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Some(x)),
                Ok(_) => Err(ValueProblem::NotFinite),
                Err(_) => Err(ValueProblem::NotANumber),
            }
        }
        RawValue::Invalid(d) => Err(ValueProblem::ExpectedNumber(d.clone())),
    }
}

fn category_of<'a>(v: &'a RawValue<'a>) -> std::result::Result<Option<Cow<'a, str>>, ValueProblem> {
    match v {
        RawValue::Missing => Ok(None),
        RawValue::Number(x) => Ok(Some(Cow::Owned(crate::row::format_number(*x)))),
        RawValue::Text(s) => {
            let t = trim(s);
            if t.is_empty() { Ok(None) } else { Ok(Some(Cow::Borrowed(t))) }
        }
        RawValue::Invalid(d) => Err(ValueProblem::ExpectedText(d.clone())),
    }
}

impl FeatureSpec {
    /// Number of model inputs (width of the feature vector).
    pub fn width(&self) -> usize {
        self.plan.width
    }

    /// Names of the raw fields a record must (or may) carry, in input order.
    pub fn input_names(&self) -> impl Iterator<Item = &str> + Clone {
        self.inputs.iter().map(|c| c.name.as_str())
    }

    /// The vocabulary of input `index` when it is categorical (`None` for a number).
    pub fn input_vocabulary(&self, index: usize) -> Option<&[String]> {
        match self.plan.input_slot.get(index)? {
            Slot::Categorical(s) => Some(&self.categorical[*s].vocabulary),
            Slot::Numeric(_) => None,
        }
    }

    /// Parses the JSON of a bundle's `feature_spec.json` and prepares it for use.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut spec: FeatureSpec = serde_json::from_str(text).map_err(|e| plan::spec_file(format!("not valid: {e}")))?;
        if spec.schema_version != crate::SCHEMA_VERSION {
            return Err(plan::spec_file(format!(
                "schema version {}, this build reads {}; use a matching churn version",
                spec.schema_version,
                crate::SCHEMA_VERSION
            )));
        }
        spec.compile()?;
        Ok(spec)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("feature spec serialises")
    }
}

/// Whether a target value is the positive label: the same text, or the same number (`1.0` and
/// `1`, as a CSV and a parquet file may write one label).
pub fn label_matches(text: &str, positive: &str) -> bool {
    text == positive || matches!((text.parse::<f64>(), positive.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::DerivedKind;

    #[test]
    fn vocab_lookups_match_text_and_numbers_as_formatted() {
        let words: Vec<String> = ["No", "Yes", "1", "0", "2.5"].map(String::from).to_vec();
        let v = Vocab::new(&words);
        assert_eq!((v.find("Yes"), v.find("yes"), v.find("Ye")), (Some(1), None, None));
        // A numeric cell matches the entry that format_number would write for it, and only that.
        assert_eq!((v.find_number(1.0), v.find_number(0.0), v.find_number(2.5), v.find_number(3.0)), (Some(2), Some(3), Some(4), None));
        let long: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        let v = Vocab::new(&long);
        assert!(v.map.is_some());
        assert_eq!((v.find("c39"), v.find("c40")), (Some(39), None));
    }

    #[test]
    fn trim_takes_the_fast_path_only_when_nothing_is_to_trim() {
        for s in ["", " ", "a", " a", "a ", "\tYes\n", "\u{a0}x", "x\u{a0}", "Fiber optic", "é"] {
            assert_eq!(trim(s), s.trim(), "{s:?}");
        }
    }

    pub(crate) fn schema() -> ResolvedSchema {
        ResolvedSchema {
            id_column: Some("id".into()),
            target_column: "churn".into(),
            positive_label: "Yes".into(),
            inputs: vec![
                ("tenure".into(), ColumnKind::Numeric),
                ("total".into(), ColumnKind::Numeric),
                ("plan".into(), ColumnKind::Categorical),
                ("tv".into(), ColumnKind::Categorical),
            ],
            derived: vec![
                DerivedFeature {
                    name: "avg".into(),
                    kind: DerivedKind::Ratio { numerator: "total".into(), denominator: "tenure".into(), when_zero: None },
                },
                DerivedFeature {
                    name: "services".into(),
                    kind: DerivedKind::CountEqual { columns: vec!["tv".into()], values: vec!["Yes".into()] },
                },
                DerivedFeature { name: "tb".into(), kind: DerivedKind::Bucket { column: "tenure".into(), edges: vec![10.0] } },
            ],
            clip_quantiles: [0.0, 1.0],
            min_category_count: 1,
            max_categories: 100,
            numeric_bins: 0,
            bin_edges: Default::default(),
            left_out: vec![],
        }
    }

    pub(crate) fn rows() -> Vec<Vec<(&'static str, &'static str)>> {
        vec![
            vec![("tenure", "1"), ("total", "10"), ("plan", "a"), ("tv", "Yes")],
            vec![("tenure", "20"), ("total", "400"), ("plan", "b"), ("tv", "No")],
            vec![("tenure", "0"), ("total", " "), ("plan", "a"), ("tv", "No")],
            vec![("tenure", "30"), ("total", "300"), ("plan", "a"), ("tv", "Yes")],
        ]
    }

    /// A spec fitted on [`rows`]: inputs tenure, total, plan, tv; width 10 (plan=b at 5).
    pub(crate) fn fitted() -> FeatureSpec {
        let r = rows();
        FeatureSpec::fit(&schema(), r.iter().enumerate().map(|(i, r)| (i + 2, r.as_slice())), None, "t.csv", &|i| format!("line {i}"))
            .unwrap()
    }

    /// [`fitted`] with a two-bin piecewise-linear encoding of every numeric feature that has
    /// three distinct quantiles.
    pub(crate) fn fitted_binned() -> FeatureSpec {
        let r = rows();
        let schema = ResolvedSchema { numeric_bins: 2, bin_edges: BinEdges::Quantile, ..schema() };
        FeatureSpec::fit(&schema, r.iter().enumerate().map(|(i, r)| (i + 2, r.as_slice())), None, "t.csv", &|i| format!("line {i}"))
            .unwrap()
    }

    #[test]
    fn bin_fractions_equal_the_clamped_ratio() {
        let edges = [(-3.0, 0.5), (0.0, 1e-9), (10.5, 30.0), (0.1, 0.3)];
        for (lo, hi) in edges {
            for k in -40..=40 {
                let x = lo + (hi - lo) * (k as f64 / 16.0) + if k % 3 == 0 { 1e-12 } else { 0.0 };
                let want = ((x - lo) / (hi - lo)).clamp(0.0, 1.0) as f32;
                assert_eq!(bin_fraction(x, lo, hi).to_bits(), want.to_bits(), "x {x} in [{lo}, {hi}]");
            }
        }
    }

    #[test]
    fn every_piecewise_linear_input_is_its_bins_fraction() {
        // Five strictly increasing edges, and values on, between and beyond them (tenure is
        // clipped at 30).
        let mut s = fitted_binned();
        s.numeric[0].bins = vec![0.0, 1.0, 2.5, 2.75, 30.0];
        let last = s.feature_names.iter().position(|n| n == "tenure~bin1").unwrap();
        s.feature_names.splice(last + 1..last + 1, ["tenure~bin2".to_string(), "tenure~bin3".to_string()]);
        s.compile().unwrap();
        let tenure = &s.numeric[0];
        let (offset, count) = s.bin_block(0);
        assert_eq!(count, 4);
        for k in 0..=320 {
            let t = k as f64 / 8.0;
            let text = t.to_string();
            let row = [("tenure", text.as_str()), ("total", "100"), ("plan", "a"), ("tv", "No")];
            let v = s.transform(row.as_slice()).unwrap();
            let want: Vec<f32> = (0..count).map(|b| tenure.bin_value(b, t)).collect();
            assert_eq!(&v[offset..offset + count], &want[..], "tenure {t}");
        }
    }

    #[test]
    fn piecewise_linear_blocks_follow_the_training_quantiles() {
        let s = fitted_binned();
        // tenure 1, 20, 0, 30: quantiles 0, 10.5, 30 -> two bins, at the end of the vector.
        let tenure = &s.numeric[0];
        assert_eq!(tenure.bins, vec![0.0, 10.5, 30.0]);
        let plain = fitted();
        let extra: usize = s.numeric.iter().map(|f| f.bins.len().saturating_sub(1)).sum();
        assert!(extra >= 2);
        assert_eq!(s.width(), plain.width() + extra);
        assert_eq!(s.feature_names[plain.width()], "tenure~bin0");
        assert_eq!(s.feature_sources()[plain.width() + 1], "tenure");
        let at = |t: &str| {
            let row = [("tenure", t), ("total", "100"), ("plan", "a"), ("tv", "No")];
            let v = s.transform(row.as_slice()).unwrap();
            // The plain part is unchanged by the extra blocks.
            assert_eq!(&v[..plain.width()], &plain.transform(row.as_slice()).unwrap()[..]);
            (v[plain.width()], v[plain.width() + 1])
        };
        assert_eq!(at("0"), (0.0, 0.0));
        assert_eq!(at("5.25"), (0.5, 0.0));
        assert_eq!(at("20.25"), (1.0, 0.5));
        // Beyond the training range: clipped, so the last bin saturates.
        assert_eq!(at("60"), (1.0, 1.0));
        let back = FeatureSpec::from_json(&s.to_json()).unwrap();
        for r in rows() {
            assert_eq!(s.transform(r.as_slice()).unwrap(), back.transform(r.as_slice()).unwrap());
        }
        // A spec without `bins` (bundles written before piecewise-linear inputs) reads unchanged.
        let old = FeatureSpec::from_json(&plain.to_json()).unwrap();
        assert_eq!(old.width(), plain.width());
    }

    #[test]
    fn tree_edges_sit_where_the_label_changes() {
        // Churn only between 30 and 70 on 0..100: the first two cuts are at 29.5 and 69.5.
        let pairs: Vec<(f64, bool)> = (0..100).map(|x| (x as f64, (30..70).contains(&x))).collect();
        assert_eq!(fit::tree_bin_edges(&pairs, 0.0, 99.0, 3, 5), vec![0.0, 29.5, 69.5, 99.0]);
        // No leaf smaller than min_leaf: the cut at 29.5 would leave 30 rows, under 40.
        let edges = fit::tree_bin_edges(&pairs, 0.0, 99.0, 3, 40);
        assert!(edges.windows(2).all(|w| w[0] < w[1]) && !edges.contains(&29.5), "{edges:?}");
        // A pure column has no split that helps; a flag has too few values for bins.
        let pure: Vec<(f64, bool)> = (0..100).map(|x| (x as f64, true)).collect();
        assert!(fit::tree_bin_edges(&pure, 0.0, 99.0, 8, 1).is_empty());
        let flag: Vec<(f64, bool)> = (0..100).map(|x| ((x / 50) as f64, x % 3 == 0)).collect();
        assert!(fit::tree_bin_edges(&flag, 0.0, 1.0, 8, 1).is_empty());
    }

    #[test]
    fn tree_edges_come_from_the_labels_of_the_fitted_rows() {
        let r = rows();
        let schema = ResolvedSchema { numeric_bins: 2, bin_edges: BinEdges::Tree, ..schema() };
        // Row indices 2..6 (as `fitted` numbers them): tenure 1, 20, 0, 30; only tenure 20 churns.
        let labels = [false, false, false, true, false, false];
        let fit = |labels| {
            FeatureSpec::fit(&schema, r.iter().enumerate().map(|(i, r)| (i + 2, r.as_slice())), labels, "t.csv", &|i| format!("line {i}"))
                .unwrap()
        };
        // Leaves of at least one row (4 rows / (4 × 2 bins)): the best first cut isolates the
        // churner from the low tenures, at (1 + 20) / 2.
        assert_eq!(fit(Some(&labels)).numeric[0].bins, vec![0.0, 10.5, 30.0]);
        let other = [false, false, false, false, true, false];
        assert_eq!(fit(Some(&other)).numeric[0].bins, vec![0.0, 0.5, 30.0]);
        // Without labels the edges fall back to quantiles.
        assert_eq!(fit(None).numeric[0].bins, fitted_binned().numeric[0].bins);
    }

    #[test]
    fn fit_learns_imputation_scaling_and_vocabularies() {
        let s = fitted();
        // total: 10, 400, 300 -> median 300 imputes the blank.
        assert_eq!(s.numeric[1].impute, 300.0);
        assert_eq!(s.input_stats["total"].missing, 1);
        assert_eq!(s.categorical[0].vocabulary, vec!["a", "b"]);
        assert_eq!(s.categorical[2].name, "tb");
        assert_eq!(s.width(), 4 + 2 + 2 + 2);
        assert_eq!(s.feature_names[0], "tenure");
        assert_eq!(s.feature_names[4], "plan=a");
        // services: tv == Yes
        let mut sv = SlotValues::default();
        let mut p = vec![];
        s.slot_values(rows()[0].as_slice(), &mut sv, &mut p);
        assert!(p.is_empty());
        assert_eq!(sv.numeric, vec![1.0, 10.0, 10.0, 1.0]);
        assert_eq!(s.category_text(2, &sv.categorical[2]), Some("<10"));
        // the blank total with tenure 0: imputed 300, ratio falls back to 0.
        s.slot_values(rows()[2].as_slice(), &mut sv, &mut p);
        assert_eq!(sv.numeric[1], 300.0);
        assert_eq!(sv.numeric[2], 0.0);
    }

    #[test]
    fn standardised_training_columns_have_zero_mean() {
        let s = fitted();
        let r = rows();
        let mut sums = vec![0.0f64; s.width()];
        for row in &r {
            let v = s.transform(row.as_slice()).unwrap();
            for (a, b) in sums.iter_mut().zip(v) {
                *a += b as f64;
            }
        }
        for (i, sum) in sums.iter().enumerate().take(s.numeric.len()) {
            assert!(sum.abs() < 1e-5, "feature {i}: {sum}");
        }
    }

    #[test]
    fn bad_values_are_all_reported_with_their_field() {
        let s = fitted();
        let row = [("tenure", "-3"), ("total", "abc"), ("plan", "a"), ("tv", "Yes")];
        let err = s.transform(row.as_slice()).unwrap_err();
        assert_eq!(err.problems.len(), 2);
        assert_eq!(err.problems[0].field, "tenure");
        assert!(err.problems[0].problem.contains("valid range"));
        assert_eq!(err.problems[1].field, "total");
        assert_eq!(err.problems[1].problem, "not a number");
        let nan = [("tenure", "NaN"), ("total", "1"), ("plan", "a"), ("tv", "Yes")];
        assert!(s.transform(nan.as_slice()).unwrap_err().to_string().contains("not a finite number"));
    }

    #[test]
    fn unseen_category_is_a_warning_and_encodes_as_zeros() {
        let s = fitted();
        let row = [("tenure", "5"), ("total", "50"), ("plan", "zzz"), ("tv", "Yes")];
        let mut out = vec![0.0; s.width()];
        let mut w = vec![];
        s.transform_into(row.as_slice(), &mut SlotValues::default(), &mut out, Some(&mut w)).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].field, "plan");
        assert_eq!(&out[4..6], &[0.0, 0.0]);
    }

    #[test]
    fn reused_scratch_gives_the_vectors_of_fresh_ones() {
        // Rows with errors, unseen and blank values in between leave nothing behind: each
        // row's slot values are its own whatever came before.
        let s = fitted();
        let mut rows: Vec<Vec<(&str, &str)>> = rows();
        rows.insert(1, vec![("tenure", "abc"), ("total", "-"), ("plan", "zzz"), ("tv", "Yes")]);
        rows.insert(3, vec![("tenure", "7"), ("total", "70"), ("plan", ""), ("tv", "maybe")]);
        rows.push(vec![("tenure", "-3"), ("total", "5"), ("plan", "b"), ("tv", "No")]);
        let mut scratch = SlotValues::default();
        for order in [rows.clone(), rows.iter().rev().cloned().collect()] {
            for r in &order {
                let mut reused = vec![9.0; s.width()];
                let got = s.transform_into(r.as_slice(), &mut scratch, &mut reused, None).map(|()| reused);
                let mut fresh_values = SlotValues::default();
                let mut fresh = vec![0.0; s.width()];
                let want = s.transform_into(r.as_slice(), &mut fresh_values, &mut fresh, None).map(|()| fresh);
                assert_eq!(got.as_ref().map_err(|e| e.to_string()), want.as_ref().map_err(|e| e.to_string()), "{r:?}");
                if want.is_ok() {
                    assert_eq!(scratch.numeric, fresh_values.numeric, "{r:?}");
                    assert_eq!(scratch.categorical, fresh_values.categorical, "{r:?}");
                    assert_eq!(scratch.imputed, fresh_values.imputed, "{r:?}");
                }
            }
        }
    }

    #[test]
    fn json_round_trip_gives_the_same_vectors() {
        let s = fitted();
        let back = FeatureSpec::from_json(&s.to_json()).unwrap();
        for r in rows() {
            assert_eq!(s.transform(r.as_slice()).unwrap(), back.transform(r.as_slice()).unwrap());
        }
        // JSON records (the API's form) give the same vector as text records (CSV's form).
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"tenure": 1, "total": 10.0, "plan": "a", "tv": "Yes"}"#).unwrap();
        assert_eq!(back.transform(&obj).unwrap(), s.transform(rows()[0].as_slice()).unwrap());
    }

    #[test]
    fn derived_feature_with_unknown_source_is_a_config_error() {
        let mut sc = schema();
        sc.derived
            .push(DerivedFeature { name: "bad".into(), kind: DerivedKind::Difference { left: "nope".into(), right: "total".into() } });
        let r = rows();
        let err = FeatureSpec::fit(&sc, r.iter().enumerate().map(|(i, r)| (i, r.as_slice())), None, "t.csv", &|i| format!("line {i}"))
            .unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");
    }
}
