//! Scores feature vectors with the bundle's ONNX model through tract. The optimised, runnable
//! plan is built once and shared; each call only runs it. For any graph it is built when the
//! model loads, so that a model tract cannot run fails there. A dense stack this project wrote
//! is checked at load without tract (its layers are read and matched to the feature spec, see
//! [`crate::network::Network`], which the batch scorer and the API's default path evaluate), and
//! its plan is built on first use: the paths that run it (the reference Shapley values, the
//! API's other reason methods, training's checks) do not put tract's planning on every cold
//! start of a function that never calls them.
//!
//! That plan takes any number of rows. For large batches of a size that repeats (the batch
//! scorer's record batches, the API's Shapley batches) a plan specialised to exactly that many
//! rows runs about three times faster (tract plans its matrix products for known shapes): such
//! a plan is built once a size has come [`FIXED_PLAN_AFTER`] times — not on first sight, so
//! that a Lambda's first request (its cold start) does not pay for planning — and kept, a few
//! sizes at most.

use std::sync::{Arc, Mutex, OnceLock};

use tract_onnx::prelude::*;

use crate::error::{CoreError, Result};

pub struct Scorer {
    /// The ONNX model, kept until it is planned.
    bytes: Vec<u8>,
    /// The parsed model (from which fixed-size plans are made) and its general plan.
    planned: OnceLock<std::result::Result<Planned, String>>,
    /// Whether the model is a dense stack this project wrote (see [`Scorer::plan`]).
    dense: bool,
    plans: Mutex<FixedPlans>,
    width: usize,
}

struct Planned {
    model: InferenceModel,
    plan: Arc<TypedRunnableModel>,
}

#[derive(Default)]
struct FixedPlans {
    /// Plans for an exact number of rows.
    fixed: Vec<(usize, Arc<TypedRunnableModel>)>,
    /// How often each large size has come (the first few sizes only).
    seen: Vec<(usize, u32)>,
}

/// The input tensor of [`Scorer::predict_filled`], kept between calls.
#[derive(Default)]
pub struct InputBuffer(Option<Arc<Tensor>>);

/// Smallest batch that gets a plan of its own: below it, building one costs more than it saves.
pub const FIXED_PLAN_MIN_ROWS: usize = 1024;
/// Most fixed-size plans kept; other sizes use the general plan.
pub const FIXED_PLANS: usize = 4;
/// Calls with one size before a plan is made for it.
pub const FIXED_PLAN_AFTER: u32 = 3;
/// Most distinct sizes counted.
const SIZES_COUNTED: usize = 64;

impl std::fmt::Debug for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scorer").field("width", &self.width).finish()
    }
}

fn inference(e: TractError) -> CoreError {
    CoreError::Inference(format!("{e:#}"))
}

impl Scorer {
    /// Loads an ONNX model taking `[N, width]` features (see the module documentation for
    /// when it is planned).
    pub fn from_onnx(bytes: &[u8], width: usize) -> Result<Self> {
        let layers = crate::onnx::dense_stack_from_onnx(bytes)?;
        if let Some(l) = &layers {
            crate::onnx::check_width(l, width)?;
        }
        Self::new(bytes.to_vec(), width, layers.is_some())
    }

    /// [`from_onnx`](Self::from_onnx) for a caller that has read the model with
    /// [`crate::onnx::dense_stack_from_onnx`] already: `dense` is whether that found a stack.
    /// Anything else is planned, and run once, here; a dense stack on first use (the caller
    /// has checked its layers).
    pub fn new(bytes: Vec<u8>, width: usize, dense: bool) -> Result<Self> {
        let scorer = Scorer { bytes, planned: OnceLock::new(), dense, plans: Mutex::default(), width };
        if !dense {
            // Fail at load, not on the first request, if the model does not take this width.
            scorer.predict(&vec![0.0; width])?;
        }
        Ok(scorer)
    }

    /// The parsed model and its general plan, made on first call.
    fn planned(&self) -> Result<&Planned> {
        let planned = self.planned.get_or_init(|| {
            let model = tract_onnx::onnx().model_for_read(&mut std::io::Cursor::new(&self.bytes)).map_err(|e| format!("{e:#}"))?;
            let plan = Self::plan(model.clone(), self.dense).map_err(|e| format!("{e:#}"))?;
            Ok(Planned { model, plan })
        });
        planned.as_ref().map_err(|problem| CoreError::ModelFile { file: crate::bundle::MODEL, problem: problem.clone() })
    }

    /// tract's runnable plan of `model`. A stack of dense layers as this project writes it
    /// (`dense`) has nothing for tract's declutter passes to simplify, and codegen alone gives it
    /// the same kernels and the same results, in less time: that is most of the plan's share of
    /// a cold start (`predict-bench init` compares both). Any other graph gets both passes.
    fn plan(model: InferenceModel, dense: bool) -> TractResult<Arc<TypedRunnableModel>> {
        let mut typed = model.into_typed()?;
        if !dense {
            typed.declutter()?;
        }
        typed.optimize()?;
        typed.into_runnable()
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Probabilities for `features.len() / width` rows laid out row after row.
    pub fn predict(&self, features: &[f32]) -> Result<Vec<f32>> {
        if self.width == 0 || !features.len().is_multiple_of(self.width) {
            return Err(CoreError::NotWholeRows { values: features.len(), width: self.width });
        }
        let rows = features.len() / self.width;
        if rows == 0 {
            return Ok(Vec::new());
        }
        self.run(Tensor::from_shape(&[rows, self.width], features).map_err(inference)?)
    }

    /// Probabilities for `rows` rows whose features `fill` writes, row after row, straight into
    /// the model's input tensor; `fill`'s result comes back with them. The batch scorer's way:
    /// [`predict`](Self::predict) copies its input, which for a batch is most of the data the
    /// model reads. The tensor is `buffer`'s from the previous call when that had as many rows
    /// (no allocation, page faults or zeroing per batch), so it holds that call's values:
    /// `fill` must write every value of every row whose probability it will use.
    pub fn predict_filled<T>(&self, rows: usize, buffer: &mut InputBuffer, fill: impl FnOnce(&mut [f32]) -> T) -> Result<(T, Vec<f32>)> {
        if self.width == 0 {
            return Err(CoreError::NotWholeRows { values: 0, width: 0 });
        }
        let shape = [rows, self.width];
        let reusable = buffer.0.as_mut().filter(|t| t.shape() == shape).and_then(Arc::get_mut).is_some();
        if !reusable {
            buffer.0 = Some(Arc::new(Tensor::zero::<f32>(&shape).map_err(inference)?));
        }
        let input = buffer.0.as_mut().and_then(Arc::get_mut).expect("made exclusive above");
        let filled = {
            let mut plain = input.try_as_plain_ram_mut().map_err(inference)?;
            fill(plain.as_slice_mut::<f32>().map_err(inference)?)
        };
        let p = match &buffer.0 {
            Some(t) if rows > 0 => self.run_value(TValue::from_const(t.clone()))?,
            _ => Vec::new(),
        };
        Ok((filled, p))
    }

    fn run(&self, input: Tensor) -> Result<Vec<f32>> {
        self.run_value(input.into_tvalue())
    }

    fn run_value(&self, input: TValue) -> Result<Vec<f32>> {
        let rows = input.shape()[0];
        let out = self.plan_for(rows, self.planned()?).run(tvec!(input)).map_err(inference)?;
        Ok(out[0].to_plain_array_view::<f32>().map_err(inference)?.iter().copied().collect())
    }

    /// The plan for `rows` rows: a fixed-size one when the batch is large enough and one exists
    /// or can still be made, the general one otherwise.
    fn plan_for(&self, rows: usize, planned: &Planned) -> Arc<TypedRunnableModel> {
        if rows < FIXED_PLAN_MIN_ROWS {
            return planned.plan.clone();
        }
        {
            let mut plans = self.plans.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((_, p)) = plans.fixed.iter().find(|(n, _)| *n == rows) {
                return p.clone();
            }
            if plans.fixed.len() >= FIXED_PLANS {
                return planned.plan.clone();
            }
            let count = match plans.seen.iter().position(|(n, _)| *n == rows) {
                Some(i) => {
                    plans.seen[i].1 += 1;
                    plans.seen[i].1
                }
                None if plans.seen.len() < SIZES_COUNTED => {
                    plans.seen.push((rows, 1));
                    1
                }
                None => 0,
            };
            if count < FIXED_PLAN_AFTER {
                return planned.plan.clone();
            }
        }
        // Planning takes milliseconds: done outside the lock.
        let built = planned.model.clone().with_input_fact(0, f32::fact([rows, self.width]).into()).and_then(|m| Self::plan(m, self.dense));
        match built {
            Ok(plan) => {
                let mut plans = self.plans.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if plans.fixed.len() < FIXED_PLANS && !plans.fixed.iter().any(|(n, _)| *n == rows) {
                    plans.fixed.push((rows, plan.clone()));
                }
                plan
            }
            // The general plan computes the same thing; a specialisation that fails is only a
            // missed speed-up.
            Err(e) => {
                tracing::debug!(rows, error = %e, "no fixed-size plan");
                planned.plan.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Dense, dense_stack_to_onnx};

    #[test]
    fn exported_stack_runs_in_tract_with_any_batch_size() {
        let layers = vec![
            Dense { weight: vec![1.0, -1.0, 0.5, 0.5], bias: vec![0.0, -1.0], inputs: 2, outputs: 2, relu: true },
            Dense { weight: vec![2.0, -3.0], bias: vec![0.1], inputs: 2, outputs: 1, relu: false },
        ];
        let bytes = dense_stack_to_onnx(&layers, &[("k".into(), "v".into())]).unwrap();
        let s = Scorer::from_onnx(&bytes, 2).unwrap();
        let rows = [[1.0f32, 2.0], [3.0, -1.0], [0.0, 0.0]];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let got = s.predict(&flat).unwrap();
        for (r, g) in rows.iter().zip(&got) {
            let h = layers[0].forward_row(r);
            let z = layers[1].forward_row(&h)[0];
            let want = 1.0 / (1.0 + (-z).exp());
            assert!((want - g).abs() < 1e-6, "{want} vs {g}");
        }
        assert_eq!(s.predict(&flat[..2]).unwrap().len(), 1);
        assert!(s.predict(&flat[..3]).is_err());
    }

    #[test]
    fn fixed_size_plans_give_the_general_plans_answers() {
        let layers = vec![
            Dense { weight: vec![0.3, -1.0, 0.5, 0.25, -0.7, 0.1], bias: vec![0.1, -0.2], inputs: 3, outputs: 2, relu: true },
            Dense { weight: vec![1.5, -2.0], bias: vec![0.05], inputs: 2, outputs: 1, relu: false },
        ];
        let s = Scorer::from_onnx(&dense_stack_to_onnx(&layers, &[]).unwrap(), 3).unwrap();
        let rows = FIXED_PLAN_MIN_ROWS + 3;
        let x: Vec<f32> = (0..rows * 3).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let general: Vec<f32> = x.chunks(3 * 8).flat_map(|c| s.predict(c).unwrap()).collect();
        for call in 1..=FIXED_PLAN_AFTER + 1 {
            let out = s.predict(&x).unwrap();
            assert_eq!(out.len(), rows);
            let diff = out.iter().zip(&general).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff <= 1e-6, "call {call}: differs from the general plan by {diff}");
            let planned = usize::from(call >= FIXED_PLAN_AFTER);
            assert_eq!(s.plans.lock().unwrap().fixed.len(), planned, "call {call}: a plan only once the size has repeated");
        }
        for extra in 1..=FIXED_PLANS + 1 {
            for _ in 0..FIXED_PLAN_AFTER {
                s.predict(&x[..(rows - extra) * 3]).unwrap();
            }
        }
        assert_eq!(s.plans.lock().unwrap().fixed.len(), FIXED_PLANS, "at most FIXED_PLANS sizes are kept");
    }

    #[test]
    fn filled_input_is_reused_between_calls_of_one_size() {
        let layers = vec![Dense { weight: vec![1.0, -2.0], bias: vec![0.5], inputs: 2, outputs: 1, relu: false }];
        let s = Scorer::from_onnx(&dense_stack_to_onnx(&layers, &[]).unwrap(), 2).unwrap();
        let mut buffer = InputBuffer::default();
        let x = [0.5f32, 1.0, -1.0, 0.25, 2.0, 0.0];
        for (call, want_before) in [(0, [0.0f32; 6]), (1, x)] {
            let (before, p) = s
                .predict_filled(3, &mut buffer, |v| {
                    let before: [f32; 6] = v.try_into().unwrap();
                    v.copy_from_slice(&x);
                    before
                })
                .unwrap();
            // The first call starts from zeros, the second from the first call's values.
            assert_eq!(before, want_before, "call {call}");
            assert_eq!(p, s.predict(&x).unwrap(), "call {call}");
        }
        // Another size gets a fresh, zeroed tensor.
        let (before, p) = s.predict_filled(1, &mut buffer, |v| v.to_vec()).unwrap();
        assert_eq!((before, p.len()), (vec![0.0, 0.0], 1));
    }

    #[test]
    fn a_dense_stack_is_planned_on_first_use_and_any_other_graph_at_load() {
        let layers = vec![Dense { weight: vec![1.0, -2.0], bias: vec![0.5], inputs: 2, outputs: 1, relu: false }];
        let bytes = dense_stack_to_onnx(&layers, &[]).unwrap();
        let s = Scorer::from_onnx(&bytes, 2).unwrap();
        assert!(s.planned.get().is_none(), "a dense stack is not planned at load");
        assert_eq!(s.predict(&[1.0, 1.0]).unwrap().len(), 1);
        assert!(s.planned.get().is_some());
        // Treated as a graph of any kind: planned and run once at load.
        let s = Scorer::new(bytes.clone(), 2, false).unwrap();
        assert!(s.planned.get().is_some_and(|p| p.is_ok()));
        assert!(Scorer::new(bytes, 3, false).is_err(), "the width check runs the plan at load");
    }

    #[test]
    fn a_dense_stack_of_another_width_is_refused_at_load() {
        let layers = vec![Dense { weight: vec![1.0, -2.0], bias: vec![0.5], inputs: 2, outputs: 1, relu: false }];
        let err = Scorer::from_onnx(&dense_stack_to_onnx(&layers, &[]).unwrap(), 3).unwrap_err();
        assert!(err.to_string().contains("takes 2 inputs, the feature spec makes 3"), "{err}");
    }

    #[test]
    fn garbage_is_a_model_error() {
        let err = Scorer::from_onnx(b"not a model", 3).unwrap_err();
        assert!(matches!(err, CoreError::ModelFile { file: "model.onnx", .. }), "{err}");
        assert!(err.to_string().starts_with("model.onnx: "), "{err}");
    }
}
