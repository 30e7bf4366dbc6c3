//! Which columns are what: the configuration resolved against a table, with types inferred
//! where the configuration is silent, and columns that cannot be model inputs left out.

use super::*;
use crate::config::{DatasetConfig, DerivedFeature};
use crate::error::{CoreError, Result};

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
    /// How the bin edges are placed.
    #[serde(default)]
    pub bin_edges: BinEdges,
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
            .ok_or_else(|| CoreError::setting("target_column", "no target column: set `target_column` in [dataset] or pass --target"))?;
        let mut named: Vec<String> = vec![target.clone()];
        named.extend(config.id_column.iter().cloned());
        named.extend(config.numeric.iter().flatten().cloned());
        named.extend(config.categorical.iter().flatten().cloned());
        named.extend(config.exclude.iter().cloned());
        let missing: Vec<String> = named.into_iter().filter(|c| !has(c)).collect();
        if !missing.is_empty() {
            return Err(CoreError::MissingColumns { file: file.into(), missing, found: columns.to_vec() });
        }
        let positive = config.positive_label.clone().ok_or_else(|| {
            CoreError::setting("positive_label", "no positive label: set `positive_label` in [dataset] or pass --positive")
        })?;
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
                    let problem = format!(
                        "not a finite number, while {numbers} of its values are numbers ({others} are not). Fix or blank the value(s) (blank counts as missing), or list `{c}` under `categorical` if it is one",
                    );
                    let problems = vec![crate::error::FieldProblem { field: c.clone(), value: value.clone(), problem }];
                    return Err(CoreError::Row { file: file.into(), location: at.clone(), error: crate::error::RowError { problems } });
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
            return Err(CoreError::setting("exclude", format_args!("{file}: no input columns left besides id and target")));
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
            bin_edges: config.bin_edges,
            left_out,
        })
    }
}
