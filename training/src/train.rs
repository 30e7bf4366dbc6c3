//! The one training loop (any [`ChurnModel`]), calibration (Platt scaling, or its spline
//! generalisation), and the export of the trained and calibrated model to the ONNX graph the
//! Lambdas run.

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

/// Why a model could not be trained.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Folds or metrics over the given rows (too few of a class, say).
    #[error(transparent)]
    Data(#[from] churn_core::CoreError),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("training diverged at epoch {epoch} (validation loss {validation_loss}); lower model.learning_rate")]
    Diverged { epoch: usize, validation_loss: f64 },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub validation_loss: f64,
    pub validation_auc: f64,
}

/// The calibration map from the model's logit `z` to the probability:
/// `p = sigmoid(a z + b + Σ_i slopes[i] · max(0, z − knots[i]))`, fitted on held-out logits.
/// Without knots it is Platt scaling; each knot lets the slope change there (a linear spline in
/// the logit), which follows reliability curves a sigmoid cannot (too high at both ends, say)
/// while staying smooth and, as fitted, increasing, so the ranking is the model's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Calibration {
    pub a: f64,
    pub b: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub knots: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slopes: Vec<f64>,
}

impl Calibration {
    /// The calibrated logit of `z`.
    pub fn logit(&self, z: f64) -> f64 {
        self.a * z + self.b + self.knots.iter().zip(&self.slopes).map(|(t, c)| c * (z - t).max(0.0)).sum::<f64>()
    }

    /// Whether the map increases everywhere (every segment's slope is positive).
    fn increasing(&self) -> bool {
        let mut slope = self.a;
        slope > 0.0
            && self.slopes.iter().all(|c| {
                slope += c;
                slope > 0.0
            })
    }

    /// Dense layers computing the calibrated logit from the model's logit (a 1-wide input): the
    /// knots' hinges as ReLU units, and `z` itself as `relu(z) − relu(−z)`. Empty without knots:
    /// Platt's affine map is folded into the model's last layer instead.
    fn head(&self) -> Vec<Dense> {
        if self.knots.is_empty() {
            return vec![];
        }
        let k = self.knots.len();
        let mut w1 = vec![1.0f32, -1.0];
        w1.extend(std::iter::repeat_n(1.0, k));
        let mut b1 = vec![0.0f32, 0.0];
        b1.extend(self.knots.iter().map(|t| -t as f32));
        let mut w2 = vec![self.a as f32, -self.a as f32];
        w2.extend(self.slopes.iter().map(|&c| c as f32));
        vec![
            Dense { weight: w1, bias: b1, inputs: 1, outputs: k + 2, relu: true },
            Dense { weight: w2, bias: vec![self.b as f32], inputs: k + 2, outputs: 1, relu: false },
        ]
    }
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
    pub calibration: Calibration,
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
) -> Result<Trained, TrainError> {
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
        members.push(fit_member(params, params.seed.wrapping_add(k as u64), pos_weight, t, Stop::Early(v), on_epoch)?);
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
    let member_best_epochs: Vec<usize> = members.iter().map(|m| m.best_epoch).collect();
    if let (Some(pool), true) = (&pool, params.refit) {
        for (k, m) in members.iter_mut().enumerate() {
            let stop = Stop::After(member_best_epochs[k].max(1));
            m.model = fit_member(params, params.seed.wrapping_add(k as u64), pos_weight, pool, stop, on_epoch)?.model;
        }
    }
    let mut members = members.into_iter();
    let first = members.next().expect("ensemble >= 1 (checked)");
    let (history, best_epoch) = (first.history, first.best_epoch);
    let model: Box<dyn ChurnModel> = if params.ensemble == 1 {
        first.model
    } else {
        Box::new(model::Ensemble::new(std::iter::once(first.model).chain(members.map(|m| m.model)).collect()))
    };
    let (calibration, validation_logits) = if pool.is_some() {
        (calibrate(&held_out, &held_out_y, params.calibration_knots), validation_logits)
    } else {
        let zv = logits(model.as_ref(), validation)?;
        (calibrate(&zv, &validation.y, params.calibration_knots), zv)
    };
    Ok(Trained { model, history, best_epoch, member_best_epochs, pos_weight, calibration, validation_logits })
}

/// When a member's training stops.
enum Stop<'a> {
    /// After `patience` epochs without a better ROC AUC on these rows; the best epoch is kept.
    Early(&'a Matrix),
    /// After this many epochs (a refit, whose epochs a run with early stopping chose).
    After(usize),
}

/// The one training loop: one member from `seed`; with early stopping, its best validation
/// epoch restored.
fn fit_member(
    params: &ValidParams,
    seed: u64,
    pos_weight: f64,
    train: &Matrix,
    stop: Stop,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<Member, TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (model, varmap) = model::build(params, train.width, &mut rng)?;
    let mut opt = AdamW::new(
        model::trainable(&varmap),
        ParamsAdamW { lr: params.learning_rate, weight_decay: params.weight_decay, ..Default::default() },
    )?;
    let x = tensor(train)?;
    let y = labels(&train.y)?;
    let (held, epochs) = match stop {
        Stop::Early(v) => (Some((tensor(v)?, labels(&v.y)?, &v.y)), params.max_epochs),
        Stop::After(n) => (None, n),
    };
    let mut order: Vec<u32> = (0..train.rows() as u32).collect();
    let mut history = Vec::new();
    let (mut best_auc, mut best_epoch, mut best) = (f64::NEG_INFINITY, epochs, None);
    for epoch in 1..=epochs {
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
        let Some((xv, yv, labels)) = &held else { continue };
        let zv = model.forward(xv, false, &mut rng)?;
        let validation_loss = weighted_bce(&zv, yv, pos_weight)?.to_scalar::<f32>()? as f64;
        let validation_auc = roc_auc(&zv.to_vec1::<f32>()?, labels)?;
        if !validation_loss.is_finite() {
            return Err(TrainError::Diverged { epoch, validation_loss });
        }
        let rec = EpochRecord { epoch, train_loss: loss_sum / seen.max(1) as f64, validation_loss, validation_auc };
        on_epoch(&rec);
        history.push(rec);
        if validation_auc > best_auc + 1e-5 || best.is_none() {
            (best_auc, best_epoch, best) = (validation_auc, epoch, Some(model::snapshot(&varmap)?));
        } else if epoch - best_epoch >= params.patience {
            break;
        }
    }
    if let Some(best) = best {
        model::restore(&varmap, &best)?;
    }
    Ok(Member { model, history, best_epoch })
}

/// Fits the [`Calibration`] with `knots` knots (at evenly spaced quantiles of `z`) by Newton's
/// method on the log loss, with Platt's smoothed targets (`(N+ + 1)/(N+ + 2)` and
/// `1/(N- + 2)`) so that a separable set cannot drive the slope to infinity. A spline that
/// would not increase everywhere (too few rows between knots) falls back to Platt scaling.
pub fn calibrate(z: &[f32], y: &[bool], knots: usize) -> Calibration {
    let mut sorted: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    sorted.sort_by(f64::total_cmp);
    let mut at: Vec<f64> = (1..=knots).map(|i| sorted.get(i * sorted.len() / (knots + 1)).copied().unwrap_or(0.0)).collect();
    at.dedup();
    if at.len() == knots && knots > 0 {
        let spline = fit_hinges(z, y, &at);
        if spline.increasing() {
            return spline;
        }
    }
    fit_hinges(z, y, &[])
}

/// Newton's method for `sigmoid(a z + b + Σ c_i relu(z − t_i))` against the smoothed targets,
/// with a backtracking line search (Lin, Lin & Weng's fix of Platt's original procedure: a
/// plain Newton step overshoots on well-separated data).
fn fit_hinges(z: &[f32], y: &[bool], knots: &[f64]) -> Calibration {
    let n_params = knots.len() + 2;
    let pos = y.iter().filter(|b| **b).count() as f64;
    let neg = y.len() as f64 - pos;
    let (t_pos, t_neg) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
    let target = |yi: bool| if yi { t_pos } else { t_neg };
    // Features of one logit: z, 1, then the hinges.
    let features = |zi: f64, f: &mut Vec<f64>| {
        f.clear();
        f.push(zi);
        f.push(1.0);
        f.extend(knots.iter().map(|t| (zi - t).max(0.0)));
    };
    let mut f = Vec::with_capacity(n_params);
    // Cross-entropy against the smoothed targets, in a form that stays finite for large |s|.
    let mut loss = |theta: &[f64]| -> f64 {
        z.iter()
            .zip(y)
            .map(|(&zi, &yi)| {
                features(zi as f64, &mut f);
                let s: f64 = f.iter().zip(theta).map(|(a, b)| a * b).sum();
                let log1p_exp = if s > 0.0 { s + (-s).exp().ln_1p() } else { s.exp().ln_1p() };
                log1p_exp - target(yi) * s
            })
            .sum()
    };
    let mut theta = vec![0.0; n_params];
    theta[0] = 1.0;
    let mut current = loss(&theta);
    let mut f = Vec::with_capacity(n_params);
    for _ in 0..100 {
        let mut g = vec![0.0; n_params];
        let mut h = vec![0.0; n_params * n_params];
        for i in 0..n_params {
            h[i * n_params + i] = 1e-9;
        }
        for (&zi, &yi) in z.iter().zip(y) {
            features(zi as f64, &mut f);
            let s: f64 = f.iter().zip(&theta).map(|(a, b)| a * b).sum();
            let p = sigmoid(s);
            let (d, w) = (p - target(yi), p * (1.0 - p));
            for i in 0..n_params {
                g[i] += d * f[i];
                for j in 0..n_params {
                    h[i * n_params + j] += w * f[i] * f[j];
                }
            }
        }
        let Some(step_dir) = solve(h, g.clone(), n_params) else { break };
        let mut step = 1.0;
        let mut moved = false;
        let decrease: f64 = g.iter().zip(&step_dir).map(|(a, b)| -a * b).sum();
        while step > 1e-10 {
            let next_theta: Vec<f64> = theta.iter().zip(&step_dir).map(|(t, d)| t - step * d).collect();
            let next = loss(&next_theta);
            if next < current + 1e-4 * step * decrease {
                (theta, current, moved) = (next_theta, next, true);
                break;
            }
            step /= 2.0;
        }
        if !moved || step_dir.iter().all(|d| (step * d).abs() < 1e-10) {
            break;
        }
    }
    Calibration { a: theta[0], b: theta[1], knots: knots.to_vec(), slopes: theta[2..].to_vec() }
}

/// Solves `h x = g` (`h` symmetric positive definite, `n × n`, row-major) by Gaussian
/// elimination with partial pivoting; `None` when singular. Written here because the system
/// has at most a few dozen unknowns and the workspace has no linear-algebra crate.
fn solve(mut h: Vec<f64>, mut g: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for col in 0..n {
        let pivot = (col..n).max_by(|&a, &b| h[a * n + col].abs().total_cmp(&h[b * n + col].abs()))?;
        if h[pivot * n + col].abs() < 1e-12 {
            return None;
        }
        if pivot != col {
            for k in 0..n {
                h.swap(col * n + k, pivot * n + k);
            }
            g.swap(col, pivot);
        }
        for row in col + 1..n {
            let factor = h[row * n + col] / h[col * n + col];
            for k in col..n {
                h[row * n + k] -= factor * h[col * n + k];
            }
            g[row] -= factor * g[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| h[row * n + k] * x[k]).sum();
        x[row] = (g[row] - tail) / h[row * n + row];
    }
    Some(x)
}

/// Calibrated probabilities from logits.
pub fn calibrated(z: &[f32], c: &Calibration) -> Vec<f32> {
    z.iter().map(|&zi| sigmoid(c.logit(zi as f64)) as f32).collect()
}

/// Dense layers of the trained model and its calibration, so that the exported graph's sigmoid
/// yields the calibrated probability: Platt's affine map folded into the model's last layer,
/// a spline as two more layers after the model's logit (`Calibration::head`).
pub fn export_layers(t: &Trained) -> candle_core::Result<Vec<Dense>> {
    let mut layers = t.model.to_dense()?;
    let head = t.calibration.head();
    if head.is_empty() {
        let last = layers.last_mut().expect("at least one layer");
        for w in &mut last.weight {
            *w = (*w as f64 * t.calibration.a) as f32;
        }
        for b in &mut last.bias {
            *b = (*b as f64 * t.calibration.a + t.calibration.b) as f32;
        }
    }
    layers.extend(head);
    Ok(layers)
}

/// Candle's calibrated probabilities for a matrix, computed on candle tensors: the reference side
/// of the candle-versus-tract parity check.
pub fn candle_probabilities(t: &Trained, m: &Matrix) -> candle_core::Result<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let z = t.model.forward(&tensor(m)?, false, &mut rng)?;
    let c = &t.calibration;
    let mut s = ((&z * c.a)? + c.b)?;
    for (&knot, &slope) in c.knots.iter().zip(&c.slopes) {
        s = (s + ((&z - knot)?.relu()? * slope)?)?;
    }
    candle_nn::ops::sigmoid(&s)?.to_vec1::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::TrainParams;

    #[test]
    fn weighted_bce_matches_the_formula() {
        let z = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        let y = Tensor::new(&[1f32, 0.0, 0.0], &Device::Cpu).unwrap();
        let got = weighted_bce(&z, &y, 3.0).unwrap().to_scalar::<f32>().unwrap() as f64;
        let bce = |z: f64, y: f64| -(y * sigmoid(z).ln() + (1.0 - y) * (1.0 - sigmoid(z)).ln());
        let want = (3.0 * bce(0.5, 1.0) + bce(-1.0, 0.0) + bce(2.0, 0.0)) / 3.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    /// Labels drawn (in expectation) from a reliability curve no sigmoid follows: the spline
    /// calibration fits it far better than Platt scaling, stays increasing, and its exported
    /// head computes the same calibrated logit.
    #[test]
    fn spline_calibration_follows_a_bent_reliability_curve() {
        let truth = |z: f64| if z < 0.0 { 0.3 * z - 1.0 } else { 2.0 * z - 1.0 };
        let (mut z, mut y) = (vec![], vec![]);
        for k in -40..=40 {
            let zi = k as f32 / 10.0;
            let pos = (sigmoid(truth(zi as f64)) * 200.0).round() as usize;
            for j in 0..200 {
                z.push(zi);
                y.push(j < pos);
            }
        }
        let err = |c: &Calibration| {
            (-40..=40).map(|k| (sigmoid(c.logit(k as f64 / 10.0)) - sigmoid(truth(k as f64 / 10.0))).abs()).fold(0.0, f64::max)
        };
        let (spline, plain) = (calibrate(&z, &y, 5), calibrate(&z, &y, 0));
        assert_eq!(spline.knots.len(), 5);
        assert!(spline.increasing());
        assert!(err(&spline) < 0.03 && err(&plain) > 0.08, "spline {} Platt {}", err(&spline), err(&plain));
        // The head as dense layers: relu(z), relu(-z), hinges, then the linear combination.
        let head = spline.head();
        for zi in [-3.7f32, -0.2, 0.0, 0.9, 3.3] {
            let hidden: Vec<f32> = (0..head[0].outputs).map(|o| (head[0].weight[o] * zi + head[0].bias[o]).max(0.0)).collect();
            let out = hidden.iter().zip(&head[1].weight).map(|(a, b)| a * b).sum::<f32>() + head[1].bias[0];
            assert!((out as f64 - spline.logit(zi as f64)).abs() < 1e-4, "{zi}: {out} vs {}", spline.logit(zi as f64));
        }
    }

    /// A small noisy table: the label is `x0 + x1 > 0` with some labels flipped.
    fn noisy(rows: usize, seed: u64) -> Matrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut x, mut y) = (vec![], vec![]);
        for _ in 0..rows {
            let r: [f32; 3] = std::array::from_fn(|_| rand::Rng::random_range(&mut rng, -1.0..1.0));
            x.extend(r);
            y.push((r[0] + r[1] > 0.0) != rand::Rng::random_bool(&mut rng, 0.1));
        }
        Matrix { x, y, width: 3 }
    }

    /// A refit keeps the cross-fitted run's epochs and calibration and serves members retrained
    /// on the whole pool for exactly those epochs.
    #[test]
    fn a_refit_serves_members_retrained_on_the_pool_for_their_best_epochs() {
        let (train, validation) = (noisy(240, 1), noisy(80, 2));
        let params =
            |refit| TrainParams { hidden: vec![4], ensemble: 2, max_epochs: 40, patience: 4, batch_size: 32, refit, ..Default::default() };
        let (plain, refit) = (params(false).check().unwrap(), params(true).check().unwrap());
        let (a, b) = (fit(&plain, &train, &validation, &mut |_| {}).unwrap(), fit(&refit, &train, &validation, &mut |_| {}).unwrap());
        assert_eq!(a.member_best_epochs, b.member_best_epochs);
        assert_eq!(a.validation_logits, b.validation_logits, "out-of-fold logits come from the cross-fitted members");
        assert_eq!((a.calibration.a, a.calibration.b), (b.calibration.a, b.calibration.b));
        let pool = train.concat(&validation);
        let served = logits(b.model.as_ref(), &pool).unwrap();
        assert_ne!(served, logits(a.model.as_ref(), &pool).unwrap());
        let pos_weight = b.pos_weight;
        let members: Vec<Vec<f32>> = (0..2)
            .map(|k| {
                let m = fit_member(&refit, refit.seed + k as u64, pos_weight, &pool, Stop::After(b.member_best_epochs[k]), &mut |_| {})
                    .unwrap();
                logits(m.model.as_ref(), &pool).unwrap()
            })
            .collect();
        for (i, s) in served.iter().enumerate() {
            let mean = (members[0][i] + members[1][i]) / 2.0;
            assert!((s - mean).abs() < 1e-5, "row {i}: served {s}, members' mean {mean}");
        }
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
        let c = calibrate(&z, &y, 0);
        assert!((c.a - 0.5).abs() < 0.02 && (c.b + 1.0).abs() < 0.03, "{c:?}");
    }
}
