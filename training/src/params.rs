//! Training hyperparameters and the training configuration file.
//!
//! [`TrainParams`] is what a user writes (TOML `[model]`, CLI flags); [`TrainParams::check`]
//! turns it into [`ValidParams`] or a [`ParamError`] naming the field, before any maths runs.

use std::path::Path;

use churn_core::{DatasetConfig, Playbook};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// input -> batch norm -> [linear -> relu -> dropout]* -> linear
    Mlp,
    /// One linear layer on the same features: the baseline the MLP has to beat.
    Logistic,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Logistic => "logistic",
        }
    }
}

/// How the loss compensates for churners being the minority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Imbalance {
    /// Weight positive examples by negatives / positives in the training split.
    PosWeight,
    /// No compensation.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainParams {
    pub kind: ModelKind,
    /// Hidden layer sizes of the MLP.
    pub hidden: Vec<usize>,
    pub dropout: f64,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation ROC AUC.
    pub patience: usize,
    pub imbalance: Imbalance,
    /// Shares of the rows held out for validation (early stopping, calibration, threshold) and test.
    pub validation_fraction: f64,
    pub test_fraction: f64,
    pub seed: u64,
    /// Training customers kept in the bundle as the Shapley background sample (explanations).
    pub background_rows: usize,
    /// Members trained from seeds `seed`, `seed + 1`, …; the model averages their logits and
    /// exports as one dense stack.
    pub ensemble: usize,
    /// With two or more members: pool the training and validation rows and let each member hold
    /// out a different fold of them (early stopping, out-of-fold calibration; see `train::fit`).
    pub cross_fit: bool,
    /// With cross-fitting: after it, retrain every member on the whole pool for as many epochs
    /// as its cross-fitted run found best, and serve those (calibrated on the cross-fitted
    /// members' out-of-fold logits).
    pub refit: bool,
    /// Knots of the spline calibration in the logit (`train::Calibration`); 0 is Platt scaling.
    pub calibration_knots: usize,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            kind: ModelKind::Mlp,
            // The default recipe, chosen by `churn benchmark` (5-fold cross-validation on the
            // three bundled tables, README "Model quality"): five narrow members cross-fitted
            // over piecewise-linear inputs rank better than one member as wide as all five, and
            // eight units each keep serving within its latency budget.
            hidden: vec![8],
            dropout: 0.3,
            learning_rate: 3e-3,
            weight_decay: 1e-2,
            batch_size: 256,
            max_epochs: 200,
            patience: 20,
            imbalance: Imbalance::PosWeight,
            validation_fraction: 0.2,
            test_fraction: 0.2,
            seed: 42,
            // Enough for stable Shapley estimates on ~20 fields; each explained customer costs
            // permutations × this × (fields + 1) model rows.
            background_rows: 50,
            ensemble: 5,
            cross_fit: true,
            refit: false,
            calibration_knots: 3,
        }
    }
}

/// Parameters that passed [`TrainParams::check`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidParams(TrainParams);

impl std::ops::Deref for ValidParams {
    type Target = TrainParams;
    fn deref(&self) -> &TrainParams {
        &self.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("model.{field} = {value}: {expected}")]
pub struct ParamError {
    pub field: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl TrainParams {
    pub fn check(self) -> Result<ValidParams, ParamError> {
        let bad = |field, value: String, expected| Err(ParamError { field, value, expected });
        if self.kind == ModelKind::Mlp && (self.hidden.is_empty() || self.hidden.contains(&0)) {
            return bad("hidden", format!("{:?}", self.hidden), "give at least one hidden layer, each of size >= 1");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", self.dropout.to_string(), "must be in [0, 1)");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate < 1.0) {
            return bad("learning_rate", self.learning_rate.to_string(), "must be in (0, 1)");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("weight_decay", self.weight_decay.to_string(), "must be >= 0");
        }
        if self.batch_size < 2 {
            return bad("batch_size", self.batch_size.to_string(), "must be >= 2 (batch norm needs two rows)");
        }
        if self.max_epochs == 0 {
            return bad("max_epochs", "0".into(), "must be >= 1");
        }
        if self.calibration_knots > 16 {
            return bad("calibration_knots", self.calibration_knots.to_string(), "must be at most 16 (0 is Platt scaling)");
        }
        if self.patience == 0 {
            return bad("patience", "0".into(), "must be >= 1");
        }
        for (field, v) in [("validation_fraction", self.validation_fraction), ("test_fraction", self.test_fraction)] {
            if !(0.05..=0.5).contains(&v) {
                return bad(field, v.to_string(), "must be in [0.05, 0.5]");
            }
        }
        if !(1..=32).contains(&self.ensemble) {
            return bad("ensemble", self.ensemble.to_string(), "must be in [1, 32]");
        }
        if !(1..=1000).contains(&self.background_rows) {
            return bad("background_rows", self.background_rows.to_string(), "must be in [1, 1000]");
        }
        if self.refit && !(self.cross_fit && self.ensemble > 1) {
            return bad("refit", "true".into(), "refits the members of a cross-fitted ensemble: set cross_fit = true and ensemble >= 2");
        }
        if self.validation_fraction + self.test_fraction > 0.8 {
            return bad("test_fraction", self.test_fraction.to_string(), "validation + test must leave >= 20 % for training");
        }
        Ok(ValidParams(self))
    }
}

/// A training configuration file: `[dataset]`, `[model]`, `[playbook]`, all optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub dataset: DatasetConfig,
    pub model: TrainParams,
    pub playbook: Playbook,
}

impl TrainConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { file: file.clone(), error })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse { file, error })
    }
}

/// A training configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the configuration: {error}")]
    Read { file: String, error: std::io::Error },
    /// TOML's message names the line, column and key.
    #[error("{file}: {error}")]
    Parse { file: String, error: toml::de::Error },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(TrainParams::default().check().is_ok());
    }

    #[test]
    fn bad_values_name_their_field() {
        let p = TrainParams { dropout: 1.0, ..Default::default() };
        assert_eq!(p.check().unwrap_err().field, "dropout");
        let p = TrainParams { hidden: vec![], ..Default::default() };
        assert_eq!(p.check().unwrap_err().field, "hidden");
        let p = TrainParams { kind: ModelKind::Logistic, hidden: vec![], ..Default::default() };
        assert!(p.check().is_ok());
        let p = TrainParams { validation_fraction: 0.5, test_fraction: 0.5, ..Default::default() };
        assert!(p.check().unwrap_err().to_string().contains("validation + test"));
        let p = TrainParams { refit: true, ensemble: 1, ..Default::default() };
        assert_eq!(p.check().unwrap_err().field, "refit");
        assert!(TrainParams { refit: true, ..Default::default() }.check().is_ok());
    }

    #[test]
    fn ignore_is_another_name_for_exclude() {
        let c: TrainConfig = toml::from_str("[dataset]\nignore = [\"notes\"]\n").unwrap();
        assert_eq!(c.dataset.exclude, ["notes"]);
        let c: TrainConfig = toml::from_str("[dataset]\nexclude = [\"notes\"]\n").unwrap();
        assert_eq!(c.dataset.exclude, ["notes"]);
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let e = toml::from_str::<TrainConfig>("[model]\nlearning_rat = 0.1\n").unwrap_err();
        assert!(e.to_string().contains("learning_rat"), "{e}");
    }
}
