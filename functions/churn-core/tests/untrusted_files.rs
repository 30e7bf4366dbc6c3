//! Untrusted table files never panic the readers: truncated, bit-flipped, re-magicked parquet
//! and mangled CSV either read or fail with an error naming the file. A seeded property test
//! mutates a real parquet file (the Telco customers, several row groups) and a CSV file. The
//! checked-in corpus (`tests/data/corrupt/`, written by the ignored `write_corpus` test) is read
//! here and by the end-to-end tests through `churn score` and the batch function.
//!
//! `CHURN_FUZZ_CASES=100000 cargo test --release -p churn-core --test untrusted_files` runs
//! the long campaign the README cites; the suite runs a few thousand cases.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use bytes::Bytes;
use churn_core::table::{Encoder, FileFormat, TableReader};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn telco_csv() -> Vec<u8> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../training/data/telco/customers.csv")).unwrap();
    text.lines().take(401).collect::<Vec<_>>().join("\n").into_bytes()
}

/// The first 400 Telco customers as parquet, in row groups of 100.
fn telco_parquet() -> Vec<u8> {
    telco_parquet_with(|f| f)
}

/// [`telco_parquet`] with every column written without a dictionary (plain-encoded text, which
/// the scoring readers take as string views).
fn telco_parquet_plain() -> Vec<u8> {
    telco_parquet_with(churn_core::table::without_dictionary)
}

fn telco_parquet_with(field: impl Fn(arrow::datatypes::Field) -> arrow::datatypes::Field) -> Vec<u8> {
    let csv = telco_csv();
    let r = TableReader::csv("telco.csv", std::io::Cursor::new(csv.clone()), std::io::Cursor::new(csv)).unwrap();
    let mut out = Vec::new();
    let mut enc: Option<Encoder> = None;
    let mut schema = None;
    for b in r {
        let b = b.unwrap();
        let fields: Vec<_> = b.schema().fields().iter().map(|f| field(f.as_ref().clone())).collect();
        let b = b.with_schema(std::sync::Arc::new(arrow::datatypes::Schema::new(fields))).unwrap();
        let e = enc.get_or_insert_with(|| Encoder::new(FileFormat::Parquet, b.schema()).unwrap());
        schema = Some(b.schema());
        for start in (0..b.num_rows()).step_by(100) {
            out.extend(e.encode(&b.slice(start, 100.min(b.num_rows() - start))).unwrap());
        }
    }
    out.extend(enc.unwrap().finish(schema.unwrap()).unwrap());
    out
}

/// Reads every batch; `Err` for a clean error, panics propagate to the caller. Parquet is
/// read twice: with the file's own types, and as the scorers read it (every text column as a
/// categorical input: dictionaries, or string views where a column is plain-encoded).
fn read_all(format: FileFormat, data: Vec<u8>) -> Result<usize, String> {
    let readers = match format {
        FileFormat::Parquet => {
            // Read once for every case of a campaign.
            static COLUMNS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
                let csv = telco_csv();
                String::from_utf8_lossy(&csv[..csv.iter().position(|&b| b == b'\n').unwrap()]).split(',').map(String::from).collect()
            });
            let inputs: Vec<(&str, bool)> = COLUMNS.iter().map(|c| (c.as_str(), true)).collect();
            let bytes = Bytes::from(data);
            vec![TableReader::parquet("f.parquet", bytes.clone()), TableReader::parquet_with("f.parquet", bytes, &inputs)]
        }
        FileFormat::Csv => vec![TableReader::csv("f.csv", std::io::Cursor::new(data.clone()), std::io::Cursor::new(data))],
    };
    let mut rows = 0;
    for r in readers {
        rows = 0;
        for b in r.map_err(|e| e.to_string())? {
            rows += b.map_err(|e| e.to_string())?.num_rows();
        }
    }
    Ok(rows)
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Truncate { len: usize },
}

fn mutation(len: usize, footer: usize) -> impl Strategy<Value = Mutation> {
    // Most mutations hit the footer (where offsets and sizes live), the rest anywhere.
    let pos = prop_oneof![3 => (len - footer)..len, 1 => 0..len];
    prop_oneof![
        (pos.clone(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (pos, any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (0..len).prop_map(|len| Mutation::Truncate { len }),
    ]
}

fn apply(mut data: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        match *m {
            Mutation::Flip { at, bit } if at < data.len() => data[at] ^= 1 << bit,
            Mutation::Set { at, byte } if at < data.len() => data[at] = byte,
            Mutation::Truncate { len } => data.truncate(len),
            _ => {}
        }
    }
    data
}

fn cases(default: u32) -> u32 {
    std::env::var("CHURN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn campaign(format: FileFormat, original: Vec<u8>, footer: usize, n: u32) {
    let config = Config { cases: n, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    let len = original.len();
    let result = runner.run(&proptest::collection::vec(mutation(len, footer.min(len)), 1..4), |ms| {
        let data = apply(original.clone(), &ms);
        let outcome = catch_unwind(AssertUnwindSafe(|| read_all(format, data)));
        prop_assert!(outcome.is_ok(), "panicked on {ms:?}");
        if let Ok(Err(message)) = outcome {
            prop_assert!(message.contains("f.parquet") || message.contains("f.csv"), "{message} does not name the file");
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn mutated_parquet_never_panics() {
    let original = telco_parquet();
    assert_eq!(read_all(FileFormat::Parquet, original.clone()), Ok(400));
    let footer = u32::from_le_bytes(original[original.len() - 8..original.len() - 4].try_into().unwrap()) as usize + 8;
    campaign(FileFormat::Parquet, original, footer, cases(3000));
}

#[test]
fn mutated_plain_encoded_parquet_never_panics() {
    let original = telco_parquet_plain();
    assert_eq!(read_all(FileFormat::Parquet, original.clone()), Ok(400));
    let mut views = TableReader::parquet_with("f.parquet", Bytes::from(original.clone()), &[("contract", true)]).unwrap();
    let batch = views.next().unwrap().unwrap();
    assert_eq!(batch.schema().field_with_name("contract").unwrap().data_type(), &arrow::datatypes::DataType::Utf8View);
    let footer = u32::from_le_bytes(original[original.len() - 8..original.len() - 4].try_into().unwrap()) as usize + 8;
    campaign(FileFormat::Parquet, original, footer, cases(2000));
}

#[test]
fn mutated_csv_never_panics() {
    let original = telco_csv();
    assert_eq!(read_all(FileFormat::Csv, original.clone()), Ok(400));
    campaign(FileFormat::Csv, original.clone(), original.len(), cases(1000));
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/corrupt"))
}

/// The corpus: each kind of damage a real file suffers, on the Telco parquet and CSV above.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let pq = telco_parquet();
    let n = pq.len();
    let footer = u32::from_le_bytes(pq[n - 8..n - 4].try_into().unwrap()) as usize;
    let csv = telco_csv();
    let mut files = vec![
        ("truncated-half.parquet", pq[..n / 2].to_vec()),
        ("truncated-footer.parquet", pq[..n - 20].to_vec()),
        ("wrong-magic.parquet", apply(pq.clone(), &[Mutation::Set { at: n - 1, byte: b'X' }])),
        ("footer-length-too-large.parquet", apply(pq.clone(), &[Mutation::Set { at: n - 5, byte: 0x7f }])),
        ("no-data-only-magic.parquet", b"PAR1PAR1".to_vec()),
        ("csv-named-parquet.parquet", csv[..2000].to_vec()),
        ("csv-invalid-utf8.csv", {
            let mut c = csv.clone();
            let at = 3000 + c[3000..].iter().position(u8::is_ascii_alphabetic).unwrap();
            c[at] = 0xff;
            c
        }),
        ("csv-ragged-row.csv", {
            let mut c = csv.clone();
            let at = c.iter().rposition(|&b| b == b'\n').unwrap();
            c.splice(at..at, b",extra,fields".iter().copied());
            c
        }),
        ("csv-unterminated-quote.csv", {
            let mut c = csv.clone();
            let at = 5000 + c[5000..].iter().position(|&b| b == b',').unwrap() + 1;
            c.insert(at, b'"');
            c
        }),
        ("csv-binary.csv", (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()),
    ];
    // Damage inside the footer, found by the property test above: a column chunk offset turned
    // negative, and a page whose bytes trip an assertion inside the decoder.
    let start = n - 8 - footer;
    let negative = (start..n - 8)
        .flat_map(|at| (0..8u8).map(move |bit| Mutation::Flip { at, bit }))
        .map(|m| apply(pq.clone(), &[m]))
        .find(|d| read_all(FileFormat::Parquet, d.clone()).is_err_and(|e| e.contains("at byte -")))
        .expect("some bit flip makes an offset negative");
    files.push(("negative-offset.parquet", negative));
    let page = (4..start)
        .flat_map(|at| [0x41u8, 0xff].map(move |byte| Mutation::Set { at, byte }))
        .map(|m| apply(pq.clone(), &[m]))
        .find(|d| read_all(FileFormat::Parquet, d.clone()).is_err_and(|e| e.contains("corrupt data")))
        .expect("some byte in the data pages trips the decoder");
    files.push(("corrupt-page.parquet", page));
    files
}

/// Rewrites `tests/data/corrupt/` (run when the corpus's recipe changes).
#[test]
#[ignore]
fn write_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in corpus() {
        std::fs::write(dir.join(name), data).unwrap();
    }
}

#[test]
fn every_corpus_file_fails_cleanly_naming_itself() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        let Ok(format) = FileFormat::from_path(&path) else { continue };
        n += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            for b in TableReader::open(&path)? {
                b?;
            }
            Ok::<_, churn_core::CoreError>(())
        }));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let err = match outcome {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(())) => panic!("{name} ({format:?}) read without an error"),
            Err(_) => panic!("{name} panicked the reader"),
        };
        assert!(err.contains(&name), "{name}: {err}");
    }
    assert!(n >= 12, "{n} corpus files");
}
