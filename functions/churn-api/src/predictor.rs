//! Scoring validated customers: the bundle's feature transform and tract plan (built once at
//! start-up), the playbook's tier and action, and the reasons behind each score.
//!
//! Reasons are Shapley values over the raw fields against the bundle's background sample
//! ([`Reasons::Shapley`], the default; `churn_core::explain`), with a small permutation budget:
//! two permutations agree with a 40-permutation estimate at Spearman 0.98 on Telco customers
//! (`churn explain`, README "Explanations"). They come from `churn_core::explain::Explainer`
//! (the same values as the tract path, computed incrementally: tens of microseconds per
//! customer) when the model is a dense stack, as every model this project writes is.
//! [`Reasons::Occlusion`] is the microsecond path (one model call for the whole request), but
//! its reasons agree poorly with the Shapley ones (Spearman about 0.6), so it is opt-in
//! (`REASONS_METHOD=occlusion`) and the fallback for bundles without a background sample.
//! [`Reasons::None`] skips them.

use churn_core::Bundle;
use churn_core::explain;
use churn_core::network::{Active, Buffers};
use churn_core::privacy::Pseudonymizer;
use churn_core::spec::{InputKind, SlotValues, Warning};

use crate::request::{self, ApiError, Customer, Limits};
use crate::types::*;

/// How the reasons behind a score are computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reasons {
    /// Shapley values with this many permutations (each against every background customer).
    Shapley { permutations: usize },
    /// Occlusion against a typical customer.
    Occlusion,
    /// No reasons (`REASONS_METHOD=none`): probability, tier and action only, for callers that
    /// score in volume and never show an explanation. Without reasons no offer is personalised.
    None,
}

impl Reasons {
    pub const DEFAULT_PERMUTATIONS: usize = explain::REASON_PERMUTATIONS;
}

/// Everything a request needs, built once: shared by reference with every handler call.
pub struct Predictor {
    bundle: Bundle,
    info: ModelInfo,
    limits: Limits,
    top_reasons: usize,
    pseudonyms: Pseudonymizer,
    reasons: Reasons,
}

impl Predictor {
    /// `version`: the registry version when the bundle came through `models:/…`.
    pub fn new(bundle: Bundle, version: Option<String>, max_batch: usize, top_reasons: usize) -> Self {
        let info = ModelInfo::of(&bundle.manifest, version);
        Predictor {
            bundle,
            info,
            limits: Limits { max_batch },
            top_reasons,
            pseudonyms: Pseudonymizer::random(),
            reasons: Reasons::Occlusion,
        }
        .with_reasons(Reasons::Shapley { permutations: Reasons::DEFAULT_PERMUTATIONS })
    }

    /// Uses `reasons`; Shapley values need the bundle's background sample, so a bundle without
    /// one keeps occlusion (see [`Predictor::reasons`]).
    pub fn with_reasons(self, reasons: Reasons) -> Self {
        let reasons = match reasons {
            Reasons::Shapley { .. } if self.bundle.background.is_none() => Reasons::Occlusion,
            r => r,
        };
        Predictor { reasons, ..self }
    }

    /// The reason method in use.
    pub fn reasons(&self) -> Reasons {
        self.reasons
    }

    /// Uses `pseudonyms` (a configured key) for customer ids in logs.
    pub fn with_pseudonyms(self, pseudonyms: Pseudonymizer) -> Self {
        Predictor { pseudonyms, ..self }
    }

    /// A customer id as it may appear in logs.
    pub fn pseudonym(&self, id: &str) -> String {
        self.pseudonyms.pseudonym(id)
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Validates and scores a request body.
    pub fn predict_body(&self, body: &[u8]) -> Result<PredictResponse, ApiError> {
        let customers = request::parse(body, &self.bundle.spec, self.limits)?;
        let predictions = self.predict(&customers)?;
        Ok(PredictResponse { model: self.info.clone(), predictions })
    }

    /// Scores validated customers.
    pub fn predict(&self, customers: &[Customer]) -> Result<Vec<Prediction>, ApiError> {
        let spec = &self.bundle.spec;
        let width = spec.width();
        let internal = |e: churn_core::CoreError| {
            tracing::error!(error = %e, "inference failed");
            ApiError::new(ErrorCode::Internal, "the model could not score this request; it has been logged", vec![])
        };
        let invalid = |c: &Customer, e| ApiError::invalid(format!("{}: {e}", c.path), vec![]);
        // Steps 1–2 of the transform, with the customer's warnings.
        let slots = |c: &Customer, scratch: &mut SlotValues, w: &mut Vec<Warning>| {
            spec.checked_slot_values(&c.record, scratch).map_err(|e| invalid(c, e))?;
            spec.warnings(scratch, w);
            Ok::<_, ApiError>(())
        };
        let mut warnings = vec![Vec::new(); customers.len()];
        let mut scratch = SlotValues::default();
        // (probability, contributions) per customer.
        let mut scored = Vec::with_capacity(customers.len());
        let explainer = match self.reasons {
            Reasons::Shapley { permutations } => self.bundle.explainer.as_ref().map(|e| (e, permutations)),
            Reasons::Occlusion | Reasons::None => None,
        };
        let network = self.bundle.network.as_deref().filter(|_| self.reasons == Reasons::None);
        if let Some((explainer, permutations)) = explainer {
            // The explainer evaluates the customer itself (the end of every walk): no model call.
            for (c, w) in customers.iter().zip(&mut warnings) {
                slots(c, &mut scratch, w)?;
                let params = explain::ShapleyParams { permutations, seed: 0 };
                let a = explainer.explain_slots(spec, &scratch, params).map_err(internal)?;
                scored.push((a.prediction, a.values));
            }
        } else if let Some(net) = network {
            // No reasons: the project's own model evaluated from the slot values, as the batch
            // scorer does.
            let (mut z, mut active, mut buffers) = (vec![0.0; net.hidden()], Active::default(), Buffers::default());
            for (c, w) in customers.iter().zip(&mut warnings) {
                slots(c, &mut scratch, w)?;
                net.first_layer(spec, &scratch, &mut z, &mut active);
                scored.push((f64::from(net.probability(&z, &mut buffers).map_err(internal)?), Vec::new()));
            }
        } else {
            let occlusion = self.reasons == Reasons::Occlusion;
            let per_customer = if occlusion { 1 + spec.inputs.len() } else { 1 };
            let mut features = Vec::with_capacity(customers.len() * per_customer * width);
            for (c, w) in customers.iter().zip(&mut warnings) {
                let start = features.len();
                features.resize(start + width, 0.0);
                spec.transform_into(&c.record, &mut scratch, &mut features[start..], Some(w)).map_err(|e| invalid(c, e))?;
                if occlusion {
                    explain::occlusion_rows(spec, &c.record, &mut scratch, &mut features);
                }
            }
            // Model outputs per customer: its probability, then (occlusion) one per occluded field.
            let p = self.bundle.scorer.predict(&features).map_err(internal)?;
            for (c, p) in customers.iter().zip(p.chunks(per_customer)) {
                let contributions = match (self.reasons, &self.bundle.background) {
                    (Reasons::Shapley { permutations }, Some(background)) => {
                        let params = explain::ShapleyParams { permutations, seed: 0 };
                        explain::shapley(spec, &self.bundle.scorer, background, &c.record, params).map_err(internal)?.values
                    }
                    (Reasons::None, _) => Vec::new(),
                    _ => explain::occlusion_contributions(p[0], &p[1..]),
                };
                scored.push((f64::from(p[0]), contributions));
            }
        }
        Ok(customers
            .iter()
            .zip(scored)
            .zip(warnings)
            .map(|((c, (prob, contributions)), w)| {
                let tier = self.bundle.playbook.tier(prob);
                let playbook = &self.bundle.playbook;
                let (reasons, pick) = explain::reasons_and_offer(spec, playbook, tier, &c.record, &contributions, self.top_reasons);
                let offer = pick.map(|p| PersonalisedOffer {
                    name: p.offer.name.clone(),
                    action: p.offer.action.clone(),
                    addresses: p.field,
                    expected_value: p.offer.expected_value(prob, &playbook.business),
                });
                let reasons =
                    reasons.into_iter().map(|r| Reason { feature: r.feature, value: r.value, contribution: r.contribution }).collect();
                Prediction {
                    customer_id: c.id.clone(),
                    churn_probability: prob,
                    risk_tier: tier.name.clone(),
                    action: tier.action.clone(),
                    reasons,
                    offer,
                    warnings: w.into_iter().map(|w| InputWarning { field: w.field, message: w.message }).collect(),
                }
            })
            .collect())
    }

    /// `GET /model`.
    pub fn describe(&self) -> ModelDescription {
        let b = &self.bundle;
        let inputs = b
            .spec
            .inputs
            .iter()
            .enumerate()
            .map(|(index, i)| match &i.kind {
                InputKind::Numeric { valid_min, valid_max, .. } => InputField {
                    name: i.name.clone(),
                    kind: "number".into(),
                    min: valid_min.is_finite().then_some(*valid_min),
                    max: valid_max.is_finite().then_some(*valid_max),
                    categories: vec![],
                },
                InputKind::Categorical => InputField {
                    name: i.name.clone(),
                    kind: "category".into(),
                    min: None,
                    max: None,
                    categories: b.spec.input_vocabulary(index).map(<[String]>::to_vec).unwrap_or_default(),
                },
            })
            .collect();
        ModelDescription {
            model: self.info.clone(),
            kind: b.manifest.model_kind.clone(),
            created_unix: b.manifest.created_unix,
            threshold: b.manifest.threshold,
            id_field: b.spec.id_column.clone(),
            inputs,
            tiers: b
                .playbook
                .tiers
                .iter()
                .map(|t| TierInfo { name: t.name.clone(), min_probability: t.min_probability, action: t.action.clone() })
                .collect(),
            metrics: b.metrics.clone(),
        }
    }
}
