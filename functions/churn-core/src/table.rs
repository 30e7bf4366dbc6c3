//! Tabular input and output (CSV and parquet through arrow), streamed batch by batch so memory
//! stays bounded whatever the file size.
//!
//! CSV columns are all read as text and parsed by the feature transform, so that a bad value is
//! reported with its line and column instead of failing a whole-file type inference; the blank
//! `totalcharges` cells of the Telco data stay blanks (missing values) this way. Parquet columns
//! keep their types.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, Int32Array, RecordBatch, StringArray, StringViewArray};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::error::ArrowError;

use crate::error::{CoreError, Result};
use crate::row::{RawRow, RawValue};
use crate::spec::{CatValue, FeatureSpec, InputKind, NumericProfile};

/// Rows per record batch read and scored. Measured with `batch-bench score` on 1 M rows: 4096
/// keeps a batch's model input (4096 × ~50 floats) within the core's L2 cache and was about
/// 6 % faster end to end than 8192 (and than 2048 or 1024, whose per-batch costs add up).
pub const BATCH_ROWS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Parquet,
}

impl FileFormat {
    /// The format named by a path's extension (`.csv`, `.parquet` / `.pq`).
    pub fn from_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
            Some("csv") => Ok(FileFormat::Csv),
            Some("parquet" | "pq") => Ok(FileFormat::Parquet),
            _ => Err(CoreError::format(path.display(), "unknown file type: name it *.csv or *.parquet")),
        }
    }
}

type BatchIter = Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send>;

/// Reads a table one record batch at a time.
pub struct TableReader {
    pub file: String,
    pub format: FileFormat,
    pub columns: Vec<String>,
    batches: BatchIter,
    rows_read: usize,
}

impl TableReader {
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &[])
    }

    /// [`open`](Self::open) for scoring with `spec`: parquet text columns that are the spec's
    /// inputs (categories, or numbers written as text) are read as dictionaries or string views
    /// (see [`dictionary_columns`]).
    pub fn open_for(path: &Path, spec: &FeatureSpec) -> Result<Self> {
        Self::open_with(path, &text_inputs(spec))
    }

    fn open_with(path: &Path, dictionary: &[TextInput]) -> Result<Self> {
        let format = FileFormat::from_path(path)?;
        let file = path.display().to_string();
        let open = || File::open(path).map_err(|e| CoreError::io(&file, e));
        match format {
            FileFormat::Csv => Self::csv(&file, open()?, open()?),
            FileFormat::Parquet => Self::parquet_with(&file, open()?, dictionary),
        }
    }

    /// A CSV source; `header` and `body` read the same bytes (the header is read first, alone).
    pub fn csv(label: &str, header: impl std::io::Read, body: impl std::io::Read + Send + 'static) -> Result<Self> {
        let fmt = arrow::csv::reader::Format::default().with_header(true);
        let (schema, _) = fmt
            .infer_schema(BufReader::new(header), Some(1))
            .map_err(|e| CoreError::format(label, format!("not a readable CSV file: {e}")))?;
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().trim().to_string()).collect();
        if columns.is_empty() || (columns.len() == 1 && columns[0].is_empty()) {
            return Err(CoreError::Empty { file: label.into() });
        }
        let mut seen = HashSet::new();
        if let Some(d) = columns.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(CoreError::format(label, format!("column `{d}` appears twice in the header")));
        }
        let text = Schema::new(columns.iter().map(|c| Field::new(c, DataType::Utf8, true)).collect::<Vec<_>>());
        let reader = arrow::csv::ReaderBuilder::new(Arc::new(text))
            .with_header(true)
            .with_batch_size(BATCH_ROWS)
            .build(BufReader::new(body))
            .map_err(|e| CoreError::format(label, e))?;
        Ok(TableReader { file: label.into(), format: FileFormat::Csv, columns, batches: Box::new(reader), rows_read: 0 })
    }

    /// A parquet source (a file, or bytes already in memory).
    pub fn parquet<R: parquet::file::reader::ChunkReader + 'static>(label: &str, source: R) -> Result<Self> {
        Self::parquet_with(label, source, &[])
    }

    /// [`parquet`](Self::parquet), reading the text columns named in `dictionary` as
    /// dictionaries or string views ([`dictionary_columns`]).
    pub fn parquet_with<R: parquet::file::reader::ChunkReader + 'static>(label: &str, source: R, dictionary: &[TextInput]) -> Result<Self> {
        use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
        let unreadable = |e: parquet::errors::ParquetError| CoreError::format(label, format!("not a readable parquet file: {e}"));
        let meta = ArrowReaderMetadata::load(&source, Default::default()).map_err(unreadable)?;
        check_parquet_layout(meta.metadata(), source.len()).map_err(|e| CoreError::format(label, e))?;
        let meta = dictionary_columns(meta, dictionary).map_err(unreadable)?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(source, meta);
        let columns = builder.schema().fields().iter().map(|f| f.name().to_string()).collect();
        let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(|e| CoreError::format(label, e))?;
        Ok(TableReader { file: label.into(), format: FileFormat::Parquet, columns, batches: Box::new(reader), rows_read: 0 })
    }

    /// Names a data row (0-based index over all rows) the way a person finds it in the file.
    pub fn locate(&self, index: usize) -> String {
        locate(self.format, index)
    }

    /// Fails with every missing name if the table lacks one of `names`.
    pub fn require<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
        require(&self.file, &self.columns, names)
    }

    pub fn rows_read(&self) -> usize {
        self.rows_read
    }
}

/// A text column a scorer reads: its name, and whether to read it as string views where it is
/// plain-encoded (a categorical input whose vocabulary a `ViewMatcher` covers).
pub type TextInput<'a> = (&'a str, bool);

/// `spec`'s inputs as [`dictionary_columns`] takes them.
pub fn text_inputs(spec: &FeatureSpec) -> Vec<TextInput<'_>> {
    let views = |i| spec.input_vocabulary(i).is_some_and(|v| v.len() <= ViewMatcher::MAX);
    spec.inputs.iter().enumerate().map(|(i, input)| (input.name.as_str(), views(i))).collect()
}

/// Parquet reading options that return the text columns named in `inputs` as dictionary arrays
/// (the file's own dictionary pages, not one string per row), so that their distinct values are
/// resolved once per column chunk ([`Bound::resolve_dictionaries`]) instead of once per row.
/// A column marked for views that some row group stores without a dictionary (plain-encoded) is
/// read as string views instead: building a dictionary from plain pages costs hashing every value,
/// where a view holds a short value whole and is matched against the vocabulary's own views
/// (`ViewMatcher`). Other columns, and files without such columns, keep their own types.
pub fn dictionary_columns(
    meta: parquet::arrow::arrow_reader::ArrowReaderMetadata,
    inputs: &[TextInput],
) -> std::result::Result<parquet::arrow::arrow_reader::ArrowReaderMetadata, parquet::errors::ParquetError> {
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    let schema = meta.schema();
    // `large_string` (what pandas writes) and string views are text the same way: read as the
    // same dictionaries.
    let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let wanted = |f: &Field| inputs.iter().find(|(n, _)| n == f.name()).filter(|_| text(f.data_type()));
    if !schema.fields().iter().any(|f| wanted(f).is_some()) {
        return Ok(meta);
    }
    let plain = |name: &str| {
        meta.metadata()
            .row_groups()
            .iter()
            .flat_map(|g| g.columns())
            .any(|c| c.column_path().parts() == [name] && c.dictionary_page_offset().is_none())
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match wanted(f) {
            Some((name, true)) if plain(name) => f.as_ref().clone().with_data_type(DataType::Utf8View),
            Some(_) => f.as_ref().clone().with_data_type(dictionary_type()),
            None => f.as_ref().clone(),
        })
        .collect();
    let hint = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    ArrowReaderMetadata::try_new(meta.metadata().clone(), ArrowReaderOptions::new().with_schema(hint))
}

/// Checks what the parquet readers take on trust from a file's footer: every row group's row
/// count, and every column chunk's offset and length inside the file's `file_len` bytes. The
/// footer decoder accepts negative or out-of-file values, and the reader asserts on them
/// (`ColumnChunkMetaData::byte_range`), so an untrusted file is checked here before any read.
pub fn check_parquet_layout(meta: &parquet::file::metadata::ParquetMetaData, file_len: u64) -> std::result::Result<(), CorruptFooter> {
    for (g, group) in meta.row_groups().iter().enumerate() {
        if group.num_rows() < 0 {
            return Err(CorruptFooter::NegativeRows { group: g, rows: group.num_rows() });
        }
        for c in group.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let (len, data) = (c.compressed_size(), c.data_page_offset());
            let end = start.checked_add(len);
            if start < 0 || data < 0 || len < 0 || data < start || end.is_none_or(|e| e as u64 > file_len) {
                let column = c.column_path().to_string();
                return Err(CorruptFooter::ChunkOutside { group: g, column, len, start, data, file_len });
            }
        }
    }
    Ok(())
}

/// What [`check_parquet_layout`] finds wrong with a parquet footer.
#[derive(Debug, thiserror::Error)]
pub enum CorruptFooter {
    #[error("the file's footer is corrupt (row group {group} claims {rows} rows); re-export the file")]
    NegativeRows { group: usize, rows: i64 },
    #[error(
        "the file's footer is corrupt (row group {group}, column `{column}`: a chunk of {len} bytes at byte {start} (data at {data}) does not fit in the file's {file_len} bytes); re-export the file"
    )]
    ChunkOutside { group: usize, column: String, len: i64, start: i64, data: i64, file_len: u64 },
}

/// The dictionary type categorical columns are read as.
fn dictionary_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// Fails with every missing name if `columns` lacks one of `names`.
pub fn require<'a>(file: &str, columns: &[String], names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let missing: Vec<String> = names.into_iter().filter(|n| !columns.iter().any(|c| c == n)).map(String::from).collect();
    if missing.is_empty() { Ok(()) } else { Err(CoreError::MissingColumns { file: file.to_string(), missing, found: columns.to_vec() }) }
}

/// Field metadata key: `"false"` writes the column without a parquet dictionary.
const DICTIONARY: &str = "churn:dictionary";

/// Field metadata key: `"false"` writes the column without min/max statistics.
const STATISTICS: &str = "churn:statistics";

/// Field metadata key: `"false"` writes the column without compression.
const COMPRESSION: &str = "churn:compression";

/// `field` with the writer setting `key` ([`DICTIONARY`], [`STATISTICS`] or [`COMPRESSION`])
/// turned off.
fn turned_off(field: Field, key: &str) -> Field {
    let mut metadata = field.metadata().clone();
    metadata.insert(key.to_string(), "false".to_string());
    field.with_metadata(metadata)
}

fn is_turned_off(field: &Field, key: &str) -> bool {
    field.metadata().get(key).is_some_and(|v| v == "false")
}

/// `field`, marked to be written without a parquet dictionary: for columns whose values are
/// (nearly) all distinct, such as ids and probabilities, where building a dictionary costs
/// hashing every value and then falls back to plain encoding anyway.
pub fn without_dictionary(field: Field) -> Field {
    turned_off(field, DICTIONARY)
}

/// `field`, marked to be written without min/max statistics: for text columns of a handful of
/// values (tiers, actions, the model version) that every row group holds all of, where
/// statistics prune nothing and cost a comparison of every value.
pub fn without_statistics(field: Field) -> Field {
    turned_off(field, STATISTICS)
}

/// `field`, marked to be written without compression: for text that is unique per row (ids),
/// which snappy shrinks by a sixth or so at a cost of about a tenth of the whole scoring run.
pub fn without_compression(field: Field) -> Field {
    turned_off(field, COMPRESSION)
}

/// A parquet writer with the settings of every table the project writes. The Arrow schema is
/// not embedded: the parquet schema says everything readers need, and the embedded one would
/// show users this module's column markers (and make categorical columns that were read as
/// dictionaries read back as dictionaries instead of the text they are).
fn parquet_writer<W: std::io::Write + Send>(
    sink: W,
    schema: &SchemaRef,
) -> std::result::Result<parquet::arrow::ArrowWriter<W>, parquet::errors::ParquetError> {
    let options =
        parquet::arrow::arrow_writer::ArrowWriterOptions::new().with_properties(writer_properties(schema)).with_skip_arrow_metadata(true);
    parquet::arrow::ArrowWriter::try_new_with_options(sink, schema.clone(), options)
}

/// Parquet settings of every table the project writes.
fn writer_properties(schema: &Schema) -> parquet::file::properties::WriterProperties {
    let mut props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        // Row groups of 128 Ki rows bound the writer's buffer and let readers split files.
        .set_max_row_group_row_count(Some(128 * 1024));
    for f in schema.fields() {
        let path = || parquet::schema::types::ColumnPath::from(f.name().as_str());
        if is_turned_off(f, DICTIONARY) {
            props = props.set_column_dictionary_enabled(path(), false);
        }
        if is_turned_off(f, COMPRESSION) {
            props = props.set_column_compression(path(), parquet::basic::Compression::UNCOMPRESSED);
        }
        if is_turned_off(f, STATISTICS) {
            props = props.set_column_statistics_enabled(path(), parquet::file::properties::EnabledStatistics::None);
        }
    }
    props.build()
}

/// Encodes a table into bytes batch by batch, for a destination that is not a local file (an
/// S3 multipart upload): [`encode`](Self::encode) returns the bytes that are ready so far.
pub enum Encoder {
    Csv { header: bool },
    Parquet(Box<parquet::arrow::ArrowWriter<Vec<u8>>>),
}

impl Encoder {
    pub fn new(format: FileFormat, schema: SchemaRef) -> Result<Self> {
        Ok(match format {
            FileFormat::Csv => Encoder::Csv { header: true },
            FileFormat::Parquet => Encoder::Parquet(Box::new(
                parquet_writer(Vec::new(), &schema).map_err(|e| CoreError::Encode { format: "parquet", problem: e.to_string() })?,
            )),
        })
    }

    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<u8>> {
        match self {
            Encoder::Csv { header } => {
                let mut w = arrow::csv::WriterBuilder::new().with_header(*header).build(Vec::new());
                w.write(batch).map_err(|e| CoreError::Encode { format: "CSV", problem: e.to_string() })?;
                *header = false;
                Ok(w.into_inner())
            }
            Encoder::Parquet(w) => {
                w.write(batch).map_err(|e| CoreError::Encode { format: "parquet", problem: e.to_string() })?;
                // The next batch's bytes are about as many: no regrowing from empty.
                let cap = w.inner().len();
                Ok(std::mem::replace(w.inner_mut(), Vec::with_capacity(cap)))
            }
        }
    }

    /// The remaining bytes (the parquet footer, or a CSV header when nothing was written).
    pub fn finish(mut self, schema: SchemaRef) -> Result<Vec<u8>> {
        match self {
            Encoder::Csv { header: true } => self.encode(&RecordBatch::new_empty(schema)),
            Encoder::Csv { header: false } => Ok(Vec::new()),
            Encoder::Parquet(w) => w.into_inner().map_err(|e| CoreError::Encode { format: "parquet", problem: e.to_string() }),
        }
    }
}

/// `line N` for CSV (the header is line 1), `row N` (1-based) for parquet.
pub fn locate(format: FileFormat, index: usize) -> String {
    match format {
        FileFormat::Csv => format!("line {}", index + 2),
        FileFormat::Parquet => format!("row {}", index + 1),
    }
}

impl Iterator for TableReader {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        // The decoders trust page contents that no footer check can vouch for (a corrupt data
        // page can fail an assertion deep inside them), so a panic while decoding is this file's
        // error, not the process's; the reader stops there.
        let next = match catch_decoder_panic(|| self.batches.next()) {
            Ok(next) => next?,
            Err(why) => {
                self.batches = Box::new(std::iter::empty());
                return Some(Err(CoreError::format(
                    &self.file,
                    format!("{}: corrupt data ({why}); re-export the file", self.read_position()),
                )));
            }
        };
        Some(match next {
            Ok(b) => {
                self.rows_read += b.num_rows();
                Ok(b)
            }
            Err(e) => Err(CoreError::format(&self.file, format!("{}: {e}", self.read_position()))),
        })
    }
}

impl TableReader {
    /// Where the next batch starts, for read errors: the CSV reader's own messages name the
    /// line, so CSV says which rows were read fine.
    fn read_position(&self) -> String {
        match self.format {
            FileFormat::Parquet => format!("at or after {}", locate(self.format, self.rows_read)),
            FileFormat::Csv => format!("after {} good data rows", self.rows_read),
        }
    }
}

thread_local! {
    /// Set while a reader decodes untrusted bytes under [`catch_decoder_panic`].
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `decode`, turning a panic inside it into its message. The parquet and arrow decoders
/// assert on page contents no up-front check can vouch for, so such a panic is the input
/// file's fault and is reported as the file's error.
pub fn catch_decoder_panic<T>(decode: impl FnOnce() -> T) -> std::result::Result<T, DecoderPanic> {
    DECODING.with(|d| d.set(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode));
    DECODING.with(|d| d.set(false));
    out.map_err(|panic| {
        let panic = &*panic;
        DecoderPanic(
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the decoder failed".into()),
        )
    })
}

/// A decoder's panic on an input file, caught by [`catch_decoder_panic`]: its message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecoderPanic(pub String);

/// [`catch_decoder_panic`] for a future: every poll is guarded.
pub async fn catch_decoder_panic_async<F: std::future::Future>(future: F) -> std::result::Result<F::Output, DecoderPanic> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| match catch_decoder_panic(|| future.as_mut().poll(cx)) {
        Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
        Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
        Err(why) => std::task::Poll::Ready(Err(why)),
    })
    .await
}

/// Installs a panic hook that stays silent for the panics [`catch_decoder_panic`] reports as
/// the file's error (they would otherwise print a panic message and backtrace before the
/// clean error) and hands every other panic to the hook installed before. Binaries call it
/// once at start-up.
pub fn quiet_decoder_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !DECODING.with(std::cell::Cell::get) {
            previous(info)
        }
    }));
}

/// One column of a batch in one of the forms the transform reads.
pub enum ColData {
    Num(Float64Array),
    Text(StringArray),
    /// Text as string views (plain-encoded parquet text read by [`dictionary_columns`]).
    View(StringViewArray),
    /// Text as a dictionary: `keys` index `values`.
    Dict {
        keys: Int32Array,
        values: StringArray,
    },
}

impl ColData {
    fn of(array: &dyn Array, name: &str) -> Result<Self> {
        let bad = |problem: String| CoreError::Column { file: String::new(), column: name.into(), problem };
        let cast = |t: &DataType| arrow::compute::cast(array, t).map_err(|e| bad(e.to_string()));
        Ok(match array.data_type() {
            DataType::Utf8 => ColData::Text(array.as_string::<i32>().clone()),
            DataType::Utf8View => ColData::View(array.as_string_view().clone()),
            DataType::Dictionary(_, v) if v.as_ref() == &DataType::Utf8 => {
                let d = cast(&dictionary_type())?;
                let d = d.as_dictionary::<Int32Type>();
                let values = d.values().as_string::<i32>().clone();
                // Rows index the values directly: a damaged file must not index past them.
                // Keys of null rows are unspecified, so they are only skipped when nulls exist.
                let past = |k: i32| k < 0 || k as usize >= values.len();
                let out_of_range = match d.keys().nulls() {
                    None => d.keys().values().iter().fold(false, |any, &k| any | past(k)),
                    Some(_) => d.keys().iter().flatten().any(past),
                };
                if out_of_range {
                    return Err(bad(format!("a dictionary key points past the column's {} values (damaged file?)", values.len())));
                }
                ColData::Dict { keys: d.keys().clone(), values }
            }
            t if t.is_numeric() => ColData::Num(cast(&DataType::Float64)?.as_primitive().clone()),
            _ => ColData::Text(cast(&DataType::Utf8)?.as_string::<i32>().clone()),
        })
    }

    pub fn value(&self, row: usize) -> RawValue<'_> {
        match self {
            ColData::Num(a) if a.is_null(row) => RawValue::Missing,
            ColData::Num(a) => RawValue::Number(a.value(row)),
            ColData::Text(a) if a.is_null(row) => RawValue::Missing,
            ColData::Text(a) => RawValue::Text(std::borrow::Cow::Borrowed(a.value(row))),
            ColData::View(a) if a.is_null(row) => RawValue::Missing,
            ColData::View(a) => RawValue::Text(std::borrow::Cow::Borrowed(a.value(row))),
            ColData::Dict { keys, .. } if keys.is_null(row) => RawValue::Missing,
            ColData::Dict { keys, values } => dictionary_value(values, keys.value(row) as usize),
        }
    }
}

/// Value `k` of a dictionary column's values.
fn dictionary_value(values: &StringArray, k: usize) -> RawValue<'_> {
    if values.is_null(k) { RawValue::Missing } else { RawValue::Text(std::borrow::Cow::Borrowed(values.value(k))) }
}

/// Columns of one batch bound, in order, to a list of names (absent names bind to `None`).
pub struct Bound {
    cols: Vec<Option<ColData>>,
    rows: usize,
    /// For dictionary and string-view columns after
    /// [`resolve_dictionaries`](Self::resolve_dictionaries): what their values are to the spec.
    resolved: Vec<Option<Resolved>>,
}

/// A column whose values the transform gets already resolved.
enum Resolved {
    /// A dictionary column's keys, with its values as the transform reads them (kept beside the
    /// keys so that a row's lookup reads nothing else).
    Dict { keys: arrow::buffer::ScalarBuffer<i32>, nulls: Option<arrow::buffer::NullBuffer>, values: Arc<ResolvedValues> },
    /// A categorical column read as string views, and its vocabulary's views (boxed: the
    /// common case, dictionaries, stays small).
    View(Box<(StringViewArray, Arc<ViewMatcher>)>),
}

impl Resolved {
    /// A dictionary column's resolved values and the row's key (`None`: a null row, or not a
    /// dictionary).
    #[inline(always)]
    fn entry(&self, row: usize) -> Option<(&ResolvedValues, usize)> {
        match self {
            Resolved::Dict { nulls, .. } if nulls.as_ref().is_some_and(|n| n.is_null(row)) => None,
            Resolved::Dict { keys, values, .. } => Some((values.as_ref(), keys[row] as usize)),
            Resolved::View(_) => None,
        }
    }
}

/// A categorical input's vocabulary as string views, for a column read as views: a row's value
/// is a vocabulary entry when their views are equal (a value of up to 12 bytes lies whole in its
/// view) or, for a longer one, when their lengths and first four bytes (the view's low half) and
/// then all their bytes are. Built for vocabularies of up to [`ViewMatcher::MAX`] entries; a
/// value that matches none (unseen, padded, blank) is left to the transform's text path.
struct ViewMatcher {
    short: Vec<(u128, CatValue)>,
    long: Vec<(u64, Box<str>, CatValue)>,
}

impl ViewMatcher {
    /// Vocabularies up to this size are scanned linearly; a column with a larger one is read as
    /// a dictionary ([`text_inputs`]).
    const MAX: usize = 16;

    fn new(spec: &FeatureSpec, input: usize) -> Option<Self> {
        let vocabulary = spec.input_vocabulary(input)?;
        if vocabulary.len() > Self::MAX {
            return None;
        }
        let mut m = ViewMatcher { short: Vec::new(), long: Vec::new() };
        for v in vocabulary {
            // What the transform makes of exactly this text, so that a match changes nothing.
            let Some(Ok(c)) = spec.resolve_category(input, &RawValue::Text(std::borrow::Cow::Borrowed(v))) else { continue };
            let view = arrow::array::builder::make_view(v.as_bytes(), 0, 0);
            if v.len() <= 12 { m.short.push((view, c)) } else { m.long.push((view as u64, v.as_str().into(), c)) }
        }
        Some(m)
    }

    #[inline]
    fn find<'a>(&'a self, array: &StringViewArray, row: usize) -> Option<&'a CatValue> {
        if array.is_null(row) {
            return None;
        }
        let view = array.views()[row];
        if view as u32 <= 12 {
            self.short.iter().find(|(v, _)| *v == view).map(|(_, c)| c)
        } else {
            self.long.iter().find(|(v, text, _)| *v == view as u64 && array.value(row) == &**text).map(|(_, _, c)| c)
        }
    }
}

/// What [`Bound::resolve_dictionaries`] built for earlier batches of one table, per bound
/// column: the dictionary it resolved last (kept, so that its buffers are not freed and reused
/// while it is compared by address) with what its values resolved to, and a string-view
/// column's `ViewMatcher`. For one table and one spec.
#[derive(Default)]
pub struct DictionaryCache {
    last: Vec<Option<(arrow::array::ArrayData, Arc<ResolvedValues>)>>,
    /// Per bound column read as string views: its vocabulary's views (`None` inside: none built).
    matchers: Vec<Option<Option<Arc<ViewMatcher>>>>,
    /// How many dictionaries were resolved (not found here).
    pub resolved: usize,
}

/// One per dictionary value; `None` for a value the transform must see as text (to impute,
/// report or warn about it).
enum ResolvedValues {
    Categories(Vec<Option<CatValue>>),
    Numbers(Vec<Option<f64>>),
}

impl Bound {
    pub fn new(batch: &RecordBatch, names: &[&str]) -> Result<Self> {
        let cols = names.iter().map(|n| batch.column_by_name(n).map(|a| ColData::of(a.as_ref(), n)).transpose()).collect::<Result<_>>()?;
        Ok(Bound { cols, rows: batch.num_rows(), resolved: Vec::new() })
    }

    /// Resolves the distinct values of every dictionary column against `spec` once (categories,
    /// and numbers written as text); rows then hand them to the transform through
    /// [`RawRow::resolved_category`] and [`RawRow::resolved_number`]. The names this bound must
    /// be `spec`'s inputs, in order. A dictionary `cache` saw in an earlier batch of the same
    /// table (the batches of one parquet column chunk share its dictionary) is not resolved again.
    pub fn resolve_dictionaries(&mut self, spec: &FeatureSpec, cache: &mut DictionaryCache) {
        cache.last.resize_with(self.cols.len(), || None);
        cache.matchers.resize_with(self.cols.len(), || None);
        self.resolved = self
            .cols
            .iter()
            .zip(cache.last.iter_mut().zip(&mut cache.matchers))
            .enumerate()
            .map(|(i, (c, (cached, matcher)))| {
                if let Some(ColData::View(array)) = c {
                    let matcher = matcher.get_or_insert_with(|| ViewMatcher::new(spec, i).map(Arc::new));
                    return matcher.clone().map(|matcher| Resolved::View(Box::new((array.clone(), matcher))));
                }
                let Some(ColData::Dict { keys, values }) = c else { return None };
                let data = values.to_data();
                let values = match cached {
                    Some((seen, resolved)) if seen.ptr_eq(&data) => resolved.clone(),
                    _ => {
                        let each = (0..values.len()).map(|k| dictionary_value(values, k));
                        let resolved = Arc::new(if matches!(spec.inputs[i].kind, InputKind::Categorical) {
                            ResolvedValues::Categories(each.map(|v| spec.resolve_category(i, &v).and_then(|r| r.ok())).collect())
                        } else {
                            ResolvedValues::Numbers(each.map(|v| spec.resolve_number(i, &v)).collect())
                        });
                        *cached = Some((data, resolved.clone()));
                        cache.resolved += 1;
                        resolved
                    }
                };
                Some(Resolved::Dict { keys: keys.values().clone(), nulls: keys.nulls().cloned(), values })
            })
            .collect();
    }

    /// Dictionary column `index`'s resolved values and the row's key (`None`: not a resolved
    /// dictionary, or a null row).
    #[inline]
    fn resolved(&self, index: usize, row: usize) -> Option<(&ResolvedValues, usize)> {
        self.resolved.get(index)?.as_ref()?.entry(row)
    }

    pub fn row(&self, row: usize) -> BatchRow<'_> {
        BatchRow { bound: self, row }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn column(&self, i: usize) -> Option<&ColData> {
        self.cols[i].as_ref()
    }
}

/// A record of a bound batch; `index` in [`RawRow::value`] is the position in the bound names.
#[derive(Clone, Copy)]
pub struct BatchRow<'a> {
    bound: &'a Bound,
    row: usize,
}

impl RawRow for BatchRow<'_> {
    fn value(&self, index: usize, _name: &str) -> RawValue<'_> {
        match &self.bound.cols[index] {
            Some(c) => c.value(self.row),
            None => RawValue::Missing,
        }
    }

    // Inlined into the transform's loop over a row's inputs, where it runs once per categorical
    // input of every row.
    #[inline(always)]
    fn resolved_category(&self, index: usize) -> Option<&CatValue> {
        match self.bound.resolved.get(index)?.as_ref()? {
            Resolved::View(v) => v.1.find(&v.0, self.row),
            dict => match dict.entry(self.row)? {
                (ResolvedValues::Categories(c), k) => c[k].as_ref(),
                (ResolvedValues::Numbers(_), _) => None,
            },
        }
    }

    fn resolved_number(&self, index: usize) -> Option<f64> {
        match self.bound.resolved(index, self.row)? {
            (ResolvedValues::Numbers(x), k) => x[k],
            _ => None,
        }
    }
}

impl BatchRow<'_> {
    /// The value at `index` as text (`None` when blank or null).
    pub fn value_text(&self, index: usize) -> Option<String> {
        match self.value(index, "") {
            RawValue::Missing => None,
            RawValue::Text(t) if t.trim().is_empty() => None,
            v => Some(v.display()),
        }
    }
}

/// A whole table in memory (training data: thousands of rows, not millions). Cloning is cheap:
/// record batches share their arrays.
#[derive(Clone)]
pub struct Table {
    pub file: String,
    pub format: FileFormat,
    pub columns: Vec<String>,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
}

impl Table {
    pub fn read(path: &Path) -> Result<Self> {
        let reader = TableReader::open(path)?;
        let (file, format, columns) = (reader.file.clone(), reader.format, reader.columns.clone());
        let batches: Vec<RecordBatch> = reader.collect::<Result<_>>()?;
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Err(CoreError::Empty { file });
        }
        Ok(Table { file, format, columns, batches, rows })
    }

    /// Binds `names` in every batch; the result addresses rows by their index in the table.
    pub fn view(&self, names: &[&str]) -> Result<TableView> {
        let bound = self.batches.iter().map(|b| Bound::new(b, names)).collect::<Result<Vec<_>>>()?;
        let mut starts = Vec::with_capacity(bound.len());
        let mut n = 0;
        for b in &bound {
            starts.push(n);
            n += b.rows;
        }
        Ok(TableView { bound, starts })
    }

    /// Every value of one column, in row order.
    pub fn column_values(&self, name: &str) -> Result<Vec<RawValue<'_>>> {
        let mut out = Vec::with_capacity(self.rows);
        for b in &self.batches {
            let a = b.column_by_name(name).ok_or_else(|| CoreError::MissingColumns {
                file: self.file.clone(),
                missing: vec![name.into()],
                found: self.columns.clone(),
            })?;
            match a.data_type() {
                DataType::Utf8 => {
                    let s = a.as_string::<i32>();
                    out.extend(
                        (0..s.len())
                            .map(|i| if s.is_null(i) { RawValue::Missing } else { RawValue::Text(std::borrow::Cow::Borrowed(s.value(i))) }),
                    )
                }
                _ => {
                    let c = ColData::of(a.as_ref(), name)?;
                    out.extend((0..a.len()).map(|i| match c.value(i) {
                        RawValue::Text(t) => RawValue::Text(std::borrow::Cow::Owned(t.into_owned())),
                        RawValue::Number(x) => RawValue::Number(x),
                        _ => RawValue::Missing,
                    }))
                }
            }
        }
        Ok(out)
    }

    /// How many non-blank values of the column are finite numbers, how many are not, and where
    /// the first that is not is.
    pub fn numeric_profile(&self, name: &str) -> NumericProfile {
        let mut profile = NumericProfile::default();
        for (i, x) in self.column_values(name).unwrap_or_default().iter().enumerate() {
            let number = match x {
                RawValue::Missing => continue,
                RawValue::Number(v) => v.is_finite(),
                RawValue::Text(t) if t.trim().is_empty() => continue,
                RawValue::Text(t) => t.trim().parse::<f64>().is_ok_and(f64::is_finite),
                RawValue::Invalid(_) => false,
            };
            if number {
                profile.numbers += 1;
            } else {
                profile.others += 1;
                profile.first_other.get_or_insert_with(|| (self.locate(i), x.display()));
            }
        }
        profile
    }

    /// Number of distinct non-blank values of the column.
    pub fn distinct(&self, name: &str) -> usize {
        self.column_values(name)
            .map(|v| v.iter().map(|x| x.display()).filter(|s| !s.trim().is_empty()).collect::<HashSet<_>>().len())
            .unwrap_or(0)
    }

    pub fn locate(&self, index: usize) -> String {
        locate(self.format, index)
    }

    /// Fails with every missing name if the table lacks one of `names`.
    pub fn require<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
        require(&self.file, &self.columns, names)
    }
}

/// Rows of a [`Table`] bound to a list of names.
pub struct TableView {
    bound: Vec<Bound>,
    starts: Vec<usize>,
}

impl TableView {
    pub fn row(&self, index: usize) -> BatchRow<'_> {
        let b = self.starts.partition_point(|s| *s <= index) - 1;
        self.bound[b].row(index - self.starts[b])
    }
}

enum Sink {
    Csv(arrow::csv::Writer<BufWriter<File>>),
    Parquet(parquet::arrow::ArrowWriter<File>),
}

/// Writes a table to a temporary file that is renamed into place by [`finish`](Self::finish):
/// a reader never sees a half-written output, and a failed run leaves no partial file.
pub struct TableWriter {
    path: PathBuf,
    tmp: PathBuf,
    sink: Option<Sink>,
    rows: usize,
}

impl TableWriter {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<Self> {
        let format = FileFormat::from_path(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| CoreError::io(parent.display(), e))?;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| CoreError::io(tmp.display(), e))?;
        let sink = match format {
            FileFormat::Csv => Sink::Csv(arrow::csv::WriterBuilder::new().with_header(true).build(BufWriter::new(file))),
            FileFormat::Parquet => Sink::Parquet(parquet_writer(file, &schema).map_err(|e| CoreError::format(path.display(), e))?),
        };
        Ok(TableWriter { path: path.to_path_buf(), tmp, sink: Some(sink), rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let err = |e: String| CoreError::format(self.path.display(), e);
        match self.sink.as_mut().expect("not finished") {
            Sink::Csv(w) => w.write(batch).map_err(|e| err(e.to_string()))?,
            Sink::Parquet(w) => w.write(batch).map_err(|e| err(e.to_string()))?,
        }
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Flushes, closes and moves the file into place; returns the rows written.
    pub fn finish(mut self) -> Result<usize> {
        let err = |e: String| CoreError::format(self.path.display(), e);
        match self.sink.take().expect("not finished") {
            Sink::Csv(w) => {
                use std::io::Write;
                w.into_inner().flush().map_err(|e| err(e.to_string()))?
            }
            Sink::Parquet(w) => {
                w.close().map_err(|e| err(e.to_string()))?;
            }
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| CoreError::io(self.path.display(), e))?;
        Ok(self.rows)
    }
}

impl Drop for TableWriter {
    fn drop(&mut self) {
        if self.sink.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::ArrayRef;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn csv_is_read_as_text_with_blanks_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "a.csv", "id,x,c\n1, ,a\n2,3.5,b\n");
        let t = Table::read(&p).unwrap();
        assert_eq!(t.columns, vec!["id", "x", "c"]);
        assert_eq!(t.rows, 2);
        assert_eq!(t.numeric_profile("x"), NumericProfile { numbers: 1, others: 0, first_other: None });
        assert_eq!(t.numeric_profile("c"), NumericProfile { numbers: 0, others: 2, first_other: Some(("line 2".into(), "a".into())) });
        assert_eq!(t.distinct("c"), 2);
        let v = t.view(&["x", "nope"]).unwrap();
        assert_eq!(v.row(0).value(0, "x"), RawValue::Text(" ".into()));
        assert_eq!(v.row(1).value(1, "nope"), RawValue::Missing);
        assert_eq!(t.locate(0), "line 2");
    }

    #[test]
    fn empty_and_header_only_files_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let e = Table::read(&write(d.path(), "e.csv", "")).err().unwrap();
        assert!(e.to_string().contains("no data rows"), "{e}");
        let h = Table::read(&write(d.path(), "h.csv", "a,b\n")).err().unwrap();
        assert!(h.to_string().contains("no data rows"), "{h}");
    }

    #[test]
    fn ragged_csv_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "r.csv", "a,b\n1,2\n3\n");
        let e = Table::read(&p).err().unwrap().to_string();
        assert!(e.contains("r.csv") && e.contains("line"), "{e}");
    }

    #[test]
    fn not_parquet_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "x.parquet", "hello");
        let e = Table::read(&p).err().unwrap().to_string();
        assert!(e.contains("not a readable parquet file"), "{e}");
        let e = Table::read(&d.path().join("x.txt")).err().unwrap().to_string();
        assert!(e.contains("*.csv or *.parquet"), "{e}");
    }

    #[test]
    fn parquet_round_trip_through_the_writer() {
        let d = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true), Field::new("x", DataType::Float64, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["a", "b"])), Arc::new(Float64Array::from(vec![Some(1.0), None]))],
        )
        .unwrap();
        let p = d.path().join("o.parquet");
        let mut w = TableWriter::create(&p, schema).unwrap();
        w.write(&batch).unwrap();
        assert!(!p.exists(), "invisible until finished");
        assert_eq!(w.finish().unwrap(), 2);
        let t = Table::read(&p).unwrap();
        let v = t.view(&["x"]).unwrap();
        assert_eq!(v.row(0).value(0, "x"), RawValue::Number(1.0));
        assert_eq!(v.row(1).value(0, "x"), RawValue::Missing);
    }

    #[test]
    fn dictionary_columns_give_the_text_columns_slot_values() {
        let spec = crate::spec::tests::fitted();
        let names: Vec<&str> = spec.input_names().collect();
        let text = |v: Vec<Option<&str>>| -> ArrayRef { Arc::new(StringArray::from(v)) };
        // Known, unseen, blank, padded and null categories; a number that does not parse, one
        // below the valid range (training had no negative value).
        let columns = [
            text(vec![Some("1"), Some("20"), Some("0"), Some("abc"), Some("-5"), Some("7")]),
            text(vec![Some("10"), Some("400"), Some(" "), Some("30"), None, Some("70")]),
            text(vec![Some("a"), Some("b"), Some("z"), Some(" "), None, Some(" b ")]),
            text(vec![Some("Yes"), Some("No"), None, Some("No"), Some("maybe"), Some("Yes")]),
        ];
        // `string` as pyarrow writes it, `large_string` as pandas does: both read as dictionaries.
        for text_type in [DataType::Utf8, DataType::LargeUtf8] {
            let schema = Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, text_type.clone(), true)).collect::<Vec<_>>()));
            let columns: Vec<ArrayRef> = columns.iter().map(|c| arrow::compute::cast(c, &text_type).unwrap()).collect();
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("c.parquet");
            // With the arrow schema embedded, as pyarrow and pandas write it: the reader then
            // returns each column in its written type.
            let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&p).unwrap(), schema.clone(), None).unwrap();
            w.write(&RecordBatch::try_new(schema, columns).unwrap()).unwrap();
            w.close().unwrap();

            let read = |reader: TableReader| -> Vec<String> {
                let mut out = Vec::new();
                for batch in reader {
                    let mut bound = Bound::new(&batch.unwrap(), &names).unwrap();
                    bound.resolve_dictionaries(&spec, &mut DictionaryCache::default());
                    for r in 0..bound.rows() {
                        let mut sv = crate::spec::SlotValues::default();
                        let result = spec.checked_slot_values(&bound.row(r), &mut sv).map(|()| sv);
                        out.push(format!("{result:?}"));
                    }
                }
                out
            };
            let dict = TableReader::open_for(&p, &spec).unwrap();
            let mut probe = TableReader::open_for(&p, &spec).unwrap();
            let batch = probe.next().unwrap().unwrap();
            let mut bound = Bound::new(&batch, &names).unwrap();
            assert!(matches!(bound.column(2), Some(ColData::Dict { .. })), "{text_type}: categorical inputs read as dictionaries");
            assert!(matches!(bound.column(0), Some(ColData::Dict { .. })), "{text_type}: numbers written as text too");
            bound.resolve_dictionaries(&spec, &mut DictionaryCache::default());
            // Valid numbers are parsed once per dictionary value; the others are left to the row
            // path, which imputes or reports them exactly as for plain text (compared below).
            assert_eq!(bound.row(1).resolved_number(0), Some(20.0));
            let unresolved = [bound.row(3).resolved_number(0), bound.row(4).resolved_number(0), bound.row(2).resolved_number(1)];
            assert_eq!(unresolved, [None; 3], "`abc`, -5, a blank");
            assert_eq!(read(dict), read(TableReader::open(&p).unwrap()), "{text_type}");
        }
    }

    #[test]
    fn plain_encoded_categories_are_read_as_views_and_give_the_text_paths_values() {
        // A vocabulary with values longer than a view holds (12 bytes) and one that is not.
        let plans = ["Month-to-month", "Bank transfer (automatic)", "a", "Fiber optic"];
        let fit_rows: Vec<Vec<(&str, &str)>> = (0..8)
            .map(|i| vec![("tenure", ["1", "20"][i % 2]), ("total", "10"), ("plan", plans[i % 4]), ("tv", ["Yes", "No"][i % 2])])
            .collect();
        let spec = crate::spec::FeatureSpec::fit(
            &crate::spec::tests::schema(),
            fit_rows.iter().enumerate().map(|(i, r)| (i + 2, r.as_slice())),
            None,
            "t.csv",
            &|i| format!("line {i}"),
        )
        .unwrap();
        let names: Vec<&str> = spec.input_names().collect();
        // Known long and short values; one of a known value's length and first four bytes; a
        // padded one (the text path trims it); unseen, blank and null ones.
        let plan = vec![
            Some("Month-to-month"),
            Some("Month-to-montx"),
            Some(" Month-to-month"),
            Some("Bank transfer (automatic)"),
            Some("a"),
            Some("Fiber optic"),
            Some("z"),
            Some(""),
            None,
        ];
        let n = plan.len();
        let schema = Arc::new(Schema::new(names.iter().map(|c| Field::new(*c, DataType::Utf8, true)).collect::<Vec<_>>()));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("5"); n])),
            Arc::new(StringArray::from(vec![Some("10"); n])),
            Arc::new(StringArray::from(plan)),
            Arc::new(StringArray::from(vec![Some("Yes"); n])),
        ];
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("plain.parquet");
        let props = parquet::file::properties::WriterProperties::builder().set_dictionary_enabled(false).build();
        let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&p).unwrap(), schema.clone(), Some(props)).unwrap();
        w.write(&RecordBatch::try_new(schema, columns).unwrap()).unwrap();
        w.close().unwrap();

        let slots = |reader: TableReader, views: bool| -> Vec<String> {
            let mut out = Vec::new();
            for batch in reader {
                let mut bound = Bound::new(&batch.unwrap(), &names).unwrap();
                assert_eq!(matches!(bound.column(2), Some(ColData::View(_))), views, "the categorical column read as views");
                bound.resolve_dictionaries(&spec, &mut DictionaryCache::default());
                if views {
                    let matched: Vec<bool> = (0..n).map(|r| bound.row(r).resolved_category(2).is_some()).collect();
                    assert_eq!(matched, [true, false, false, true, true, true, false, false, false], "exact vocabulary values only");
                }
                for r in 0..bound.rows() {
                    let mut sv = crate::spec::SlotValues::default();
                    out.push(format!("{:?}", spec.checked_slot_values(&bound.row(r), &mut sv).map(|()| sv)));
                }
            }
            out
        };
        let text_path = slots(TableReader::open(&p).unwrap(), false);
        assert_eq!(slots(TableReader::open_for(&p, &spec).unwrap(), true), text_path);
        assert!(text_path[1].contains("Unseen") && text_path[0].contains("Known"), "{text_path:?}");
    }

    #[test]
    fn categories_with_short_vocabularies_are_the_ones_read_as_views() {
        let mut spec = crate::spec::tests::fitted();
        assert_eq!(text_inputs(&spec), [("tenure", false), ("total", false), ("plan", true), ("tv", true)]);
        let plan = spec.categorical.iter_mut().find(|c| c.name == "plan").unwrap();
        plan.vocabulary.extend((0..ViewMatcher::MAX).map(|i| format!("p{i}")));
        assert_eq!(text_inputs(&spec)[2], ("plan", false), "a long vocabulary is read as a dictionary");
    }

    #[test]
    fn dictionaries_shared_by_batches_are_resolved_once_and_new_ones_again() {
        let spec = crate::spec::tests::fitted();
        let names: Vec<&str> = spec.input_names().collect();
        let schema = Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect::<Vec<_>>()));
        let text = |v: &[&str]| -> ArrayRef { Arc::new(StringArray::from(v.to_vec())) };
        // Two row groups whose dictionaries hold the same texts in other orders, and more.
        let groups = [
            [
                text(&["1", "20", "1", "20"]),
                text(&["10", "30", "10", "30"]),
                text(&["a", "b", "a", "b"]),
                text(&["Yes", "No", "No", "Yes"]),
            ],
            [text(&["20", "5", "1", "5"]), text(&["30", "10", "", "70"]), text(&["b", "z", "a", "a"]), text(&["No", "maybe", "Yes", "No"])],
        ];
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("g.parquet");
        let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&p).unwrap(), schema.clone(), None).unwrap();
        for g in &groups {
            w.write(&RecordBatch::try_new(schema.clone(), g.to_vec()).unwrap()).unwrap();
            w.flush().unwrap();
        }
        w.close().unwrap();

        let file = File::open(&p).unwrap();
        let meta = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&file, Default::default()).unwrap();
        let meta = dictionary_columns(meta, &text_inputs(&spec)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
            .with_batch_size(2)
            .build()
            .unwrap();
        let (mut cache, mut rows) = (DictionaryCache::default(), Vec::new());
        for batch in reader {
            let batch = batch.unwrap();
            let (mut cached, mut fresh) = (Bound::new(&batch, &names).unwrap(), Bound::new(&batch, &names).unwrap());
            cached.resolve_dictionaries(&spec, &mut cache);
            fresh.resolve_dictionaries(&spec, &mut DictionaryCache::default());
            for r in 0..batch.num_rows() {
                let slots = |b: &Bound| {
                    let mut sv = crate::spec::SlotValues::default();
                    format!("{:?}", spec.checked_slot_values(&b.row(r), &mut sv).map(|()| sv))
                };
                assert_eq!(slots(&cached), slots(&fresh), "batch row {r}");
                rows.push(slots(&cached));
            }
        }
        assert_eq!(rows.len(), 8);
        // Four batches of two rows: each row group's four dictionaries resolved once.
        assert_eq!(cache.resolved, 8);
    }

    #[test]
    fn columns_marked_without_dictionary_statistics_or_compression_are_written_so() {
        let schema = Arc::new(Schema::new(vec![
            without_compression(without_dictionary(Field::new("id", DataType::Utf8, false))),
            Field::new("tier", DataType::Utf8, false),
            without_statistics(Field::new("action", DataType::Utf8, false)),
        ]));
        let ids: Vec<String> = (0..100).map(|i| format!("id-{i}")).collect();
        let tiers: Vec<&str> = (0..100).map(|i| if i % 2 == 0 { "low" } else { "high" }).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(ids)), Arc::new(StringArray::from(tiers.clone())), Arc::new(StringArray::from(tiers))],
        )
        .unwrap();
        let mut enc = Encoder::new(FileFormat::Parquet, schema.clone()).unwrap();
        let mut bytes = enc.encode(&batch).unwrap();
        bytes.extend(enc.finish(schema).unwrap());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.parquet");
        std::fs::write(&p, bytes).unwrap();
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(File::open(&p).unwrap()).unwrap();
        let group = parquet::file::reader::FileReader::metadata(&reader).row_group(0).clone();
        let dictionary = |c: usize| group.column(c).dictionary_page_offset().is_some();
        assert!(!dictionary(0), "the id column has no dictionary");
        assert!(dictionary(1), "other columns keep theirs");
        let statistics = |c: usize| group.column(c).statistics().is_some_and(|s| s.min_bytes_opt().is_some());
        assert!(statistics(0) && statistics(1), "unmarked columns keep their statistics");
        assert!(!statistics(2), "the marked column has none");
        let codec = |c: usize| group.column(c).compression();
        assert_eq!(codec(0), parquet::basic::Compression::UNCOMPRESSED, "the id column is not compressed");
        assert!(matches!(codec(1), parquet::basic::Compression::SNAPPY), "other columns are");
        assert!(dictionary(2), "and keeps its dictionary");
        // The markers stay in this module: no embedded Arrow schema carries them to users.
        let kv = parquet::file::reader::FileReader::metadata(&reader).file_metadata().key_value_metadata().cloned().unwrap_or_default();
        assert!(kv.iter().all(|e| e.key != "ARROW:schema"), "{kv:?}");
        let back = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(File::open(&p).unwrap()).unwrap();
        assert!(back.schema().fields().iter().all(|f| f.metadata().is_empty() && f.data_type() == &DataType::Utf8), "{:?}", back.schema());
    }
}
