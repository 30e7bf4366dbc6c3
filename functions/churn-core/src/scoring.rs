//! Scores whole tables: one output row per input row, always.
//!
//! Shared by `churn score` and the S3 batch Lambda so that a file scored on a laptop and a file
//! scored in AWS give the same bytes. A row that cannot be scored (a bad value, say) is kept, with
//! a null probability and the reason in the `error` column; nothing is dropped silently. Columns
//! the model does not use (the target, if present) are ignored.
//!
//! Optionally ([`BatchScorer::with_reasons`]) the rows of tiers the playbook contacts also get
//! their top reasons and personalised offer — the prediction API's Shapley estimator with the
//! same seed, so a customer gets the same reasons from a scored file as from the API.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Builder, RecordBatch, StringArray, StringBuilder, UInt32Array, UInt32Builder};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::bundle::Bundle;
use crate::drift::{DriftCounter, FeatureDrift};
use crate::error::{CoreError, Result};
use crate::explain;
use crate::network::{Active, Buffers};
use crate::spec::SlotValues;
use crate::table::{Bound, DictionaryCache, TableReader, TableWriter};

/// Name of the output column holding a row's position when the input has no id column.
pub const ROW_COLUMN: &str = "row";
/// The last output column: why a row could not be scored (null when it was).
pub const ERROR_COLUMN: &str = "error";

/// Counts of one scoring run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ScoreSummary {
    pub rows: usize,
    pub scored: usize,
    /// Rows kept with an error instead of a probability.
    pub failed: usize,
    /// Rows scored with a warning (unseen or missing category).
    pub warned: usize,
    /// Rows per tier name, in playbook order.
    pub tiers: Vec<(String, usize)>,
    /// Scored rows per probability decile: `[0, 0.1)`, `[0.1, 0.2)`, …, `[0.9, 1]`.
    pub probability_histogram: [usize; 10],
    /// Mean churn probability of the scored rows (0 when none).
    pub mean_probability: f64,
    /// With reasons ([`BatchScorer::with_reasons`]): customers per personalised offer, in
    /// playbook order — the size of each campaign. Empty without reasons.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offers: Vec<(String, usize)>,
}

/// Scores record batches with one bundle; keeps its buffers between batches.
pub struct BatchScorer<'a> {
    bundle: &'a Bundle,
    names: Vec<String>,
    id_column: Option<String>,
    schema: SchemaRef,
    scratch: SlotValues,
    /// Parquet dictionaries resolved in earlier batches (one per column chunk).
    dictionaries: DictionaryCache,
    input: crate::scorer::InputBuffer,
    /// The network path's first-layer pre-activation, logits and buffers, kept between batches.
    sparse: (Vec<f32>, Vec<f32>, Buffers, Active),
    drift: Option<DriftCounter>,
    probability_sum: f64,
    /// Reasons written per contacted row (0: no reason columns).
    top_reasons: usize,
    pub summary: ScoreSummary,
}

/// Output columns [`BatchScorer::with_reasons`] adds before `error`.
pub const REASON_COLUMNS: [&str; 3] = ["top_reasons", "offer", "offer_action"];

/// `feature=value (+0.1234); …`: one scored row's reasons, largest first.
pub fn reasons_text(reasons: &[explain::Reason]) -> String {
    reasons.iter().map(|r| format!("{}={} ({:+.4})", r.feature, r.value, r.contribution)).collect::<Vec<_>>().join("; ")
}

impl<'a> BatchScorer<'a> {
    /// `input_columns` are the columns of the table to be scored: the id column is echoed when
    /// the table has it, otherwise the 1-based row number is written.
    pub fn new(bundle: &'a Bundle, input_columns: &[String]) -> Self {
        let id_column = bundle.spec.id_column.clone().filter(|c| input_columns.contains(c));
        let id_field = match &id_column {
            Some(c) => Field::new(c, DataType::Utf8, true),
            None => Field::new(ROW_COLUMN, DataType::Utf8, false),
        };
        let schema = Arc::new(Schema::new(vec![
            crate::table::without_compression(crate::table::without_dictionary(id_field)),
            crate::table::without_dictionary(Field::new("churn_probability", DataType::Float64, true)),
            crate::table::without_statistics(Field::new("risk_tier", DataType::Utf8, true)),
            crate::table::without_statistics(Field::new("recommended_action", DataType::Utf8, true)),
            crate::table::without_statistics(Field::new("warnings", DataType::Utf8, true)),
            Field::new(ERROR_COLUMN, DataType::Utf8, true),
        ]));
        let tiers = bundle.playbook.tiers.iter().map(|t| (t.name.clone(), 0)).collect();
        BatchScorer {
            bundle,
            names: bundle.spec.input_names().map(String::from).collect(),
            id_column,
            schema,
            scratch: SlotValues::default(),
            dictionaries: DictionaryCache::default(),
            input: Default::default(),
            sparse: Default::default(),
            drift: bundle.reference.as_ref().map(|r| DriftCounter::new(&bundle.spec, r)),
            probability_sum: 0.0,
            top_reasons: 0,
            summary: ScoreSummary { tiers, ..Default::default() },
        }
    }

    /// Adds [`REASON_COLUMNS`] before `error`: for each scored row of a tier the playbook
    /// contacts, its `top` largest Shapley reasons ([`reasons_text`]) and the offer they lead to
    /// (null for other rows, and when no offer fits). About 45 µs per contacted row against
    /// well under 1 µs for the score alone, hence off unless asked for. `top` = 0 adds nothing.
    pub fn with_reasons(mut self, top: usize) -> Result<Self> {
        if top == 0 {
            return Ok(self);
        }
        if self.bundle.explainer.is_none() {
            return Err(CoreError::Bundle {
                dir: self.bundle.manifest.model_name.clone(),
                message: "reasons need the bundle's background sample (background.json) and an MLP or logistic model written by churn train; retrain the model, or score without reasons".into(),
            });
        }
        let mut fields: Vec<Field> = self.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let error = fields.pop().expect("the error column");
        fields.extend(REASON_COLUMNS.map(|c| Field::new(c, DataType::Utf8, true)));
        fields.push(error);
        self.schema = Arc::new(Schema::new(fields));
        self.top_reasons = top;
        self.summary.offers = self.bundle.playbook.offers.iter().map(|o| (o.name.clone(), 0)).collect();
        Ok(self)
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// PSI of every feature of the rows scored so far against the bundle's training reference;
    /// `None` when the bundle has no reference or nothing was scored.
    pub fn drift(&self, threshold: f64) -> Option<Vec<FeatureDrift>> {
        self.drift.as_ref()?.psi(self.bundle.reference.as_ref()?, threshold)
    }

    /// Scores one batch whose first row is data row `first_row` (0-based) of the table.
    pub fn score(&mut self, batch: &RecordBatch, first_row: usize, locate: &dyn Fn(usize) -> String) -> Result<RecordBatch> {
        let spec = &self.bundle.spec;
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let mut bound = Bound::new(batch, &names)?;
        bound.resolve_dictionaries(spec, &mut self.dictionaries);
        let n = batch.num_rows();
        let (scratch, drift) = (&mut self.scratch, &mut self.drift);
        // Errors and warnings are rare: kept as (row, message), in row order.
        let mut errors: Vec<(usize, String)> = Vec::new();
        let mut warnings: Vec<(usize, String)> = Vec::new();
        let mut warn_buf = Vec::new();
        // Steps 1–2 of the transform for row `r`, with its drift counts and warnings; `false`
        // (and the error kept) when the row cannot be scored.
        let mut slots = |r: usize, scratch: &mut SlotValues| match spec.checked_slot_values(&bound.row(r), scratch) {
            Ok(()) => {
                if let Some(d) = drift.as_mut() {
                    d.observe(scratch);
                }
                warn_buf.clear();
                spec.warnings(scratch, &mut warn_buf);
                if !warn_buf.is_empty() {
                    let w: Vec<String> = warn_buf.iter().map(|w| format!("{}: {}", w.field, w.message)).collect();
                    warnings.push((r, w.join("; ")));
                }
                true
            }
            Err(e) => {
                errors.push((r, format!("{}: {e}", locate(first_row + r))));
                false
            }
        };
        let tract_probs;
        let probs: &[f32] = match &self.bundle.network {
            // The project's own models: the first layer from the slot values (no input vector).
            Some(net) => {
                let (z, logits, buffers, active) = &mut self.sparse;
                z.resize(net.hidden(), 0.0);
                logits.clear();
                for r in 0..n {
                    // A row that cannot be scored gets a placeholder logit; it is not used.
                    let logit = if slots(r, scratch) {
                        net.first_layer(spec, scratch, z, active);
                        net.logit(z, buffers)
                    } else {
                        0.0
                    };
                    logits.push(logit);
                }
                net.sigmoids(logits)?;
                logits
            }
            None => {
                let width = spec.width();
                let ((), probs) = self.bundle.scorer.predict_filled(n, &mut self.input, |features| {
                    for (r, out) in features.chunks_mut(width).enumerate() {
                        if slots(r, scratch) {
                            spec.encode(scratch, out, None);
                        } else {
                            // The buffer holds an earlier batch's values; this row's
                            // probability is not used, but it is not left to chance either.
                            out.fill(0.0);
                        }
                    }
                })?;
                tract_probs = probs;
                &tract_probs
            }
        };

        // A text id column is passed through (`string` as it is, `large_string` and string
        // views, as pandas and Polars write text, copied whole into the output's type); other
        // types are written as the transform reads them.
        let ids: ArrayRef = match self.id_column.as_deref().and_then(|c| batch.column_by_name(c).map(|a| (c, a))) {
            Some((c, a)) if matches!(a.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => {
                arrow::compute::cast(a, &DataType::Utf8).map_err(|e| CoreError::Column {
                    file: String::new(),
                    column: c.into(),
                    problem: e.to_string(),
                })?
            }
            Some((c, _)) => {
                let b = Bound::new(batch, &[c])?;
                Arc::new((0..n).map(|r| b.row(r).value_text(0)).collect::<StringArray>())
            }
            None => Arc::new((0..n).map(|r| Some((first_row + r + 1).to_string())).collect::<StringArray>()),
        };
        let tiers = &self.bundle.playbook.tiers;
        let mut p_col = Float64Builder::with_capacity(n);
        let mut tier_idx = UInt32Builder::with_capacity(n);
        let mut failed = errors.iter().peekable();
        for (r, &p) in probs.iter().enumerate().take(n) {
            if failed.next_if(|(at, _)| *at == r).is_some() {
                p_col.append_null();
                tier_idx.append_null();
                self.summary.failed += 1;
            } else {
                let p = p as f64;
                let t = self.bundle.playbook.tier_index(p);
                p_col.append_value(p);
                tier_idx.append_value(t as u32);
                self.summary.scored += 1;
                self.summary.probability_histogram[crate::metrics::probability_bin(p, 10)] += 1;
                self.probability_sum += p;
                self.summary.tiers[t].1 += 1;
            }
        }
        let err_col = sparse_text(n, &errors);
        let warn_col = sparse_text(n, &warnings);
        self.summary.warned += warnings.len();
        self.summary.rows += n;
        self.summary.mean_probability = if self.summary.scored == 0 { 0.0 } else { self.probability_sum / self.summary.scored as f64 };
        // Tier names and actions are gathered from the playbook by index: one copy per row, no
        // per-row string building.
        let tier_idx = tier_idx.finish();
        let gather = |values: StringArray| take(&values, &tier_idx, None).expect("indices are in range");
        let mut columns: Vec<ArrayRef> = vec![
            ids,
            Arc::new(p_col.finish()),
            gather(tiers.iter().map(|t| Some(t.name.as_str())).collect()),
            gather(tiers.iter().map(|t| Some(t.action.as_str())).collect()),
            Arc::new(warn_col),
        ];
        if self.top_reasons > 0 {
            columns.extend(self.reason_columns(&bound, &tier_idx)?);
        }
        columns.push(Arc::new(err_col));
        Ok(RecordBatch::try_new(self.schema.clone(), columns).expect("columns match the schema"))
    }

    /// [`REASON_COLUMNS`] of one batch; `tier_idx` is null for rows that were not scored.
    fn reason_columns(&mut self, bound: &Bound, tier_idx: &UInt32Array) -> Result<[ArrayRef; 3]> {
        let (spec, playbook) = (&self.bundle.spec, &self.bundle.playbook);
        let explainer = self.bundle.explainer.as_ref().expect("checked by with_reasons");
        let n = tier_idx.len();
        let mut cols = [StringBuilder::with_capacity(n, 0), StringBuilder::with_capacity(n, 0), StringBuilder::with_capacity(n, 0)];
        for r in 0..n {
            let tier = tier_idx.is_valid(r).then(|| &playbook.tiers[tier_idx.value(r) as usize]).filter(|t| t.contact);
            let Some(tier) = tier else {
                cols.iter_mut().for_each(|c| c.append_null());
                continue;
            };
            let row = bound.row(r);
            // The row was transformed without error a moment ago: this cannot fail.
            spec.checked_slot_values(&row, &mut self.scratch)
                .map_err(|error| CoreError::Untransformable { what: "a scored row (for its reasons)", error })?;
            let params = explain::ShapleyParams { permutations: explain::REASON_PERMUTATIONS, seed: 0 };
            let a = explainer.explain_slots(spec, &self.scratch, params)?;
            let (reasons, pick) = explain::reasons_and_offer(spec, playbook, tier, &row, &a.values, self.top_reasons);
            match pick {
                Some(p) => {
                    self.summary.offers[p.index].1 += 1;
                    cols[1].append_value(&p.offer.name);
                    cols[2].append_value(&p.offer.action);
                }
                None => {
                    cols[1].append_null();
                    cols[2].append_null();
                }
            }
            cols[0].append_value(reasons_text(&reasons));
        }
        Ok(cols.map(|mut c| Arc::new(c.finish()) as ArrayRef))
    }
}

/// A text column of `n` rows that is null except at the given (row, text) pairs, in row order.
fn sparse_text(n: usize, values: &[(usize, String)]) -> StringArray {
    if values.is_empty() {
        return StringArray::new_null(n);
    }
    let mut b = StringBuilder::with_capacity(n, values.iter().map(|(_, v)| v.len()).sum());
    let mut next = 0;
    for (r, v) in values {
        b.append_nulls(r - next);
        b.append_value(v);
        next = r + 1;
    }
    b.append_nulls(n - next);
    b.finish()
}

/// Streams every batch of `reader` through a [`BatchScorer`], handing each scored batch to `sink`.
fn stream<'a>(
    bundle: &'a Bundle,
    reader: TableReader,
    top_reasons: usize,
    mut sink: impl FnMut(&BatchScorer<'a>, RecordBatch) -> Result<()>,
) -> Result<BatchScorer<'a>> {
    reader.require(bundle.spec.input_names())?;
    let mut scorer = BatchScorer::new(bundle, &reader.columns).with_reasons(top_reasons)?;
    let format = reader.format;
    let locate = move |i: usize| crate::table::locate(format, i);
    let mut first = 0;
    for batch in reader {
        let batch = batch?;
        let out = scorer.score(&batch, first, &locate)?;
        first += batch.num_rows();
        sink(&scorer, out)?;
    }
    Ok(scorer)
}

/// Streams `reader` through the bundle into `output`; returns the run's counts. `top_reasons`
/// > 0 adds reasons and offers for contacted rows ([`BatchScorer::with_reasons`]).
pub fn score_table(bundle: &Bundle, reader: TableReader, output: &std::path::Path, top_reasons: usize) -> Result<ScoreSummary> {
    let mut writer: Option<TableWriter> = None;
    let scorer = stream(bundle, reader, top_reasons, |scorer, out| {
        if writer.is_none() {
            writer = Some(TableWriter::create(output, scorer.schema())?);
        }
        writer.as_mut().expect("created above").write(&out)
    })?;
    match writer {
        Some(w) => w.finish()?,
        // An input without rows still gets its (empty) output file.
        None => TableWriter::create(output, scorer.schema())?.finish()?,
    };
    Ok(scorer.summary)
}

/// Data drift of a table against the bundle's training reference (`churn drift`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableDrift {
    pub file: String,
    pub summary: ScoreSummary,
    #[serde(flatten)]
    pub drift: crate::drift::DriftReport,
}

/// Scores `reader` (output discarded) and measures every feature's PSI against the bundle's
/// training reference; features above `threshold` are flagged.
pub fn drift_table(bundle: &Bundle, reader: TableReader, threshold: f64) -> Result<TableDrift> {
    if bundle.reference.is_none() {
        return Err(CoreError::InBundle {
            dir: bundle.manifest.model_name.clone(),
            error: Box::new(CoreError::ModelFile {
                file: crate::drift::REFERENCE,
                problem:
                    "missing: the bundle has no training reference to measure drift against; retrain the model with this churn version"
                        .into(),
            }),
        });
    }
    let file = reader.file.clone();
    let scorer = stream(bundle, reader, 0, |_, _| Ok(()))?;
    let features = scorer.drift(threshold).ok_or_else(|| crate::CoreError::Empty { file: file.clone() })?;
    Ok(TableDrift { file, summary: scorer.summary, drift: crate::drift::DriftReport::new(threshold, features) })
}
