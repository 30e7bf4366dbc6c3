//! The transform compiled into ONNX, in front of the network: a model that takes raw customer
//! columns — one graph input per input of the spec, numbers as `double` (NaN = missing), text as
//! `string` (empty = missing) — and returns the probability `churn score` and the API give.
//! Python users load it through MLflow (`mlflow.pyfunc`) and never re-implement the transform.
//!
//! The graph is generated from the compiled [`Plan`], step for step as
//! [`FeatureSpec::slot_values`] and [`FeatureSpec::encode`] run: imputation, derived features,
//! clipping and scaling, one-hot blocks, piecewise-linear blocks, all in `double`, then one cast
//! to `float` — the same arithmetic in the same order, so the feature vectors are bitwise equal
//! and the probabilities differ only by the runtimes' float kernels. What the graph does not do
//! is refuse input: values outside an input's valid range, which the API and `churn score` reject
//! with a message, are clipped here like any other value.
//!
//! Operators are from the default domain, opset 19 (string `Equal`).

use prost::Message;
use tract_onnx::pb;

use super::*;

/// Opset of the generated graph (string `Equal` needs 19).
const OPSET: i64 = 19;
/// Prefix of the names of the graph's own values.
const PREFIX: &str = "churn_t";

/// How a raw input enters the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawInputType {
    /// `double`; NaN is missing.
    Double,
    /// `string`; the empty string is missing (surrounding whitespace is the caller's to strip).
    Text,
}

impl RawInputType {
    /// The MLflow signature type of the column. Numbers are `any`: MLflow's schema check
    /// refuses an `int64` column for `double` (and pandas reads whole numbers as `int64`), while
    /// the loader (`churn_pyfunc`) takes integers, floats, numeric text and missing values and
    /// names the column and row of anything else.
    pub fn mlflow_type(self) -> &'static str {
        match self {
            RawInputType::Double => "any",
            RawInputType::Text => "string",
        }
    }
}

/// Graph under construction: values are named `churn_t<n>` (raw inputs with such names are
/// refused).
#[derive(Default)]
struct Graph {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    n: usize,
}

fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: pb::attribute_proto::AttributeType::Int as i32, i, ..Default::default() }
}

impl Graph {
    fn fresh(&mut self) -> String {
        self.n += 1;
        format!("{PREFIX}{}", self.n)
    }

    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<pb::AttributeProto>) -> String {
        let out = self.fresh();
        self.nodes.push(pb::NodeProto {
            op_type: op.into(),
            name: format!("{out}_{op}"),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    fn init(&mut self, t: pb::TensorProto) -> String {
        let name = self.fresh();
        self.inits.push(pb::TensorProto { name: name.clone(), ..t });
        name
    }

    fn doubles(&mut self, dims: &[usize], v: &[f64]) -> String {
        self.init(pb::TensorProto {
            dims: dims.iter().map(|d| *d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Double as i32,
            double_data: v.to_vec(),
            ..Default::default()
        })
    }

    fn scalar(&mut self, v: f64) -> String {
        self.doubles(&[], &[v])
    }

    fn ints(&mut self, v: &[i64]) -> String {
        self.init(pb::TensorProto {
            dims: vec![v.len() as i64],
            data_type: pb::tensor_proto::DataType::Int64 as i32,
            int64_data: v.to_vec(),
            ..Default::default()
        })
    }

    fn strings(&mut self, v: &[String]) -> String {
        self.init(pb::TensorProto {
            dims: vec![v.len() as i64],
            data_type: pb::tensor_proto::DataType::String as i32,
            string_data: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        })
    }

    fn cast_double(&mut self, x: &str) -> String {
        self.op("Cast", &[x], vec![attr_int("to", pb::tensor_proto::DataType::Double as i64)])
    }

    /// `v` where it is finite, `fallback` elsewhere.
    fn finite_or(&mut self, v: &str, fallback: f64) -> String {
        let nan = self.op("IsNaN", &[v], vec![]);
        let inf = self.op("IsInf", &[v], vec![]);
        let bad = self.op("Or", &[&nan, &inf], vec![]);
        let f = self.scalar(fallback);
        self.op("Where", &[&bad, &f, v], vec![])
    }

    /// `x` clamped to `[lo, hi]` (`f64::clamp`).
    fn clamp(&mut self, x: &str, lo: &str, hi: &str) -> String {
        let m = self.op("Min", &[x, hi], vec![]);
        self.op("Max", &[&m, lo], vec![])
    }

    /// `[N, 1]` membership of `col` (`[N, 1]`, string or double) in `set`, as 0/1 doubles.
    fn member_of(&mut self, col: &str, set: SetConst) -> String {
        let c = match &set {
            SetConst::Text(v) => self.strings(v),
            SetConst::Numbers(v) => self.doubles(&[v.len()], v),
        };
        let eq = self.op("Equal", &[col, &c], vec![]);
        let d = self.cast_double(&eq);
        if set.len() == 1 { d } else { self.sum_columns(&d) }
    }

    /// `[N, K]` -> `[N, 1]` row sums.
    fn sum_columns(&mut self, x: &str) -> String {
        let axes = self.ints(&[1]);
        self.op("ReduceSum", &[x, &axes], vec![attr_int("keepdims", 1)])
    }
}

enum SetConst {
    Text(Vec<String>),
    Numbers(Vec<f64>),
}

impl SetConst {
    fn len(&self) -> usize {
        match self {
            SetConst::Text(v) => v.len(),
            SetConst::Numbers(v) => v.len(),
        }
    }
}

/// One input of the graph (a raw column): its name and type.
fn raw_input(name: &str, t: RawInputType) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let elem = match t {
        RawInputType::Double => pb::tensor_proto::DataType::Double,
        RawInputType::Text => pb::tensor_proto::DataType::String,
    };
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: vec![Dimension { value: Some(Value::DimParam("N".into())), ..Default::default() }],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What a categorical slot is in the graph: its one-hot block, and for a raw input the column
/// itself (`[N, 1]`), which [`DerivedOp::CountEqual`] compares with text that may be unseen.
struct CatBlock {
    onehot: String,
    raw: Option<(String, RawInputType)>,
}

impl FeatureSpec {
    /// How each raw input enters [`raw_rows_onnx`](Self::raw_rows_onnx)'s graph, in input order:
    /// numbers as doubles, and a categorical input whose every category is a number (a 0/1 flag)
    /// too, so a numeric column of a DataFrame is passed as it is; other categories as text.
    pub fn raw_input_types(&self) -> Vec<(String, RawInputType)> {
        self.inputs
            .iter()
            .zip(&self.plan.input_slot)
            .map(|(input, slot)| {
                let t = match slot {
                    Slot::Numeric(_) => RawInputType::Double,
                    Slot::Categorical(s) => {
                        let v = &self.plan.vocab_index[*s];
                        if !v.values.is_empty() && v.numbers.len() == v.values.len() { RawInputType::Double } else { RawInputType::Text }
                    }
                };
                (input.name.clone(), t)
            })
            .collect()
    }

    /// The model on raw columns: this spec's transform as ONNX operators in front of `network`
    /// (an ONNX model taking the `[N, width]` float feature vector as its input
    /// [`crate::onnx::INPUT_NAME`]). The result's inputs are [`raw_input_types`](Self::raw_input_types);
    /// its outputs are the network's.
    pub fn raw_rows_onnx(&self, network: &[u8]) -> Result<Vec<u8>> {
        let bad = |problem: String| CoreError::Export { graph: "the raw-row ONNX model", problem };
        let mut model = pb::ModelProto::decode(network).map_err(|e| bad(format!("the network is not ONNX: {e}")))?;
        let net = model.graph.take().ok_or_else(|| bad("the network has no graph".into()))?;
        if net.input.len() != 1 || net.input[0].name != crate::onnx::INPUT_NAME {
            return Err(bad(format!("the network must take one input named {}", crate::onnx::INPUT_NAME)));
        }
        let types = self.raw_input_types();
        if types.is_empty() {
            return Err(bad("the spec has no inputs".into()));
        }
        let taken: Vec<&str> = net.node.iter().flat_map(|n| n.output.iter().chain(&n.input)).map(String::as_str).collect();
        if let Some((name, _)) = types.iter().find(|(n, _)| n.starts_with(PREFIX) || taken.contains(&n.as_str())) {
            return Err(bad(format!("the input column `{name}` has the name of a value inside the graph; rename the column")));
        }
        let mut g = Graph::default();
        let one = g.ints(&[1]);
        let mut numeric: Vec<Option<String>> = vec![None; self.numeric.len()];
        let mut cats: Vec<Option<CatBlock>> = (0..self.categorical.len()).map(|_| None).collect();

        // Step 1: raw inputs, imputed.
        for (i, (name, t)) in types.iter().enumerate() {
            let col = g.op("Unsqueeze", &[name, &one], vec![]);
            match self.plan.input_slot[i] {
                Slot::Numeric(s) => {
                    let nan = g.op("IsNaN", &[&col], vec![]);
                    let impute = g.scalar(self.numeric[s].impute);
                    numeric[s] = Some(g.op("Where", &[&nan, &impute, &col], vec![]));
                }
                Slot::Categorical(s) => {
                    let vocab = &self.plan.vocab_index[s];
                    let c = match t {
                        RawInputType::Text => g.strings(&vocab.values),
                        RawInputType::Double => {
                            let mut v = vec![0.0; vocab.values.len()];
                            for (x, k) in &vocab.numbers {
                                v[*k] = *x;
                            }
                            g.doubles(&[v.len()], &v)
                        }
                    };
                    let eq = g.op("Equal", &[&col, &c], vec![]);
                    let onehot = g.cast_double(&eq);
                    cats[s] = Some(CatBlock { onehot, raw: Some((col, *t)) });
                }
            }
        }
        let num =
            |numeric: &[Option<String>], s: usize| numeric[s].clone().ok_or_else(|| bad(format!("numeric slot {s} read before it is set")));

        // Step 2: derived features, in plan order.
        for op in &self.plan.derived {
            match op {
                DerivedOp::Ratio { num: n, den, when_zero, out } => {
                    let (a, d) = (num(&numeric, *n)?, num(&numeric, *den)?);
                    let zero = g.scalar(0.0);
                    let is_zero = g.op("Equal", &[&d, &zero], vec![]);
                    let q = g.op("Div", &[&a, &d], vec![]);
                    let alt = match when_zero {
                        Some(w) => num(&numeric, *w)?,
                        None => g.scalar(0.0),
                    };
                    let v = g.op("Where", &[&is_zero, &alt, &q], vec![]);
                    numeric[*out] = Some(g.finite_or(&v, self.numeric[*out].impute));
                }
                DerivedOp::Difference { left, right, out } => {
                    let v = g.op("Sub", &[&num(&numeric, *left)?, &num(&numeric, *right)?], vec![]);
                    numeric[*out] = Some(g.finite_or(&v, self.numeric[*out].impute));
                }
                DerivedOp::CountEqual { cats: slots, values, matches, out } => {
                    let mut count: Option<String> = None;
                    for (c, m) in slots.iter().zip(matches) {
                        let block = cats[*c].as_ref().ok_or_else(|| bad(format!("categorical slot {c} read before it is set")))?;
                        let Some((col, t)) = block.raw.clone() else {
                            return Err(bad(format!(
                                "`{}` counts values of the derived category `{}`, which this export does not support",
                                self.numeric[*out].name, self.categorical[*c].name
                            )));
                        };
                        // The texts that count: the known categories `matches` marks, and the
                        // values that are not categories at all (unseen ones).
                        let vocab = &self.plan.vocab_index[*c];
                        let mut set: Vec<String> = vocab.values.iter().zip(m).filter(|(_, hit)| **hit).map(|(v, _)| v.clone()).collect();
                        set.extend(values.iter().filter(|v| vocab.find(v).is_none()).cloned());
                        let set = match t {
                            RawInputType::Text => SetConst::Text(set),
                            RawInputType::Double => SetConst::Numbers(set.iter().filter_map(|v| category_number(v)).collect()),
                        };
                        if set.len() == 0 {
                            continue;
                        }
                        let hit = g.member_of(&col, set);
                        count = Some(match count {
                            None => hit,
                            Some(c) => g.op("Add", &[&c, &hit], vec![]),
                        });
                    }
                    numeric[*out] = Some(match count {
                        Some(c) => c,
                        None => {
                            // Nothing can match: zeros, one per row.
                            let shape = g.op("Shape", &[&types[0].0], vec![]);
                            let shape = g.op("Concat", &[&shape, &one], vec![attr_int("axis", 0)]);
                            let zero = pb::TensorProto {
                                dims: vec![1],
                                data_type: pb::tensor_proto::DataType::Double as i32,
                                double_data: vec![0.0],
                                ..Default::default()
                            };
                            let value = pb::AttributeProto {
                                name: "value".into(),
                                r#type: pb::attribute_proto::AttributeType::Tensor as i32,
                                t: Some(zero),
                                ..Default::default()
                            };
                            g.op("ConstantOfShape", &[&shape], vec![value])
                        }
                    });
                }
                DerivedOp::Bucket { src, edges, values, out } => {
                    // Bucket index = number of edges <= x, as `bucket_index`; the bucket's label
                    // picks the one-hot position (none for a label that is not a category).
                    let x = num(&numeric, *src)?;
                    let e = g.doubles(&[edges.len()], edges);
                    let ge = g.op("GreaterOrEqual", &[&x, &e], vec![]);
                    let ge = g.cast_double(&ge);
                    let index = if edges.len() == 1 { ge } else { g.sum_columns(&ge) };
                    let buckets: Vec<f64> = (0..values.len()).map(|b| b as f64).collect();
                    let b = g.doubles(&[buckets.len()], &buckets);
                    let which = g.op("Equal", &[&index, &b], vec![]);
                    let which = g.cast_double(&which);
                    let width = self.categorical[*out].vocabulary.len();
                    let mut table = vec![0.0; values.len() * width];
                    for (i, v) in values.iter().enumerate() {
                        if let CatValue::Known(k) = v {
                            table[i * width + k] = 1.0;
                        }
                    }
                    let t = g.doubles(&[values.len(), width], &table);
                    cats[*out] = Some(CatBlock { onehot: g.op("MatMul", &[&which, &t], vec![]), raw: None });
                }
            }
        }

        // Steps 3–5: the vector, block by block in layout order.
        let mut blocks = Vec::new();
        let mut width = 0;
        let mut clamped = Vec::new();
        for (s, f) in self.numeric.iter().enumerate() {
            let x = num(&numeric, s)?;
            let (lo, hi) = (g.scalar(f.clip_min), g.scalar(f.clip_max));
            let c = g.clamp(&x, &lo, &hi);
            let (mean, std) = (g.scalar(f.mean), g.scalar(f.std));
            let centred = g.op("Sub", &[&c, &mean], vec![]);
            blocks.push(g.op("Div", &[&centred, &std], vec![]));
            clamped.push(c);
            width += 1;
        }
        for (s, c) in self.categorical.iter().enumerate() {
            if self.plan.cat_offset[s] != width {
                return Err(bad(format!("one-hot block of `{}` at {} where {width} was expected", c.name, self.plan.cat_offset[s])));
            }
            blocks.push(cats[s].as_ref().ok_or_else(|| bad(format!("categorical slot {s} is never set")))?.onehot.clone());
            width += c.vocabulary.len();
        }
        for (s, f) in self.numeric.iter().enumerate() {
            if f.bins.is_empty() {
                continue;
            }
            if self.plan.bin_offset[s] != width {
                return Err(bad(format!("bins of `{}` at {} where {width} was expected", f.name, self.plan.bin_offset[s])));
            }
            let lows: Vec<f64> = f.bins.windows(2).map(|e| e[0]).collect();
            let widths: Vec<f64> = f.bins.windows(2).map(|e| e[1] - e[0]).collect();
            let (lo, w) = (g.doubles(&[lows.len()], &lows), g.doubles(&[widths.len()], &widths));
            let shifted = g.op("Sub", &[&clamped[s], &lo], vec![]);
            let frac = g.op("Div", &[&shifted, &w], vec![]);
            let (zero, unit) = (g.scalar(0.0), g.scalar(1.0));
            blocks.push(g.clamp(&frac, &zero, &unit));
            width += f.bin_count();
        }
        if width != self.width() {
            return Err(bad(format!("the graph makes {width} features, the spec {}", self.width())));
        }
        let refs: Vec<&str> = blocks.iter().map(String::as_str).collect();
        let vector = g.op("Concat", &refs, vec![attr_int("axis", 1)]);
        g.op("Cast", &[&vector], vec![attr_int("to", pb::tensor_proto::DataType::Float as i64)]);
        // The network reads its input by name: the cast's output takes that name.
        let last = g.nodes.last_mut().expect("the cast was just added");
        last.output = vec![crate::onnx::INPUT_NAME.to_string()];

        let mut nodes = g.nodes;
        nodes.extend(net.node);
        let mut inits = g.inits;
        inits.extend(net.initializer);
        model.graph = Some(pb::GraphProto {
            name: "churn_raw_rows".into(),
            node: nodes,
            initializer: inits,
            input: types.iter().map(|(n, t)| raw_input(n, *t)).collect(),
            output: net.output,
            doc_string: "Raw customer columns (numbers as double, NaN = missing; text as string, empty = missing) -> churn probability"
                .into(),
            ..Default::default()
        });
        model.ir_version = model.ir_version.max(9);
        model.opset_import = vec![pb::OperatorSetIdProto { domain: String::new(), version: OPSET }];
        Ok(model.encode_to_vec())
    }
}
