//! Fitting a spec on training rows: imputation values, valid ranges, clip bounds, scaling,
//! vocabularies and piecewise-linear bin edges.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::error::{CoreError, FieldProblem, Result, RowError};
use crate::row::RawRow;

pub(super) fn quantile(sorted: &[f64], q: f64) -> f64 {
    // Linear interpolation between closest ranks (numpy's default), so figures match pandas.
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Edges of a piecewise-linear encoding with up to `bins` bins: quantiles of the sorted training
/// column at k / bins, clipped to the clip bounds, repeated values merged. Columns with fewer
/// than three distinct edges (constants, 0/1 flags) get none: one slope is all they can have.
pub(super) fn bin_edges(sorted: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    if bins < 2 || sorted.is_empty() {
        return vec![];
    }
    let mut edges: Vec<f64> = (0..=bins).map(|k| quantile(sorted, k as f64 / bins as f64).clamp(lo, hi)).collect();
    edges.dedup_by(|b, a| *b <= *a);
    if edges.len() < 3 { vec![] } else { edges }
}

/// Edges of a piecewise-linear encoding from the label: the thresholds of a one-feature
/// classification tree grown best-first (largest Gini decrease first) to at most `bins` leaves
/// of at least `min_leaf` rows each, with the clip bounds as outer edges. `pairs` are (value
/// clipped to `[lo, hi]`, label), sorted by value. Columns with fewer than three distinct values
/// get none, as with quantile edges.
pub(super) fn tree_bin_edges(pairs: &[(f64, bool)], lo: f64, hi: f64, bins: usize, min_leaf: usize) -> Vec<f64> {
    let n = pairs.len();
    let distinct = pairs.windows(2).filter(|w| w[0].0 < w[1].0).count() + usize::from(n > 0);
    if bins < 2 || distinct < 3 {
        return vec![];
    }
    // positives[i]: churners among the first i rows, so any range's count is one subtraction.
    let mut positives = Vec::with_capacity(n + 1);
    positives.push(0usize);
    for (_, y) in pairs {
        positives.push(positives.last().unwrap() + usize::from(*y));
    }
    let impurity = |a: usize, b: usize| {
        let (m, p) = ((b - a) as f64, (positives[b] - positives[a]) as f64);
        if m == 0.0 { 0.0 } else { p * (m - p) / m }
    };
    // The best split of rows a..b: (decrease in impurity, first row of the right part).
    type Split = Option<(f64, usize)>;
    let best_split = |a: usize, b: usize| -> Split {
        let parent = impurity(a, b);
        let mut best: Option<(f64, usize)> = None;
        for i in (a + min_leaf.max(1))..=(b.saturating_sub(min_leaf.max(1))) {
            if pairs[i - 1].0 < pairs[i].0 {
                let gain = parent - impurity(a, i) - impurity(i, b);
                if gain > best.map_or(1e-12, |(g, _)| g) {
                    best = Some((gain, i));
                }
            }
        }
        best
    };
    // Leaves as (first row, end row, best split).
    let mut leaves: Vec<(usize, usize, Split)> = vec![(0, n, best_split(0, n))];
    let mut cuts = Vec::new();
    while leaves.len() < bins {
        let Some((k, _)) = leaves.iter().enumerate().filter_map(|(k, l)| l.2.map(|(g, _)| (k, g))).max_by(|x, y| x.1.total_cmp(&y.1))
        else {
            break;
        };
        let (a, b, Some((_, i))) = leaves.swap_remove(k) else { unreachable!("filtered on a split") };
        cuts.push((pairs[i - 1].0 + pairs[i].0) / 2.0);
        leaves.push((a, i, best_split(a, i)));
        leaves.push((i, b, best_split(i, b)));
    }
    cuts.sort_by(f64::total_cmp);
    let mut edges = Vec::with_capacity(cuts.len() + 2);
    edges.push(lo);
    edges.extend(cuts);
    edges.push(hi);
    edges.dedup_by(|b, a| *b <= *a);
    if edges.len() < 3 { vec![] } else { edges }
}

pub(super) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(quantile(values, 0.5))
}

impl FeatureSpec {
    /// Fits the spec on training rows. `rows` yields `(row index, record)` and is iterated
    /// twice; `locate(index)` names the row in error messages, `file` the source. `labels[index]`
    /// is the row's label, used only by target-aware bin edges ([`BinEdges::Tree`]; quantile
    /// edges without labels).
    pub fn fit<R: RawRow>(
        schema: &ResolvedSchema,
        rows: impl Iterator<Item = (usize, R)> + Clone,
        labels: Option<&[bool]>,
        file: &str,
        locate: &dyn Fn(usize) -> String,
    ) -> Result<Self> {
        // Only target-aware edges read the labels.
        let labels = labels.filter(|_| schema.bin_edges == BinEdges::Tree);
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
                        Err(p) => problems.push(FieldProblem { field: input.name.clone(), value: v.display(), problem: p.to_string() }),
                    },
                    InputKind::Categorical => match category_of(&v) {
                        Ok(Some(_)) => {}
                        Ok(None) => missing[i] += 1,
                        Err(p) => problems.push(FieldProblem { field: input.name.clone(), value: v.display(), problem: p.to_string() }),
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
                let med = median(vals).ok_or_else(|| CoreError::Column {
                    file: file.into(),
                    column: input.name.clone(),
                    problem: "a numeric column blank in every training row; exclude it".into(),
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
        let mut row_labels = Vec::with_capacity(n_rows);
        for (row_no, row) in rows {
            if let Some(l) = labels {
                row_labels.push(l[row_no]);
            }
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
                f.impute = median(&mut finite).ok_or_else(|| CoreError::Column {
                    file: file.into(),
                    column: f.name.clone(),
                    problem: "a derived feature undefined for every training row; change or remove its definition".into(),
                })?;
                for x in col.iter_mut().filter(|x| !x.is_finite()) {
                    *x = f.impute;
                }
            }
            let by_label = labels.is_some().then(|| {
                let mut pairs: Vec<(f64, bool)> = col.iter().copied().zip(row_labels.iter().copied()).collect();
                pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
                pairs
            });
            col.sort_by(f64::total_cmp);
            f.clip_min = quantile(col, schema.clip_quantiles[0]);
            f.clip_max = quantile(col, schema.clip_quantiles[1]);
            let n = col.len() as f64;
            let clipped = col.iter().map(|x| x.clamp(f.clip_min, f.clip_max));
            f.mean = clipped.clone().sum::<f64>() / n;
            let var = clipped.map(|x| (x - f.mean).powi(2)).sum::<f64>() / n;
            // A constant feature carries no signal; std 1 keeps it at 0 instead of dividing by 0.
            f.std = if var > 1e-12 { var.sqrt() } else { 1.0 };
            f.bins = match by_label {
                Some(mut pairs) => {
                    for p in &mut pairs {
                        p.0 = p.0.clamp(f.clip_min, f.clip_max);
                    }
                    // Leaves of at least a quarter of an even bin, so no edge rests on a few rows.
                    let min_leaf = n_rows / (4 * schema.numeric_bins.max(1));
                    tree_bin_edges(&pairs, f.clip_min, f.clip_max, schema.numeric_bins, min_leaf)
                }
                None => bin_edges(col, f.clip_min, f.clip_max, schema.numeric_bins),
            };
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
}
