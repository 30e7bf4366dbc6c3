//! Data drift: the training reference distribution of every model feature, stored in the bundle
//! as `reference.json`, and the population stability index (PSI) of a scored batch against it.
//!
//! Features are taken after imputation and derivation, before scaling (the [`SlotValues`] the
//! transform computes anyway), so the batch scorer counts them at no extra parsing cost and a
//! derived feature such as `avg_monthly_spend` drifts visibly when its sources do.
//! Numeric features use the training deciles as bin edges; categorical ones one bin per
//! vocabulary entry plus `(unseen)` and `(missing)`.
//!
//! PSI = Σ (actual − expected) · ln(actual / expected) over the bins, with proportions floored at
//! [`PSI_FLOOR`] so an empty bin does not make it infinite. The usual reading: below 0.1 stable,
//! 0.1–0.2 a moderate shift worth watching, above 0.2 a significant shift ([`DEFAULT_PSI_THRESHOLD`]).

use serde::{Deserialize, Serialize};

use crate::spec::{CatValue, FeatureSpec, SlotValues};

/// File name of the reference inside a bundle.
pub const REFERENCE: &str = "reference.json";
/// PSI above which a feature is reported as drifted unless configured otherwise.
pub const DEFAULT_PSI_THRESHOLD: f64 = 0.2;
/// Smallest proportion used in the PSI sum.
pub const PSI_FLOOR: f64 = 1e-4;

/// Bins of one feature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Bins {
    /// `edges.len() + 1` bins: `(-inf, e0]`, `(e0, e1]`, …, `(e_last, inf)`.
    Numeric { edges: Vec<f64> },
    /// One bin per vocabulary entry (the spec's order), then unseen, then missing.
    Categorical { categories: Vec<String> },
}

impl Bins {
    pub fn len(&self) -> usize {
        match self {
            Bins::Numeric { edges } => edges.len() + 1,
            Bins::Categorical { categories } => categories.len() + 2,
        }
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeatureReference {
    pub name: String,
    pub bins: Bins,
    /// Share of the training rows in each bin (sums to 1).
    pub expected: Vec<f64>,
}

/// The training distribution of every feature, numeric features first (the spec's order).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DriftReference {
    pub rows: usize,
    pub features: Vec<FeatureReference>,
}

/// PSI of one feature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeatureDrift {
    pub feature: String,
    pub psi: f64,
    pub drifted: bool,
}

/// Every feature's PSI against the training reference, and the features above `threshold`: what
/// a batch summary and `churn drift` report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DriftReport {
    pub threshold: f64,
    /// Features whose PSI is above the threshold.
    pub drifted: Vec<String>,
    pub max_psi: f64,
    /// PSI per feature, in the reference's order.
    pub features: Vec<FeatureDrift>,
}

impl DriftReport {
    pub fn new(threshold: f64, features: Vec<FeatureDrift>) -> Self {
        DriftReport {
            threshold,
            drifted: features.iter().filter(|f| f.drifted).map(|f| f.feature.clone()).collect(),
            max_psi: features.iter().map(|f| f.psi).fold(0.0, f64::max),
            features,
        }
    }

    /// The features above the threshold.
    pub fn drifted_features(&self) -> impl Iterator<Item = &FeatureDrift> {
        self.features.iter().filter(|f| f.drifted)
    }
}

/// Bin counts of a batch, accumulated row by row: every feature's bins side by side in one
/// vector (numeric features first, the reference's order), so that a row's counting indexes
/// one array.
///
/// Numbers are held back [`CHUNK`] rows at a time and counted a column at a time
/// ([`count_bins`]): one vectorised comparison of the column against each edge, instead of a
/// bin lookup and a counter increment per value.
#[derive(Debug, Clone)]
pub struct DriftCounter {
    edges: Vec<Vec<f64>>,
    counts: Vec<u64>,
    /// Where each feature's bins begin in `counts`, and where they end (one more entry).
    start: Vec<usize>,
    rows: u64,
    /// The numbers of the rows not counted yet: feature `f`'s at `f * CHUNK ..`.
    pending: Vec<f64>,
    pending_rows: usize,
}

/// Rows whose numbers [`DriftCounter`] holds back before counting them.
const CHUNK: usize = 256;

#[cfg(test)]
fn numeric_bin(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|e| *e < x)
}

/// Adds to `counts` (one more entry than `edges`) how many of `column` fall in each bin: bin
/// `k` holds the values above edge `k - 1` and not above edge `k`. The edges are sorted, so the
/// values above edge `k` are among those above edge `k - 1`, and each bin's count is the
/// difference of two such tallies (a NaN is above no edge: bin 0, as `partition_point` says).
#[multiversion::multiversion(targets("x86_64+avx2"))]
fn count_bins(edges: &[f64], column: &[f64], counts: &mut [u64]) {
    let mut above_previous = column.len() as u64;
    for (k, e) in edges.iter().enumerate() {
        let above = column.iter().map(|x| u64::from(*e < *x)).sum::<u64>();
        counts[k] += above_previous - above;
        above_previous = above;
    }
    counts[edges.len()] += above_previous;
}

impl DriftCounter {
    /// Empty counts shaped like `spec`'s features (edges from `reference` when given).
    pub fn new(spec: &FeatureSpec, reference: &DriftReference) -> Self {
        let edges: Vec<Vec<f64>> = reference.features[..spec.numeric.len()]
            .iter()
            .map(|f| match &f.bins {
                Bins::Numeric { edges } => edges.clone(),
                Bins::Categorical { .. } => Vec::new(),
            })
            .collect();
        let bins = edges.iter().map(|e| e.len() + 1).chain(spec.categorical.iter().map(|c| c.vocabulary.len() + 2));
        let start: Vec<usize> = std::iter::once(0)
            .chain(bins.scan(0, |end, n| {
                *end += n;
                Some(*end)
            }))
            .collect();
        let pending = vec![0.0; edges.len() * CHUNK];
        DriftCounter { counts: vec![0; *start.last().expect("one entry at least")], start, edges, rows: 0, pending, pending_rows: 0 }
    }

    /// Counts one row's values.
    pub fn observe(&mut self, values: &SlotValues) {
        self.rows += 1;
        let at = self.pending_rows;
        for (f, x) in values.numeric.iter().take(self.edges.len()).enumerate() {
            self.pending[f * CHUNK + at] = *x;
        }
        let categorical = &self.start[self.edges.len()..];
        for (c, bounds) in values.categorical.iter().zip(categorical.windows(2)) {
            let unseen = bounds[1] - 2;
            let bin = match c {
                CatValue::Known(k) => bounds[0] + *k,
                CatValue::Unseen(_) => unseen,
                CatValue::Missing => unseen + 1,
            };
            self.counts[bin] += 1;
        }
        self.pending_rows += 1;
        if self.pending_rows == CHUNK {
            self.count_pending();
        }
    }

    /// Counts the numbers held back.
    fn count_pending(&mut self) {
        let n = self.pending_rows;
        for (f, edges) in self.edges.iter().enumerate() {
            let (column, counts) = (&self.pending[f * CHUNK..f * CHUNK + n], &mut self.counts[self.start[f]..self.start[f + 1]]);
            count_bins(edges, column, counts);
        }
        self.pending_rows = 0;
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Proportions per feature, in the reference's order.
    fn proportions(&self) -> Vec<Vec<f64>> {
        let mut all = self.clone();
        all.count_pending();
        let n = all.rows.max(1) as f64;
        all.start.windows(2).map(|b| all.counts[b[0]..b[1]].iter().map(|&k| k as f64 / n).collect()).collect()
    }

    /// PSI of every feature against `reference`; `None` before any row was counted.
    pub fn psi(&self, reference: &DriftReference, threshold: f64) -> Option<Vec<FeatureDrift>> {
        if self.rows == 0 {
            return None;
        }
        Some(
            reference
                .features
                .iter()
                .zip(self.proportions())
                .map(|(f, actual)| {
                    let psi = psi(&f.expected, &actual);
                    FeatureDrift { feature: f.name.clone(), psi, drifted: psi > threshold }
                })
                .collect(),
        )
    }
}

/// PSI of two distributions over the same bins.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(PSI_FLOOR), a.max(PSI_FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

impl DriftReference {
    /// Fits the reference on the training rows' slot values (after imputation and derivation).
    pub fn fit<'a>(spec: &FeatureSpec, rows: impl Iterator<Item = &'a SlotValues> + Clone) -> Self {
        let mut edges = Vec::with_capacity(spec.numeric.len());
        for i in 0..spec.numeric.len() {
            let mut xs: Vec<f64> = rows.clone().map(|v| v.numeric[i]).filter(|x| x.is_finite()).collect();
            xs.sort_by(f64::total_cmp);
            let mut e: Vec<f64> = Vec::new();
            if !xs.is_empty() {
                for q in 1..10 {
                    let x = xs[((xs.len() - 1) * q) / 10];
                    // Deciles collapse on discrete features (counts, flags): keep distinct edges.
                    if e.last().is_none_or(|l| *l < x) {
                        e.push(x);
                    }
                }
            }
            edges.push(e);
        }
        let skeleton = DriftReference {
            rows: 0,
            features: spec
                .numeric
                .iter()
                .zip(&edges)
                .map(|(f, e)| FeatureReference { name: f.name.clone(), bins: Bins::Numeric { edges: e.clone() }, expected: vec![] })
                .chain(spec.categorical.iter().map(|c| FeatureReference {
                    name: c.name.clone(),
                    bins: Bins::Categorical { categories: c.vocabulary.clone() },
                    expected: vec![],
                }))
                .collect(),
        };
        let mut counter = DriftCounter::new(spec, &skeleton);
        for v in rows {
            counter.observe(v);
        }
        let mut reference = skeleton;
        reference.rows = counter.rows as usize;
        for (f, p) in reference.features.iter_mut().zip(counter.proportions()) {
            f.expected = p;
        }
        reference
    }

    /// Checks that the reference fits `spec` (same features, same bins), so counting cannot go
    /// out of bounds on a mismatched bundle.
    pub fn check(&self, spec: &FeatureSpec) -> crate::error::Result<()> {
        let bad = |problem: String| crate::CoreError::ModelFile { file: REFERENCE, problem };
        let names: Vec<&str> =
            spec.numeric.iter().map(|f| f.name.as_str()).chain(spec.categorical.iter().map(|c| c.name.as_str())).collect();
        let mine: Vec<&str> = self.features.iter().map(|f| f.name.as_str()).collect();
        if names != mine {
            return Err(bad(format!("describes features {mine:?}, the feature spec has {names:?}")));
        }
        for (i, f) in self.features.iter().enumerate() {
            let ok = match &f.bins {
                Bins::Numeric { edges } => i < spec.numeric.len() && edges.windows(2).all(|w| w[0] < w[1]),
                Bins::Categorical { categories } => {
                    i >= spec.numeric.len() && *categories == spec.categorical[i - spec.numeric.len()].vocabulary
                }
            };
            if !ok || f.expected.len() != f.bins.len() {
                return Err(bad(format!("bins of `{}` do not match the feature spec", f.name)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec fixture's rows as slot values.
    fn fixture_slot_values(spec: &FeatureSpec) -> Vec<SlotValues> {
        crate::spec::tests::rows()
            .iter()
            .map(|r| {
                let mut v = SlotValues::default();
                spec.checked_slot_values(r.as_slice(), &mut v).unwrap();
                v
            })
            .collect()
    }

    #[test]
    fn counts_are_each_features_own_shares() {
        let spec = crate::spec::tests::fitted();
        let mut rows = fixture_slot_values(&spec);
        // An unseen and a missing category, counted in their own bins.
        let (mut unseen, mut missing) = (rows[0].clone(), rows[1].clone());
        unseen.categorical[0] = CatValue::Unseen("zzz".into());
        missing.categorical[0] = CatValue::Missing;
        rows.extend([unseen, missing]);
        let reference = DriftReference::fit(&spec, rows.iter());
        let mut counter = DriftCounter::new(&spec, &reference);
        rows.iter().for_each(|v| counter.observe(v));
        let shares = counter.proportions();
        assert_eq!(shares.len(), spec.numeric.len() + spec.categorical.len());
        let n = rows.len() as f64;
        for (f, (share, reference)) in shares.iter().zip(&reference.features).enumerate() {
            assert_eq!(share.len(), reference.bins.len(), "feature {f}");
            assert!((share.iter().sum::<f64>() - 1.0).abs() < 1e-12, "feature {f}: {share:?}");
            let want: Vec<f64> = match &reference.bins {
                Bins::Numeric { edges } => {
                    (0..=edges.len()).map(|b| rows.iter().filter(|v| numeric_bin(edges, v.numeric[f]) == b).count() as f64 / n).collect()
                }
                Bins::Categorical { categories } => {
                    let c = f - spec.numeric.len();
                    let bin = |v: &SlotValues| match &v.categorical[c] {
                        CatValue::Known(k) => *k,
                        CatValue::Unseen(_) => categories.len(),
                        CatValue::Missing => categories.len() + 1,
                    };
                    (0..categories.len() + 2).map(|b| rows.iter().filter(|v| bin(v) == b).count() as f64 / n).collect()
                }
            };
            assert_eq!(share, &want, "feature {f}");
        }
        assert!(shares[spec.numeric.len()].iter().rev().take(2).all(|s| *s == 1.0 / n), "one unseen, one missing");
    }

    #[test]
    fn psi_is_zero_for_equal_distributions_and_grows_with_shift() {
        let e = [0.25, 0.25, 0.25, 0.25];
        assert!(psi(&e, &e).abs() < 1e-12);
        let small = psi(&e, &[0.3, 0.25, 0.25, 0.2]);
        let large = psi(&e, &[0.7, 0.1, 0.1, 0.1]);
        assert!(small > 0.0 && small < 0.1, "{small}");
        assert!(large > DEFAULT_PSI_THRESHOLD, "{large}");
        // An empty bin is floored, not infinite.
        assert!(psi(&e, &[0.5, 0.5, 0.0, 0.0]).is_finite());
    }

    #[test]
    fn counting_a_column_agrees_with_a_binary_search() {
        // Repeated edges (deciles of a column that is mostly one value), values on the edges,
        // NaN and infinities: each must land where `partition_point` puts it.
        let edges = [0.0, 0.0, 0.0, 3.0, 3.0, 7.5];
        let column = [-1.0, 0.0, 1e-9, 2.9, 3.0, 3.1, 7.5, 8.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 3.0];
        let mut counts = vec![0u64; edges.len() + 1];
        count_bins(&edges, &column, &mut counts);
        let mut want = vec![0u64; edges.len() + 1];
        column.iter().for_each(|x| want[numeric_bin(&edges, *x)] += 1);
        assert_eq!(counts, want);
        assert_eq!(counts, [4, 0, 0, 4, 0, 2, 2]);
    }

    #[test]
    fn rows_held_back_are_counted_like_the_others() {
        // More rows than one chunk, and a last chunk that is not full.
        let spec = crate::spec::tests::fitted();
        let rows = fixture_slot_values(&spec);
        let reference = DriftReference::fit(&spec, rows.iter());
        let many: Vec<SlotValues> = (0..3 * CHUNK + 7)
            .map(|i| {
                let mut v = rows[i % rows.len()].clone();
                v.numeric.iter_mut().for_each(|x| *x *= 0.5 + (i % 13) as f64 / 8.0);
                v
            })
            .collect();
        let mut counter = DriftCounter::new(&spec, &reference);
        many.iter().for_each(|v| counter.observe(v));
        let shares = counter.proportions();
        for (f, feature) in reference.features[..spec.numeric.len()].iter().enumerate() {
            let Bins::Numeric { edges } = &feature.bins else { panic!("numeric first") };
            let mut want = vec![0.0; edges.len() + 1];
            many.iter().for_each(|v| want[numeric_bin(edges, v.numeric[f])] += 1.0 / many.len() as f64);
            let close = shares[f].iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12);
            assert!(close && want.iter().filter(|w| **w > 0.0).count() > 1, "feature {f}: {:?} against {want:?}", shares[f]);
        }
        assert_eq!(counter.rows(), many.len() as u64);
    }
}
