//! Monitoring a deployed model: concept drift, once the labels of scored customers arrive.
//!
//! Data drift (are today's customers like the training ones?) is `churn_core::drift`, measured by
//! the batch scorer and `churn drift`. Concept drift is the other half: the customers may look
//! the same while what makes them leave has changed. It shows only when outcomes are known, as
//! a drop of the model's figures on fresh labelled data below the figures it had on its own
//! held-out test split (the bundle's `metrics.json`). `churn evaluate` runs this check.

use churn_core::metrics::Evaluation;
use serde::Serialize;

/// Default largest tolerated worsening of a figure (absolute): beyond the seed-to-seed spread of
/// the Telco models (ROC AUC sd 0.006, `churn compare`), well within what a retrain recovers.
pub const DEFAULT_MARGIN: f64 = 0.03;

/// One figure, at training and now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FigureCheck {
    pub metric: &'static str,
    pub at_training: f64,
    pub now: f64,
    /// How much worse it is now (positive = worse), in the metric's units.
    pub worse_by: f64,
    pub drifted: bool,
}

/// Compares `now` with the bundle's test figures (`metrics.json` → `test`); a figure more than
/// `margin` worse is flagged. `None` when the bundle has no test figures.
pub fn concept_drift(bundle_metrics: &serde_json::Value, now: &Evaluation, margin: f64) -> Option<Vec<FigureCheck>> {
    let test = bundle_metrics.get("test")?;
    // (name, value now, higher is better)
    let figures = [("roc_auc", now.roc_auc, true), ("pr_auc", now.pr_auc, true), ("brier", now.brier, false), ("ece", now.ece, false)];
    figures
        .into_iter()
        .map(|(metric, value, higher_better)| {
            let at_training = test.get(metric)?.as_f64()?;
            let worse_by = if higher_better { at_training - value } else { value - at_training };
            Some(FigureCheck { metric, at_training, now: value, worse_by, drifted: worse_by > margin })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use churn_core::Playbook;

    #[test]
    fn a_drop_beyond_the_margin_is_flagged_and_an_improvement_is_not() {
        let p: Vec<f32> = vec![0.9, 0.8, 0.3, 0.2, 0.7, 0.1];
        let y = vec![true, true, false, false, false, true];
        let e = Evaluation::compute(&p, &y, 0.5, &Playbook::default()).unwrap();
        let m = serde_json::json!({"test": {"roc_auc": e.roc_auc + 0.1, "pr_auc": e.pr_auc, "brier": e.brier + 0.01, "ece": e.ece}});
        let c = concept_drift(&m, &e, 0.03).unwrap();
        assert_eq!(c.len(), 4);
        assert!(c[0].drifted && (c[0].worse_by - 0.1).abs() < 1e-12);
        assert!(!c[1].drifted);
        assert!(!c[2].drifted && c[2].worse_by < 0.0, "better Brier now: {:?}", c[2]);
        assert!(concept_drift(&serde_json::json!({}), &e, 0.03).is_none());
    }
}
