//! Typed errors of the contract crate. Every message says what went wrong, where (file, row,
//! column, field) and, where it can, how to fix it.

use std::fmt;

/// One problem with one field of one input record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldProblem {
    /// The field (column) name, as in the input.
    pub field: String,
    /// The offending value as text (empty when the field is absent).
    pub value: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "field `{}`: {}", self.field, self.problem)
        } else {
            write!(f, "field `{}` = {:?}: {}", self.field, self.value, self.problem)
        }
    }
}

/// Why one raw value cannot be read as its input's kind (the `problem` of a [`FieldProblem`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueProblem {
    #[error("not a number")]
    NotANumber,
    #[error("not a finite number")]
    NotFinite,
    /// A numeric input given another JSON type (described).
    #[error("expected a number, got {0}")]
    ExpectedNumber(String),
    /// A categorical input given another JSON type (described).
    #[error("expected text, got {0}")]
    ExpectedText(String),
    #[error("out of the valid range [{min}, {max}]")]
    OutOfRange { min: f64, max: f64 },
}

/// Every problem found in one record (all of them, not only the first).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RowError {
    pub problems: Vec<FieldProblem>,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.problems.iter().map(|p| p.to_string()).collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for RowError {}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    // `error`, not `source`: the text is in the message, and a `source` would print it twice
    // in an error chain (`{:#}`).
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },

    #[error("{path}: {message}")]
    Format { path: String, message: String },

    #[error("{file}: no data rows (only a header, or nothing at all). Give a file with at least one customer row")]
    Empty { file: String },

    #[error("{file}: missing column(s) {missing:?}; the file has {found:?}. {}", missing_columns_fix(.found))]
    MissingColumns { file: String, missing: Vec<String>, found: Vec<String> },

    /// `location` is `line N` for CSV (header is line 1) and `row N` (1-based) for parquet.
    #[error("{file}, {location}: {error}")]
    Row { file: String, location: String, error: RowError },

    /// A setting (a configuration key, a command-line option, a playbook entry) that cannot be
    /// used as given. `setting` names it as the user writes it (`target_column`,
    /// ``derived feature `ratio` ``, `playbook.tiers`); [`CoreError::setting`] makes one.
    #[error("configuration, {setting}: {problem}")]
    Setting { setting: String, problem: String },

    /// A column of an input table that cannot be used as it is (`file` is empty where the
    /// caller reads batches it has no name for).
    #[error("{}column `{column}`: {problem}", file_prefix(.file))]
    Column { file: String, column: String, problem: String },

    /// Too few rows of one class for what was asked (a split, k folds).
    #[error("only {rows} row(s) of class {}: too few {needed_for}; give more data", class_name(*.positive))]
    ClassTooSmall { positive: bool, rows: usize, needed_for: String },

    /// Metrics were asked of labels that are all one class.
    #[error("metrics need both classes; the {labels} labels are all {}", class_name(*.positive))]
    OneClass { labels: usize, positive: bool },

    /// Two sequences that must pair up have different lengths.
    #[error("{left} {left_what} for {right} {right_what}")]
    LengthMismatch { left: usize, left_what: &'static str, right: usize, right_what: &'static str },

    /// A feature buffer whose length is not a whole number of rows.
    #[error("{values} values are not whole rows of {width}")]
    NotWholeRows { values: usize, width: usize },

    /// A file of a model (`model.onnx`, `feature_spec.json`, `background.json`, …) that does not
    /// hold what serving needs.
    #[error("{file}: {problem}")]
    ModelFile { file: &'static str, problem: String },

    /// A problem found in one file of the bundle at `dir`.
    #[error("bundle {dir}: {error}")]
    InBundle { dir: String, error: Box<CoreError> },

    /// The inference engine failed on a model that loaded (tract's error chain, as text: its
    /// error type is `anyhow`'s, which is not a `std::error::Error`).
    #[error("inference: {0}")]
    Inference(String),

    /// A customer (or a mix of a customer with a background customer, for Shapley values) that
    /// the feature transform refuses.
    #[error("{what} does not transform: {error}")]
    Untransformable { what: &'static str, error: RowError },

    /// Writing an ONNX graph from layers that do not form one (`graph` names which).
    #[error("{graph}: {problem}")]
    Export { graph: &'static str, problem: String },

    /// Encoding scored rows as an output file failed.
    #[error("encoding output as {format}: {problem}")]
    Encode { format: &'static str, problem: String },

    #[error("bundle {dir}: {message}")]
    Bundle { dir: String, message: String },

    #[error(
        "bundle {dir}: checksum mismatch for {file}: manifest says {expected}, file has {actual}. The bundle is corrupt or was modified; fetch it again"
    )]
    Checksum { dir: String, file: String, expected: String, actual: String },
}

impl CoreError {
    pub fn io(path: impl fmt::Display, error: std::io::Error) -> Self {
        CoreError::Io { path: path.to_string(), error }
    }
    pub fn format(path: impl fmt::Display, message: impl fmt::Display) -> Self {
        CoreError::Format { path: path.to_string(), message: message.to_string() }
    }
    pub fn setting(setting: impl fmt::Display, problem: impl fmt::Display) -> Self {
        CoreError::Setting { setting: setting.to_string(), problem: problem.to_string() }
    }
}

fn file_prefix(file: &str) -> String {
    if file.is_empty() { String::new() } else { format!("{file}: ") }
}

fn class_name(positive: bool) -> &'static str {
    if positive { "positive" } else { "negative" }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// How to fix a missing column: usually add it or configure another name, but a header read as
/// one column holding another separator is a file that is not comma-separated.
fn missing_columns_fix(found: &[String]) -> String {
    let other = [';', '\t', '|'].into_iter().find(|c| found.len() == 1 && found[0].contains(*c));
    match other {
        Some(c) => {
            format!("The header is one column holding {c:?}: CSV input must be comma-separated; save the file with commas (or as parquet)")
        }
        None => "Add the column(s) or change the configuration".to_string(),
    }
}
