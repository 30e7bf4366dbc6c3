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
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::config::{DatasetConfig, DerivedFeature, DerivedKind, bucket_index, bucket_label};
use crate::error::{CoreError, FieldProblem, Result, RowError};
use crate::row::{RawRow, RawValue, format_number};

/// Which columns are what, after configuration and inference.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResolvedSchema {
    pub id_column: Option<String>,
    pub target_column: String,
    pub positive_label: String,
    /// Model inputs in file order.
    pub inputs: Vec<(String, ColumnKind)>,
    pub derived: Vec<DerivedFeature>,
    pub clip_quantiles: [f64; 2],
    pub min_category_count: usize,
    /// Most values a categorical feature keeps (see `DatasetConfig::max_categories`).
    #[serde(default = "usize_max")]
    pub max_categories: usize,
    /// Bins of each numeric feature's piecewise-linear encoding (0: none).
    #[serde(default)]
    pub numeric_bins: usize,
    /// Columns left out by inference, with the reason (identifiers, free text).
    #[serde(default)]
    pub left_out: Vec<(String, String)>,
}

fn usize_max() -> usize {
    usize::MAX
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Numeric,
    Categorical,
}

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

    /// Value of piecewise-linear input `t` for the (unclipped) value `x`.
    #[inline]
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

/// Index-resolved form of the spec, built once on load so that the per-row work does no lookups
/// by name.
#[derive(Debug, Clone, Default)]
struct Plan {
    /// For each input: its numeric slot or categorical slot.
    input_slot: Vec<Slot>,
    derived: Vec<DerivedOp>,
    /// For each categorical slot, category -> offset within its one-hot block.
    vocab_index: Vec<Vocab>,
    /// Offset of each categorical slot's block in the output vector.
    cat_offset: Vec<usize>,
    /// Offset of each numeric slot's piecewise-linear block (meaningful when it has bins).
    bin_offset: Vec<usize>,
    width: usize,
    /// For each input: what changes when it does (see [`FeatureSpec::switch_field`]).
    affected: Vec<Affected>,
}

/// The derived features and slots that depend, directly or through other derived features, on
/// one input.
#[derive(Debug, Clone, Default)]
struct Affected {
    /// Derived ops reading the input, in evaluation order.
    ops: Vec<usize>,
    numeric: Vec<usize>,
    categorical: Vec<usize>,
}

impl DerivedOp {
    /// (numeric slots read, categorical slots read, output slot and whether it is numeric).
    fn reads(&self) -> (Vec<usize>, Vec<usize>, usize, bool) {
        match self {
            DerivedOp::Ratio { num, den, when_zero, out } => {
                (std::iter::once(*num).chain(Some(*den)).chain(*when_zero).collect(), vec![], *out, true)
            }
            DerivedOp::Difference { left, right, out } => (vec![*left, *right], vec![], *out, true),
            DerivedOp::CountEqual { cats, out, .. } => (vec![], cats.clone(), *out, true),
            DerivedOp::Bucket { src, out, .. } => (vec![*src], vec![], *out, false),
        }
    }
}

/// Scratch of [`FeatureSpec::switch_field`]: categories before the switch.
#[derive(Debug, Clone, Default)]
pub struct SwitchScratch {
    categorical: Vec<Option<usize>>,
    /// Raw values of the affected numeric slots before the switch (piecewise-linear inputs).
    numeric: Vec<f64>,
}

fn known(c: &CatValue) -> Option<usize> {
    match c {
        CatValue::Known(k) => Some(*k),
        _ => None,
    }
}

/// Category -> position in a vocabulary. Vocabularies are short (a handful of values), where
/// comparing lengths and bytes beats hashing every cell; long ones use a hash map. Entries that
/// are numbers as [`format_number`] writes them are also kept as numbers, so that a numeric
/// cell (a parquet integer column) is matched without formatting it.
#[derive(Debug, Clone, Default)]
struct Vocab {
    values: Vec<String>,
    map: Option<HashMap<String, usize>>,
    numbers: Vec<(f64, usize)>,
}

impl Vocab {
    const LINEAR_MAX: usize = 16;

    fn new(values: &[String]) -> Self {
        let numbers = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.parse::<f64>().ok().filter(|x| format_number(*x) == *v).map(|x| (x, i)))
            .collect();
        let map = (values.len() > Self::LINEAR_MAX).then(|| values.iter().enumerate().map(|(i, v)| (v.clone(), i)).collect());
        Vocab { values: values.to_vec(), map, numbers }
    }

    fn find(&self, s: &str) -> Option<usize> {
        match &self.map {
            Some(m) => m.get(s).copied(),
            None => self.values.iter().position(|v| v == s),
        }
    }

    fn find_number(&self, x: f64) -> Option<usize> {
        self.numbers.iter().find(|(y, _)| *y == x).map(|(_, i)| *i)
    }
}

/// `s` without surrounding whitespace; the common case (nothing to trim) is decided on the
/// first and last bytes without decoding UTF-8.
fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii() && b.is_ascii() && !a.is_ascii_whitespace() && !b.is_ascii_whitespace() => s,
        _ => s.trim(),
    }
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Numeric(usize),
    Categorical(usize),
}

#[derive(Debug, Clone)]
enum DerivedOp {
    Ratio {
        num: usize,
        den: usize,
        when_zero: Option<usize>,
        out: usize,
    },
    Difference {
        left: usize,
        right: usize,
        out: usize,
    },
    /// `matches[i][k]`: whether category `k` of `cats[i]` is one of `values`, resolved at
    /// compile time so that known categories are counted without comparing text.
    CountEqual {
        cats: Vec<usize>,
        values: Vec<String>,
        matches: Vec<Vec<bool>>,
        out: usize,
    },
    /// `values[i]`: bucket `i`'s label resolved against the vocabulary once, at compile time.
    Bucket {
        src: usize,
        edges: Vec<f64>,
        values: Vec<CatValue>,
        out: usize,
    },
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

/// A categorical value, resolved against the fitted vocabulary so that known categories (the
/// common case when scoring millions of rows) cost no allocation.
#[derive(Debug, PartialEq, Default)]
pub enum CatValue {
    #[default]
    Missing,
    /// Position in the feature's vocabulary.
    Known(usize),
    /// Not in the vocabulary (always the case while fitting, when vocabularies are empty).
    Unseen(String),
}

impl Clone for CatValue {
    fn clone(&self) -> Self {
        match self {
            CatValue::Missing => CatValue::Missing,
            CatValue::Known(k) => CatValue::Known(*k),
            CatValue::Unseen(v) => CatValue::Unseen(v.clone()),
        }
    }

    /// The transform copies a resolved category into every row's slot values; a known one over
    /// a known one (nearly every copy) is a plain store, with nothing to drop.
    fn clone_from(&mut self, source: &Self) {
        match (&mut *self, source) {
            (CatValue::Known(k), CatValue::Known(s)) => *k = *s,
            (CatValue::Unseen(v), CatValue::Unseen(s)) => v.clone_from(s),
            (this, source) => *this = source.clone(),
        }
    }
}

/// A non-fatal note about a record, e.g. an unseen category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub field: String,
    pub message: String,
}

fn parse_number(v: &RawValue<'_>) -> std::result::Result<Option<f64>, String> {
    match v {
        RawValue::Missing => Ok(None),
        RawValue::Number(x) => {
            if x.is_finite() {
                Ok(Some(*x))
            } else {
                Err("not a finite number".into())
            }
        }
        RawValue::Text(s) => {
            let t = trim(s);
            if t.is_empty() {
                return Ok(None);
            }
            match t.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Some(x)),
                Ok(_) => Err("not a finite number".into()),
                Err(_) => Err("not a number".into()),
            }
        }
        RawValue::Invalid(d) => Err(format!("expected a number, got {d}")),
    }
}

fn category_of<'a>(v: &'a RawValue<'a>) -> std::result::Result<Option<Cow<'a, str>>, String> {
    match v {
        RawValue::Missing => Ok(None),
        RawValue::Number(x) => Ok(Some(Cow::Owned(crate::row::format_number(*x)))),
        RawValue::Text(s) => {
            let t = trim(s);
            if t.is_empty() { Ok(None) } else { Ok(Some(Cow::Borrowed(t))) }
        }
        RawValue::Invalid(d) => Err(format!("expected text, got {d}")),
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    // Linear interpolation between closest ranks (numpy's default), so figures match pandas.
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Edges of a piecewise-linear encoding with up to `bins` bins: quantiles of the sorted training
/// column at k / bins, clipped to the clip bounds, repeated values merged. Columns with fewer
/// than three distinct edges (constants, 0/1 flags) get none: one slope is all they can have.
fn bin_edges(sorted: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    if bins < 2 || sorted.is_empty() {
        return vec![];
    }
    let mut edges: Vec<f64> = (0..=bins).map(|k| quantile(sorted, k as f64 / bins as f64).clamp(lo, hi)).collect();
    edges.dedup_by(|b, a| *b <= *a);
    if edges.len() < 3 { vec![] } else { edges }
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(quantile(values, 0.5))
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

    /// The names of the categorical inputs.
    pub fn categorical_input_names(&self) -> impl Iterator<Item = &str> + Clone {
        self.inputs.iter().filter(|c| matches!(c.kind, InputKind::Categorical)).map(|c| c.name.as_str())
    }

    /// Parses the JSON of a bundle's `feature_spec.json` and prepares it for use.
    pub fn from_json(text: &str) -> Result<Self> {
        let mut spec: FeatureSpec =
            serde_json::from_str(text).map_err(|e| CoreError::Model(format!("feature_spec.json is not valid: {e}")))?;
        if spec.schema_version != crate::SCHEMA_VERSION {
            return Err(CoreError::Model(format!(
                "feature_spec.json has schema version {}, this build reads {}; use a matching churn version",
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

    /// Is `label` (a target value) the positive class? `None` for a blank label.
    pub fn label(&self, value: &RawValue<'_>) -> std::result::Result<Option<bool>, String> {
        let text = match value {
            RawValue::Missing => return Ok(None),
            RawValue::Number(x) => crate::row::format_number(*x),
            RawValue::Text(t) if t.trim().is_empty() => return Ok(None),
            RawValue::Text(t) => t.trim().to_string(),
            RawValue::Invalid(d) => return Err(format!("expected a label, got {d}")),
        };
        Ok(Some(label_matches(&text, &self.positive_label)))
    }

    fn compile(&mut self) -> Result<()> {
        let mut num_slot: HashMap<&str, usize> = HashMap::new();
        let mut cat_slot: HashMap<&str, usize> = HashMap::new();
        let mut input_slot = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            match input.kind {
                InputKind::Numeric { .. } => {
                    input_slot.push(Slot::Numeric(num_slot.len()));
                    num_slot.insert(&input.name, num_slot.len());
                }
                InputKind::Categorical => {
                    input_slot.push(Slot::Categorical(cat_slot.len()));
                    cat_slot.insert(&input.name, cat_slot.len());
                }
            }
        }
        let mut ops = Vec::with_capacity(self.derived.len());
        for d in &self.derived {
            let num = |name: &str| {
                num_slot.get(name).copied().ok_or_else(|| {
                    CoreError::Config(format!(
                        "derived feature `{}` reads `{name}`, which is not a numeric input or an earlier numeric derived feature",
                        d.name
                    ))
                })
            };
            let op = match &d.kind {
                DerivedKind::Ratio { numerator, denominator, when_zero } => DerivedOp::Ratio {
                    num: num(numerator)?,
                    den: num(denominator)?,
                    when_zero: when_zero.as_deref().map(num).transpose()?,
                    out: num_slot.len(),
                },
                DerivedKind::Difference { left, right } => {
                    DerivedOp::Difference { left: num(left)?, right: num(right)?, out: num_slot.len() }
                }
                DerivedKind::CountEqual { columns, values } => {
                    let cats: Vec<usize> = columns
                        .iter()
                        .map(|c| {
                            cat_slot.get(c.as_str()).copied().ok_or_else(|| {
                                CoreError::Config(format!("derived feature `{}` counts `{c}`, which is not a categorical input", d.name))
                            })
                        })
                        .collect::<Result<_>>()?;
                    let matches = cats
                        .iter()
                        .map(|&c| {
                            self.categorical.get(c).map_or_else(Vec::new, |f| f.vocabulary.iter().map(|v| values.contains(v)).collect())
                        })
                        .collect();
                    DerivedOp::CountEqual { cats, values: values.clone(), matches, out: num_slot.len() }
                }
                DerivedKind::Bucket { column, edges } => {
                    if edges.is_empty() || edges.windows(2).any(|w| w[0] >= w[1]) {
                        return Err(CoreError::Config(format!(
                            "derived feature `{}`: bucket edges must be non-empty and increasing",
                            d.name
                        )));
                    }
                    let out = cat_slot.len();
                    let vocab = Vocab::new(self.categorical.get(out).map_or(&[][..], |c| &c.vocabulary[..]));
                    let values = (0..=edges.len())
                        .map(|i| {
                            let label = bucket_label(edges, i);
                            vocab.find(&label).map_or(CatValue::Unseen(label), CatValue::Known)
                        })
                        .collect();
                    DerivedOp::Bucket { src: num(column)?, edges: edges.clone(), values, out }
                }
            };
            if num_slot.contains_key(d.name.as_str()) || cat_slot.contains_key(d.name.as_str()) {
                return Err(CoreError::Config(format!("derived feature `{}` reuses an existing name", d.name)));
            }
            if d.kind.is_numeric() {
                num_slot.insert(&d.name, num_slot.len());
            } else {
                cat_slot.insert(&d.name, cat_slot.len());
            }
            ops.push(op);
        }
        if num_slot.len() != self.numeric.len() || cat_slot.len() != self.categorical.len() {
            return Err(CoreError::Model(format!(
                "feature spec is inconsistent: {} numeric and {} categorical slots, but {} numeric and {} categorical features",
                num_slot.len(),
                cat_slot.len(),
                self.numeric.len(),
                self.categorical.len()
            )));
        }
        let mut cat_offset = Vec::with_capacity(self.categorical.len());
        let mut width = self.numeric.len();
        let mut vocab_index = Vec::with_capacity(self.categorical.len());
        for c in &self.categorical {
            cat_offset.push(width);
            width += c.vocabulary.len();
            vocab_index.push(Vocab::new(&c.vocabulary));
        }
        let mut bin_offset = Vec::with_capacity(self.numeric.len());
        for f in &self.numeric {
            if f.bins.len() == 1 || f.bins.windows(2).any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less)) {
                return Err(CoreError::Model(format!("feature spec: bin edges of `{}` must be at least two increasing numbers", f.name)));
            }
            bin_offset.push(width);
            width += f.bin_count();
        }
        if !self.feature_names.is_empty() && self.feature_names.len() != width {
            return Err(CoreError::Model(format!("feature spec lists {} feature names for a vector of {width}", self.feature_names.len())));
        }
        let affected = input_slot
            .iter()
            .map(|slot| {
                let mut num_dep = vec![false; self.numeric.len()];
                let mut cat_dep = vec![false; self.categorical.len()];
                match *slot {
                    Slot::Numeric(s) => num_dep[s] = true,
                    Slot::Categorical(s) => cat_dep[s] = true,
                }
                let mut a = Affected::default();
                for (i, op) in ops.iter().enumerate() {
                    let (nums, cats, out, numeric) = op.reads();
                    if nums.iter().any(|n| num_dep[*n]) || cats.iter().any(|c| cat_dep[*c]) {
                        a.ops.push(i);
                        if numeric { num_dep[out] = true } else { cat_dep[out] = true }
                    }
                }
                a.numeric = (0..num_dep.len()).filter(|s| num_dep[*s]).collect();
                a.categorical = (0..cat_dep.len()).filter(|s| cat_dep[*s]).collect();
                a
            })
            .collect();
        self.plan = Plan { input_slot, derived: ops, vocab_index, cat_offset, bin_offset, width, affected };
        Ok(())
    }

    /// Steps 1–2: raw values and derived features. Problems are collected, not returned early,
    /// so that a caller can list every bad field of a record at once.
    pub fn slot_values(&self, row: &(impl RawRow + ?Sized), out: &mut SlotValues, problems: &mut Vec<FieldProblem>) {
        // Every slot is written below (each is an input's or a derived feature's, the plan
        // checks that), so buffers of the right length are reused without resetting them.
        if out.numeric.len() != self.numeric.len() || out.categorical.len() != self.categorical.len() {
            out.numeric = vec![f64::NAN; self.numeric.len()];
            out.categorical = vec![CatValue::Missing; self.categorical.len()];
        }
        out.imputed.clear();
        out.unseen_range.clear();
        for (i, input) in self.inputs.iter().enumerate() {
            if let (Slot::Categorical(s), Some(c)) = (self.plan.input_slot[i], row.resolved_category(i)) {
                out.categorical[s].clone_from(c);
                continue;
            }
            let raw = row.value(i, &input.name);
            match (self.plan.input_slot[i], &input.kind) {
                (Slot::Numeric(s), InputKind::Numeric { valid_min, valid_max, seen }) => match parse_number(&raw) {
                    Ok(Some(x)) if x < *valid_min || x > *valid_max => {
                        out.numeric[s] = f64::NAN;
                        problems.push(FieldProblem {
                            field: input.name.clone(),
                            value: raw.display(),
                            problem: format!("out of the valid range [{valid_min}, {valid_max}]"),
                        })
                    }
                    Ok(Some(x)) => {
                        out.numeric[s] = x;
                        if seen.is_some_and(|[lo, hi]| x < lo || x > hi) {
                            out.unseen_range.push(i);
                        }
                    }
                    Ok(None) => {
                        out.numeric[s] = self.numeric[s].impute;
                        out.imputed.push(s);
                    }
                    Err(p) => {
                        out.numeric[s] = f64::NAN;
                        problems.push(FieldProblem { field: input.name.clone(), value: raw.display(), problem: p })
                    }
                },
                (Slot::Categorical(s), _) => match self.category_value(s, &raw) {
                    Ok(c) => out.categorical[s] = c,
                    Err(p) => {
                        out.categorical[s] = CatValue::Missing;
                        problems.push(FieldProblem { field: input.name.clone(), value: raw.display(), problem: p })
                    }
                },
                (Slot::Numeric(_), InputKind::Categorical) => unreachable!("plan built from the same inputs"),
            }
        }
        for op in &self.plan.derived {
            self.apply_derived(op, out);
        }
    }

    /// Evaluates one derived feature from the slot values it reads.
    fn apply_derived(&self, op: &DerivedOp, out: &mut SlotValues) {
        match op {
            DerivedOp::Ratio { num, den, when_zero, out: o } => {
                let d = out.numeric[*den];
                let v = if d == 0.0 { when_zero.map_or(0.0, |w| out.numeric[w]) } else { out.numeric[*num] / d };
                out.numeric[*o] = if v.is_finite() { v } else { self.numeric[*o].impute };
            }
            DerivedOp::Difference { left, right, out: o } => {
                let v = out.numeric[*left] - out.numeric[*right];
                out.numeric[*o] = if v.is_finite() { v } else { self.numeric[*o].impute };
            }
            DerivedOp::CountEqual { cats, values, matches, out: o } => {
                let n = cats
                    .iter()
                    .zip(matches)
                    .filter(|(c, m)| match &out.categorical[**c] {
                        CatValue::Known(k) => m.get(*k).copied().unwrap_or(false),
                        CatValue::Missing => false,
                        CatValue::Unseen(v) => values.iter().any(|x| x == v),
                    })
                    .count();
                out.numeric[*o] = n as f64;
            }
            DerivedOp::Bucket { src, edges, values, out: o } => {
                let x = out.numeric[*src];
                if x.is_finite() {
                    out.categorical[*o].clone_from(&values[bucket_index(edges, x)]);
                } else {
                    out.categorical[*o] = CatValue::Missing;
                }
            }
        }
    }

    /// Steps 1–2 for a raw value of categorical slot `s`.
    fn category_value(&self, s: usize, raw: &RawValue<'_>) -> std::result::Result<CatValue, String> {
        if let RawValue::Number(x) = raw {
            return Ok(match self.plan.vocab_index[s].find_number(*x) {
                Some(k) => CatValue::Known(k),
                None => self.resolve(s, Some(Cow::Owned(crate::row::format_number(*x)))),
            });
        }
        Ok(self.resolve(s, category_of(raw)?))
    }

    /// What [`slot_values`](Self::slot_values) makes of `raw` as the value of input `input`:
    /// `None` when the input is not categorical, `Some(Err(problem))` when the value is not a
    /// category. Sources that hold a column's distinct values once (parquet dictionaries)
    /// resolve them here and hand the results back through [`RawRow::resolved_category`].
    pub fn resolve_category(&self, input: usize, raw: &RawValue<'_>) -> Option<std::result::Result<CatValue, String>> {
        match self.plan.input_slot.get(input)? {
            Slot::Categorical(s) => Some(self.category_value(*s, raw)),
            Slot::Numeric(_) => None,
        }
    }

    fn resolve(&self, slot: usize, value: Option<Cow<'_, str>>) -> CatValue {
        match value {
            None => CatValue::Missing,
            Some(v) => match self.plan.vocab_index[slot].find(v.as_ref()) {
                Some(k) => CatValue::Known(k),
                None => CatValue::Unseen(v.into_owned()),
            },
        }
    }

    /// The text of a resolved categorical value.
    pub fn category_text<'a>(&'a self, slot: usize, value: &'a CatValue) -> Option<&'a str> {
        match value {
            CatValue::Missing => None,
            CatValue::Known(k) => Some(self.categorical[slot].vocabulary[*k].as_str()),
            CatValue::Unseen(v) => Some(v.as_str()),
        }
    }

    /// For Shapley walks, which mix two records field by field without transforming every mix:
    /// sets input `field` of `mixed` (a record's [`slot_values`](Self::slot_values)) to its
    /// value in `from` (another record's), re-evaluates the derived features that read it, and
    /// calls `changed(position, new - old)` for every model input whose encoded value changes.
    /// `numeric` holds the encoded numeric inputs of `mixed` (the first
    /// `numeric.len()` positions of its vector) and is kept up to date. The result is exactly
    /// the slot values, and so the vector, of the mixed raw record. Returns whether anything
    /// changed.
    pub fn switch_field(
        &self,
        field: usize,
        from: &SlotValues,
        mixed: &mut SlotValues,
        numeric: &mut [f32],
        scratch: &mut SwitchScratch,
        mut changed: impl FnMut(usize, f32),
    ) -> bool {
        match self.plan.input_slot[field] {
            Slot::Numeric(s) if mixed.numeric[s] == from.numeric[s] => return false,
            Slot::Categorical(s) if mixed.categorical[s] == from.categorical[s] => return false,
            _ => {}
        }
        let a = &self.plan.affected[field];
        scratch.categorical.clear();
        scratch.categorical.extend(a.categorical.iter().map(|&s| known(&mixed.categorical[s])));
        scratch.numeric.clear();
        scratch.numeric.extend(a.numeric.iter().map(|&s| mixed.numeric[s]));
        match self.plan.input_slot[field] {
            Slot::Numeric(s) => mixed.numeric[s] = from.numeric[s],
            Slot::Categorical(s) => mixed.categorical[s].clone_from(&from.categorical[s]),
        }
        for &op in &a.ops {
            self.apply_derived(&self.plan.derived[op], mixed);
        }
        let mut any = false;
        for (&s, &before) in a.numeric.iter().zip(&scratch.numeric) {
            let new = self.encode_numeric(s, mixed.numeric[s]);
            if new != numeric[s] {
                changed(s, new - numeric[s]);
                numeric[s] = new;
                any = true;
            }
            let f = &self.numeric[s];
            for t in 0..f.bin_count() {
                let (old, new) = (f.bin_value(t, before), f.bin_value(t, mixed.numeric[s]));
                if old != new {
                    changed(self.plan.bin_offset[s] + t, new - old);
                    any = true;
                }
            }
        }
        for (&s, &old) in a.categorical.iter().zip(&scratch.categorical) {
            let new = known(&mixed.categorical[s]);
            if new != old {
                let offset = self.plan.cat_offset[s];
                if let Some(k) = old {
                    changed(offset + k, -1.0);
                }
                if let Some(k) = new {
                    changed(offset + k, 1.0);
                }
                any = true;
            }
        }
        any
    }

    /// Step 3 for numeric slot `s`: clipped to the fitted bounds and standardised.
    fn encode_numeric(&self, s: usize, x: f64) -> f32 {
        let f = &self.numeric[s];
        ((x.clamp(f.clip_min, f.clip_max) - f.mean) / f.std) as f32
    }

    /// Steps 3–4 on values from [`slot_values`](Self::slot_values): writes the model input vector.
    pub fn encode(&self, values: &SlotValues, out: &mut [f32], warnings: Option<&mut Vec<Warning>>) {
        debug_assert_eq!(out.len(), self.plan.width);
        for (i, x) in values.numeric.iter().enumerate() {
            out[i] = self.encode_numeric(i, *x);
        }
        out[self.numeric.len()..].fill(0.0);
        for (i, (f, x)) in self.numeric.iter().zip(&values.numeric).enumerate() {
            if f.bins.is_empty() {
                continue;
            }
            let x = x.clamp(f.clip_min, f.clip_max);
            let offset = self.plan.bin_offset[i];
            for (o, edges) in out[offset..offset + f.bin_count()].iter_mut().zip(f.bins.windows(2)) {
                *o = bin_fraction(x, edges[0], edges[1]);
            }
        }
        let mut warnings = warnings;
        if let Some(w) = warnings.as_deref_mut() {
            for &s in &values.imputed {
                let f = &self.numeric[s];
                w.push(Warning { field: f.name.clone(), message: format!("missing; imputed with the training median {}", f.impute) });
            }
            for &i in &values.unseen_range {
                let (input, Slot::Numeric(s)) = (&self.inputs[i], self.plan.input_slot[i]) else { continue };
                let InputKind::Numeric { seen: Some([lo, hi]), .. } = input.kind else { continue };
                let (x, f) = (values.numeric[s], &self.numeric[s]);
                w.push(Warning {
                    field: input.name.clone(),
                    message: format!(
                        "{x} is outside the training range [{lo}, {hi}]; the model has seen no such customer and scores it as {}",
                        x.clamp(f.clip_min, f.clip_max)
                    ),
                });
            }
        }
        for (s, c) in self.categorical.iter().enumerate() {
            match &values.categorical[s] {
                CatValue::Known(k) => out[self.plan.cat_offset[s] + k] = 1.0,
                CatValue::Unseen(v) => {
                    if let Some(w) = warnings.as_deref_mut() {
                        w.push(Warning {
                            field: c.name.clone(),
                            message: format!(
                                "unseen category {v:?}; scored as an average customer for this field (known: {:?})",
                                c.vocabulary
                            ),
                        });
                    }
                }
                CatValue::Missing => {
                    if let Some(w) = warnings.as_deref_mut() {
                        w.push(Warning { field: c.name.clone(), message: "missing; scored as an average customer for this field".into() });
                    }
                }
            }
        }
    }

    /// The whole transform for one record: writes `out` (length [`width`](Self::width)) or
    /// returns every problem found. Warnings (unseen or missing categories) go to `warnings`.
    pub fn transform_into(
        &self,
        row: &(impl RawRow + ?Sized),
        scratch: &mut SlotValues,
        out: &mut [f32],
        warnings: Option<&mut Vec<Warning>>,
    ) -> std::result::Result<(), RowError> {
        self.checked_slot_values(row, scratch)?;
        self.encode(scratch, out, warnings);
        Ok(())
    }

    /// Steps 1–2 as [`slot_values`](Self::slot_values), with every problem of the record
    /// returned as one error.
    pub fn checked_slot_values(&self, row: &(impl RawRow + ?Sized), out: &mut SlotValues) -> std::result::Result<(), RowError> {
        let mut problems = Vec::new();
        self.slot_values(row, out, &mut problems);
        if problems.is_empty() { Ok(()) } else { Err(RowError { problems }) }
    }

    /// Convenience form of [`transform_into`](Self::transform_into) that allocates.
    pub fn transform(&self, row: &(impl RawRow + ?Sized)) -> std::result::Result<Vec<f32>, RowError> {
        let mut out = vec![0.0; self.width()];
        self.transform_into(row, &mut SlotValues::default(), &mut out, None)?;
        Ok(out)
    }

    /// Fits the spec on training rows. `rows` yields `(row index, record)` and is iterated
    /// twice; `locate(index)` names the row in error messages, `file` the source.
    pub fn fit<R: RawRow>(
        schema: &ResolvedSchema,
        rows: impl Iterator<Item = (usize, R)> + Clone,
        file: &str,
        locate: &dyn Fn(usize) -> String,
    ) -> Result<Self> {
        let mut inputs = Vec::new();
        let mut numeric = Vec::new();
        let mut categorical = Vec::new();
        let placeholder = |name: &str| NumericFeature {
            name: name.to_string(),
            impute: f64::NAN,
            clip_min: f64::NEG_INFINITY,
            clip_max: f64::INFINITY,
            mean: 0.0,
            std: 1.0,
            bins: vec![],
        };
        for (name, kind) in &schema.inputs {
            match kind {
                ColumnKind::Numeric => {
                    inputs.push(InputColumn {
                        name: name.clone(),
                        kind: InputKind::Numeric { valid_min: f64::NEG_INFINITY, valid_max: f64::INFINITY, seen: None },
                    });
                    numeric.push(placeholder(name));
                }
                ColumnKind::Categorical => {
                    inputs.push(InputColumn { name: name.clone(), kind: InputKind::Categorical });
                    categorical.push(CategoricalFeature { name: name.clone(), vocabulary: vec![] });
                }
            }
        }
        for d in &schema.derived {
            if d.kind.is_numeric() {
                numeric.push(placeholder(&d.name));
            } else {
                categorical.push(CategoricalFeature { name: d.name.clone(), vocabulary: vec![] });
            }
        }
        let mut spec = FeatureSpec {
            schema_version: crate::SCHEMA_VERSION,
            id_column: schema.id_column.clone(),
            target_column: schema.target_column.clone(),
            positive_label: schema.positive_label.clone(),
            inputs,
            derived: schema.derived.clone(),
            numeric,
            categorical,
            feature_names: vec![],
            input_stats: BTreeMap::new(),
            plan: Plan::default(),
        };
        spec.compile()?;

        // Pass 1: raw numeric inputs -> medians for imputation, valid ranges, missing counts.
        let n_inputs = spec.inputs.len();
        let mut raw: Vec<Vec<f64>> = vec![Vec::new(); n_inputs];
        let mut missing = vec![0usize; n_inputs];
        let mut n_rows = 0usize;
        for (row_no, row) in rows.clone() {
            n_rows += 1;
            let mut problems = Vec::new();
            for (i, input) in spec.inputs.iter().enumerate() {
                let v = row.value(i, &input.name);
                match input.kind {
                    InputKind::Numeric { .. } => match parse_number(&v) {
                        Ok(Some(x)) => raw[i].push(x),
                        Ok(None) => missing[i] += 1,
                        Err(p) => problems.push(FieldProblem { field: input.name.clone(), value: v.display(), problem: p }),
                    },
                    InputKind::Categorical => match category_of(&v) {
                        Ok(Some(_)) => {}
                        Ok(None) => missing[i] += 1,
                        Err(p) => problems.push(FieldProblem { field: input.name.clone(), value: v.display(), problem: p }),
                    },
                }
            }
            if !problems.is_empty() {
                return Err(CoreError::Row { file: file.to_string(), location: locate(row_no), error: RowError { problems } });
            }
        }
        if n_rows == 0 {
            return Err(CoreError::Empty { file: file.to_string() });
        }
        for (i, input) in spec.inputs.iter_mut().enumerate() {
            spec.input_stats.insert(input.name.clone(), InputStats { missing: missing[i], rows: n_rows });
            if let (InputKind::Numeric { valid_min, valid_max, seen }, Slot::Numeric(s)) = (&mut input.kind, spec.plan.input_slot[i]) {
                let vals = &mut raw[i];
                let med = median(vals).ok_or_else(|| {
                    CoreError::Data(format!("{file}: numeric column `{}` is blank in every training row; exclude it", input.name))
                })?;
                let (lo, hi) = (vals[0], vals[vals.len() - 1]);
                let span = (hi - lo).max(1.0);
                *valid_min = if lo >= 0.0 { 0.0 } else { lo - 10.0 * span };
                *valid_max = hi + 10.0 * span;
                *seen = Some([lo, hi]);
                spec.numeric[s].impute = med;
            }
        }

        // Pass 2: full slot values (derived included) -> derived medians, clip bounds, scaling, vocabularies.
        let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(n_rows); spec.numeric.len()];
        let mut counts: Vec<HashMap<String, usize>> = vec![HashMap::new(); spec.categorical.len()];
        let mut sv = SlotValues::default();
        let mut problems = Vec::new();
        for (_, row) in rows {
            spec.slot_values(&row, &mut sv, &mut problems);
            for (c, x) in columns.iter_mut().zip(&sv.numeric) {
                c.push(*x);
            }
            for (m, v) in counts.iter_mut().zip(sv.categorical.drain(..)) {
                if let CatValue::Unseen(v) = v {
                    *m.entry(v).or_default() += 1;
                }
            }
        }
        for (f, col) in spec.numeric.iter_mut().zip(columns.iter_mut()) {
            if f.impute.is_nan() {
                let mut finite: Vec<f64> = col.iter().copied().filter(|x| x.is_finite()).collect();
                f.impute = median(&mut finite)
                    .ok_or_else(|| CoreError::Data(format!("derived feature `{}` is undefined for every training row", f.name)))?;
                for x in col.iter_mut().filter(|x| !x.is_finite()) {
                    *x = f.impute;
                }
            }
            col.sort_by(f64::total_cmp);
            f.clip_min = quantile(col, schema.clip_quantiles[0]);
            f.clip_max = quantile(col, schema.clip_quantiles[1]);
            let n = col.len() as f64;
            let clipped = col.iter().map(|x| x.clamp(f.clip_min, f.clip_max));
            f.mean = clipped.clone().sum::<f64>() / n;
            let var = clipped.map(|x| (x - f.mean).powi(2)).sum::<f64>() / n;
            // A constant feature carries no signal; std 1 keeps it at 0 instead of dividing by 0.
            f.std = if var > 1e-12 { var.sqrt() } else { 1.0 };
            f.bins = bin_edges(col, f.clip_min, f.clip_max, schema.numeric_bins);
        }
        for (c, m) in spec.categorical.iter_mut().zip(counts) {
            let mut kept: Vec<(String, usize)> = m.into_iter().filter(|(_, n)| *n >= schema.min_category_count).collect();
            kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            kept.truncate(schema.max_categories);
            c.vocabulary = kept.into_iter().map(|(v, _)| v).collect();
        }
        spec.feature_names = spec.numeric.iter().map(|f| f.name.clone()).collect();
        for c in &spec.categorical {
            spec.feature_names.extend(c.vocabulary.iter().map(|v| format!("{}={v}", c.name)));
        }
        for f in &spec.numeric {
            spec.feature_names.extend((0..f.bin_count()).map(|t| format!("{}~bin{t}", f.name)));
        }
        spec.compile()?;
        Ok(spec)
    }

    /// The typical training value of input `index`: the median of a numeric input, the most
    /// frequent category of a categorical one (vocabularies are sorted by frequency).
    pub fn typical_value(&self, index: usize) -> RawValue<'_> {
        match self.plan.input_slot[index] {
            Slot::Numeric(s) => RawValue::Number(self.numeric[s].impute),
            Slot::Categorical(s) => match self.categorical[s].vocabulary.first() {
                Some(v) => RawValue::Text(Cow::Borrowed(v)),
                None => RawValue::Missing,
            },
        }
    }

    /// Which input (raw field) each feature-vector position comes from; derived features map to
    /// themselves. Used to aggregate per-feature explanations back to fields a person knows.
    pub fn feature_sources(&self) -> Vec<String> {
        let mut v: Vec<String> = self.numeric.iter().map(|f| f.name.clone()).collect();
        for c in &self.categorical {
            v.extend(std::iter::repeat_n(c.name.clone(), c.vocabulary.len()));
        }
        for f in &self.numeric {
            v.extend(std::iter::repeat_n(f.name.clone(), f.bin_count()));
        }
        v
    }
}

/// Whether a target value is the positive label: the same text, or the same number (`1.0` and
/// `1`, as a CSV and a parquet file may write one label).
pub fn label_matches(text: &str, positive: &str) -> bool {
    text == positive || matches!((text.parse::<f64>(), positive.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

/// What type inference sees in a column: its non-blank values that are finite numbers, the
/// others, and the first of those (location, value).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NumericProfile {
    pub numbers: usize,
    pub others: usize,
    pub first_other: Option<(String, String)>,
}

/// Tables with fewer rows never have a column left out as mostly unique: too few rows to tell.
const MIN_ROWS_TO_LEAVE_OUT: usize = 20;

impl ResolvedSchema {
    /// Builds the schema from a configuration and the columns of a table, inferring what the
    /// configuration leaves out: a column is numeric when `numeric(col)` finds only finite
    /// numbers among its non-blank values; `distinct(col)` counts its distinct non-blank values.
    pub fn resolve(
        config: &DatasetConfig,
        file: &str,
        columns: &[String],
        rows: usize,
        numeric: &dyn Fn(&str) -> NumericProfile,
        distinct: &dyn Fn(&str) -> usize,
    ) -> Result<Self> {
        let has = |c: &str| columns.iter().any(|x| x == c);
        let target = config
            .target_column
            .clone()
            .ok_or_else(|| CoreError::Config("no target column: set `target_column` in [dataset] or pass --target".into()))?;
        let mut named: Vec<String> = vec![target.clone()];
        named.extend(config.id_column.iter().cloned());
        named.extend(config.numeric.iter().flatten().cloned());
        named.extend(config.categorical.iter().flatten().cloned());
        named.extend(config.exclude.iter().cloned());
        let missing: Vec<String> = named.into_iter().filter(|c| !has(c)).collect();
        if !missing.is_empty() {
            return Err(CoreError::MissingColumns { file: file.into(), missing, found: columns.to_vec() });
        }
        let positive = config
            .positive_label
            .clone()
            .ok_or_else(|| CoreError::Config("no positive label: set `positive_label` in [dataset] or pass --positive".into()))?;
        let mut left_out = Vec::new();
        let mut id = match &config.id_column {
            Some(c) => Some(c.clone()),
            None => columns
                .iter()
                .find(|c| {
                    let l = c.to_ascii_lowercase();
                    (l == "id" || l.ends_with("_id") || l.ends_with("id")) && *c != &target && distinct(c) == rows
                })
                .cloned(),
        };
        let mut inputs = Vec::new();
        for c in columns {
            if Some(c) == id.as_ref() || c == &target || config.exclude.contains(c) {
                continue;
            }
            let mut inferred = None;
            let kind = if config.numeric.as_ref().is_some_and(|v| v.contains(c)) {
                ColumnKind::Numeric
            } else if config.categorical.as_ref().is_some_and(|v| v.contains(c)) {
                ColumnKind::Categorical
            } else if config.numeric.is_some() && config.categorical.is_some() {
                continue; // both lists given: only listed columns are inputs
            } else {
                let p = numeric(c);
                let kind = if p.others == 0 { ColumnKind::Numeric } else { ColumnKind::Categorical };
                inferred = Some(p);
                kind
            };
            if kind == ColumnKind::Categorical
                && let Some(profile) = inferred
            {
                let n = distinct(c);
                // Inferred, and mostly numbers with a few that are not: bad values, not a category.
                if let NumericProfile { numbers, others, first_other: Some((at, value)) } = &profile
                    && n > config.max_categories
                    && *numbers >= 9 * *others
                {
                    return Err(CoreError::Data(format!(
                        "{file}, {at}: column `{c}` = {value:?} is not a finite number, while {numbers} of its values are numbers ({others} are not). Fix or blank the value(s) (blank counts as missing), or list `{c}` under `categorical` if it is one",
                    )));
                }
                // Mostly unique values (an identifier, free text, a timestamp): no value repeats
                // often enough to learn from. A column unique per row becomes the id column
                // when the table names none, so that outputs can echo it.
                if rows >= MIN_ROWS_TO_LEAVE_OUT && 2 * n > rows {
                    let why = if n == rows {
                        if id.is_none() {
                            id = Some(c.clone());
                            tracing::warn!(column = %c, "{file}: column `{c}` is unique per row: used as the id column (echoed in outputs, not a model input); set `id_column` to choose another");
                            continue;
                        }
                        format!("unique per row ({n} values): an identifier")
                    } else {
                        format!("{n} distinct values in {rows} rows: free text or an identifier")
                    };
                    tracing::warn!(column = %c, "{file}: column `{c}` left out of the model: {why}; list it under `categorical` to use it anyway");
                    left_out.push((c.clone(), why));
                    continue;
                }
                if n > config.max_categories {
                    tracing::info!(column = %c, "{file}: column `{c}` has {n} values; the {} most frequent get their own input, the rest are pooled as rare", config.max_categories);
                }
            }
            inputs.push((c.clone(), kind));
        }
        if inputs.is_empty() {
            return Err(CoreError::Config(format!("{file}: no input columns left besides id and target")));
        }
        Ok(ResolvedSchema {
            id_column: id,
            target_column: target,
            positive_label: positive,
            inputs,
            derived: config.derived.clone(),
            clip_quantiles: config.clip_quantiles,
            min_category_count: config.min_category_count,
            max_categories: config.max_categories,
            numeric_bins: config.numeric_bins,
            left_out,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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

    fn schema() -> ResolvedSchema {
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
        FeatureSpec::fit(&schema(), r.iter().enumerate().map(|(i, r)| (i + 2, r.as_slice())), "t.csv", &|i| format!("line {i}")).unwrap()
    }

    /// [`fitted`] with a two-bin piecewise-linear encoding of every numeric feature that has
    /// three distinct quantiles.
    pub(crate) fn fitted_binned() -> FeatureSpec {
        let r = rows();
        let schema = ResolvedSchema { numeric_bins: 2, ..schema() };
        FeatureSpec::fit(&schema, r.iter().enumerate().map(|(i, r)| (i + 2, r.as_slice())), "t.csv", &|i| format!("line {i}")).unwrap()
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
        let err =
            FeatureSpec::fit(&sc, r.iter().enumerate().map(|(i, r)| (i, r.as_slice())), "t.csv", &|i| format!("line {i}")).unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");
    }
}
