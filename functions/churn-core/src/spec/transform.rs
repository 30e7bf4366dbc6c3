//! The one feature transform: raw record → slot values (parsing, imputation, derived
//! features) → the model input vector (clipping, scaling, one-hot, piecewise-linear).

use std::borrow::Cow;

use super::*;
use crate::config::bucket_index;
use crate::error::{FieldProblem, RowError};
use crate::row::{RawRow, RawValue};

impl FeatureSpec {
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
            // The value as a person reads it, for a problem's message (rare: read again).
            let shown = || row.value(i, &input.name).display();
            match (self.plan.input_slot[i], &input.kind) {
                (Slot::Numeric(s), InputKind::Numeric { valid_min, valid_max, seen }) => {
                    let parsed = match row.resolved_number(i) {
                        Some(x) => Ok(Some(x)),
                        None => parse_number(&row.value(i, &input.name)),
                    };
                    match parsed {
                        Ok(Some(x)) if x < *valid_min || x > *valid_max => {
                            out.numeric[s] = f64::NAN;
                            problems.push(FieldProblem {
                                field: input.name.clone(),
                                value: shown(),
                                problem: ValueProblem::OutOfRange { min: *valid_min, max: *valid_max }.to_string(),
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
                            problems.push(FieldProblem { field: input.name.clone(), value: shown(), problem: p.to_string() })
                        }
                    }
                }
                (Slot::Categorical(s), _) => {
                    if let Some(c) = row.resolved_category(i) {
                        out.categorical[s].clone_from(c);
                        continue;
                    }
                    match self.category_value(s, &row.value(i, &input.name)) {
                        Ok(c) => out.categorical[s] = c,
                        Err(p) => {
                            out.categorical[s] = CatValue::Missing;
                            problems.push(FieldProblem { field: input.name.clone(), value: shown(), problem: p.to_string() })
                        }
                    }
                }
                (Slot::Numeric(_), InputKind::Categorical) => unreachable!("plan built from the same inputs"),
            }
        }
        for op in &self.plan.derived {
            self.apply_derived(op, out);
        }
    }

    /// Evaluates one derived feature from the slot values it reads.
    pub(super) fn apply_derived(&self, op: &DerivedOp, out: &mut SlotValues) {
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
    pub(super) fn category_value(&self, s: usize, raw: &RawValue<'_>) -> std::result::Result<CatValue, ValueProblem> {
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
    pub fn resolve_category(&self, input: usize, raw: &RawValue<'_>) -> Option<std::result::Result<CatValue, ValueProblem>> {
        match self.plan.input_slot.get(input)? {
            Slot::Categorical(s) => Some(self.category_value(*s, raw)),
            Slot::Numeric(_) => None,
        }
    }

    /// What [`slot_values`](Self::slot_values) makes of `raw` as the value of input `input`
    /// when that is a valid number: `Some(x)` for a numeric input whose value parses to `x`
    /// within its valid range; `None` otherwise (not numeric, blank, not a number, out of
    /// range: the row path handles those, imputing or reporting the problem). Sources that hold a
    /// column's distinct values once (numbers written as text in parquet dictionaries) resolve
    /// them here and hand the results back through [`RawRow::resolved_number`].
    pub fn resolve_number(&self, input: usize, raw: &RawValue<'_>) -> Option<f64> {
        let InputKind::Numeric { valid_min, valid_max, .. } = self.inputs.get(input)?.kind else { return None };
        parse_number(raw).ok().flatten().filter(|x| (valid_min..=valid_max).contains(x))
    }

    pub(super) fn resolve(&self, slot: usize, value: Option<Cow<'_, str>>) -> CatValue {
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

    /// Step 3 for numeric slot `s`: clipped to the fitted bounds and standardised.
    pub(crate) fn encode_numeric(&self, s: usize, x: f64) -> f32 {
        let f = &self.numeric[s];
        ((x.clamp(f.clip_min, f.clip_max) - f.mean) / f.std) as f32
    }

    /// Steps 3–4 on values from [`slot_values`](Self::slot_values): writes the model input vector
    /// (every position: those [`encode_sparse`](Self::encode_sparse) does not name are 0).
    /// Warnings (imputed numbers, numbers outside the training range, unseen or missing
    /// categories) go to `warnings`.
    pub fn encode(&self, values: &SlotValues, out: &mut [f32], warnings: Option<&mut Vec<Warning>>) {
        debug_assert_eq!(out.len(), self.plan.width);
        out.fill(0.0);
        self.encode_sparse(values, |inputs| match inputs {
            Inputs::Value { position, value } => out[position] = value,
            Inputs::LeadingOnes { slot, ones } => {
                let offset = self.plan.bin_offset[slot];
                out[offset..offset + ones].fill(1.0);
            }
        });
        if let Some(w) = warnings {
            self.warnings(values, w);
        }
    }

    /// Steps 3–4 as the nonzero part of the model input vector: `input` is called for every
    /// standardised number, every known category's one-hot input, the run of 1s that begins
    /// each piecewise-linear block, and each other nonzero piecewise-linear input. The one
    /// definition of the encoding: [`encode`](Self::encode) writes the vector from it, and the
    /// batch scorer's first layer ([`crate::network::Network`]) sums weight columns from it.
    #[inline]
    pub fn encode_sparse(&self, values: &SlotValues, mut input: impl FnMut(Inputs)) {
        for (s, x) in values.numeric.iter().enumerate() {
            self.encode_number(s, *x, &mut input);
        }
        for (s, c) in values.categorical.iter().enumerate() {
            if let CatValue::Known(k) = c {
                input(Inputs::Value { position: self.plan.cat_offset[s] + k, value: 1.0 });
            }
        }
    }

    /// [`encode_sparse`](Self::encode_sparse) for numeric slot `s` with value `x`: its
    /// standardised value, then its piecewise-linear block's run of 1s and fraction.
    #[inline]
    pub(crate) fn encode_number(&self, s: usize, x: f64, input: &mut impl FnMut(Inputs)) {
        input(Inputs::Value { position: s, value: self.encode_numeric(s, x) });
        let (ones, fraction) = self.bin_state(s, x);
        if ones > 0 {
            input(Inputs::LeadingOnes { slot: s, ones });
        }
        if fraction != 0.0 {
            input(Inputs::Value { position: self.plan.bin_offset[s] + ones, value: fraction });
        }
    }

    /// The warnings of a record with slot values `values`: numbers that were blank (imputed)
    /// or outside the training range, categories unseen in training or missing.
    pub fn warnings(&self, values: &SlotValues, w: &mut Vec<Warning>) {
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
        for (c, value) in self.categorical.iter().zip(&values.categorical) {
            match value {
                CatValue::Known(_) => {}
                CatValue::Unseen(v) => w.push(Warning {
                    field: c.name.clone(),
                    message: format!("unseen category {v:?}; scored as an average customer for this field (known: {:?})", c.vocabulary),
                }),
                CatValue::Missing => {
                    w.push(Warning { field: c.name.clone(), message: "missing; scored as an average customer for this field".into() })
                }
            }
        }
    }

    /// Numeric slot `s`'s piecewise-linear block for the value `x`: how many of its inputs are 1
    /// (they begin the block) and the value of the next one (the fraction of `x`'s bin; 0 on its
    /// lower edge, and when no bin follows); the rest are 0. (0, 0.0) for a number without bins.
    #[inline]
    pub(crate) fn bin_state(&self, s: usize, x: f64) -> (usize, f32) {
        let f = &self.numeric[s];
        if f.bins.is_empty() {
            return (0, 0.0);
        }
        let x = x.clamp(f.clip_min, f.clip_max);
        // Edges strictly increase (the plan checks): the bins whose upper edge is at most x
        // are 1 — what `bin_fraction` gives each bin, found with one search.
        let ones = f.bins[1..].partition_point(|e| *e <= x);
        let fraction = if ones < f.bin_count() { bin_fraction(x, f.bins[ones], f.bins[ones + 1]) } else { 0.0 };
        (ones, fraction)
    }

    /// Numeric slot `s`'s piecewise-linear block: its first position in the model input vector
    /// and its number of inputs (0 when the number has none).
    pub fn bin_block(&self, s: usize) -> (usize, usize) {
        (self.plan.bin_offset[s], self.numeric[s].bin_count())
    }

    /// Categorical slot `s`'s one-hot block: its first position in the model input vector and
    /// its number of inputs (the vocabulary's size).
    pub fn category_block(&self, s: usize) -> (usize, usize) {
        (self.plan.cat_offset[s], self.categorical[s].vocabulary.len())
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
