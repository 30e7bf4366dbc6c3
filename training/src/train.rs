//! The one training loop (any [`ChurnModel`]), Platt calibration, and the export of the trained
//! and calibrated model to the ONNX graph the Lambdas run.

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use churn_core::metrics::roc_auc;
use churn_core::onnx::Dense;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::Matrix;
use crate::model::{self, ChurnModel};
use crate::params::{Imbalance, ValidParams};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub validation_loss: f64,
    pub validation_auc: f64,
}

/// `p = sigmoid(a * logit + b)`, fitted on validation logits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

pub struct Trained {
    /// The model (an [`Ensemble`](crate::model::Ensemble) of the members when there are several).
    pub model: Box<dyn ChurnModel>,
    /// The first member's epochs (the report's learning curves).
    pub history: Vec<EpochRecord>,
    /// The first member's best epoch.
    pub best_epoch: usize,
    /// Every member's best epoch.
    pub member_best_epochs: Vec<usize>,
    pub pos_weight: f64,
    pub calibration: Platt,
    /// Logits standing for the model's predictions on the validation rows (before
    /// calibration): out-of-fold when cross-fitted, the model's own otherwise.
    pub validation_logits: Vec<f32>,
}

/// One trained member before calibration.
struct Member {
    model: Box<dyn ChurnModel>,
    history: Vec<EpochRecord>,
    best_epoch: usize,
}

fn tensor(m: &Matrix) -> candle_core::Result<Tensor> {
    Tensor::from_slice(&m.x, (m.rows(), m.width), &Device::Cpu)
}

fn labels(y: &[bool]) -> candle_core::Result<Tensor> {
    Tensor::from_vec(y.iter().map(|&b| if b { 1f32 } else { 0.0 }).collect::<Vec<_>>(), y.len(), &Device::Cpu)
}

/// Mean of `w * BCE(sigmoid(z), y)` in the numerically stable form
/// `max(z, 0) - z*y + log(1 + exp(-|z|))`, with `w = pos_weight` on positives.
fn weighted_bce(z: &Tensor, y: &Tensor, pos_weight: f64) -> candle_core::Result<Tensor> {
    let per = ((z.relu()? - (z * y)?)? + ((z.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
    let w = ((y * (pos_weight - 1.0))? + 1.0)?;
    (per * w)?.mean_all()
}

/// Logits for a whole matrix in evaluation mode.
pub fn logits(model: &dyn ChurnModel, m: &Matrix) -> candle_core::Result<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    model.forward(&tensor(m)?, false, &mut rng)?.to_vec1::<f32>()
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Trains `params.ensemble` members (seeds `seed`, `seed + 1`, …) with early stopping on
/// validation ROC AUC and averages their logits; then calibrates on held-out logits.
///
/// With `params.cross_fit` and two or more members, the training and validation rows form one
/// pool dealt into as many stratified folds as members: member `k` holds out fold `k` for its
/// early stopping, so every pooled row trains all members but one and is held out by exactly
/// one. Calibration is then fitted on every pooled row's held-out logit (out-of-fold), not on
/// the validation rows alone, and the validation rows' out-of-fold logits stand for the
/// model's validation predictions (threshold, validation figures). Without cross-fitting, all
/// members share the given split. `on_epoch` sees every epoch of every member.
pub fn fit(
    params: &ValidParams,
    train: &Matrix,
    validation: &Matrix,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> anyhow::Result<Trained> {
    let cross_fit = params.cross_fit && params.ensemble > 1;
    let pool = if cross_fit { Some(train.concat(validation)) } else { None };
    let folds = match &pool {
        Some(pool) => crate::data::stratified_folds(&pool.y, params.ensemble, params.seed)?,
        None => vec![],
    };
    // (train, validation) of every member.
    let parts: Vec<(Matrix, Matrix)> = match &pool {
        Some(pool) => (0..params.ensemble)
            .map(|k| {
                let (held, kept): (Vec<usize>, Vec<usize>) = (0..pool.rows()).partition(|&i| folds[i] == k);
                (pool.select(&kept), pool.select(&held))
            })
            .collect(),
        None => vec![],
    };
    let pos = train.positives() as f64;
    let pos_weight = match params.imbalance {
        Imbalance::PosWeight => (train.rows() as f64 - pos) / pos,
        Imbalance::None => 1.0,
    };
    let mut members = Vec::with_capacity(params.ensemble);
    for k in 0..params.ensemble {
        let (t, v) = parts.get(k).map_or((train, validation), |(t, v)| (t, v));
        members.push(fit_member(params, params.seed.wrapping_add(k as u64), pos_weight, t, v, on_epoch)?);
    }
    // Held-out logits: out-of-fold over the pool, or the ensemble's on the validation rows.
    let (held_out, held_out_y, validation_logits) = match &pool {
        Some(pool) => {
            let mut oof = vec![0f32; pool.rows()];
            for (k, (m, (_, v))) in members.iter().zip(&parts).enumerate() {
                let z = logits(m.model.as_ref(), v)?;
                let rows = (0..pool.rows()).filter(|&i| folds[i] == k);
                for (i, zi) in rows.zip(z) {
                    oof[i] = zi;
                }
            }
            let validation_logits = oof[train.rows()..].to_vec();
            (oof, pool.y.clone(), validation_logits)
        }
        None => (vec![], vec![], vec![]),
    };
    let member_best_epochs = members.iter().map(|m| m.best_epoch).collect();
    let mut members = members.into_iter();
    let first = members.next().expect("ensemble >= 1 (checked)");
    let (history, best_epoch) = (first.history, first.best_epoch);
    let model: Box<dyn ChurnModel> = if params.ensemble == 1 {
        first.model
    } else {
        Box::new(model::Ensemble::new(std::iter::once(first.model).chain(members.map(|m| m.model)).collect()))
    };
    let (calibration, validation_logits) = if pool.is_some() {
        (platt(&held_out, &held_out_y), validation_logits)
    } else {
        let zv = logits(model.as_ref(), validation)?;
        (platt(&zv, &validation.y), zv)
    };
    Ok(Trained { model, history, best_epoch, member_best_epochs, pos_weight, calibration, validation_logits })
}

/// The one training loop: one member from `seed`, best validation epoch restored.
fn fit_member(
    params: &ValidParams,
    seed: u64,
    pos_weight: f64,
    train: &Matrix,
    validation: &Matrix,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> anyhow::Result<Member> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (model, varmap) = model::build(params, train.width, &mut rng)?;
    let mut opt = AdamW::new(
        model::trainable(&varmap),
        ParamsAdamW { lr: params.learning_rate, weight_decay: params.weight_decay, ..Default::default() },
    )?;
    let x = tensor(train)?;
    let y = labels(&train.y)?;
    let xv = tensor(validation)?;
    let yv = labels(&validation.y)?;
    let mut order: Vec<u32> = (0..train.rows() as u32).collect();
    let mut history = Vec::new();
    let (mut best_auc, mut best_epoch, mut best) = (f64::NEG_INFINITY, 0, model::snapshot(&varmap)?);
    for epoch in 1..=params.max_epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for chunk in order.chunks(params.batch_size) {
            if chunk.len() < 2 {
                continue; // batch norm cannot normalise a single row
            }
            let idx = Tensor::from_slice(chunk, chunk.len(), &Device::Cpu)?;
            let (xb, yb) = (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?);
            let z = model.forward(&xb, true, &mut rng)?;
            let loss = weighted_bce(&z, &yb, pos_weight)?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            seen += chunk.len();
        }
        let zv = model.forward(&xv, false, &mut rng)?;
        let validation_loss = weighted_bce(&zv, &yv, pos_weight)?.to_scalar::<f32>()? as f64;
        let validation_auc = roc_auc(&zv.to_vec1::<f32>()?, &validation.y)?;
        if !validation_loss.is_finite() {
            anyhow::bail!("training diverged at epoch {epoch} (validation loss {validation_loss}); lower model.learning_rate");
        }
        let rec = EpochRecord { epoch, train_loss: loss_sum / seen.max(1) as f64, validation_loss, validation_auc };
        on_epoch(&rec);
        history.push(rec);
        if validation_auc > best_auc + 1e-5 {
            (best_auc, best_epoch, best) = (validation_auc, epoch, model::snapshot(&varmap)?);
        } else if epoch - best_epoch >= params.patience {
            break;
        }
    }
    model::restore(&varmap, &best)?;
    Ok(Member { model, history, best_epoch })
}

/// Platt scaling by Newton's method on the log loss, with Platt's smoothed targets
/// (`(N+ + 1)/(N+ + 2)` and `1/(N- + 2)`) so that a separable validation set cannot drive the
/// slope to infinity.
pub fn platt(z: &[f32], y: &[bool]) -> Platt {
    let pos = y.iter().filter(|b| **b).count() as f64;
    let neg = y.len() as f64 - pos;
    let (t_pos, t_neg) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
    let target = |yi: bool| if yi { t_pos } else { t_neg };
    // Cross-entropy against the smoothed targets, in a form that stays finite for large |s|.
    let loss = |a: f64, b: f64| -> f64 {
        z.iter()
            .zip(y)
            .map(|(&zi, &yi)| {
                let s = a * zi as f64 + b;
                let log1p_exp = if s > 0.0 { s + (-s).exp().ln_1p() } else { s.exp().ln_1p() };
                log1p_exp - target(yi) * s
            })
            .sum()
    };
    let (mut a, mut b) = (1.0f64, 0.0f64);
    let mut current = loss(a, b);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for (&zi, &yi) in z.iter().zip(y) {
            let zi = zi as f64;
            let p = sigmoid(a * zi + b);
            let d = p - target(yi);
            let w = p * (1.0 - p);
            ga += d * zi;
            gb += d;
            haa += w * zi * zi;
            hab += w * zi;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-12 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        // A plain Newton step overshoots on well-separated data; backtrack until the loss falls
        // (Lin, Lin & Weng's fix of Platt's original procedure).
        let mut step = 1.0;
        let mut moved = false;
        while step > 1e-10 {
            let (na, nb) = (a - step * da, b - step * db);
            let next = loss(na, nb);
            if next < current + 1e-4 * step * (ga * -da + gb * -db) {
                (a, b, current, moved) = (na, nb, next, true);
                break;
            }
            step /= 2.0;
        }
        if !moved || (step * da).abs() < 1e-10 && (step * db).abs() < 1e-10 {
            break;
        }
    }
    Platt { a, b }
}

/// Calibrated probabilities from logits.
pub fn calibrated(z: &[f32], c: Platt) -> Vec<f32> {
    z.iter().map(|&zi| sigmoid(c.a * zi as f64 + c.b) as f32).collect()
}

/// Dense layers of the trained model with the calibration folded into the last layer, so that
/// the exported graph's sigmoid yields the calibrated probability.
pub fn export_layers(t: &Trained) -> candle_core::Result<Vec<Dense>> {
    let mut layers = t.model.to_dense()?;
    let last = layers.last_mut().expect("at least one layer");
    for w in &mut last.weight {
        *w = (*w as f64 * t.calibration.a) as f32;
    }
    for b in &mut last.bias {
        *b = (*b as f64 * t.calibration.a + t.calibration.b) as f32;
    }
    Ok(layers)
}

/// Candle's calibrated probabilities for a matrix, computed on candle tensors: the reference side
/// of the candle-versus-tract parity check.
pub fn candle_probabilities(t: &Trained, m: &Matrix) -> candle_core::Result<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let z = t.model.forward(&tensor(m)?, false, &mut rng)?;
    let p = candle_nn::ops::sigmoid(&((z * t.calibration.a)? + t.calibration.b)?)?;
    p.to_vec1::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_bce_matches_the_formula() {
        let z = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        let y = Tensor::new(&[1f32, 0.0, 0.0], &Device::Cpu).unwrap();
        let got = weighted_bce(&z, &y, 3.0).unwrap().to_scalar::<f32>().unwrap() as f64;
        let bce = |z: f64, y: f64| -(y * sigmoid(z).ln() + (1.0 - y) * (1.0 - sigmoid(z)).ln());
        let want = (3.0 * bce(0.5, 1.0) + bce(-1.0, 0.0) + bce(2.0, 0.0)) / 3.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn platt_recovers_a_known_scaling() {
        // Labels drawn from p = sigmoid(0.5 z - 1) on a fixed grid, in expectation: use
        // fractional replication (100 copies per z with round(p*100) positives).
        let (mut z, mut y) = (vec![], vec![]);
        for k in -40..=40 {
            let zi = k as f32 / 5.0;
            let pos = (sigmoid(0.5 * zi as f64 - 1.0) * 100.0).round() as usize;
            for j in 0..100 {
                z.push(zi);
                y.push(j < pos);
            }
        }
        let c = platt(&z, &y);
        assert!((c.a - 0.5).abs() < 0.02 && (c.b + 1.0).abs() < 0.03, "{c:?}");
    }
}
