//! Monitoring a deployed model: concept drift, once the labels of scored customers arrive.
//!
//! Data drift (are today's customers like the training ones?) is `churn_core::drift`, measured by
//! the batch scorer and `churn drift`. Concept drift is the other half: the customers may look
//! the same while what makes them leave has changed. It shows only when outcomes are known, as
//! a drop of the model's figures on fresh labelled data below the figures it had on its own
//! held-out test split (the bundle's `metrics.json`). `churn evaluate` runs this check.

//!
//! A figure is only called worse when the drop is larger than sampling noise allows: both the
//! bundle's test figures and today's come from finite samples of customers, so each carries a
//! spread ([`FigureSpread`], bootstrap standard deviations, stored in `metrics.json` as
//! `test_spread` at training time and measured on today's rows). A drop counts when it exceeds
//! [`NOISE_Z`] standard deviations of the difference, and the user's `--margin` on top. The ECE
//! is compared as its excess over its own sampling floor, since a smaller sample shows a larger
//! ECE by noise alone.

use churn_core::metrics::{Evaluation, FigureSpread};
use serde::Serialize;

/// Default extra worsening required beyond the noise allowance (absolute): none.
pub const DEFAULT_MARGIN: f64 = 0.0;

/// Standard deviations of the difference a drop must exceed: a one-sided false alarm rate of
/// about 0.1 % per figure when today's customers are like the training ones.
pub const NOISE_Z: f64 = 3.0;

/// Bootstrap resamples for the spread of a figure.
pub const RESAMPLES: usize = 200;

/// One figure, at training and now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FigureCheck {
    pub metric: &'static str,
    pub at_training: f64,
    pub now: f64,
    /// How much worse it is now (positive = worse), in the metric's units.
    pub worse_by: f64,
    /// The largest worsening sampling noise explains (plus the margin).
    pub allowed: f64,
    pub drifted: bool,
}

/// Compares `now` (with its spread `now_spread`) with the bundle's test figures
/// (`metrics.json` → `test`, `test_spread`); a figure worse by more than noise allows plus
/// `margin` is flagged. Bundles without `test_spread` get it estimated from today's spread,
/// scaled by the square root of the row counts. `None` when the bundle has no test figures.
pub fn concept_drift(
    bundle_metrics: &serde_json::Value,
    now: &Evaluation,
    now_spread: &FigureSpread,
    margin: f64,
) -> Option<Vec<FigureCheck>> {
    let test = bundle_metrics.get("test")?;
    let test_rows = test.get("rows")?.as_f64()?;
    let stored: Option<FigureSpread> = bundle_metrics.get("test_spread").and_then(|s| serde_json::from_value(s.clone()).ok());
    let scale = (now.rows as f64 / test_rows).sqrt();
    let at = |k: &str| test.get(k).and_then(|v| v.as_f64());
    let ece_excess_then = at("ece")? - at("ece_floor").unwrap_or(0.0);
    // (name, value at training, value now, spread then, spread now, higher is better)
    let figures = [
        ("roc_auc", at("roc_auc")?, now.roc_auc, stored.map(|s| s.roc_auc), now_spread.roc_auc, true),
        ("pr_auc", at("pr_auc")?, now.pr_auc, stored.map(|s| s.pr_auc), now_spread.pr_auc, true),
        ("brier", at("brier")?, now.brier, stored.map(|s| s.brier), now_spread.brier, false),
        ("ece_excess", ece_excess_then, now.ece - now.ece_floor, stored.map(|s| s.ece_excess), now_spread.ece_excess, false),
    ];
    let checks = figures
        .into_iter()
        .map(|(metric, at_training, value, then_sd, now_sd, higher_better)| {
            let then_sd = then_sd.unwrap_or(now_sd * scale);
            let worse_by = if higher_better { at_training - value } else { value - at_training };
            let allowed = NOISE_Z * (then_sd * then_sd + now_sd * now_sd).sqrt() + margin;
            FigureCheck { metric, at_training, now: value, worse_by, allowed, drifted: worse_by > allowed }
        })
        .collect();
    Some(checks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use churn_core::Playbook;

    fn evaluation(p: &[f32], y: &[bool]) -> (Evaluation, FigureSpread) {
        (Evaluation::compute(p, y, 0.5, &Playbook::default()).unwrap(), churn_core::metrics::bootstrap_spread(p, y, 100).unwrap())
    }

    #[test]
    fn a_drop_beyond_the_noise_is_flagged_and_noise_or_an_improvement_is_not() {
        let p: Vec<f32> = (0..400).map(|i| ((i * 37) % 100) as f32 / 100.0).collect();
        let y: Vec<bool> = p.iter().enumerate().map(|(i, &v)| v > 0.5 || i % 7 == 0).collect();
        let (e, spread) = evaluation(&p, &y);
        let metrics = |auc: f64| serde_json::json!({"test": {"rows": 400, "roc_auc": auc, "pr_auc": e.pr_auc, "brier": e.brier - 0.001, "ece": e.ece, "ece_floor": e.ece_floor}, "test_spread": spread});
        // The same figures at training: nothing flagged, whatever the margin.
        let c = concept_drift(&metrics(e.roc_auc), &e, &spread, 0.0).unwrap();
        assert_eq!(c.len(), 4);
        assert!(c.iter().all(|c| !c.drifted), "{c:?}");
        // Training's ROC AUC far above today's (many standard deviations): flagged.
        let c = concept_drift(&metrics(e.roc_auc + 20.0 * spread.roc_auc), &e, &spread, 0.0).unwrap();
        assert!(c[0].drifted && c[0].worse_by > c[0].allowed, "{:?}", c[0]);
        assert!(!c[2].drifted && c[2].worse_by > 0.0, "a Brier worse by less than its noise: {:?}", c[2]);
        // A drop of two standard deviations is noise; the margin is added on top.
        let c = concept_drift(&metrics(e.roc_auc + 2.0 * spread.roc_auc), &e, &spread, 0.0).unwrap();
        assert!(!c[0].drifted, "{:?}", c[0]);
        let c = concept_drift(&metrics(e.roc_auc + 20.0 * spread.roc_auc), &e, &spread, 1.0).unwrap();
        assert!(!c[0].drifted);
        // An older bundle without test_spread: today's spread scaled to its row count.
        let mut m = metrics(e.roc_auc + 20.0 * spread.roc_auc);
        m.as_object_mut().unwrap().remove("test_spread");
        m["test"]["rows"] = 100.into();
        let c = concept_drift(&m, &e, &spread, 0.0).unwrap();
        let want = NOISE_Z * (spread.roc_auc.powi(2) * (1.0 + 4.0)).sqrt();
        assert!((c[0].allowed - want).abs() < 1e-12, "{} vs {want}", c[0].allowed);
        assert!(concept_drift(&serde_json::json!({}), &e, &spread, 0.0).is_none());
    }
}
