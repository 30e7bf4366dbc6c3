//! Evaluation metrics for a binary churn model: discrimination (ROC AUC, PR AUC), threshold
//! metrics, probability quality (log loss, Brier, expected calibration error), ranking (lift and
//! capture in the top decile) and the business view driven by the [`Playbook`].
//!
//! Conventions follow scikit-learn so figures can be compared: ROC AUC with average ranks for
//! ties, PR AUC as average precision (step-wise, no interpolation), predictions `p >= threshold`
//! are positive, ECE over 10 equal-width bins weighted by bin size. Beside the ECE: the ECE a
//! perfectly calibrated model would show on as many rows (sampling noise; [`calibration_noise`]).

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::playbook::Playbook;

fn check(p: &[f32], y: &[bool]) -> Result<(usize, usize)> {
    if p.len() != y.len() {
        return Err(CoreError::LengthMismatch { left: p.len(), left_what: "predictions", right: y.len(), right_what: "labels" });
    }
    let pos = y.iter().filter(|v| **v).count();
    if pos == 0 || pos == y.len() {
        return Err(CoreError::OneClass { labels: y.len(), positive: pos != 0 });
    }
    Ok((pos, y.len() - pos))
}

/// Indices sorted by descending score (stable: ties keep input order).
fn order_desc(p: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
    idx
}

/// 1-based ranks of `v`, ties sharing their mean rank (the ranks of Mann–Whitney U and of
/// Spearman's correlation).
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|a, b| v[*a].total_cmp(&v[*b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for k in &idx[i..=j] {
            ranks[*k] = avg_rank;
        }
        i = j + 1;
    }
    ranks
}

/// Area under the ROC curve (Mann–Whitney U with average ranks for ties).
pub fn roc_auc(p: &[f32], y: &[bool]) -> Result<f64> {
    let (pos, neg) = check(p, y)?;
    // f32 -> f64 is exact: the order and the ties are those of `p`.
    let p: Vec<f64> = p.iter().map(|x| f64::from(*x)).collect();
    let rank_sum_pos: f64 = average_ranks(&p).iter().zip(y).filter(|(_, y)| **y).map(|(r, _)| r).sum();
    Ok((rank_sum_pos - (pos * (pos + 1)) as f64 / 2.0) / (pos as f64 * neg as f64))
}

/// Average precision: sum over thresholds of (recall step) × precision, as scikit-learn.
pub fn average_precision(p: &[f32], y: &[bool]) -> Result<f64> {
    let (pos, _) = check(p, y)?;
    let idx = order_desc(p);
    let (mut tp, mut fp, mut ap, mut prev_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && p[idx[j]] == p[idx[i]] {
            if y[idx[j]] {
                tp += 1
            } else {
                fp += 1
            }
            j += 1;
        }
        let recall = tp as f64 / pos as f64;
        ap += (recall - prev_recall) * tp as f64 / (tp + fp) as f64;
        prev_recall = recall;
        i = j;
    }
    Ok(ap)
}

pub fn log_loss(p: &[f32], y: &[bool]) -> Result<f64> {
    check(p, y)?;
    let eps = 1e-15;
    let s: f64 = p
        .iter()
        .zip(y)
        .map(|(p, y)| {
            let p = (*p as f64).clamp(eps, 1.0 - eps);
            if *y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    Ok(s / p.len() as f64)
}

pub fn brier(p: &[f32], y: &[bool]) -> Result<f64> {
    check(p, y)?;
    Ok(p.iter().zip(y).map(|(p, y)| (*p as f64 - if *y { 1.0 } else { 0.0 }).powi(2)).sum::<f64>() / p.len() as f64)
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub mean_predicted: f64,
    pub fraction_positive: f64,
}

/// Which of `bins` equal-width bins over `[0, 1]` holds probability `p` (1 in the last). Shared
/// by calibration, the batch summary's histogram and the API's metric lines, so that every
/// probability histogram the project shows cuts at the same edges.
pub fn probability_bin(p: f64, bins: usize) -> usize {
    ((p * bins as f64) as usize).min(bins - 1)
}

pub fn calibration_bins(p: &[f32], y: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let mut sum_p = vec![0.0; bins];
    let mut pos = vec![0usize; bins];
    let mut n = vec![0usize; bins];
    for (p, y) in p.iter().zip(y) {
        let b = probability_bin(*p as f64, bins);
        sum_p[b] += *p as f64;
        n[b] += 1;
        pos[b] += *y as usize;
    }
    (0..bins)
        .map(|b| CalibrationBin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            count: n[b],
            mean_predicted: if n[b] > 0 { sum_p[b] / n[b] as f64 } else { 0.0 },
            fraction_positive: if n[b] > 0 { pos[b] as f64 / n[b] as f64 } else { 0.0 },
        })
        .collect()
}

/// Expected calibration error over 10 equal-width bins.
pub fn expected_calibration_error(p: &[f32], y: &[bool]) -> Result<f64> {
    check(p, y)?;
    let total = p.len() as f64;
    Ok(calibration_bins(p, y, 10).iter().map(|b| b.count as f64 / total * (b.fraction_positive - b.mean_predicted).abs()).sum())
}

/// What calibration error sampling noise alone gives on these rows: labels drawn from the
/// model's own probabilities are perfectly calibrated by construction, so the expected
/// calibration error they show is the floor an observed ECE has to be read against
/// (consistency resampling, Bröcker & Smith 2007, "Increasing the reliability of reliability
/// diagrams"). On ~1,000 test rows that floor is near 0.03: an ECE inside the resampled range
/// cannot be told apart from perfect calibration on this many rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationNoise {
    /// Label sets drawn.
    pub draws: usize,
    /// Mean ECE over the draws.
    pub ece_mean: f64,
    /// 90th percentile of the ECE over the draws: a model whose ECE is above it is miscalibrated
    /// beyond what these rows can show by chance (at 10 % false alarms).
    pub ece_p90: f64,
    /// The 10-bin reliability diagram's consistency band: per non-empty bin, its mean predicted
    /// probability and the 5th and 95th percentiles of the churn rate it would show if calibrated.
    pub bands: Vec<(f64, f64, f64)>,
}

/// Seed of the label draws: fixed, so that the floor is a property of the predictions only.
const NOISE_SEED: u64 = 0x0ece_5eed;
/// Draws × rows budget: ~500 draws on a test split, fewer (at least 20) on millions of rows.
const NOISE_BUDGET: usize = 10_000_000;

/// [`CalibrationNoise`] of predictions `p` (no labels needed: the draws are the labels).
pub fn calibration_noise(p: &[f32]) -> CalibrationNoise {
    use rand::{Rng, SeedableRng};
    const BINS: usize = 10;
    let draws = (NOISE_BUDGET / p.len().max(1)).clamp(20, 500);
    let bin: Vec<usize> = p.iter().map(|&v| probability_bin(v as f64, BINS)).collect();
    let mut n = [0usize; BINS];
    let mut sum_p = [0.0f64; BINS];
    for (&b, &v) in bin.iter().zip(p) {
        n[b] += 1;
        sum_p[b] += v as f64;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(NOISE_SEED);
    let mut eces = Vec::with_capacity(draws);
    let mut rates: Vec<Vec<f64>> = (0..BINS).map(|_| Vec::with_capacity(draws)).collect();
    for _ in 0..draws {
        let mut pos = [0usize; BINS];
        for (&b, &v) in bin.iter().zip(p) {
            pos[b] += (rng.random::<f64>() < v as f64) as usize;
        }
        let mut ece = 0.0;
        for b in (0..BINS).filter(|&b| n[b] > 0) {
            let rate = pos[b] as f64 / n[b] as f64;
            ece += n[b] as f64 / p.len() as f64 * (rate - sum_p[b] / n[b] as f64).abs();
            rates[b].push(rate);
        }
        eces.push(ece);
    }
    let quantile = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v.get(((v.len().saturating_sub(1)) as f64 * q).round() as usize).copied().unwrap_or(0.0)
    };
    let bands = (0..BINS)
        .filter(|&b| n[b] > 0)
        .map(|b| (sum_p[b] / n[b] as f64, quantile(&mut rates[b], 0.05), quantile(&mut rates[b], 0.95)))
        .collect();
    CalibrationNoise {
        draws,
        ece_mean: if eces.is_empty() { 0.0 } else { eces.iter().sum::<f64>() / eces.len() as f64 },
        ece_p90: quantile(&mut eces, 0.9),
        bands,
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Confusion {
    pub threshold: f64,
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    pub fn_: usize,
}

impl Confusion {
    pub fn at(p: &[f32], y: &[bool], threshold: f64) -> Self {
        let mut c = Confusion { threshold, tp: 0, fp: 0, tn: 0, fn_: 0 };
        for (p, y) in p.iter().zip(y) {
            match ((*p as f64) >= threshold, *y) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }
    fn ratio(a: usize, b: usize) -> f64 {
        if b == 0 { 0.0 } else { a as f64 / b as f64 }
    }
    pub fn accuracy(&self) -> f64 {
        Self::ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn_)
    }
    pub fn precision(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fn_)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
}

/// Threshold metrics at one threshold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThresholdMetrics {
    pub threshold: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub confusion: Confusion,
}

impl ThresholdMetrics {
    pub fn at(p: &[f32], y: &[bool], threshold: f64) -> Self {
        let c = Confusion::at(p, y, threshold);
        ThresholdMetrics { threshold, accuracy: c.accuracy(), precision: c.precision(), recall: c.recall(), f1: c.f1(), confusion: c }
    }
}

/// Lift and capture rate of the `fraction` highest-scored customers.
pub fn lift_and_capture(p: &[f32], y: &[bool], fraction: f64) -> Result<(f64, f64)> {
    let (pos, _) = check(p, y)?;
    let idx = order_desc(p);
    let k = ((p.len() as f64 * fraction).ceil() as usize).clamp(1, p.len());
    let hits = idx[..k].iter().filter(|i| y[**i]).count();
    let base = pos as f64 / p.len() as f64;
    Ok((hits as f64 / k as f64 / base, hits as f64 / pos as f64))
}

/// Cumulative gains: for each decile of customers by score, the share of all churners captured.
pub fn gains(p: &[f32], y: &[bool]) -> Vec<(f64, f64)> {
    let idx = order_desc(p);
    let pos = y.iter().filter(|v| **v).count().max(1);
    let mut out = vec![(0.0, 0.0)];
    let mut hits = 0;
    for (k, i) in idx.iter().enumerate() {
        hits += y[*i] as usize;
        let share = (k + 1) as f64 / idx.len() as f64;
        let prev = out.last().map(|x| x.0).unwrap_or(0.0);
        if share - prev >= 0.01 || k + 1 == idx.len() {
            out.push((share, hits as f64 / pos as f64));
        }
    }
    out
}

/// Counts of (true positives, false positives) among the rows scored at or above each distinct
/// score, from the highest score down.
fn counts_at_thresholds(p: &[f32], y: &[bool]) -> Vec<(f64, f64)> {
    let idx = order_desc(p);
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = Vec::new();
    for (k, i) in idx.iter().enumerate() {
        if y[*i] {
            tp += 1.0
        } else {
            fp += 1.0
        }
        if k + 1 == idx.len() || p[idx[k + 1]] != p[*i] {
            out.push((tp, fp));
        }
    }
    out
}

/// ROC curve points (false positive rate, true positive rate) at every distinct score.
pub fn roc_curve(p: &[f32], y: &[bool]) -> Vec<(f64, f64)> {
    let pos = y.iter().filter(|v| **v).count().max(1) as f64;
    let neg = (y.len() as f64 - pos).max(1.0);
    let points = counts_at_thresholds(p, y).into_iter().map(|(tp, fp)| (fp / neg, tp / pos));
    std::iter::once((0.0, 0.0)).chain(points).collect()
}

/// Precision–recall curve points (recall, precision) at every distinct score.
pub fn pr_curve(p: &[f32], y: &[bool]) -> Vec<(f64, f64)> {
    let pos = y.iter().filter(|v| **v).count().max(1) as f64;
    counts_at_thresholds(p, y).into_iter().map(|(tp, fp)| (tp / pos, tp / (tp + fp))).collect()
}

/// Realised campaign profit of contacting everyone with `p >= threshold`, using true labels:
/// each contacted churner is kept with the playbook's success rate.
pub fn realised_profit(p: &[f32], y: &[bool], threshold: f64, playbook: &Playbook) -> f64 {
    let b = &playbook.business;
    let c = Confusion::at(p, y, threshold);
    c.tp as f64 * b.success_rate * b.value_per_retained_customer - (c.tp + c.fp) as f64 * b.cost_per_contact
}

/// Profit for thresholds 0.01, 0.02, … 0.99.
pub fn profit_curve(p: &[f32], y: &[bool], playbook: &Playbook) -> Vec<(f64, f64)> {
    (1..100).map(|t| t as f64 / 100.0).map(|t| (t, realised_profit(p, y, t, playbook))).collect()
}

/// The threshold (on the 0.01 grid) that maximises realised profit; ties pick the higher one
/// (fewer contacts for the same money).
pub fn best_profit_threshold(p: &[f32], y: &[bool], playbook: &Playbook) -> (f64, f64) {
    profit_curve(p, y, playbook).into_iter().fold((0.5, f64::NEG_INFINITY), |best, (t, v)| if v >= best.1 { (t, v) } else { best })
}

/// Business figures of one risk tier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TierFigures {
    pub tier: String,
    pub action: String,
    pub customers: usize,
    pub churners: usize,
    pub churn_rate: f64,
    /// Sum over the tier of the expected value of contacting (from the probabilities).
    pub expected_profit: f64,
    /// Profit from the true labels if the tier is contacted.
    pub realised_profit: f64,
    /// realised profit / contact cost (0 for a tier that is not contacted).
    pub roi: f64,
}

pub fn tier_figures(p: &[f32], y: &[bool], playbook: &Playbook) -> Vec<TierFigures> {
    let b = &playbook.business;
    playbook
        .tiers
        .iter()
        .map(|t| {
            let members: Vec<usize> = (0..p.len()).filter(|i| playbook.tier(p[*i] as f64).name == t.name).collect();
            let churners = members.iter().filter(|i| y[**i]).count();
            let cost = if t.contact { members.len() as f64 * b.cost_per_contact } else { 0.0 };
            let realised = if t.contact { churners as f64 * b.success_rate * b.value_per_retained_customer - cost } else { 0.0 };
            let expected = if t.contact { members.iter().map(|i| playbook.expected_value(p[*i] as f64)).sum() } else { 0.0 };
            TierFigures {
                tier: t.name.clone(),
                action: t.action.clone(),
                customers: members.len(),
                churners,
                churn_rate: if members.is_empty() { 0.0 } else { churners as f64 / members.len() as f64 },
                expected_profit: expected,
                realised_profit: realised,
                roi: if cost > 0.0 { realised / cost } else { 0.0 },
            }
        })
        .collect()
}

/// Every figure of one evaluation, as written to `metrics.json` and printed by the CLI.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evaluation {
    pub rows: usize,
    pub positives: usize,
    pub base_rate: f64,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub log_loss: f64,
    pub brier: f64,
    pub ece: f64,
    /// Mean ECE a perfectly calibrated model would show on these rows ([`calibration_noise`]).
    #[serde(default)]
    pub ece_floor: f64,
    /// Its 90th percentile: an `ece` above it is miscalibration these rows can show.
    #[serde(default)]
    pub ece_floor_p90: f64,
    pub top_decile_lift: f64,
    pub top_decile_capture: f64,
    /// At the model's chosen threshold.
    pub at_threshold: ThresholdMetrics,
    pub at_half: ThresholdMetrics,
    pub profit_at_threshold: f64,
    /// The best threshold on this data, for comparison with the chosen one.
    pub best_profit_threshold: f64,
    pub best_profit: f64,
    pub tiers: Vec<TierFigures>,
}

/// How much the figures of a model move from one sample of customers to another of the same
/// size: standard deviations over bootstrap resamples of the rows (Efron). The concept-drift
/// check compares figures against this spread instead of a fixed margin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FigureSpread {
    pub rows: usize,
    pub resamples: usize,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub brier: f64,
    /// Of the ECE's excess over its sampling floor (what the drift check compares).
    pub ece_excess: f64,
}

/// Seed of the resamples: fixed, so that the spread is a property of the rows only.
const BOOTSTRAP_SEED: u64 = 0xb007;

/// [`FigureSpread`] of predictions `p` against labels `y` from `resamples` bootstrap resamples
/// (resamples that draw one class only are drawn again).
pub fn bootstrap_spread(p: &[f32], y: &[bool], resamples: usize) -> Result<FigureSpread> {
    use rand::{Rng, SeedableRng};
    check(p, y)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    let n = p.len();
    let (mut bp, mut by) = (vec![0.0f32; n], vec![false; n]);
    let mut figures: [Vec<f64>; 4] = Default::default();
    while figures[0].len() < resamples {
        for i in 0..n {
            let j = rng.random_range(0..n);
            (bp[i], by[i]) = (p[j], y[j]);
        }
        if check(&bp, &by).is_err() {
            continue;
        }
        figures[0].push(roc_auc(&bp, &by)?);
        figures[1].push(average_precision(&bp, &by)?);
        figures[2].push(brier(&bp, &by)?);
        figures[3].push(expected_calibration_error(&bp, &by)?);
    }
    let sd = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64).sqrt()
    };
    Ok(FigureSpread {
        rows: n,
        resamples,
        roc_auc: sd(&figures[0]),
        pr_auc: sd(&figures[1]),
        brier: sd(&figures[2]),
        ece_excess: sd(&figures[3]),
    })
}

impl Evaluation {
    pub fn compute(p: &[f32], y: &[bool], threshold: f64, playbook: &Playbook) -> Result<Self> {
        let (pos, _) = check(p, y)?;
        let (lift, capture) = lift_and_capture(p, y, 0.1)?;
        let (bt, bp) = best_profit_threshold(p, y, playbook);
        let noise = calibration_noise(p);
        Ok(Evaluation {
            rows: p.len(),
            positives: pos,
            base_rate: pos as f64 / p.len() as f64,
            roc_auc: roc_auc(p, y)?,
            pr_auc: average_precision(p, y)?,
            log_loss: log_loss(p, y)?,
            brier: brier(p, y)?,
            ece: expected_calibration_error(p, y)?,
            ece_floor: noise.ece_mean,
            ece_floor_p90: noise.ece_p90,
            top_decile_lift: lift,
            top_decile_capture: capture,
            at_threshold: ThresholdMetrics::at(p, y, threshold),
            at_half: ThresholdMetrics::at(p, y, 0.5),
            profit_at_threshold: realised_profit(p, y, threshold, playbook),
            best_profit_threshold: bt,
            best_profit: bp,
            tiers: tier_figures(p, y, playbook),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_unusable_labels_are_errors_a_caller_can_match() {
        let e = roc_auc(&[0.1, 0.2], &[true]).unwrap_err();
        assert!(matches!(e, CoreError::LengthMismatch { left: 2, right: 1, .. }), "{e}");
        assert_eq!(e.to_string(), "2 predictions for 1 labels");
        let e = roc_auc(&[0.1, 0.2], &[false, false]).unwrap_err();
        assert!(matches!(e, CoreError::OneClass { labels: 2, positive: false }), "{e}");
    }

    #[test]
    fn bootstrap_spread_shrinks_with_the_square_root_of_the_rows() {
        // A fixed score pattern repeated: 4x the rows should halve every spread.
        let base_p = [0.1f32, 0.2, 0.3, 0.45, 0.5, 0.6, 0.7, 0.85, 0.9, 0.35];
        let base_y = [false, false, true, false, true, false, true, true, true, false];
        let spread = |copies: usize| {
            let p: Vec<f32> = (0..copies).flat_map(|_| base_p).collect();
            let y: Vec<bool> = (0..copies).flat_map(|_| base_y).collect();
            bootstrap_spread(&p, &y, 400).unwrap()
        };
        let (small, large) = (spread(50), spread(200));
        assert_eq!((small.rows, small.resamples), (500, 400));
        for (a, b) in [(small.roc_auc, large.roc_auc), (small.pr_auc, large.pr_auc), (small.brier, large.brier)] {
            assert!(a > 0.0 && (a / b - 2.0).abs() < 0.3, "{a} vs {b}");
        }
        assert_eq!(spread(50), small, "seeded");
    }

    #[test]
    fn probability_bins_have_closed_lower_edges_and_hold_one_in_the_last() {
        let bins: Vec<usize> = [0.0, 0.0999, 0.1, 0.55, 0.9, 0.999, 1.0].iter().map(|&p| probability_bin(p, 10)).collect();
        assert_eq!(bins, [0, 0, 1, 5, 9, 9, 9]);
    }

    // Reference values from scikit-learn 1.5 on these arrays:
    //   roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75
    //   average_precision_score(same) = 0.8333333333333333
    //   log_loss(same) = 0.47228795787705
    //   brier_score_loss(same) = 0.158125
    const Y: [bool; 4] = [false, false, true, true];
    const P: [f32; 4] = [0.1, 0.4, 0.35, 0.8];

    #[test]
    fn against_scikit_learn() {
        assert!((roc_auc(&P, &Y).unwrap() - 0.75).abs() < 1e-12);
        assert!((average_precision(&P, &Y).unwrap() - 0.833_333_333_333_333_3).abs() < 1e-9);
        assert!((log_loss(&P, &Y).unwrap() - 0.472_287_957_877_05).abs() < 1e-6);
        assert!((brier(&P, &Y).unwrap() - 0.158_125).abs() < 1e-6);
    }

    #[test]
    fn ties_get_average_ranks() {
        // roc_auc_score([0,1,0,1],[0.5,0.5,0.2,0.9]) = 0.875 in scikit-learn
        let y = [false, true, false, true];
        let p = [0.5, 0.5, 0.2, 0.9];
        assert!((roc_auc(&p, &y).unwrap() - 0.875).abs() < 1e-12);
        // average_precision_score(same) = 0.8333333333333333
        assert!((average_precision(&p, &y).unwrap() - 0.833_333_333_333_333_3).abs() < 1e-9);
    }

    #[test]
    fn threshold_metrics() {
        // precision/recall/f1 at 0.5 on P: predicted [0,0,0,1] -> tp 1, fp 0, fn 1
        let m = ThresholdMetrics::at(&P, &Y, 0.5);
        assert_eq!((m.confusion.tp, m.confusion.fp, m.confusion.tn, m.confusion.fn_), (1, 0, 2, 1));
        assert_eq!(m.precision, 1.0);
        assert_eq!(m.recall, 0.5);
        assert!((m.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.accuracy, 0.75);
    }

    #[test]
    fn calibration_error_of_a_perfectly_calibrated_bin_is_zero() {
        // 10 customers at 0.3, 3 churn: calibrated.
        let p = [0.3f32; 10];
        let y: Vec<bool> = (0..10).map(|i| i < 3).collect();
        assert!(expected_calibration_error(&p, &y).unwrap() < 1e-6);
        // Same customers at 0.8: off by 0.5.
        let p = [0.8f32; 10];
        assert!((expected_calibration_error(&p, &y).unwrap() - 0.5).abs() < 1e-6);
    }

    #[test]
    fn calibration_noise_of_a_coin_matches_its_closed_form() {
        // 400 rows at 0.5 fall in one bin: ECE = |mean(y) - 0.5|, whose expectation under
        // perfect calibration is sqrt(0.25 / 400) * sqrt(2 / pi) = 0.01995 (half-normal mean).
        let noise = calibration_noise(&[0.5f32; 400]);
        assert_eq!(noise.draws, 500);
        assert!((noise.ece_mean - 0.01995).abs() < 0.002, "{}", noise.ece_mean);
        // Its 90th percentile: 1.645 sd of a binomial rate = 0.0411 (the rate moves in steps of 1/400).
        assert!((noise.ece_p90 - 0.0411).abs() < 0.004, "{}", noise.ece_p90);
        let (mean_p, lo, hi) = noise.bands[0];
        assert_eq!(noise.bands.len(), 1);
        assert!((mean_p - 0.5).abs() < 1e-9 && (0.45..0.47).contains(&lo) && (0.53..0.55).contains(&hi), "{:?}", noise.bands);
    }

    #[test]
    fn calibration_noise_shrinks_with_rows_and_is_reproducible() {
        let spread = |n: usize| (0..n).map(|i| (i % 97) as f32 / 97.0).collect::<Vec<f32>>();
        let small = calibration_noise(&spread(300));
        let large = calibration_noise(&spread(30_000));
        // Ten times the sd of a rate per hundredfold rows.
        assert!(large.ece_mean < small.ece_mean / 5.0, "{} vs {}", large.ece_mean, small.ece_mean);
        assert!(small.ece_mean < small.ece_p90);
        assert_eq!(calibration_noise(&spread(300)), small);
        for (mean_p, lo, hi) in &large.bands {
            assert!(lo <= mean_p && mean_p <= hi, "{:?}", large.bands);
        }
        // A million rows: the budget keeps the draws (and the time) bounded.
        assert_eq!(calibration_noise(&spread(1_000_000)).draws, 20);
    }

    #[test]
    fn lift_of_a_perfect_ranking() {
        // 20 customers, 2 churners scored highest: top decile (2 rows) holds both.
        let p: Vec<f32> = (0..20).map(|i| i as f32 / 20.0).collect();
        let y: Vec<bool> = (0..20).map(|i| i >= 18).collect();
        let (lift, capture) = lift_and_capture(&p, &y, 0.1).unwrap();
        assert!((lift - 10.0).abs() < 1e-12);
        assert_eq!(capture, 1.0);
    }

    #[test]
    fn one_class_is_an_error_not_a_nan() {
        let err = roc_auc(&[0.1, 0.2], &[false, false]).unwrap_err();
        assert!(err.to_string().contains("both classes"));
    }

    #[test]
    fn business_figures() {
        let pb = Playbook::default(); // value 500, cost 25, success 0.3 -> a churner contacted is worth 125 net
        let p = [0.9f32, 0.8, 0.6, 0.1];
        let y = [true, false, true, false];
        assert_eq!(realised_profit(&p, &y, 0.5, &pb), 2.0 * 150.0 - 3.0 * 25.0);
        let tiers = tier_figures(&p, &y, &pb);
        let vh = &tiers[0];
        assert_eq!((vh.customers, vh.churners), (2, 1));
        assert_eq!(vh.realised_profit, 150.0 - 50.0);
        assert_eq!(vh.roi, 100.0 / 50.0);
        let low = tiers.iter().find(|t| t.tier == "low").unwrap();
        assert_eq!((low.customers, low.realised_profit), (1, 0.0));
        let (t, v) = best_profit_threshold(&p, &y, &pb);
        assert_eq!(v, 300.0 - 75.0);
        assert!(t > 0.1 && t <= 0.6);
    }
}
