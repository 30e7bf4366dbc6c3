//! The dense stacks this project writes (read back from `model.onnx` with
//! [`dense_stack_from_onnx`](crate::onnx::dense_stack_from_onnx)), evaluated from a record's slot
//! values without building its model input vector.
//!
//! The model input is mostly zeros and runs of ones: a one-hot block has one 1, and a number's
//! piecewise-linear block is a run of 1s, at most one fraction, then 0s. The first layer is
//! linear, so its pre-activation is the bias plus, for each nonzero input, that input's weight
//! column times its value, and a run of 1s is one precomputed prefix sum of its block's
//! columns. That touches a few dozen columns where the dense product touches every input, and
//! nothing has to be zeroed or written per row. [`Network::first_layer`] goes further with
//! tables built once: a binned number's standardised value folded into its block (`fold`),
//! and a few categorical fields' one-hot columns summed per combination (`CategoryGroup`).
//! The rest of the network (a hidden layer or two, the calibration head) is small and
//! evaluated as usual.
//!
//! Two paths use it: the batch scorer ([`crate::scoring`]) for every row of a table, and the
//! Shapley evaluator ([`crate::explain::Explainer`]), which starts its walks from it and updates
//! the pre-activation column by column. Both are checked against tract on the same rows
//! (unit tests here, `tests/parity.rs` on real rows).

use crate::error::{CoreError, Result};
use crate::onnx::Dense;
use crate::spec::{CatValue, Change, FeatureSpec, Inputs, SlotValues};
use tract_onnx::prelude::DatumType;
use tract_onnx::prelude::tract_linalg::{self, element_wise::ElementWise};

/// The f32 sigmoid kernel tract runs on this machine (its model's `Sigmoid`). Looked up alone:
/// `Func::ew_f32` first fills tract-linalg's table of every routine for every datum type, which
/// a cold start would pay for one kernel.
fn sigmoid_kernel() -> Result<Box<dyn ElementWise<f32>>> {
    use tract_linalg::routines::{Func, RoutineFactory, best_for};
    match best_for(Func::Sigmoid, DatumType::F32, &tract_linalg::isa::native()).map(|r| &r.factory) {
        Some(RoutineFactory::F32(make)) => Ok(make()),
        _ => Err(CoreError::Inference("tract-linalg has no f32 sigmoid kernel for this machine".into())),
    }
}

/// A dense stack ready to evaluate from slot values.
#[derive(Debug)]
pub struct Network {
    layers: Vec<Dense>,
    /// Layers up to the model's logit (the first one-output layer); those after it are the
    /// calibration head, a function of the logit alone.
    body: usize,
    /// tract's vectorised sigmoid (the one the model's own `Sigmoid` runs).
    sigmoid: Box<dyn ElementWise<f32>>,
    /// The first layer's weights by model input, then the running sums of each
    /// piecewise-linear block's columns: `table[j * h..(j + 1) * h]` is input `j`'s column, and
    /// the sum of the first `k` columns of numeric slot `s`'s block starts at
    /// `runs[s] + (k - 1) * h`; after them, the folded blocks and the category groups'
    /// columns of [`first_layer`](Self::first_layer).
    table: Vec<f32>,
    /// Units of the first layer.
    h: usize,
    /// Where each numeric slot's running sums start in `table` (unused without a block).
    runs: Vec<usize>,
    /// Per numeric slot whose inputs [`first_layer`](Self::first_layer) takes folded: where
    /// its folded block starts in `table`, and its number of bins ([`fold`]).
    folded: Vec<Option<(usize, usize)>>,
    /// The categorical slots, taken a few at a time ([`CategoryGroup`]).
    groups: Vec<CategoryGroup>,
}

/// Categorical slots whose one-hot columns [`Network::first_layer`] adds as one: the table
/// holds the sum of their columns for every combination of their states (each slot's state is
/// 0 when its category is missing or unseen, `k + 1` for its vocabulary's `k`th value), so a
/// row adds one column per group instead of one per slot.
///
/// The combinations are numbered in mixed radix, the first slot most significant; the table's
/// column for combination `c ≥ 1` starts at `start + (c - 1) * h` (combination 0, every slot
/// without a known category, adds nothing). A group of one slot is that slot's own block.
#[derive(Debug)]
struct CategoryGroup {
    /// (categorical slot, its number of states: vocabulary size + 1).
    slots: Vec<(usize, usize)>,
    start: usize,
}

/// At most this many combinations per [`CategoryGroup`]: enough to take two or three of the
/// usual two-to-four-valued fields together, small enough that all groups' columns stay in
/// the cache.
const GROUP_STATES: usize = 64;

/// Scratch of [`Network::first_layer`]: the record's nonzero inputs as (start of the weights
/// in the network's table, value).
#[derive(Debug, Default)]
pub struct Active(Vec<(usize, f32)>);

/// Scratch of [`Network::logit`] for stacks deeper than one hidden layer.
#[derive(Debug, Default)]
pub struct Buffers {
    hidden: Vec<f32>,
    next: Vec<f32>,
}

/// `a · b` with eight running sums, which the compiler can keep in vector registers (a single
/// running sum must add in order and cannot).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_with(a, b, |x| x)
}

/// `a · max(b, 0)`.
fn dot_relu(a: &[f32], b: &[f32]) -> f32 {
    dot_with(a, b, |x| x.max(0.0))
}

#[inline(always)]
fn dot_with(a: &[f32], b: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * f(*y)).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * f(y[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `z += v * c`, element-wise.
#[inline(always)]
pub(crate) fn add_scaled(z: &mut [f32], v: f32, c: &[f32]) {
    for (zi, ci) in z.iter_mut().zip(c) {
        *zi += v * ci;
    }
}

/// `z = bias + Σ v · table[start..start + h]` over the `(start, v)` of `active`
/// (`h = z.len()`): the first layer from a row's nonzero inputs.
///
/// For the usual widths (a multiple of 8, up to 64 units) every unit's sum stays in a register
/// while the inputs go by ([`sum_in_registers`]); other widths take a plain loop. Also compiled
/// for AVX2 and chosen at run time when the CPU has it (eight floats per instruction rather
/// than four); neither version fuses a multiply with its add, so both give the same bits.
#[multiversion::multiversion(targets("x86_64+avx2"))]
fn sum_columns(table: &[f32], active: &[(usize, f32)], bias: &[f32], z: &mut [f32]) {
    match z.len() {
        8 => sum_in_registers::<1>(table, active, bias, z),
        16 => sum_in_registers::<2>(table, active, bias, z),
        24 => sum_in_registers::<3>(table, active, bias, z),
        32 => sum_in_registers::<4>(table, active, bias, z),
        40 => sum_in_registers::<5>(table, active, bias, z),
        48 => sum_in_registers::<6>(table, active, bias, z),
        56 => sum_in_registers::<7>(table, active, bias, z),
        64 => sum_in_registers::<8>(table, active, bias, z),
        _ => {
            z.copy_from_slice(bias);
            for &(start, v) in active {
                add_scaled(z, v, &table[start..start + z.len()]);
            }
        }
    }
}

/// [`sum_columns`] for `B` blocks of eight units: the `B` blocks of sums are locals the
/// compiler keeps in registers, and each input adds its column to all of them (independent
/// additions, so the adder's latency is hidden).
#[inline(always)]
fn sum_in_registers<const B: usize>(table: &[f32], active: &[(usize, f32)], bias: &[f32], z: &mut [f32]) {
    let mut acc = [[0.0f32; 8]; B];
    for (a, b) in acc.iter_mut().zip(bias.chunks_exact(8)) {
        a.copy_from_slice(b);
    }
    for &(start, v) in active {
        let column = &table[start..start + B * 8];
        for (a, w) in acc.iter_mut().zip(column.chunks_exact(8)) {
            for i in 0..8 {
                a[i] += v * w[i];
            }
        }
    }
    for (out, a) in z.chunks_exact_mut(8).zip(&acc) {
        out.copy_from_slice(a);
    }
}

/// Folds numeric slot `s`'s standardised value into its piecewise-linear block, appending the
/// folded block to `table`; returns where it starts and the number of bins, or `None` when
/// the slot cannot be folded.
///
/// Within bin `k` (edges `e_k < e_{k+1}`, fraction `f`), the clipped value is
/// `e_k + f (e_{k+1} - e_k)`, so its standardised input adds `(e_k - mean) / std` times its
/// column plus `f (e_{k+1} - e_k) / std` times it. The block's `k` leading 1s and fraction
/// therefore add `R_k + f C_k`, with `R_k` the sum of the first `k` bin columns plus
/// `(e_k - mean) / std` times the value's column (`k` = 0..=bins) and `C_k` bin `k`'s column
/// plus `(e_{k+1} - e_k) / std` times it: two columns where there were three. Exact (up to
/// rounding) when the edges span the clipping range, as fitted edges do; otherwise the value
/// outside the edges would still move the input but not the block, and the slot is not folded.
fn fold(spec: &FeatureSpec, s: usize, table: &mut Vec<f32>, h: usize) -> Option<(usize, usize)> {
    let f = &spec.numeric[s];
    let (offset, bins) = spec.bin_block(s);
    let spans = f.bins.first() == Some(&f.clip_min) && f.bins.last() == Some(&f.clip_max);
    if bins == 0 || !spans || !(f.std.is_finite() && f.std > 0.0) {
        return None;
    }
    let column = |j: usize| table[j * h..(j + 1) * h].iter().map(|&w| w as f64).collect::<Vec<f64>>();
    let value = column(s);
    let block: Vec<Vec<f64>> = (offset..offset + bins).map(column).collect();
    let mut run = vec![0f64; h];
    let mut folded = Vec::with_capacity((2 * bins + 1) * h);
    for k in 0..=bins {
        let v = (f.bins[k] - f.mean) / f.std;
        folded.extend(run.iter().zip(&value).map(|(r, c)| (r + v * c) as f32));
        if let Some(bin) = block.get(k) {
            run.iter_mut().zip(bin).for_each(|(r, c)| *r += c);
        }
    }
    for (k, bin) in block.iter().enumerate() {
        let w = (f.bins[k + 1] - f.bins[k]) / f.std;
        folded.extend(bin.iter().zip(&value).map(|(b, c)| (b + w * c) as f32));
    }
    let start = table.len();
    table.extend(folded);
    Some((start, bins))
}

/// Takes the categorical slots in order into [`CategoryGroup`]s of at most [`GROUP_STATES`]
/// combinations, appending each group of two or more slots' columns to `table`.
fn group_categories(spec: &FeatureSpec, table: &mut Vec<f32>, h: usize) -> Vec<CategoryGroup> {
    let mut members: Vec<Vec<(usize, usize)>> = Vec::new();
    for s in 0..spec.categorical.len() {
        let states = spec.category_block(s).1 + 1;
        match members.last_mut() {
            Some(g) if g.iter().map(|m| m.1).product::<usize>() * states <= GROUP_STATES => g.push((s, states)),
            _ => members.push(vec![(s, states)]),
        }
    }
    members
        .into_iter()
        .map(|slots| {
            if let [(s, _)] = slots[..] {
                return CategoryGroup { start: spec.category_block(s).0 * h, slots };
            }
            let start = table.len();
            let combinations: usize = slots.iter().map(|m| m.1).product();
            for c in 1..combinations {
                let mut sum = vec![0f32; h];
                let mut rest = c;
                for &(s, states) in slots.iter().rev() {
                    let state = rest % states;
                    rest /= states;
                    if state > 0 {
                        let j = spec.category_block(s).0 + state - 1;
                        add_scaled(&mut sum, 1.0, &table[j * h..(j + 1) * h]);
                    }
                }
                table.extend_from_slice(&sum);
            }
            CategoryGroup { slots, start }
        })
        .collect()
}

/// Runs `layers` on `b.hidden`; returns the first output of the last one.
fn forward(layers: &[Dense], b: &mut Buffers) -> f32 {
    for l in layers {
        b.next.clear();
        b.next.extend((0..l.outputs).map(|o| {
            let v = dot(&l.weight[o * l.inputs..(o + 1) * l.inputs], &b.hidden) + l.bias[o];
            if l.relu { v.max(0.0) } else { v }
        }));
        std::mem::swap(&mut b.hidden, &mut b.next);
    }
    b.hidden[0]
}

impl Network {
    /// Prepares `layers` (as [`dense_stack_from_onnx`](crate::onnx::dense_stack_from_onnx) reads
    /// them) for inputs made by `spec`.
    pub fn new(spec: &FeatureSpec, mut layers: Vec<Dense>) -> Result<Self> {
        let width = spec.width();
        crate::onnx::check_width(&layers, width)?;
        let first = &mut layers[0];
        let h = first.outputs;
        // Sized once: a start-up's fresh memory pages are a large part of a cold start.
        // Reserved, not touched: the bound covers running sums, folded blocks and groups.
        let sums: usize = (0..spec.numeric.len()).map(|s| spec.bin_block(s).1).sum();
        let extra = 3 * sums + spec.numeric.len() + GROUP_STATES * spec.categorical.len();
        let mut table = Vec::with_capacity((width + extra) * h);
        table.resize(width * h, 0.0f32);
        for o in 0..h {
            for j in 0..width {
                table[j * h + o] = first.weight[o * width + j];
            }
        }
        // The table holds the first layer's weights from here on.
        first.weight = Vec::new();
        let mut runs = Vec::with_capacity(spec.numeric.len());
        for s in 0..spec.numeric.len() {
            let (offset, count) = spec.bin_block(s);
            runs.push(table.len());
            let mut sum = vec![0.0f32; h];
            for k in 0..count {
                add_scaled(&mut sum, 1.0, &table[(offset + k) * h..(offset + k + 1) * h]);
                table.extend_from_slice(&sum);
            }
        }
        let folded = (0..spec.numeric.len()).map(|s| fold(spec, s, &mut table, h)).collect();
        let groups = group_categories(spec, &mut table, h);
        let sigmoid = sigmoid_kernel()?;
        let body = layers.iter().position(|l| l.outputs == 1).map_or(layers.len(), |i| i + 1);
        Ok(Network { layers, body, sigmoid, table, h, runs, folded, groups })
    }

    /// Units of the first layer: the length of a pre-activation.
    pub fn hidden(&self) -> usize {
        self.h
    }

    /// Model input `j`'s weight column in the first layer.
    #[inline]
    pub fn column(&self, j: usize) -> &[f32] {
        let h = self.h;
        &self.table[j * h..(j + 1) * h]
    }

    /// Where, in the table, the sum of the weight columns of numeric slot `slot`'s first `ones`
    /// piecewise-linear inputs begins (`ones` ≥ 1).
    #[inline]
    fn run_start(&self, slot: usize, ones: usize) -> usize {
        self.runs[slot] + (ones - 1) * self.h
    }

    /// The sum of the weight columns of numeric slot `slot`'s first `ones` piecewise-linear
    /// inputs (`ones` ≥ 1): what a run of 1s that begins the block adds to the first layer.
    #[inline]
    pub fn leading_ones(&self, slot: usize, ones: usize) -> &[f32] {
        let start = self.run_start(slot, ones);
        &self.table[start..start + self.h]
    }

    /// Adds the first-layer effect of a [`Change`] of the model input to the pre-activation `z`.
    #[inline]
    pub fn apply(&self, z: &mut [f32], change: Change) {
        match change {
            Change::Input { position, delta } => add_scaled(z, delta, self.column(position)),
            Change::LeadingOnes { slot, ones, sign } => add_scaled(z, sign, self.leading_ones(slot, ones)),
        }
    }

    /// The first layer's pre-activation (bias included) for the record whose slot values are
    /// `slots`, into `z` (length [`hidden`](Self::hidden)). Equal to the first layer of the
    /// dense model input [`FeatureSpec::encode`] writes, up to float rounding.
    ///
    /// A folded number adds one or two columns instead of up to three, and each group of
    /// categorical slots (`CategoryGroup`) one instead of one per slot.
    pub fn first_layer(&self, spec: &FeatureSpec, slots: &SlotValues, z: &mut [f32], active: &mut Active) {
        let h = self.h;
        debug_assert_eq!(z.len(), h, "z holds one sum per unit");
        let active = &mut active.0;
        active.clear();
        for (s, &x) in slots.numeric.iter().enumerate() {
            match self.folded[s] {
                Some((start, bins)) => {
                    let (ones, fraction) = spec.bin_state(s, x);
                    active.push((start + ones * h, 1.0));
                    if fraction != 0.0 {
                        active.push((start + (bins + 1 + ones) * h, fraction));
                    }
                }
                None => spec.encode_number(s, x, &mut |inputs| match inputs {
                    Inputs::Value { position, value } => active.push((position * h, value)),
                    Inputs::LeadingOnes { slot, ones } => active.push((self.run_start(slot, ones), 1.0)),
                }),
            }
        }
        for g in &self.groups {
            let combination = g
                .slots
                .iter()
                .fold(0, |c, &(s, states)| c * states + if let CatValue::Known(k) = slots.categorical[s] { k + 1 } else { 0 });
            if combination > 0 {
                active.push((g.start + (combination - 1) * h, 1.0));
            }
        }
        sum_columns(&self.table, active, &self.layers[0].bias, z);
    }

    /// The (calibrated) logit from the first layer's pre-activation `z`.
    #[inline]
    pub fn logit(&self, z: &[f32], b: &mut Buffers) -> f32 {
        let (body, head) = self.layers.split_at(self.body);
        let logit = match body {
            [_] => z[0],
            // The usual shape (one hidden ReLU layer): no buffer.
            [first, out] if first.relu && out.outputs == 1 => dot_relu(&out.weight, z) + out.bias[0],
            [first, rest @ ..] => {
                b.hidden.clear();
                b.hidden.extend(z.iter().map(|v| if first.relu { v.max(0.0) } else { *v }));
                forward(rest, b)
            }
            [] => unreachable!("a dense stack has layers"),
        };
        match head {
            [] => logit,
            // The spline calibration's shape: hinges of the logit, then their combination.
            [hinges, out] if hinges.inputs == 1 && hinges.relu && out.outputs == 1 && !out.relu => {
                let mut v = out.bias[0];
                for ((w, c), o) in hinges.weight.iter().zip(&hinges.bias).zip(&out.weight) {
                    v += o * (w * logit + c).max(0.0);
                }
                v
            }
            _ => {
                b.hidden.clear();
                b.hidden.push(logit);
                forward(head, b)
            }
        }
    }

    /// Logits to probabilities, in place.
    pub fn sigmoids(&self, logits: &mut [f32]) -> Result<()> {
        self.sigmoid.run(logits).map_err(|e| CoreError::Inference(format!("sigmoid: {e}")))
    }

    /// The probability from the first layer's pre-activation `z`.
    pub fn probability(&self, z: &[f32], b: &mut Buffers) -> Result<f32> {
        let mut p = [self.logit(z, b)];
        self.sigmoids(&mut p)?;
        Ok(p[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::dense_stack_to_onnx;
    use crate::scorer::Scorer;
    use crate::spec::tests::{fitted, fitted_binned, rows};

    /// A deterministic, irregular weight.
    fn weight(i: usize) -> f32 {
        ((i * 7919 + 13) % 211) as f32 / 105.0 - 1.0
    }

    fn dense(inputs: usize, outputs: usize, relu: bool, salt: usize) -> Dense {
        Dense {
            weight: (0..inputs * outputs).map(|i| weight(i + salt)).collect(),
            bias: (0..outputs).map(|o| weight(o + salt + 7) * 0.5).collect(),
            inputs,
            outputs,
            relu,
        }
    }

    /// Every shape [`Network::logit`] has a case for: one layer; one hidden layer; two hidden
    /// layers; one hidden layer and the spline calibration head.
    fn stacks(width: usize) -> Vec<Vec<Dense>> {
        let head = || vec![dense(1, 3, true, 5), dense(3, 1, false, 9)];
        vec![
            vec![dense(width, 1, false, 0)],
            vec![dense(width, 10, true, 1), dense(10, 1, false, 2)],
            vec![dense(width, 9, true, 3), dense(9, 4, true, 4), dense(4, 1, false, 6)],
            [vec![dense(width, 16, true, 8), dense(16, 1, false, 10)], head()].concat(),
        ]
    }

    #[test]
    fn column_sums_in_registers_equal_the_plain_loop_bit_for_bit() {
        // Every width: those kept in registers (multiples of 8 up to 64) and the others.
        for h in 1..=72 {
            let table: Vec<f32> = (0..h * 30).map(weight).collect();
            let bias: Vec<f32> = (0..h).map(|i| weight(i + 3)).collect();
            // Inputs anywhere in the table, in no particular order, with 0 to 29 of them.
            for n in [0, 1, 5, 29] {
                let active: Vec<(usize, f32)> = (0..n).map(|k| ((k * 7 % 30) * h, weight(k + 11) * 2.0)).collect();
                let mut z = vec![f32::NAN; h];
                sum_columns(&table, &active, &bias, &mut z);
                let mut want = bias.clone();
                for &(start, v) in &active {
                    for i in 0..h {
                        want[i] += v * table[start + i];
                    }
                }
                assert_eq!(z, want, "width {h}, {n} inputs");
            }
        }
    }

    #[test]
    fn the_sigmoid_looked_up_alone_is_the_kernel_tracts_table_gives() {
        let alone = sigmoid_kernel().unwrap();
        let table = tract_linalg::Func::Sigmoid.ew_f32().unwrap();
        assert_eq!(alone.name(), table.name());
        let mut a: Vec<f32> = (-200..=200).map(|i| i as f32 * 0.1).collect();
        let mut b = a.clone();
        alone.run(&mut a).unwrap();
        table.run(&mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn sparse_first_layer_scores_as_tract_on_the_dense_input() {
        for spec in [fitted(), fitted_binned()] {
            let width = spec.width();
            for layers in stacks(width) {
                let scorer = Scorer::from_onnx(&dense_stack_to_onnx(&layers, &[]).unwrap(), width).unwrap();
                let net = Network::new(&spec, layers).unwrap();
                // Both of first_layer's shortcuts are taken: the categories grouped, and the
                // binned spec's numbers folded.
                assert!(net.groups.iter().any(|g| g.slots.len() > 1), "{:?}", net.groups);
                assert_eq!(net.folded.iter().any(|f| f.is_some()), spec.numeric.iter().any(|f| !f.bins.is_empty()));
                let (mut z, mut b, mut slots) = (vec![0.0; net.hidden()], Buffers::default(), SlotValues::default());
                let mut active = Active::default();
                // The fixture rows, an unseen category and a missing one, a blank number,
                // numbers on the edges and beyond the training range on both sides.
                let mut records: Vec<Vec<(&str, &str)>> = rows().iter().map(|r| r.to_vec()).collect();
                records.push(vec![("tenure", "5"), ("total", ""), ("plan", "z"), ("tv", "")]);
                records.push(vec![("tenure", "10.5"), ("total", "0"), ("plan", "b"), ("tv", "No")]);
                records.push(vec![("tenure", "300"), ("total", "4000"), ("plan", "a"), ("tv", "Yes")]);
                for r in &records {
                    let x = spec.transform(r.as_slice()).unwrap();
                    let want = scorer.predict(&x).unwrap()[0];
                    spec.checked_slot_values(r.as_slice(), &mut slots).unwrap();
                    net.first_layer(&spec, &slots, &mut z, &mut active);
                    let got = net.probability(&z, &mut b).unwrap();
                    assert!((got - want).abs() <= 1e-6, "{r:?}: {got} against tract's {want}");
                }
            }
        }
    }

    #[test]
    fn a_stack_of_another_width_is_refused() {
        let spec = fitted();
        let err = Network::new(&spec, vec![dense(spec.width() + 1, 1, false, 0)]).unwrap_err();
        assert!(err.to_string().contains(&format!("the feature spec makes {}", spec.width())), "{err}");
    }
}
