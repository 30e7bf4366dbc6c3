//! A raw input record, whatever it came from: a CSV or parquet row (arrow arrays), or a JSON
//! object from the API. The feature transform reads every source through this one trait, which
//! is what keeps training and serving on one code path.

use std::borrow::Cow;

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

/// One raw field value.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue<'a> {
    Missing,
    Number(f64),
    Text(Cow<'a, str>),
    /// A value of a type the contract cannot use (e.g. a JSON object); carries a description.
    Invalid(String),
}

impl RawValue<'_> {
    /// The value as text, for error messages and categories.
    pub fn display(&self) -> String {
        match self {
            RawValue::Missing => String::new(),
            RawValue::Number(x) => format_number(*x),
            RawValue::Text(s) => s.to_string(),
            RawValue::Invalid(d) => d.clone(),
        }
    }
}

/// Formats a number the way it reads in a CSV: integers without a decimal point, so that a
/// parquet integer column and a CSV text column give the same category label.
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x}") }
}

/// A record the transform can read. `index` is the position of the input column in the feature
/// spec's `inputs` (sources that bind columns once use it), `name` its name (sources keyed by
/// name, such as JSON objects, use it).
pub trait RawRow {
    fn value(&self, index: usize, name: &str) -> RawValue<'_>;

    /// Input `index`'s category, when the source resolved it already with
    /// [`FeatureSpec::resolve_category`](crate::spec::FeatureSpec::resolve_category) of the
    /// spec that reads this row (a parquet dictionary column: its few distinct values are
    /// resolved once per column chunk instead of once per row; a plain-encoded one read as
    /// string views: matched against the vocabulary's views). `None`: read [`value`](Self::value).
    fn resolved_category(&self, _index: usize) -> Option<&CatValue> {
        None
    }

    /// Input `index`'s number, when the source resolved it already with
    /// [`FeatureSpec::resolve_number`](crate::spec::FeatureSpec::resolve_number) (numbers
    /// written as text in a parquet dictionary column: each distinct text is parsed once per
    /// column chunk). `None`: read [`value`](Self::value).
    fn resolved_number(&self, _index: usize) -> Option<f64> {
        None
    }
}

impl RawRow for serde_json::Map<String, serde_json::Value> {
    fn value(&self, _index: usize, name: &str) -> RawValue<'_> {
        use serde_json::Value;
        match self.get(name) {
            None | Some(Value::Null) => RawValue::Missing,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) => RawValue::Number(x),
                None => RawValue::Invalid(n.to_string()),
            },
            Some(Value::String(s)) => RawValue::Text(Cow::Borrowed(s)),
            Some(Value::Bool(b)) => RawValue::Invalid(format!("boolean {b}")),
            Some(Value::Array(_)) => RawValue::Invalid("an array".into()),
            Some(Value::Object(_)) => RawValue::Invalid("an object".into()),
        }
    }
}

/// A record as a list of (name, text) pairs, e.g. a parsed CSV line. Mostly for tests and tools.
impl RawRow for [(&str, &str)] {
    fn value(&self, _index: usize, name: &str) -> RawValue<'_> {
        match self.iter().find(|(n, _)| *n == name) {
            None => RawValue::Missing,
            Some((_, v)) => RawValue::Text(Cow::Borrowed(v)),
        }
    }
}

impl<T: RawRow + ?Sized> RawRow for &T {
    fn value(&self, index: usize, name: &str) -> RawValue<'_> {
        (**self).value(index, name)
    }

    fn resolved_category(&self, index: usize) -> Option<&CatValue> {
        (**self).resolved_category(index)
    }

    fn resolved_number(&self, index: usize) -> Option<f64> {
        (**self).resolved_number(index)
    }
}
