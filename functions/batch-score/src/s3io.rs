//! S3 streaming for the batch scorer: ranged reads that let the parquet reader fetch one row
//! group at a time (memory stays bounded by the row group, not the object), and a multipart
//! upload that makes an output visible only when it is complete.
//!
//! Every ranged read carries `If-Match: <etag>`, so an object replaced while it is being read
//! fails the run instead of mixing two versions.
//!
//! Waiting on S3 is overlapped with scoring: [`Prefetch`] asks for the next row group while the
//! current one is decoded and scored, and [`Upload`] sends a full part in the background while
//! the next one fills. Each keeps at most one transfer in flight, so memory stays bounded. Those
//! transfers run on a thread of their own ([`spawn_io`]): the function's runtime has one thread,
//! which scoring keeps busy between awaits, so a transfer spawned there would not even send its
//! request until the next await.

use std::ops::Range;
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

/// An S3 failure, with the operation and the object.
#[derive(Debug, thiserror::Error)]
#[error("S3 {op} s3://{bucket}/{key}: {message}")]
pub struct S3Error {
    pub op: &'static str,
    pub bucket: String,
    pub key: String,
    /// The service's error code (`NoSuchKey`, `PreconditionFailed`, …) when it sent one.
    pub code: Option<String>,
    pub message: String,
}

impl S3Error {
    /// A conditional request whose condition did not hold (HTTP 412), or that raced another
    /// conditional write to the same key (S3's 409 `ConditionalRequestConflict`).
    pub fn is_precondition_failed(&self) -> bool {
        matches!(self.code.as_deref(), Some("PreconditionFailed" | "ConditionalRequestConflict"))
    }

    /// A failure with no service error code (a broken body stream, a short read). Give a body's
    /// error wrapped in [`DisplayErrorContext`], so that its causes are in the message (its own
    /// message is often only "streaming error").
    pub fn transfer(op: &'static str, bucket: &str, key: &str, message: impl std::fmt::Display) -> Self {
        S3Error { op, bucket: bucket.into(), key: key.into(), code: None, message: message.to_string() }
    }
}

pub fn s3_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &'static str,
    bucket: &str,
    key: &str,
    e: SdkError<E>,
) -> S3Error {
    let code = e.as_service_error().and_then(|s| s.code()).map(str::to_string);
    S3Error { op, bucket: bucket.into(), key: key.into(), code, message: DisplayErrorContext(&e).to_string() }
}

/// What `HeadObject` says of an object.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub size: u64,
    pub etag: String,
    pub metadata: std::collections::HashMap<String, String>,
}

/// `HeadObject`; `Ok(None)` when the object does not exist.
pub async fn head(client: &Client, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, S3Error> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(o) => Ok(Some(ObjectInfo {
            size: o.content_length().unwrap_or(0).max(0) as u64,
            etag: o.e_tag().unwrap_or_default().to_string(),
            metadata: o.metadata().cloned().unwrap_or_default(),
        })),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
        Err(e) => Err(s3_error("HeadObject", bucket, key, e)),
    }
}

/// The whole body of `s3://{bucket}/{key}`; `Ok(None)` when the object does not exist.
pub async fn get(client: &Client, bucket: &str, key: &str) -> Result<Option<Bytes>, S3Error> {
    match client.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => {
            Ok(Some(o.body.collect().await.map_err(|e| S3Error::transfer("GetObject", bucket, key, DisplayErrorContext(e)))?.into_bytes()))
        }
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
        Err(e) => Err(s3_error("GetObject", bucket, key, e)),
    }
}

/// What must hold of an output's key when its upload completes: S3 conditional writes, so an
/// invocation never overwrites, unseen, what another one wrote after it looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Nothing is there (`If-None-Match: *`).
    Absent,
    /// The object with this ETag is still there (`If-Match`).
    Unchanged(String),
    /// No condition: for tools that own the key (the benchmark writing its input).
    Any,
}

impl Precondition {
    /// The condition that what `existing` found is still what the key holds.
    pub fn of(existing: Option<&ObjectInfo>) -> Self {
        existing.map_or(Precondition::Absent, |o| Precondition::Unchanged(o.etag.clone()))
    }

    fn if_match(&self) -> Option<String> {
        match self {
            Precondition::Unchanged(etag) => Some(etag.clone()),
            Precondition::Absent | Precondition::Any => None,
        }
    }

    fn if_none_match(&self) -> Option<String> {
        matches!(self, Precondition::Absent).then(|| "*".to_string())
    }
}

/// Why [`Upload::finish`] made nothing visible.
pub enum Finish {
    /// The key no longer holds what the precondition says: the upload, to complete under a new
    /// condition or to abort.
    Changed(Box<Upload>),
    Failed(Box<S3Error>),
}

/// Deletes `s3://{bucket}/{key}` only if `when` holds of it (for `Unchanged`, an S3 conditional
/// delete, `If-Match`). `Ok(true)`: the key holds nothing now; `Ok(false)`: it holds something
/// `when` did not expect, and nothing was deleted.
pub async fn delete(client: &Client, bucket: &str, key: &str, when: &Precondition) -> Result<bool, S3Error> {
    match when {
        // Nothing was there: still nothing, or someone wrote since.
        Precondition::Absent => Ok(head(client, bucket, key).await?.is_none()),
        Precondition::Unchanged(_) | Precondition::Any => {
            match client.delete_object().bucket(bucket).key(key).set_if_match(when.if_match()).send().await {
                Ok(_) => Ok(true),
                // Deleted by someone else meanwhile: nothing there, as wanted.
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(true),
                Err(e) => {
                    let e = s3_error("DeleteObject", bucket, key, e);
                    if e.is_precondition_failed() { Ok(false) } else { Err(e) }
                }
            }
        }
    }
}

/// Bytes a coalesced read may fetch beyond what was asked for.
const SPAN_SLACK: u64 = 1 << 20;

/// The one span covering `ranges`, when fetching it whole costs at most [`SPAN_SLACK`] bytes
/// more than they hold; `None` when they are empty or far apart.
fn coalesced(ranges: &[Range<u64>]) -> Option<Range<u64>> {
    let start = ranges.iter().map(|r| r.start).min()?;
    let end = ranges.iter().map(|r| r.end).max()?;
    let wanted: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    (end - start <= wanted + SPAN_SLACK).then_some(start..end)
}

/// `ranges` cut out of `bytes`, which start at offset `start`.
fn cut(bytes: &Bytes, start: u64, ranges: &[Range<u64>]) -> Vec<Bytes> {
    ranges.iter().map(|r| bytes.slice((r.start - start) as usize..(r.end - start) as usize)).collect()
}

/// Reads byte ranges of one version (etag) of an object.
#[derive(Clone)]
pub struct S3Reader {
    pub client: Client,
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub size: u64,
    /// Bytes fetched so far (for the summary's figures).
    pub fetched: Arc<std::sync::atomic::AtomicU64>,
}

impl S3Reader {
    pub async fn range(&self, range: Range<u64>) -> Result<Bytes, S3Error> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .if_match(&self.etag)
            .range(format!("bytes={}-{}", range.start, range.end.saturating_sub(1)))
            .send()
            .await
            .map_err(|e| s3_error("GetObject", &self.bucket, &self.key, e))?;
        let body =
            out.body.collect().await.map_err(|e| S3Error::transfer("GetObject body", &self.bucket, &self.key, DisplayErrorContext(e)))?;
        let bytes = body.into_bytes();
        self.fetched.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if bytes.len() as u64 != range.end - range.start {
            let short = format!("asked for {} bytes at {}, got {}", range.end - range.start, range.start, bytes.len());
            return Err(S3Error::transfer("GetObject", &self.bucket, &self.key, short));
        }
        Ok(bytes)
    }
}

impl AsyncFileReader for S3Reader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move { self.range(range).await.map_err(|e| ParquetError::External(Box::new(e))) }.boxed()
    }

    /// The column chunks of a row group lie next to each other: one GET for the span they cover
    /// instead of one per column (21 for the Telco table), sliced here. Fewer requests is what
    /// matters on S3, where each carries tens of milliseconds of latency (and on moto, which re-reads
    /// the whole object for every ranged GET).
    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            if let Some(span) = coalesced(&ranges) {
                let bytes = self.range(span.clone()).await.map_err(|e| ParquetError::External(Box::new(e)))?;
                return Ok(cut(&bytes, span.start, &ranges));
            }
            // Far apart (a projection that skips wide columns): fetch them one by one.
            let mut out = Vec::with_capacity(ranges.len());
            for r in ranges {
                out.push(self.range(r).await.map_err(|e| ParquetError::External(Box::new(e)))?);
            }
            Ok(out)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            // The footer of most files fits in the first 64 KiB fetched from the end.
            let meta = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .with_prefetch_hint(Some(64 << 10))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

/// Runs `transfer` on the S3 transfer thread (started on first use), or on the caller's runtime
/// if that thread cannot be started.
pub fn spawn_io<T: Send + 'static>(transfer: impl std::future::Future<Output = T> + Send + 'static) -> tokio::task::JoinHandle<T> {
    static IO: std::sync::OnceLock<Option<tokio::runtime::Handle>> = std::sync::OnceLock::new();
    let io = IO.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        let handle = rt.handle().clone();
        std::thread::Builder::new().name("s3-transfers".into()).spawn(move || rt.block_on(std::future::pending::<()>())).ok()?;
        Some(handle)
    });
    match io {
        Some(handle) => handle.spawn(transfer),
        None => tokio::spawn(transfer),
    }
}

/// A parquet reader over [`S3Reader`] that fetches the next row group's bytes while the current
/// one is being scored. `spans` are the byte spans of the row groups in the order the parquet
/// stream reads them; a request the plan does not foresee is fetched directly.
pub struct Prefetch {
    inner: S3Reader,
    spans: std::collections::VecDeque<Range<u64>>,
    pending: Option<(Range<u64>, Fetch)>,
}

/// A span being fetched in the background.
type Fetch = tokio::task::JoinHandle<Result<Bytes, S3Error>>;

impl Prefetch {
    pub fn new(inner: S3Reader, spans: impl IntoIterator<Item = Range<u64>>) -> Self {
        Prefetch { inner, spans: spans.into_iter().collect(), pending: None }
    }

    /// The bytes of `span`: from the transfer started earlier when it covers them.
    async fn span(&mut self, span: Range<u64>) -> Result<Bytes, S3Error> {
        let bytes = match self.pending.take() {
            Some((r, handle)) if r.start <= span.start && span.end <= r.end => {
                let whole = handle.await.map_err(|e| S3Error::transfer("GetObject", &self.inner.bucket, &self.inner.key, e))??;
                whole.slice((span.start - r.start) as usize..(span.end - r.start) as usize)
            }
            other => {
                self.pending = other;
                self.inner.range(span.clone()).await?
            }
        };
        // Spans up to this one are done with; start the next.
        while self.spans.front().is_some_and(|r| r.start <= span.start) {
            self.spans.pop_front();
        }
        if self.pending.is_none()
            && let Some(next) = self.spans.pop_front()
        {
            let reader = self.inner.clone();
            let r = next.clone();
            self.pending = Some((next, spawn_io(async move { reader.range(r).await })));
        }
        Ok(bytes)
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if let Some((_, handle)) = self.pending.take() {
            handle.abort();
        }
    }
}

impl AsyncFileReader for Prefetch {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move { self.span(range).await.map_err(|e| ParquetError::External(Box::new(e))) }.boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            let Some(span) = coalesced(&ranges) else {
                return self.inner.get_byte_ranges(ranges).await;
            };
            let bytes = self.span(span.clone()).await.map_err(|e| ParquetError::External(Box::new(e)))?;
            Ok(cut(&bytes, span.start, &ranges))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        self.inner.get_metadata(options)
    }
}

/// The byte span of each row group's column chunks, for [`Prefetch`].
pub fn row_group_spans(meta: &ParquetMetaData, groups: impl IntoIterator<Item = usize>) -> Vec<Range<u64>> {
    groups
        .into_iter()
        .filter_map(|g| {
            let cols = meta.row_group(g).columns();
            let start = cols.iter().map(|c| c.byte_range().0).min()?;
            let end = cols.iter().map(|c| c.byte_range().0 + c.byte_range().1).max()?;
            Some(start..end)
        })
        .collect()
}

/// An object written in parts; nothing is visible under its key until [`finish`](Self::finish).
/// Small outputs (under one part) are written with one `PutObject`, which is atomic too. A full
/// part is sent in the background while the next one fills; at most one is in flight, so memory
/// stays within two parts and one write.
pub struct Upload {
    client: Client,
    bucket: String,
    key: String,
    content_type: &'static str,
    part_size: usize,
    buf: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    in_flight: Option<tokio::task::JoinHandle<Result<CompletedPart, S3Error>>>,
    /// User metadata the finished object carries (`x-amz-meta-*`).
    metadata: Vec<(&'static str, String)>,
    pub bytes: u64,
}

impl Upload {
    pub fn new(client: &Client, bucket: &str, key: &str, content_type: &'static str, part_size: usize) -> Self {
        Upload {
            client: client.clone(),
            bucket: bucket.into(),
            key: key.into(),
            content_type,
            part_size,
            buf: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            in_flight: None,
            metadata: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds `x-amz-meta-<key>: value` to the finished object.
    pub fn with_metadata(mut self, key: &'static str, value: &str) -> Self {
        self.metadata.push((key, value.to_string()));
        self
    }

    fn metadata(&self) -> Option<std::collections::HashMap<String, String>> {
        Some(self.metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Appends bytes; sends everything buffered as a part once that is at least the part size.
    /// Parts are as large as the writes make them (S3 only asks every part but the last for
    /// 5 MiB): the last part, which is sent only after the last row, then holds what came after
    /// the last full part and no leftover cut from it, and the wait after the last row is shorter.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), S3Error> {
        self.buf.extend_from_slice(bytes);
        self.bytes += bytes.len() as u64;
        if self.buf.len() >= self.part_size {
            let part = std::mem::take(&mut self.buf);
            self.start_part(part).await?;
        }
        Ok(())
    }

    /// Sends what is buffered as the last part, when the object is going up in parts, so that
    /// it travels while the caller does something else before [`finish`](Self::finish); an
    /// object small enough for one `PutObject` keeps it for `finish`. Nothing may be written after.
    pub async fn send_last(&mut self) -> Result<(), S3Error> {
        if self.upload_id.is_some() && !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf);
            self.start_part(last).await?;
        }
        Ok(())
    }

    /// Waits for the part in flight, if any, and records it.
    async fn settle(&mut self) -> Result<(), S3Error> {
        if let Some(handle) = self.in_flight.take() {
            let part = handle.await.map_err(|e| S3Error::transfer("UploadPart", &self.bucket, &self.key, e))??;
            self.parts.push(part);
        }
        Ok(())
    }

    async fn start_part(&mut self, part: Vec<u8>) -> Result<(), S3Error> {
        self.settle().await?;
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let out = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .content_type(self.content_type)
                    .set_metadata(self.metadata())
                    .send()
                    .await
                    .map_err(|e| s3_error("CreateMultipartUpload", &self.bucket, &self.key, e))?;
                let id = out.upload_id().unwrap_or_default().to_string();
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.parts.len() as i32 + 1;
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key.clone());
        self.in_flight = Some(spawn_io(async move {
            let out = client
                .upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(part))
                // The CRC32 checksum the SDK adds still guards the bytes; hashing every part
                // for the signature as well costs a SHA-256 pass over the output.
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| s3_error("UploadPart", &bucket, &key, e))?;
            Ok(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag().map(str::to_string)).build())
        }));
        Ok(())
    }

    /// Makes the object visible, whole — only if `when` still holds of its key (an S3
    /// conditional write). When it does not, nothing becomes visible and the upload comes back
    /// in [`Finish::Changed`], to be completed under a new condition or aborted.
    pub async fn finish(mut self, when: &Precondition) -> Result<u64, Finish> {
        let failed = |e: S3Error| Finish::Failed(Box::new(e));
        if self.upload_id.is_none() {
            let body = Bytes::from(std::mem::take(&mut self.buf));
            let sent = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type(self.content_type)
                .set_metadata(self.metadata())
                .set_if_match(when.if_match())
                .set_if_none_match(when.if_none_match())
                .body(ByteStream::from(body.clone()))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| s3_error("PutObject", &self.bucket, &self.key, e));
            return match sent {
                Ok(_) => Ok(self.bytes),
                Err(e) if e.is_precondition_failed() => {
                    self.buf = body.to_vec();
                    Err(Finish::Changed(Box::new(self)))
                }
                Err(e) => Err(failed(e)),
            };
        }
        self.send_last().await.map_err(failed)?;
        self.settle().await.map_err(failed)?;
        let done = CompletedMultipartUpload::builder().set_parts(Some(self.parts.clone())).build();
        let sent = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(self.upload_id.as_deref().unwrap_or_default())
            .multipart_upload(done)
            .set_if_match(when.if_match())
            .set_if_none_match(when.if_none_match())
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", &self.bucket, &self.key, e));
        match sent {
            Ok(_) => Ok(self.bytes),
            Err(e) if e.is_precondition_failed() => Err(Finish::Changed(Box::new(self))),
            Err(e) => Err(failed(e)),
        }
    }

    /// Drops the parts uploaded so far; nothing becomes visible.
    pub async fn abort(mut self) {
        if let Some(handle) = self.in_flight.take() {
            handle.abort();
        }
        if let Some(id) = &self.upload_id
            && let Err(e) = self.client.abort_multipart_upload().bucket(&self.bucket).key(&self.key).upload_id(id).send().await
        {
            // The bucket's lifecycle rule removes stale parts if this fails too.
            tracing::warn!(key = %self.key, error = %DisplayErrorContext(&e), "could not abort a multipart upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_ranges_are_fetched_as_one_span_and_cut_back() {
        assert_eq!(coalesced(&[]), None);
        let ranges = [10..20, 20..35, 40..50];
        assert_eq!(coalesced(&ranges), Some(10..50));
        let bytes = Bytes::from((10u8..50).collect::<Vec<_>>());
        let parts = cut(&bytes, 10, &ranges);
        assert_eq!(
            parts.iter().map(|b| b.to_vec()).collect::<Vec<_>>(),
            ranges.iter().map(|r| (r.start as u8..r.end as u8).collect::<Vec<_>>()).collect::<Vec<_>>()
        );
        // A gap wider than the slack is not worth fetching: the ranges go one by one.
        assert_eq!(coalesced(&[0..10, SPAN_SLACK + 20..SPAN_SLACK + 30]), None);
        assert_eq!(coalesced(&[0..10, SPAN_SLACK + 10..SPAN_SLACK + 30]), Some(0..SPAN_SLACK + 30));
    }
}
