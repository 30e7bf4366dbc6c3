//! Shapley support: switching one field of a record to another record's value, with only the
//! model inputs that change recomputed (used by `explain::Explainer`).

use super::*;

impl FeatureSpec {
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
}
