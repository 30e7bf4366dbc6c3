//! The retention playbook: risk tiers, the action for each, and the business figures used to
//! value a campaign. It is configured in the training TOML (`[playbook]`), carried in the bundle
//! as `playbook.json`, and read by the report, `churn score`, the batch scorer and the API.

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    /// Lowest calibrated churn probability in this tier.
    pub min_probability: f64,
    /// What the retention team does for a customer in this tier.
    pub action: String,
    /// Whether customers of this tier are contacted (they cost `cost_per_contact`).
    #[serde(default = "yes")]
    pub contact: bool,
}

fn yes() -> bool {
    true
}

/// What a retained customer is worth and what trying to retain one costs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Business {
    /// Value of keeping a customer who would have churned (e.g. 12 months of margin).
    pub value_per_retained_customer: f64,
    /// Cost of one intervention (call, offer, e-mail) whether it works or not.
    pub cost_per_contact: f64,
    /// Share of contacted churners who stay because of the intervention.
    pub success_rate: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub tiers: Vec<Tier>,
    pub business: Business,
}

impl Default for Playbook {
    fn default() -> Self {
        let t = |name: &str, p: f64, action: &str, contact: bool| Tier {
            name: name.into(),
            min_probability: p,
            action: action.into(),
            contact,
        };
        Playbook {
            tiers: vec![
                t("very_high", 0.70, "personal call by the retention desk", true),
                t("high", 0.50, "discount offer", true),
                t("medium", 0.30, "engagement e-mail", true),
                t("low", 0.0, "none", false),
            ],
            business: Business { value_per_retained_customer: 500.0, cost_per_contact: 25.0, success_rate: 0.3 },
        }
    }
}

impl Playbook {
    /// Checks the playbook and sorts tiers from the highest threshold down.
    pub fn check(mut self) -> Result<Self> {
        if self.tiers.is_empty() {
            return Err(CoreError::Config("playbook: at least one tier is needed".into()));
        }
        self.tiers.sort_by(|a, b| b.min_probability.total_cmp(&a.min_probability));
        if self.tiers.last().map(|t| t.min_probability) != Some(0.0) {
            return Err(CoreError::Config(
                "playbook: the lowest tier must have min_probability = 0 so that every customer gets a tier".into(),
            ));
        }
        if self.tiers.iter().any(|t| !(0.0..=1.0).contains(&t.min_probability)) {
            return Err(CoreError::Config("playbook: tier min_probability must be within [0, 1]".into()));
        }
        let b = &self.business;
        if !(0.0..=1.0).contains(&b.success_rate) || b.cost_per_contact < 0.0 || b.value_per_retained_customer < 0.0 {
            return Err(CoreError::Config(
                "playbook.business: success_rate must be within [0, 1]; value and cost must be >= 0".into(),
            ));
        }
        Ok(self)
    }

    /// The tier of a calibrated probability.
    pub fn tier(&self, p: f64) -> &Tier {
        &self.tiers[self.tier_index(p)]
    }

    /// Position in `tiers` of the tier of probability `p`.
    pub fn tier_index(&self, p: f64) -> usize {
        self.tiers.iter().position(|t| p >= t.min_probability).unwrap_or(self.tiers.len() - 1)
    }

    /// Expected profit of contacting one customer with churn probability `p`.
    pub fn expected_value(&self, p: f64) -> f64 {
        p * self.business.success_rate * self.business.value_per_retained_customer - self.business.cost_per_contact
    }

    /// The probability above which contacting a customer has positive expected value.
    pub fn break_even_probability(&self) -> f64 {
        let b = &self.business;
        let gain = b.success_rate * b.value_per_retained_customer;
        if gain <= 0.0 { 1.0 } else { (b.cost_per_contact / gain).min(1.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_are_sorted_and_found() {
        let mut p = Playbook::default();
        p.tiers.reverse();
        let p = p.check().unwrap();
        assert_eq!(p.tier(0.95).name, "very_high");
        assert_eq!(p.tier(0.5).name, "high");
        assert_eq!(p.tier(0.1).name, "low");
        assert!((p.break_even_probability() - 25.0 / 150.0).abs() < 1e-12);
    }

    #[test]
    fn a_playbook_without_a_floor_tier_is_refused() {
        let mut p = Playbook::default();
        p.tiers.pop();
        assert!(p.check().unwrap_err().to_string().contains("min_probability = 0"));
    }
}
