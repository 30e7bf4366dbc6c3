//! The models, behind one small trait so that there is one training loop for all of them.
//!
//! Weights are initialised from the run's seed (candle's CPU device cannot be seeded) and dropout
//! masks come from the same seeded generator, so a run is reproducible bit for bit on one machine.

use candle_core::{DType, Device, Module, ModuleT, Tensor};
use candle_nn::{BatchNorm, Linear, VarBuilder, VarMap};
use churn_core::onnx::Dense;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::params::{ModelKind, ValidParams};

/// A binary classifier producing logits.
pub trait ChurnModel {
    /// Logits, shape `[N]`. `rng` drives dropout when `train` is set.
    fn forward(&self, x: &Tensor, train: bool, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor>;
    /// The inference graph as dense layers (batch norm folded in, dropout dropped), ending in a logit.
    fn to_dense(&self) -> candle_core::Result<Vec<Dense>>;
}

pub struct Mlp {
    norm: BatchNorm,
    layers: Vec<Linear>,
    dropout: f32,
}

pub struct Logistic {
    linear: Linear,
}

/// Builds a model and its variables; the variables are initialised from `rng`.
pub fn build(params: &ValidParams, width: usize, rng: &mut ChaCha8Rng) -> candle_core::Result<(Box<dyn ChurnModel>, VarMap)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model: Box<dyn ChurnModel> = match params.kind {
        ModelKind::Mlp => {
            let norm = candle_nn::batch_norm(width, candle_nn::BatchNormConfig::default(), vb.pp("norm"))?;
            let mut layers = Vec::new();
            let mut inputs = width;
            for (i, &h) in params.hidden.iter().chain(std::iter::once(&1)).enumerate() {
                layers.push(seeded_linear(&varmap, &format!("layer{i}"), inputs, h, rng)?);
                inputs = h;
            }
            Box::new(Mlp { norm, layers, dropout: params.dropout as f32 })
        }
        ModelKind::Logistic => Box::new(Logistic { linear: seeded_linear(&varmap, "linear", width, 1, rng)? }),
    };
    Ok((model, varmap))
}

/// A linear layer `inputs → outputs` whose variables are registered in `varmap` under
/// `prefix` and initialised from `rng` as PyTorch initialises linear layers: uniform in
/// ±1/sqrt(fan_in), bias then weight. Batch-norm scale/shift and running statistics keep
/// candle's constant initialisation.
fn seeded_linear(varmap: &VarMap, prefix: &str, inputs: usize, outputs: usize, rng: &mut ChaCha8Rng) -> candle_core::Result<Linear> {
    let bound = 1.0 / (inputs as f32).sqrt();
    let mut uniform = |shape: &[usize]| {
        let values: Vec<f32> = (0..shape.iter().product()).map(|_| rng.random_range(-bound..bound)).collect();
        candle_core::Var::from_vec(values, shape, &Device::Cpu)
    };
    let bias = uniform(&[outputs])?;
    let weight = uniform(&[outputs, inputs])?;
    let mut data = varmap.data().lock().expect("varmap lock");
    data.insert(format!("{prefix}.weight"), weight.clone());
    data.insert(format!("{prefix}.bias"), bias.clone());
    Ok(Linear::new(weight.as_tensor().clone(), Some(bias.as_tensor().clone())))
}

/// The variables the optimiser updates (batch-norm running statistics are not parameters).
pub fn trainable(varmap: &VarMap) -> Vec<candle_core::Var> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut named: Vec<(&String, &candle_core::Var)> = data.iter().filter(|(n, _)| !n.contains("running_")).collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

/// A copy of every variable, to restore the best epoch's weights after early stopping.
pub fn snapshot(varmap: &VarMap) -> candle_core::Result<Vec<(String, Tensor)>> {
    let data = varmap.data().lock().expect("varmap lock");
    data.iter().map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?))).collect()
}

pub fn restore(varmap: &VarMap, snap: &[(String, Tensor)]) -> candle_core::Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    for (n, t) in snap {
        data[n].set(t)?;
    }
    Ok(())
}

fn dropout(x: &Tensor, p: f32, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
    if p == 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 / (1.0 - p);
    let n = x.elem_count();
    let mask: Vec<f32> = (0..n).map(|_| if rng.random::<f32>() < p { 0.0 } else { keep }).collect();
    x * Tensor::from_vec(mask, x.dims(), x.device())?
}

fn dense(l: &Linear, relu: bool) -> candle_core::Result<Dense> {
    let w = l.weight();
    let (outputs, inputs) = w.dims2()?;
    let bias = match l.bias() {
        Some(b) => b.to_vec1::<f32>()?,
        None => vec![0.0; outputs],
    };
    Ok(Dense { weight: w.flatten_all()?.to_vec1::<f32>()?, bias, inputs, outputs, relu })
}

impl ChurnModel for Mlp {
    fn forward(&self, x: &Tensor, train: bool, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        let mut h = self.norm.forward_t(x, train)?;
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if i < last {
                h = h.relu()?;
                if train {
                    h = dropout(&h, self.dropout, rng)?;
                }
            }
        }
        h.squeeze(1)
    }

    fn to_dense(&self) -> candle_core::Result<Vec<Dense>> {
        let last = self.layers.len() - 1;
        let mut out: Vec<Dense> = self.layers.iter().enumerate().map(|(i, l)| dense(l, i < last)).collect::<candle_core::Result<_>>()?;
        // Eval-mode batch norm is x*s + t per feature, s = gamma / sqrt(var + eps),
        // t = beta - mean*s; fold it into the first linear layer: W' = W diag(s), b' = b + W t.
        let eps = self.norm.eps();
        let mean = self.norm.running_mean().to_vec1::<f32>()?;
        let var = self.norm.running_var().to_vec1::<f32>()?;
        let (gamma, beta) = match self.norm.weight_and_bias() {
            Some((g, b)) => (g.to_vec1::<f32>()?, b.to_vec1::<f32>()?),
            None => (vec![1.0; mean.len()], vec![0.0; mean.len()]),
        };
        let s: Vec<f64> = gamma.iter().zip(&var).map(|(g, v)| *g as f64 / (*v as f64 + eps).sqrt()).collect();
        let t: Vec<f64> = beta.iter().zip(&mean).zip(&s).map(|((b, m), s)| *b as f64 - *m as f64 * s).collect();
        let first = &mut out[0];
        for o in 0..first.outputs {
            let row = &mut first.weight[o * first.inputs..(o + 1) * first.inputs];
            let mut shift = 0.0f64;
            for i in 0..row.len() {
                shift += row[i] as f64 * t[i];
                row[i] = (row[i] as f64 * s[i]) as f32;
            }
            first.bias[o] = (first.bias[o] as f64 + shift) as f32;
        }
        Ok(out)
    }
}

impl ChurnModel for Logistic {
    fn forward(&self, x: &Tensor, _train: bool, _rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        self.linear.forward(x)?.squeeze(1)
    }

    fn to_dense(&self) -> candle_core::Result<Vec<Dense>> {
        Ok(vec![dense(&self.linear, false)?])
    }
}

/// Members trained on the same data from different seeds; the logit is the members' mean.
/// Members of the same depth export as one dense stack of the same depth: the first layers
/// side by side, deeper layers block-diagonal, the output layer averaging (see [`merge`]).
pub struct Ensemble {
    members: Vec<Box<dyn ChurnModel>>,
}

impl Ensemble {
    pub fn new(members: Vec<Box<dyn ChurnModel>>) -> Self {
        assert!(!members.is_empty(), "an ensemble has members");
        Ensemble { members }
    }
}

impl ChurnModel for Ensemble {
    fn forward(&self, x: &Tensor, train: bool, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        let mut sum = self.members[0].forward(x, train, rng)?;
        for m in &self.members[1..] {
            sum = (sum + m.forward(x, train, rng)?)?;
        }
        sum / self.members.len() as f64
    }

    fn to_dense(&self) -> candle_core::Result<Vec<Dense>> {
        let stacks = self.members.iter().map(|m| m.to_dense()).collect::<candle_core::Result<Vec<_>>>()?;
        merge(&stacks).map_err(candle_core::Error::wrap)
    }
}

/// Ensemble members that cannot be merged into one stack.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("ensemble members have different depths")]
    Depths,
    #[error("ensemble members take different inputs")]
    Inputs,
}

/// One dense stack computing the mean of the stacks' logits. All stacks take the same inputs
/// and have the same depth; layer `l` of the result stacks the members' layer `l` outputs side
/// by side (block-diagonal weights after the first layer), and the last layer divides by the
/// number of members. The result is exact, not an approximation: each member's units see only
/// their own member's units.
pub fn merge(stacks: &[Vec<Dense>]) -> Result<Vec<Dense>, MergeError> {
    let depth = stacks[0].len();
    if stacks.iter().any(|s| s.len() != depth) {
        return Err(MergeError::Depths);
    }
    let k = stacks.len() as f32;
    let mut out = Vec::with_capacity(depth);
    for l in 0..depth {
        let layers: Vec<&Dense> = stacks.iter().map(|s| &s[l]).collect();
        let last = l + 1 == depth;
        let inputs = if l == 0 { layers[0].inputs } else { layers.iter().map(|d| d.inputs).sum() };
        let outputs = if last { 1 } else { layers.iter().map(|d| d.outputs).sum() };
        let mut weight = vec![0.0f32; inputs * outputs];
        let mut bias = vec![0.0f32; outputs];
        let (mut row0, mut col0) = (0, 0);
        for d in &layers {
            if l == 0 && d.inputs != inputs {
                return Err(MergeError::Inputs);
            }
            for o in 0..d.outputs {
                let row = if last { 0 } else { row0 + o };
                let scale = if last { 1.0 / k } else { 1.0 };
                let c0 = if l == 0 { 0 } else { col0 };
                for i in 0..d.inputs {
                    weight[row * inputs + c0 + i] += d.weight[o * d.inputs + i] * scale;
                }
                bias[row] += d.bias[o] * scale;
            }
            row0 += d.outputs;
            col0 += d.inputs;
        }
        out.push(Dense { weight, bias, inputs, outputs, relu: layers[0].relu });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::TrainParams;
    use rand::SeedableRng;

    #[test]
    fn folded_dense_stack_matches_eval_forward() {
        let params = TrainParams { hidden: vec![5, 3], ..Default::default() }.check().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (model, varmap) = build(&params, 4, &mut rng).unwrap();
        // Give batch norm non-trivial statistics by one training-mode pass.
        let x = Tensor::from_vec((0..32).map(|i| (i as f32 * 0.37).sin() * 3.0 + 1.0).collect::<Vec<_>>(), (8, 4), &Device::Cpu).unwrap();
        model.forward(&x, true, &mut rng).unwrap();
        let want = model.forward(&x, false, &mut rng).unwrap().to_vec1::<f32>().unwrap();
        let layers = model.to_dense().unwrap();
        let rows = x.to_vec2::<f32>().unwrap();
        for (r, w) in rows.iter().zip(&want) {
            let mut h = r.clone();
            for l in &layers {
                h = l.forward_row(&h);
            }
            assert!((h[0] - w).abs() < 1e-5, "{} vs {w}", h[0]);
        }
        assert!(!trainable(&varmap).is_empty());
    }

    #[test]
    fn merged_ensemble_is_the_mean_of_its_members() {
        for hidden in [vec![4], vec![5, 3]] {
            let params = TrainParams { hidden, ..Default::default() }.check().unwrap();
            let members: Vec<Box<dyn ChurnModel>> =
                (0..3).map(|s| build(&params, 6, &mut ChaCha8Rng::seed_from_u64(s)).unwrap().0).collect();
            let x = Tensor::from_vec((0..24).map(|i| (i as f32 * 0.61).cos() * 2.0).collect::<Vec<_>>(), (4, 6), &Device::Cpu).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let each: Vec<Vec<f32>> = members.iter().map(|m| m.forward(&x, false, &mut rng).unwrap().to_vec1().unwrap()).collect();
            let ensemble = Ensemble::new(members);
            let got = ensemble.forward(&x, false, &mut rng).unwrap().to_vec1::<f32>().unwrap();
            let layers = ensemble.to_dense().unwrap();
            assert_eq!(layers.len(), params.hidden.len() + 1);
            for (r, row) in x.to_vec2::<f32>().unwrap().iter().enumerate() {
                let want = each.iter().map(|e| e[r]).sum::<f32>() / 3.0;
                assert!((got[r] - want).abs() < 1e-5, "{} vs {want}", got[r]);
                let mut h = row.clone();
                for l in &layers {
                    h = l.forward_row(&h);
                }
                assert!((h[0] - want).abs() < 1e-5, "dense {} vs {want}", h[0]);
            }
        }
    }

    #[test]
    fn same_seed_same_weights() {
        let params = TrainParams::default().check().unwrap();
        let w = |seed| {
            let (m, _) = build(&params, 6, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
            m.to_dense().unwrap()[0].weight.clone()
        };
        assert_eq!(w(1), w(1));
        assert_ne!(w(1), w(2));
    }
}
