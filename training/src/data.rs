//! From a customer table to model-ready matrices: schema resolution, label checks, the seeded
//! stratified split, and the feature spec fitted on the training rows only (validation and test
//! rows never touch a fitting step).

use std::path::Path;

use churn_core::RawRow;
use churn_core::drift::DriftReference;
use churn_core::error::{FieldProblem, RowError};
use churn_core::explain::Background;
use churn_core::spec::{ResolvedSchema, SlotValues};
use churn_core::table::Table;
use churn_core::{CoreError, DatasetConfig, FeatureSpec, RawValue};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Rows of a split, as 0-based data-row indices into the training file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub seed: u64,
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
}

/// Feature matrix (row-major, `width` columns) and labels of one part of the data.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub x: Vec<f32>,
    pub y: Vec<bool>,
    pub width: usize,
}

impl Matrix {
    pub fn rows(&self) -> usize {
        self.y.len()
    }
    /// The rows of `self` followed by those of `other`.
    pub fn concat(&self, other: &Matrix) -> Matrix {
        assert_eq!(self.width, other.width, "matrices of one spec");
        Matrix { x: [&self.x[..], &other.x[..]].concat(), y: [&self.y[..], &other.y[..]].concat(), width: self.width }
    }
    /// The given rows, in that order.
    pub fn select(&self, rows: &[usize]) -> Matrix {
        let w = self.width;
        Matrix {
            x: rows.iter().flat_map(|&i| self.x[i * w..(i + 1) * w].iter().copied()).collect(),
            y: rows.iter().map(|&i| self.y[i]).collect(),
            width: w,
        }
    }
    pub fn positives(&self) -> usize {
        self.y.iter().filter(|b| **b).count()
    }
}

/// A loaded and prepared dataset.
pub struct Prepared {
    pub table: Table,
    pub data_sha256: String,
    pub spec: FeatureSpec,
    pub split: Split,
    pub train: Matrix,
    pub validation: Matrix,
    pub test: Matrix,
}

/// Label values that mean "churned" when the target has two values and no positive label is
/// given (compared without case).
const POSITIVE_WORDS: [&str; 13] =
    ["1", "true", "yes", "y", "t", "churn", "churned", "left", "exited", "lost", "cancelled", "canceled", "attrited"];

/// The positive label of a two-valued target when none is given: the value that clearly means
/// churned (`1`, `1.0`, `true`, `Yes`, `churned`, …), announced with a warning. Anything else
/// is an error listing the values, so the user can pass `--positive`.
pub fn infer_positive(table: &Table, target: &str) -> Result<String, CoreError> {
    let mut seen = std::collections::BTreeSet::new();
    for v in table.column_values(target)? {
        let text = v.display().trim().to_string();
        if !text.is_empty() && seen.insert(text) && seen.len() > 2 {
            break;
        }
    }
    let positive = |s: &str| {
        let l = s.to_ascii_lowercase();
        POSITIVE_WORDS.contains(&l.as_str()) || s.parse::<f64>().is_ok_and(|x| x == 1.0)
    };
    let candidates: Vec<&String> = seen.iter().filter(|s| positive(s)).collect();
    match (seen.len(), candidates.as_slice()) {
        (2, [one]) => {
            let other = seen.iter().find(|s| s != one).expect("two values");
            tracing::warn!(
                column = target,
                "{}: no positive label given: {one:?} counts as churned and {other:?} as not; pass --positive to choose",
                table.file
            );
            Ok((*one).clone())
        }
        _ => Err(CoreError::setting(
            "positive_label",
            format_args!(
                "{}: no positive label: set `positive_label` in [dataset] or pass --positive with the value of `{target}` that means churned (values seen: {seen:?})",
                table.file
            ),
        )),
    }
}

/// Reads a table and its labels; checks the target. Without a positive label in `config`, a
/// two-valued target's clearly positive value is used ([`infer_positive`]).
pub fn read_labelled(path: &Path, config: &DatasetConfig) -> Result<(Table, ResolvedSchema, Vec<bool>), CoreError> {
    let table = Table::read(path)?;
    let inferred;
    let config = match (&config.target_column, &config.positive_label) {
        (Some(target), None) if table.columns.iter().any(|c| c == target) => {
            inferred = DatasetConfig { positive_label: Some(infer_positive(&table, target)?), ..config.clone() };
            &inferred
        }
        _ => config,
    };
    let schema =
        ResolvedSchema::resolve(config, &table.file, &table.columns, table.rows, &|c| table.numeric_profile(c), &|c| table.distinct(c))?;
    let labels = labels(&table, &schema.target_column, &schema.positive_label)?;
    Ok((table, schema, labels))
}

/// The target column as booleans. Blank labels, an unknown positive label, a single class and
/// a label that is the positive one written in another case are errors: a model trained on them
/// would be meaningless. More than two values is allowed (with a warning): all but the positive
/// label are negatives.
pub fn labels(table: &Table, target: &str, positive: &str) -> Result<Vec<bool>, CoreError> {
    // Distinct labels kept for messages.
    const SEEN_LIMIT: usize = 20;
    // The label of data row `i` is wrong: file, line or row, column and value.
    let bad_label = |i: usize, value: String, problem: String| CoreError::Row {
        file: table.file.clone(),
        location: table.locate(i),
        error: RowError { problems: vec![FieldProblem { field: target.into(), value, problem }] },
    };
    let values = table.column_values(target)?;
    let mut y = Vec::with_capacity(values.len());
    let mut seen = std::collections::BTreeSet::new();
    let mut case_variant = None;
    for (i, v) in values.iter().enumerate() {
        let text = v.display();
        let text = text.trim();
        if text.is_empty() || matches!(v, RawValue::Missing) {
            return Err(bad_label(
                i,
                String::new(),
                "the label is blank; every training row needs a label (fill it or remove the row)".into(),
            ));
        }
        let is_positive = churn_core::spec::label_matches(text, positive);
        if case_variant.is_none() && !is_positive && text.eq_ignore_ascii_case(positive) {
            case_variant = Some((i, text.to_string()));
        }
        if seen.len() < SEEN_LIMIT {
            seen.insert(text.to_string());
        }
        y.push(is_positive);
    }
    // With the positive label present, its variant in another case is a data error; without it,
    // the label given is the wrong one (reported below with the values found).
    if let Some((i, text)) = case_variant
        && y.contains(&true)
    {
        return Err(bad_label(
            i,
            text,
            format!("differs from the positive label {positive:?} only in case; write labels one way (it would count as not churned)"),
        ));
    }
    if seen.len() > 2 {
        // A status column ("active", "paused", "churned") is a fair target, but say what counts
        // as not churned: a misspelt label would otherwise vanish into the negatives.
        let negatives: Vec<&String> = seen.iter().filter(|s| !churn_core::spec::label_matches(s, positive)).collect();
        let count = if seen.len() == SEEN_LIMIT { format!("{SEEN_LIMIT} or more") } else { seen.len().to_string() };
        tracing::warn!(
            column = target,
            positive,
            "{}: column `{target}` holds {count} values; every value but {positive:?} counts as not churned: {negatives:?}",
            table.file
        );
    }
    let pos = y.iter().filter(|b| **b).count();
    if seen.len() == 1 {
        return Err(one_class(&table.file, target, seen.iter().next().map(String::as_str).unwrap_or_default()));
    }
    if pos == 0 {
        return Err(CoreError::setting(
            "positive_label",
            format_args!(
                "{}: no row of column `{target}` equals the positive label {positive:?}; the column holds {seen:?}. Pass --positive with the value that means churned",
                table.file
            ),
        ));
    }
    if pos == y.len() {
        return Err(one_class(&table.file, target, positive));
    }
    Ok(y)
}

/// A target column whose every row is `value`.
fn one_class(file: &str, target: &str, value: &str) -> CoreError {
    CoreError::Column {
        file: file.into(),
        column: target.into(),
        problem: format!("every row is {value:?}: the target has one class, a model needs churners and non-churners"),
    }
}

/// Seeded stratified split: each class is shuffled and cut in the same proportions.
pub fn stratified_split(y: &[bool], validation: f64, test: f64, seed: u64) -> Result<Split, CoreError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut split = Split { seed, train: vec![], validation: vec![], test: vec![] };
    for class in [true, false] {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        idx.shuffle(&mut rng);
        let n = idx.len();
        let n_test = ((n as f64) * test).round() as usize;
        let n_val = ((n as f64) * validation).round() as usize;
        if (test > 0.0 && n_test == 0) || n_val == 0 || n - n_test - n_val == 0 {
            return Err(CoreError::ClassTooSmall {
                positive: class,
                rows: n,
                needed_for: "to put some in each of train, validation and test".into(),
            });
        }
        split.test.extend_from_slice(&idx[..n_test]);
        split.validation.extend_from_slice(&idx[n_test..n_test + n_val]);
        split.train.extend_from_slice(&idx[n_test + n_val..]);
    }
    split.train.sort_unstable();
    split.validation.sort_unstable();
    split.test.sort_unstable();
    Ok(split)
}

/// Loads, splits and fits: everything training needs.
pub fn prepare(path: &Path, config: &DatasetConfig, validation: f64, test: f64, seed: u64) -> Result<Prepared, CoreError> {
    let (table, schema, y) = read_labelled(path, config)?;
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path.display(), e))?;
    let data_sha256 = churn_core::sha256_hex(&bytes);
    drop(bytes);
    let groups = input_duplicate_groups(&table, &schema)?;
    let mut repeats = groups.iter().enumerate().filter(|(i, g)| i != *g);
    if let Some((i, g)) = repeats.next() {
        tracing::warn!(
            "{}: {} of {} rows repeat another row's model inputs ({} repeats {}): a random split puts copies of training rows among the test rows, which makes the test figures optimistic for a model that memorises; `churn benchmark --group-duplicates` cross-validates with each record's copies in one fold",
            table.file,
            1 + repeats.count(),
            table.rows,
            table.locate(i),
            table.locate(*g)
        );
    }
    let split = stratified_split(&y, validation, test, seed)?;
    prepare_split(table, &schema, &y, split, data_sha256)
}

/// Fits the feature spec on `split.train` and builds the three matrices.
pub fn prepare_split(table: Table, schema: &ResolvedSchema, y: &[bool], split: Split, data_sha256: String) -> Result<Prepared, CoreError> {
    let names: Vec<&str> = schema.inputs.iter().map(|(n, _)| n.as_str()).collect();
    let view = table.view(&names)?;
    let locate = |i: usize| table.locate(i);
    let spec = FeatureSpec::fit(schema, split.train.iter().map(|&i| (i, view.row(i))), Some(y), &table.file, &locate)?;
    let matrix = |rows: &[usize]| featurise(&table, &spec, rows, y);
    let (train, validation, test) = (matrix(&split.train)?, matrix(&split.validation)?, matrix(&split.test)?);
    drop(view);
    Ok(Prepared { table, data_sha256, spec, split, train, validation, test })
}

/// Seeded stratified k-fold assignment: `folds[i]` is the fold of row `i`. Each class is
/// shuffled and dealt round-robin, so every fold has the same class balance (±1 row).
pub fn stratified_folds(y: &[bool], k: usize, seed: u64) -> Result<Vec<usize>, CoreError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut folds = vec![0; y.len()];
    for class in [true, false] {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        if idx.len() < 2 * k {
            return Err(CoreError::ClassTooSmall {
                positive: class,
                rows: idx.len(),
                needed_for: format!("for {k} folds (or ask for fewer folds)"),
            });
        }
        idx.shuffle(&mut rng);
        for (n, i) in idx.into_iter().enumerate() {
            folds[i] = n % k;
        }
    }
    Ok(folds)
}

/// For every data row, the first row whose values in `columns` equal its own (the row itself
/// when no earlier row has them): rows with one representative are repeats of one record.
/// Values compare as their text (`RawValue::display`), so a blank and a null are the same.
pub fn duplicate_groups(table: &Table, columns: &[&str]) -> Result<Vec<usize>, CoreError> {
    let values = columns.iter().map(|c| table.column_values(c)).collect::<Result<Vec<_>, _>>()?;
    let mut first = std::collections::HashMap::with_capacity(table.rows);
    Ok((0..table.rows)
        .map(|i| {
            // The unit separator never occurs in a CSV cell that parses as one value.
            let key = values.iter().map(|v| v[i].display()).collect::<Vec<_>>().join("\u{1f}");
            *first.entry(key).or_insert(i)
        })
        .collect())
}

/// [`duplicate_groups`] over the schema's model inputs.
pub fn input_duplicate_groups(table: &Table, schema: &ResolvedSchema) -> Result<Vec<usize>, CoreError> {
    let inputs: Vec<&str> = schema.inputs.iter().map(|(name, _)| name.as_str()).collect();
    duplicate_groups(table, &inputs)
}

/// A seeded `k`-fold assignment like [`stratified_folds`] that keeps the rows of each group
/// (`groups[i]`: row `i`'s group, as [`duplicate_groups`] gives them) in one fold, so that no
/// test row has a copy among its fold's training rows. Groups go, largest first and in a seeded
/// order among equals, to the fold holding the fewest rows of the group's majority class.
pub fn stratified_group_folds(y: &[bool], groups: &[usize], k: usize, seed: u64) -> Result<Vec<usize>, CoreError> {
    let mut members: std::collections::BTreeMap<usize, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        members.entry(*g).or_default().push(i);
    }
    let mut order: Vec<Vec<usize>> = members.into_values().collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order.sort_by_key(|rows| std::cmp::Reverse(rows.len()));
    // Rows per fold: [negatives, positives].
    let mut held = vec![[0usize; 2]; k];
    let mut folds = vec![0; y.len()];
    for rows in order {
        let positives = rows.iter().filter(|&&i| y[i]).count();
        let class = usize::from(2 * positives >= rows.len());
        let fold = (0..k).min_by_key(|&f| (held[f][class], held[f][0] + held[f][1])).expect("k >= 1");
        held[fold][0] += rows.len() - positives;
        held[fold][1] += positives;
        rows.iter().for_each(|&i| folds[i] = fold);
    }
    for class in [true, false] {
        let short = held.iter().map(|h| h[usize::from(class)]).min().unwrap_or(0);
        if short == 0 {
            return Err(CoreError::ClassTooSmall {
                positive: class,
                rows: y.iter().filter(|&&b| b == class).count(),
                needed_for: format!("for {k} folds that keep repeated rows together (or ask for fewer folds)"),
            });
        }
    }
    Ok(folds)
}

/// The split of cross-validation fold `fold`: its rows are the test part; a stratified
/// `validation` share of the other folds' rows is held out for early stopping and calibration.
pub fn fold_split(y: &[bool], folds: &[usize], fold: usize, validation: f64, seed: u64) -> Result<Split, CoreError> {
    let rest: Vec<usize> = (0..y.len()).filter(|&i| folds[i] != fold).collect();
    let inner = stratified_split(&rest.iter().map(|&i| y[i]).collect::<Vec<_>>(), validation, 0.0, seed)?;
    let map = |v: Vec<usize>| v.into_iter().map(|j| rest[j]).collect::<Vec<_>>();
    Ok(Split {
        seed,
        train: map(inner.train),
        validation: map(inner.validation),
        test: (0..y.len()).filter(|&i| folds[i] == fold).collect(),
    })
}

/// Feature rows of `rows` through the one transform; the first bad row is an error naming it.
pub fn featurise(table: &Table, spec: &FeatureSpec, rows: &[usize], y: &[bool]) -> Result<Matrix, CoreError> {
    Ok(Matrix { x: features(table, spec, rows)?, y: rows.iter().map(|&i| y[i]).collect(), width: spec.width() })
}

/// The feature vectors of `rows`, row after row ([`featurise`] without the labels).
pub fn features(table: &Table, spec: &FeatureSpec, rows: &[usize]) -> Result<Vec<f32>, CoreError> {
    let names: Vec<&str> = spec.input_names().collect();
    let view = table.view(&names)?;
    let width = spec.width();
    let mut x = vec![0.0f32; rows.len() * width];
    let mut scratch = SlotValues::default();
    for (out, &i) in x.chunks_mut(width).zip(rows) {
        spec.transform_into(&view.row(i), &mut scratch, out, None).map_err(|error| CoreError::Row {
            file: table.file.clone(),
            location: table.locate(i),
            error,
        })?;
    }
    Ok(x)
}

/// The training distribution of every feature (for drift checks), from the same transform.
pub fn drift_reference(table: &Table, spec: &FeatureSpec, rows: &[usize]) -> Result<DriftReference, CoreError> {
    let names: Vec<&str> = spec.input_names().collect();
    let view = table.view(&names)?;
    let mut values = Vec::with_capacity(rows.len());
    for &i in rows {
        let mut v = SlotValues::default();
        let mut problems = Vec::new();
        spec.slot_values(&view.row(i), &mut v, &mut problems);
        if !problems.is_empty() {
            return Err(CoreError::Row { file: table.file.clone(), location: table.locate(i), error: RowError { problems } });
        }
        values.push(v);
    }
    Ok(DriftReference::fit(spec, values.iter()))
}

/// The Shapley background sample: `n` training rows (or all, when fewer) drawn with `seed`,
/// raw values as text, without the id column.
pub fn background(table: &Table, spec: &FeatureSpec, rows: &[usize], n: usize, seed: u64) -> Result<Background, CoreError> {
    let names: Vec<&str> = spec.input_names().collect();
    let view = table.view(&names)?;
    let mut pick = rows.to_vec();
    pick.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xBAC6_0000));
    pick.truncate(n);
    pick.sort_unstable();
    let rows = pick
        .iter()
        .map(|&i| {
            let row = view.row(i);
            (0..names.len())
                .map(|c| match row.value(c, names[c]) {
                    RawValue::Missing => None,
                    v => Some(v.display()).filter(|t| !t.trim().is_empty()),
                })
                .collect()
        })
        .collect();
    let b = Background { columns: names.iter().map(|s| s.to_string()).collect(), rows };
    b.check(spec)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_of_a_class_is_an_error_a_caller_can_match() {
        let y: Vec<bool> = (0..100).map(|i| i < 3).collect();
        let e = stratified_folds(&y, 5, 0).unwrap_err();
        assert!(matches!(e, CoreError::ClassTooSmall { positive: true, rows: 3, .. }), "{e}");
        assert!(e.to_string().contains("only 3 row(s) of class positive: too few for 5 folds"), "{e}");
        let e = stratified_split(&[true, false, false, false], 0.2, 0.2, 0).unwrap_err();
        assert!(matches!(e, CoreError::ClassTooSmall { positive: true, rows: 1, .. }), "{e}");
    }

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let y: Vec<bool> = (0..1000).map(|i| i % 4 == 0).collect();
        let s = stratified_split(&y, 0.2, 0.2, 7).unwrap();
        assert_eq!(s.train.len() + s.validation.len() + s.test.len(), 1000);
        let mut all: Vec<usize> = s.train.iter().chain(&s.validation).chain(&s.test).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 1000);
        assert_eq!(s.test.iter().filter(|&&i| y[i]).count(), 50);
        assert_eq!(s, stratified_split(&y, 0.2, 0.2, 7).unwrap());
        assert_ne!(s, stratified_split(&y, 0.2, 0.2, 8).unwrap());
    }

    #[test]
    fn repeated_rows_share_a_fold_and_folds_stay_stratified() {
        // 600 rows: 200 records repeated once or twice, the rest unique; a quarter positive.
        let y: Vec<bool> = (0..600).map(|i| i % 4 == 0).collect();
        let groups: Vec<usize> = (0..600).map(|i| if i < 400 { i - i % 4 + (i % 4 == 3) as usize * 3 } else { i }).collect();
        let f = stratified_group_folds(&y, &groups, 5, 3).unwrap();
        for (i, g) in groups.iter().enumerate() {
            assert_eq!(f[i], f[*g], "row {i} and its group's first row {g}");
        }
        for k in 0..5 {
            let rows = f.iter().filter(|&&x| x == k).count();
            let pos = (0..600).filter(|&i| f[i] == k && y[i]).count();
            assert!((110..=130).contains(&rows) && (25..=35).contains(&pos), "fold {k}: {rows} rows, {pos} positive");
        }
        assert_eq!(f, stratified_group_folds(&y, &groups, 5, 3).unwrap());
        assert_ne!(f, stratified_group_folds(&y, &groups, 5, 4).unwrap());
        // Too few records of a class to put one in every fold.
        let few: Vec<usize> = (0..600).map(|i| if y[i] { 0 } else { i }).collect();
        let e = stratified_group_folds(&y, &few, 5, 0).unwrap_err();
        assert!(e.to_string().contains("keep repeated rows together"), "{e}");
    }

    #[test]
    fn duplicates_are_found_on_the_named_columns_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "id,a,b,y\n1,x,2,1\n2,x,2,0\n3,x,3,1\n4,,2,0\n5,x,2,1\n6,,2,1\n").unwrap();
        let t = Table::read(&p).unwrap();
        assert_eq!(duplicate_groups(&t, &["a", "b"]).unwrap(), [0, 0, 2, 3, 0, 3]);
        assert_eq!(duplicate_groups(&t, &["id", "a", "b"]).unwrap(), [0, 1, 2, 3, 4, 5]);
        assert!(duplicate_groups(&t, &["nope"]).is_err());
    }
}
