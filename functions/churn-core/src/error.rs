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

    #[error("configuration: {0}")]
    Config(String),

    #[error("data: {0}")]
    Data(String),

    #[error("bundle {dir}: {message}")]
    Bundle { dir: String, message: String },

    #[error(
        "bundle {dir}: checksum mismatch for {file}: manifest says {expected}, file has {actual}. The bundle is corrupt or was modified; fetch it again"
    )]
    Checksum { dir: String, file: String, expected: String, actual: String },

    #[error("model: {0}")]
    Model(String),
}

impl CoreError {
    pub fn io(path: impl fmt::Display, error: std::io::Error) -> Self {
        CoreError::Io { path: path.to_string(), error }
    }
    pub fn format(path: impl fmt::Display, message: impl fmt::Display) -> Self {
        CoreError::Format { path: path.to_string(), message: message.to_string() }
    }
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
