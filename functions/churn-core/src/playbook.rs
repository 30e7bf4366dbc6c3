//! The retention playbook: risk tiers, the action for each, the business figures used to value
//! a campaign, and the personalised offers. It is configured in the training TOML
//! (`[playbook]`), carried in the bundle as `playbook.json`, and read by the report, `churn
//! score`, the batch scorer and the API.
//!
//! **Offers** make the action personal: each addresses one input field under a condition (a
//! month-to-month `contract` → a contract upgrade; `internetservice` = fibre → a price review;
//! no `techsupport` → a free support trial). For a customer in a tier that is contacted, the
//! offer is the first one, going down the customer's reasons (largest first), whose field is
//! that reason's field and whose condition holds for the customer's value: the offer answers
//! what raises this customer's risk most. Each offer may carry its own cost and success rate
//! (defaults: `[playbook.business]`) so that its expected value can be shown.

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

/// A personalised offer (see the module documentation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    pub name: String,
    /// What the retention team offers.
    pub action: String,
    /// The input field this offer addresses.
    pub field: String,
    /// Applies when the field's value is one of these (text, as in the data)...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// ...or when the field's number is below this...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// ...or above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Cost of making this offer once (default: `business.cost_per_contact`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Share of churners this offer keeps (default: `business.success_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
}

impl Offer {
    /// Whether the offer applies to a customer whose value of `field` reads `value`.
    pub fn applies(&self, value: &str) -> bool {
        let v = value.trim();
        if !self.values.is_empty() {
            return self.values.iter().any(|x| x == v);
        }
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() => self.below.is_none_or(|b| x < b) && self.above.is_none_or(|a| x > a),
            _ => false,
        }
    }

    /// Expected profit of making this offer to a customer with churn probability `p`.
    pub fn expected_value(&self, p: f64, business: &Business) -> f64 {
        p * self.success_rate.unwrap_or(business.success_rate) * business.value_per_retained_customer
            - self.cost.unwrap_or(business.cost_per_contact)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub tiers: Vec<Tier>,
    pub business: Business,
    #[serde(default)]
    pub offers: Vec<Offer>,
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
            offers: Vec::new(),
        }
    }
}

fn offer(o: &Offer, problem: String) -> CoreError {
    CoreError::setting(format_args!("playbook offer `{}`", o.name), problem)
}

impl Playbook {
    /// Checks the playbook and sorts tiers from the highest threshold down.
    pub fn check(mut self) -> Result<Self> {
        if self.tiers.is_empty() {
            return Err(CoreError::setting("playbook.tiers", "at least one tier is needed"));
        }
        self.tiers.sort_by(|a, b| b.min_probability.total_cmp(&a.min_probability));
        if self.tiers.last().map(|t| t.min_probability) != Some(0.0) {
            return Err(CoreError::setting(
                "playbook.tiers",
                "the lowest tier must have min_probability = 0 so that every customer gets a tier",
            ));
        }
        if self.tiers.iter().any(|t| !(0.0..=1.0).contains(&t.min_probability)) {
            return Err(CoreError::setting("playbook.tiers", "tier min_probability must be within [0, 1]"));
        }
        let b = &self.business;
        if !(0.0..=1.0).contains(&b.success_rate) || b.cost_per_contact < 0.0 || b.value_per_retained_customer < 0.0 {
            return Err(CoreError::setting("playbook.business", "success_rate must be within [0, 1]; value and cost must be >= 0"));
        }
        for o in &self.offers {
            let conditions = usize::from(!o.values.is_empty()) + usize::from(o.below.is_some() || o.above.is_some());
            if conditions != 1 {
                return Err(offer(o, "give either `values` or `below`/`above` (one kind of condition)".into()));
            }
            if o.cost.is_some_and(|c| c.is_nan() || c < 0.0) || o.success_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                return Err(offer(o, "cost must be >= 0 and success_rate within [0, 1]".into()));
            }
        }
        Ok(self)
    }

    /// Checks that every offer addresses one of the model's input fields.
    pub fn check_fields<'a>(&self, inputs: impl Iterator<Item = &'a str> + Clone) -> Result<()> {
        for o in &self.offers {
            if !inputs.clone().any(|i| i == o.field) {
                let known: Vec<&str> = inputs.clone().collect();
                return Err(offer(o, format!("field `{}` is not a model input (inputs: {})", o.field, known.join(", "))));
            }
        }
        Ok(())
    }

    /// The personalised offer for a customer in `tier` with these reasons (field, value text),
    /// largest first; `None` for tiers that are not contacted or when no offer fits.
    pub fn offer_for<'a>(&self, tier: &Tier, reasons: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<(&Offer, &'a str)> {
        if !tier.contact {
            return None;
        }
        reasons.into_iter().find_map(|(field, value)| self.offers.iter().find(|o| o.field == field && o.applies(value)).map(|o| (o, field)))
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
    fn a_bad_playbook_names_the_setting() {
        let mut p = Playbook::default();
        p.tiers.clear();
        let e = p.check().unwrap_err();
        assert!(matches!(&e, CoreError::Setting { setting, .. } if setting == "playbook.tiers"), "{e}");
        let mut p = offers();
        p.offers[1].cost = Some(-1.0);
        let e = p.check().unwrap_err();
        assert!(matches!(&e, CoreError::Setting { setting, .. } if setting == "playbook offer `onboarding`"), "{e}");
    }

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

    fn offers() -> Playbook {
        let o = |name: &str, field: &str, values: &[&str], below: Option<f64>| Offer {
            name: name.into(),
            action: format!("{name} action"),
            field: field.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
            below,
            above: None,
            cost: None,
            success_rate: None,
        };
        Playbook {
            offers: vec![
                o("contract_upgrade", "contract", &["Month-to-month"], None),
                o("onboarding", "tenure", &[], Some(12.0)),
                o("support_trial", "techsupport", &["No"], None),
            ],
            ..Playbook::default()
        }
        .check()
        .unwrap()
    }

    #[test]
    fn the_offer_answers_the_largest_reason_it_can() {
        let p = offers();
        let high = p.tier(0.6).clone();
        // tenure 3 is the top reason and an onboarding offer fits it.
        let (o, f) = p.offer_for(&high, [("tenure", "3"), ("contract", "Month-to-month")]).unwrap();
        assert_eq!((o.name.as_str(), f), ("onboarding", "tenure"));
        // tenure 30 does not fit the onboarding condition: the next reason decides.
        let (o, _) = p.offer_for(&high, [("tenure", "30"), ("paymentmethod", "Electronic check"), ("contract", "Month-to-month")]).unwrap();
        assert_eq!(o.name, "contract_upgrade");
        assert!(p.offer_for(&high, [("paymentmethod", "Electronic check")]).is_none());
        // Low-risk customers are not contacted.
        assert!(p.offer_for(p.tier(0.05), [("tenure", "3")]).is_none());
        let v = o.expected_value(0.6, &p.business);
        assert!((v - (0.6 * 0.3 * 500.0 - 25.0)).abs() < 1e-9);
    }

    #[test]
    fn offers_are_checked() {
        let mut p = offers();
        p.offers[0].below = Some(3.0);
        assert!(p.check().unwrap_err().to_string().contains("one kind of condition"));
        let p = offers();
        let err = p.check_fields(["contract", "tenure"].into_iter()).unwrap_err();
        assert!(err.to_string().contains("`techsupport` is not a model input"), "{err}");
    }

    #[test]
    fn a_playbook_without_a_floor_tier_is_refused() {
        let mut p = Playbook::default();
        p.tiers.pop();
        assert!(p.check().unwrap_err().to_string().contains("min_probability = 0"));
    }
}
