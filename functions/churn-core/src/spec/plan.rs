//! The compiled form of a spec ([`Plan`]): every name resolved to a slot and a vector position
//! once, when the spec is fitted or loaded, so that the per-row transform does no lookups.

use std::collections::HashMap;

use super::*;
use crate::config::{DerivedKind, bucket_label};
use crate::error::{CoreError, Result};
use crate::row::format_number;

/// A problem with the derived feature `d` of the dataset configuration.
fn derived(d: &DerivedFeature, problem: String) -> CoreError {
    CoreError::setting(format_args!("derived feature `{}`", d.name), problem)
}

/// A problem with a bundle's `feature_spec.json`.
pub(super) fn spec_file(problem: String) -> CoreError {
    CoreError::ModelFile { file: crate::bundle::FEATURE_SPEC, problem }
}

/// Index-resolved form of the spec, built once on load so that the per-row work does no lookups
/// by name.
#[derive(Debug, Clone, Default)]
pub(super) struct Plan {
    /// For each input: its numeric slot or categorical slot.
    pub(super) input_slot: Vec<Slot>,
    pub(super) derived: Vec<DerivedOp>,
    /// For each categorical slot, category -> offset within its one-hot block.
    pub(super) vocab_index: Vec<Vocab>,
    /// Offset of each categorical slot's block in the output vector.
    pub(super) cat_offset: Vec<usize>,
    /// Offset of each numeric slot's piecewise-linear block (meaningful when it has bins).
    pub(super) bin_offset: Vec<usize>,
    pub(super) width: usize,
    /// For each input: what changes when it does (see [`FeatureSpec::switch_field`]).
    pub(super) affected: Vec<Affected>,
}

/// The derived features and slots that depend, directly or through other derived features, on
/// one input.
#[derive(Debug, Clone, Default)]
pub(super) struct Affected {
    /// Derived ops reading the input, in evaluation order.
    pub(super) ops: Vec<usize>,
    pub(super) numeric: Vec<usize>,
    pub(super) categorical: Vec<usize>,
}

impl DerivedOp {
    /// (numeric slots read, categorical slots read, output slot and whether it is numeric).
    pub(super) fn reads(&self) -> (Vec<usize>, Vec<usize>, usize, bool) {
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
    pub(super) categorical: Vec<Option<usize>>,
    /// Raw values of the affected numeric slots before the switch (piecewise-linear inputs).
    pub(super) numeric: Vec<f64>,
}

pub(super) fn known(c: &CatValue) -> Option<usize> {
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
pub(super) struct Vocab {
    pub(super) values: Vec<String>,
    pub(super) map: Option<HashMap<String, usize>>,
    pub(super) numbers: Vec<(f64, usize)>,
}

impl Vocab {
    const LINEAR_MAX: usize = 16;

    pub(super) fn new(values: &[String]) -> Self {
        let numbers = values.iter().enumerate().filter_map(|(i, v)| category_number(v).map(|x| (x, i))).collect();
        let map = (values.len() > Self::LINEAR_MAX).then(|| values.iter().enumerate().map(|(i, v)| (v.clone(), i)).collect());
        Vocab { values: values.to_vec(), map, numbers }
    }

    pub(super) fn find(&self, s: &str) -> Option<usize> {
        match &self.map {
            Some(m) => m.get(s).copied(),
            None => self.values.iter().position(|v| v == s),
        }
    }

    pub(super) fn find_number(&self, x: f64) -> Option<usize> {
        self.numbers.iter().find(|(y, _)| *y == x).map(|(_, i)| *i)
    }
}

/// The number a category stands for, when it is written as [`format_number`] writes numbers
/// (`"1"`, `"2.5"`; not `"01"` or `"1.0"`), so that a numeric cell matches it.
pub(super) fn category_number(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|x| format_number(*x) == v)
}

/// `s` without surrounding whitespace; the common case (nothing to trim) is decided on the
/// first and last bytes without decoding UTF-8.
pub(super) fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii() && b.is_ascii() && !a.is_ascii_whitespace() && !b.is_ascii_whitespace() => s,
        _ => s.trim(),
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    Numeric(usize),
    Categorical(usize),
}

#[derive(Debug, Clone)]
pub(super) enum DerivedOp {
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

impl FeatureSpec {
    pub(super) fn compile(&mut self) -> Result<()> {
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
                    derived(d, format!("reads `{name}`, which is not a numeric input or an earlier numeric derived feature"))
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
                            cat_slot
                                .get(c.as_str())
                                .copied()
                                .ok_or_else(|| derived(d, format!("counts `{c}`, which is not a categorical input")))
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
                        return Err(derived(d, "bucket edges must be non-empty and increasing".into()));
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
                return Err(derived(d, "reuses an existing name".into()));
            }
            if d.kind.is_numeric() {
                num_slot.insert(&d.name, num_slot.len());
            } else {
                cat_slot.insert(&d.name, cat_slot.len());
            }
            ops.push(op);
        }
        if num_slot.len() != self.numeric.len() || cat_slot.len() != self.categorical.len() {
            return Err(spec_file(format!(
                "inconsistent: {} numeric and {} categorical slots, but {} numeric and {} categorical features",
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
                return Err(spec_file(format!("bin edges of `{}` must be at least two increasing numbers", f.name)));
            }
            bin_offset.push(width);
            width += f.bin_count();
        }
        if !self.feature_names.is_empty() && self.feature_names.len() != width {
            return Err(spec_file(format!("lists {} feature names for a vector of {width}", self.feature_names.len())));
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
}
