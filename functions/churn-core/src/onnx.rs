//! Writes a trained network as an ONNX model using the protobuf types tract exposes.
//!
//! No candle-to-ONNX exporter exists, and the networks here are small stacks of dense layers, so
//! the graph is built directly: `Gemm (+ Relu)` per layer, then `Sigmoid`, with the batch
//! dimension left symbolic (`N`). Training folds batch norm and the calibration into the dense
//! layers before calling this, and drops dropout (identity at inference), so the exported graph
//! maps features straight to a calibrated probability.

use prost::Message;
use tract_onnx::pb;

use crate::error::{CoreError, Result};

/// Name of the graph input: `[N, width]` float32 features from [`crate::FeatureSpec`].
pub const INPUT_NAME: &str = "features";
/// Name of the graph output: `[N, 1]` float32 calibrated churn probabilities.
pub const OUTPUT_NAME: &str = "churn_probability";

/// A dense layer `y = x Wᵀ + b`, optionally followed by ReLU. `weight` is row-major
/// `[outputs, inputs]`, the layout of candle's `Linear`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub inputs: usize,
    pub outputs: usize,
    pub relu: bool,
}

impl Dense {
    /// Evaluates the layer on one row (used by tests and by exporters to check a fold).
    pub fn forward_row(&self, x: &[f32]) -> Vec<f32> {
        (0..self.outputs)
            .map(|o| {
                let w = &self.weight[o * self.inputs..(o + 1) * self.inputs];
                let v = w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + self.bias[o];
                if self.relu { v.max(0.0) } else { v }
            })
            .collect()
    }
}

fn tensor(name: &str, dims: &[usize], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|d| *d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, width: usize) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dims = vec![
        Dimension { value: Some(Value::DimParam("N".into())), ..Default::default() },
        Dimension { value: Some(Value::DimValue(width as i64)), ..Default::default() },
    ];
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, name: String, inputs: Vec<String>, output: String, attrs: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto { op_type: op.into(), name, input: inputs, output: vec![output], attribute: attrs, ..Default::default() }
}

fn export(problem: String) -> CoreError {
    CoreError::Export { graph: "ONNX export of the network", problem }
}

/// Serialises `layers` (the last one must have one output and no ReLU) as an ONNX model
/// (IR 8, opset 17) ending in a sigmoid. `metadata` goes into the model's metadata properties.
pub fn dense_stack_to_onnx(layers: &[Dense], metadata: &[(String, String)]) -> Result<Vec<u8>> {
    let first = layers.first().ok_or_else(|| export("no layers to export".into()))?;
    let last = layers.last().expect("non-empty");
    if last.outputs != 1 || last.relu {
        return Err(export("the last layer must have one linear output (the logit)".into()));
    }
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut current = INPUT_NAME.to_string();
    for (i, l) in layers.iter().enumerate() {
        if l.weight.len() != l.inputs * l.outputs || l.bias.len() != l.outputs {
            return Err(export(format!("layer {i}: weight/bias sizes do not match {}x{}", l.outputs, l.inputs)));
        }
        if i > 0 && layers[i - 1].outputs != l.inputs {
            return Err(export(format!("layer {i} takes {} inputs after a layer of {}", l.inputs, layers[i - 1].outputs)));
        }
        let (w, b, out) = (format!("W{i}"), format!("B{i}"), format!("gemm{i}"));
        inits.push(tensor(&w, &[l.outputs, l.inputs], &l.weight));
        inits.push(tensor(&b, &[l.outputs], &l.bias));
        let trans_b = pb::AttributeProto {
            name: "transB".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: 1,
            ..Default::default()
        };
        nodes.push(node("Gemm", format!("dense{i}"), vec![current, w, b], out.clone(), vec![trans_b]));
        current = out;
        if l.relu {
            let r = format!("relu{i}");
            nodes.push(node("Relu", r.clone(), vec![current], r.clone(), vec![]));
            current = r;
        }
    }
    nodes.push(node("Sigmoid", "probability".into(), vec![current], OUTPUT_NAME.into(), vec![]));
    let graph = pb::GraphProto {
        name: "churn".into(),
        node: nodes,
        initializer: inits,
        input: vec![value_info(INPUT_NAME, first.inputs)],
        output: vec![value_info(OUTPUT_NAME, 1)],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "churn-training".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: metadata.iter().map(|(k, v)| pb::StringStringEntryProto { key: k.clone(), value: v.clone() }).collect(),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

/// That the dense stack `layers` takes the `width` inputs the feature spec makes.
pub fn check_width(layers: &[Dense], width: usize) -> Result<()> {
    match layers.first() {
        None => Err(CoreError::ModelFile { file: crate::bundle::MODEL, problem: "no layers".into() }),
        Some(first) if first.inputs != width => Err(CoreError::ModelFile {
            file: crate::bundle::MODEL,
            problem: format!("takes {} inputs, the feature spec makes {width}", first.inputs),
        }),
        Some(_) => Ok(()),
    }
}

/// Reads back a model written by [`dense_stack_to_onnx`]: `Ok(None)` when the graph is anything
/// else (a model from another tool), so that callers fall back to running it through tract.
/// Used by [`crate::network::Network`], which evaluates the weights itself.
pub fn dense_stack_from_onnx(bytes: &[u8]) -> Result<Option<Vec<Dense>>> {
    let model = pb::ModelProto::decode(bytes)
        .map_err(|e| CoreError::ModelFile { file: crate::bundle::MODEL, problem: format!("not ONNX: {e}") })?;
    let Some(mut graph) = model.graph else { return Ok(None) };
    // The weights are moved out of the decoded initializers, not copied: a start-up's fresh
    // memory pages are a large part of a cold start.
    let mut initializer = std::mem::take(&mut graph.initializer);
    let mut init = |name: &str| initializer.iter_mut().find(|t| t.name == name).map(std::mem::take);
    let mut layers: Vec<Dense> = Vec::new();
    let mut current = INPUT_NAME.to_string();
    let mut nodes = graph.node.iter().peekable();
    while let Some(n) = nodes.next() {
        match n.op_type.as_str() {
            "Gemm" => {
                let plain = n.attribute.iter().all(|a| match a.name.as_str() {
                    "transB" => a.i == 1,
                    "alpha" | "beta" => a.f == 1.0,
                    _ => false,
                }) && n.attribute.iter().any(|a| a.name == "transB");
                let (Some(w), Some(b)) = (n.input.get(1).and_then(|i| init(i)), n.input.get(2).and_then(|i| init(i))) else {
                    return Ok(None);
                };
                if !plain || n.input[0] != current || w.dims.len() != 2 || b.dims.len() != 1 || w.dims[0] != b.dims[0] {
                    return Ok(None);
                }
                let (outputs, inputs) = (w.dims[0] as usize, w.dims[1] as usize);
                if w.float_data.len() != outputs * inputs || b.float_data.len() != outputs {
                    return Ok(None);
                }
                current = n.output.first().cloned().unwrap_or_default();
                let relu = nodes.peek().is_some_and(|r| r.op_type == "Relu" && r.input.first() == Some(&current));
                if relu {
                    current = nodes.next().and_then(|r| r.output.first().cloned()).unwrap_or_default();
                }
                layers.push(Dense { weight: w.float_data, bias: b.float_data, inputs, outputs, relu });
            }
            "Sigmoid" if n.input.first() == Some(&current) && n.output.first().map(String::as_str) == Some(OUTPUT_NAME) => {
                let chained = layers.windows(2).all(|w| w[0].outputs == w[1].inputs);
                let last = layers.last().is_some_and(|l| l.outputs == 1 && !l.relu);
                return Ok((nodes.next().is_none() && chained && last).then_some(layers));
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_stack_reads_back_and_other_graphs_are_not_claimed() {
        let layers = vec![
            Dense { weight: vec![0.5, -1.0, 2.0, 0.25, 1.5, -0.5], bias: vec![0.1, -0.2], inputs: 3, outputs: 2, relu: true },
            Dense { weight: vec![1.0, -2.0], bias: vec![0.3], inputs: 2, outputs: 1, relu: false },
        ];
        let bytes = dense_stack_to_onnx(&layers, &[]).unwrap();
        assert_eq!(dense_stack_from_onnx(&bytes).unwrap(), Some(layers.clone()));
        // Another graph (here: the last node is not the sigmoid) is left to tract.
        let mut model = pb::ModelProto::decode(bytes.as_slice()).unwrap();
        model.graph.as_mut().unwrap().node.pop();
        assert_eq!(dense_stack_from_onnx(&model.encode_to_vec()).unwrap(), None);
        assert!(dense_stack_from_onnx(b"not onnx").is_err());
    }
}
