//! Scores feature vectors with the bundle's ONNX model through tract. The optimised, runnable
//! plan is built once (at Lambda init, or once per `churn score` run) and shared; each call only
//! runs it.

use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::error::{CoreError, Result};

pub struct Scorer {
    plan: Arc<TypedRunnableModel>,
    width: usize,
}

impl std::fmt::Debug for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scorer").field("width", &self.width).finish()
    }
}

impl Scorer {
    /// Loads, optimises and plans an ONNX model taking `[N, width]` features.
    pub fn from_onnx(bytes: &[u8], width: usize) -> Result<Self> {
        let err = |e: TractError| CoreError::Model(format!("model.onnx: {e:#}"));
        let model = tract_onnx::onnx().model_for_read(&mut std::io::Cursor::new(bytes)).map_err(err)?;
        let plan = model.into_optimized().map_err(err)?.into_runnable().map_err(err)?;
        let scorer = Scorer { plan, width };
        // Fail at load, not on the first request, if the model does not take this width.
        scorer.predict(&vec![0.0; width])?;
        Ok(scorer)
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Probabilities for `features.len() / width` rows laid out row after row.
    pub fn predict(&self, features: &[f32]) -> Result<Vec<f32>> {
        if self.width == 0 || features.len() % self.width != 0 {
            return Err(CoreError::Model(format!("{} values are not whole rows of {}", features.len(), self.width)));
        }
        let rows = features.len() / self.width;
        if rows == 0 {
            return Ok(Vec::new());
        }
        let err = |e: TractError| CoreError::Model(format!("inference: {e:#}"));
        let input = Tensor::from_shape(&[rows, self.width], features).map_err(err)?;
        let out = self.plan.run(tvec!(input.into_tvalue())).map_err(err)?;
        Ok(out[0].to_plain_array_view::<f32>().map_err(err)?.iter().copied().collect())
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
    fn garbage_is_a_model_error() {
        let err = Scorer::from_onnx(b"not a model", 3).unwrap_err();
        assert!(err.to_string().starts_with("model: model.onnx"), "{err}");
    }
}
