//! The `[dataset]` part of a training configuration: which column is what, and which derived
//! features to build. Anything left out is inferred from the data (see [`crate::spec`]).
//!
//! Derived features are declarative so that the same list, stored in the fitted feature spec,
//! is evaluated identically in training and serving, and so that another churn-like table can
//! define its own signals in TOML without code changes.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Column holding the customer identifier: echoed in outputs, never a model input.
    /// Inferred (a column named `id`, `*_id` or `*id` whose values are all distinct) when absent.
    #[serde(default)]
    pub id_column: Option<String>,
    /// Column holding the label. Required unless given on the command line.
    #[serde(default)]
    pub target_column: Option<String>,
    /// The label value that means "churned".
    #[serde(default)]
    pub positive_label: Option<String>,
    /// Numeric model inputs. Inferred when absent: every column whose values all parse as numbers.
    #[serde(default)]
    pub numeric: Option<Vec<String>>,
    /// Categorical model inputs. Inferred when absent: every other column.
    #[serde(default)]
    pub categorical: Option<Vec<String>>,
    /// Columns never used as inputs (besides id and target). `ignore` is accepted as another
    /// name for the same list.
    #[serde(default, alias = "ignore")]
    pub exclude: Vec<String>,
    /// Engineered features, evaluated in order; later ones may use earlier ones.
    #[serde(default)]
    pub derived: Vec<DerivedFeature>,
    /// Quantiles of the training data at which numeric features are clipped (outlier handling).
    #[serde(default = "default_clip")]
    pub clip_quantiles: [f64; 2],
    /// Categories seen fewer times than this in training are treated as unseen.
    #[serde(default = "default_min_count")]
    pub min_category_count: usize,
    /// At most this many of a categorical column's values get their own input (the most frequent
    /// ones seen at least `min_category_count` times); the rest are pooled with unseen values.
    /// Columns whose values are mostly unique (identifiers, free text) are left out with a warning.
    #[serde(default = "default_max_categories")]
    pub max_categories: usize,
    /// Bins of the piecewise-linear encoding of each numeric feature (0 or 1: standardised
    /// value only).
    #[serde(default = "default_numeric_bins")]
    pub numeric_bins: usize,
    /// Where the bin edges go: at training quantiles, or where a one-feature decision tree on the
    /// label splits the column (target-aware bins).
    #[serde(default)]
    pub bin_edges: BinEdges,
}

/// How the edges of the piecewise-linear encoding are chosen (Gorishniy et al., NeurIPS 2022).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BinEdges {
    /// Training quantiles at k / bins: the same for any label.
    Quantile,
    /// The thresholds of a best-first, one-feature classification tree with up to `bins` leaves
    /// fitted on the training label: edges where the churn rate changes.
    #[default]
    Tree,
}

fn default_clip() -> [f64; 2] {
    [0.005, 0.995]
}
fn default_min_count() -> usize {
    5
}
fn default_max_categories() -> usize {
    100
}
fn default_numeric_bins() -> usize {
    32
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            id_column: None,
            target_column: None,
            positive_label: None,
            numeric: None,
            categorical: None,
            exclude: Vec::new(),
            derived: Vec::new(),
            clip_quantiles: default_clip(),
            min_category_count: default_min_count(),
            max_categories: default_max_categories(),
            numeric_bins: default_numeric_bins(),
            bin_edges: BinEdges::default(),
        }
    }
}

/// A named engineered feature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DerivedFeature {
    pub name: String,
    #[serde(flatten)]
    pub kind: DerivedKind,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DerivedKind {
    /// `numerator / denominator` (e.g. total charges per month of tenure). When the denominator
    /// is zero the value of `when_zero` (a numeric feature) is used, or 0 if none is given.
    Ratio {
        numerator: String,
        denominator: String,
        #[serde(default)]
        when_zero: Option<String>,
    },
    /// `left - right` (e.g. current monthly charge minus the historical average: a price trend).
    Difference { left: String, right: String },
    /// How many of `columns` hold one of `values` (e.g. number of subscribed services).
    CountEqual { columns: Vec<String>, values: Vec<String> },
    /// A numeric column cut at `edges` into a categorical feature (e.g. tenure buckets).
    Bucket { column: String, edges: Vec<f64> },
}

impl DerivedKind {
    /// Whether the feature is numeric (true) or categorical (false).
    pub fn is_numeric(&self) -> bool {
        !matches!(self, DerivedKind::Bucket { .. })
    }

    /// Names of the features this one reads.
    pub fn sources(&self) -> Vec<&str> {
        match self {
            DerivedKind::Ratio { numerator, denominator, when_zero } => {
                let mut v = vec![numerator.as_str(), denominator.as_str()];
                v.extend(when_zero.as_deref());
                v
            }
            DerivedKind::Difference { left, right } => vec![left, right],
            DerivedKind::CountEqual { columns, .. } => columns.iter().map(String::as_str).collect(),
            DerivedKind::Bucket { column, .. } => vec![column],
        }
    }
}

/// Label of bucket `i` for the given edges: `<e0`, `e0-e1`, …, `>=en`.
pub fn bucket_label(edges: &[f64], i: usize) -> String {
    if i == 0 {
        format!("<{}", edges[0])
    } else if i == edges.len() {
        format!(">={}", edges[i - 1])
    } else {
        format!("{}-{}", edges[i - 1], edges[i])
    }
}

/// Index of the bucket holding `x`.
pub fn bucket_index(edges: &[f64], x: f64) -> usize {
    edges.iter().take_while(|e| x >= **e).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_features_parse_from_toml() {
        let cfg: DatasetConfig = toml::from_str(
            r#"
            target_column = "churn"
            [[derived]]
            name = "avg"
            kind = "ratio"
            numerator = "totalcharges"
            denominator = "tenure"
            when_zero = "monthlycharges"
            [[derived]]
            name = "bucket"
            kind = "bucket"
            column = "tenure"
            edges = [12.0, 24.0]
            "#,
        )
        .unwrap();
        assert_eq!(cfg.derived.len(), 2);
        assert!(cfg.derived[0].kind.is_numeric());
        assert!(!cfg.derived[1].kind.is_numeric());
        assert_eq!(cfg.derived[0].kind.sources(), vec!["totalcharges", "tenure", "monthlycharges"]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<DatasetConfig>("target = \"churn\"").unwrap_err();
        assert!(err.to_string().contains("unknown field `target`"), "{err}");
    }

    #[test]
    fn buckets() {
        let e = [12.0, 24.0];
        assert_eq!(bucket_index(&e, 0.0), 0);
        assert_eq!(bucket_index(&e, 12.0), 1);
        assert_eq!(bucket_index(&e, 30.0), 2);
        assert_eq!(bucket_label(&e, 0), "<12");
        assert_eq!(bucket_label(&e, 1), "12-24");
        assert_eq!(bucket_label(&e, 2), ">=24");
    }
}
