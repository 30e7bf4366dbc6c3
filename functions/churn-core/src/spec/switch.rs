//! Shapley support: switching one field of a record to another record's value, with only the
//! model inputs that change recomputed (used by `explain::Explainer`).

use super::*;

/// A change of a record's model input when [`FeatureSpec::switch_field`] switches one field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Input `position` changes by `delta`.
    Input { position: usize, delta: f32 },
    /// The first `ones` inputs of numeric slot `slot`'s piecewise-linear block, each 1, are
    /// added (`sign` 1) or removed (`sign` -1).
    LeadingOnes { slot: usize, ones: usize, sign: f32 },
}

impl FeatureSpec {
    /// For Shapley walks, which mix two records field by field without transforming every mix:
    /// sets input `field` of `mixed` (a record's [`slot_values`](Self::slot_values)) to its
    /// value in `from` (another record's), re-evaluates the derived features that read it, and
    /// calls `changed` with what changes in the model input: an input by `delta`
    /// ([`Change::Input`]), or a run of 1s that begins a piecewise-linear block added or removed
    /// ([`Change::LeadingOnes`]; a few terms for a block however many bins the value crosses).
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
        mut changed: impl FnMut(Change),
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
                changed(Change::Input { position: s, delta: new - numeric[s] });
                numeric[s] = new;
                any = true;
            }
            // The block changes by at most four terms, whatever the number of bins between the
            // two values: the leading runs of 1s and the fractional inputs, old out, new in.
            let (old_ones, old_fraction) = self.bin_state(s, before);
            let (new_ones, new_fraction) = self.bin_state(s, mixed.numeric[s]);
            let offset = self.plan.bin_offset[s];
            if old_ones == new_ones {
                if old_fraction != new_fraction {
                    changed(Change::Input { position: offset + new_ones, delta: new_fraction - old_fraction });
                    any = true;
                }
                continue;
            }
            if old_ones > 0 {
                changed(Change::LeadingOnes { slot: s, ones: old_ones, sign: -1.0 });
            }
            if old_fraction != 0.0 {
                changed(Change::Input { position: offset + old_ones, delta: -old_fraction });
            }
            if new_ones > 0 {
                changed(Change::LeadingOnes { slot: s, ones: new_ones, sign: 1.0 });
            }
            if new_fraction != 0.0 {
                changed(Change::Input { position: offset + new_ones, delta: new_fraction });
            }
            any = true;
        }
        for (&s, &old) in a.categorical.iter().zip(&scratch.categorical) {
            let new = known(&mixed.categorical[s]);
            if new != old {
                let offset = self.plan.cat_offset[s];
                if let Some(k) = old {
                    changed(Change::Input { position: offset + k, delta: -1.0 });
                }
                if let Some(k) = new {
                    changed(Change::Input { position: offset + k, delta: 1.0 });
                }
                any = true;
            }
        }
        any
    }
}
