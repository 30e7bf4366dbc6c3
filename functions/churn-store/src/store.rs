//! The artifact store: a bundle lives either in a local directory (the embedded default) or
//! under an S3 prefix. One type hides which, so every `--out` / `--model` / `MODEL_URI` takes
//! both. S3 objects are written once: re-uploading identical bytes is a no-op, different bytes
//! under an existing key are refused (a bundle's files never change after upload).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use churn_core::bundle::{self, Manifest};
use churn_core::{Bundle, CoreError};
use futures::future::try_join_all;

use crate::StoreError;

/// Where a bundle (or a prefix of bundles) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// `s3://bucket/prefix` or a filesystem path.
    pub fn parse(uri: &str) -> Result<Self, StoreError> {
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::Uri { uri: uri.into(), problem: "no bucket name after s3://".into() });
            }
            return Ok(Location::S3 { bucket: bucket.into(), prefix: prefix.trim_matches('/').into() });
        }
        if uri.contains("://") {
            return Err(StoreError::Uri {
                uri: uri.into(),
                problem: "only s3://bucket/prefix or a local directory is supported".into(),
            });
        }
        if uri.trim().is_empty() {
            return Err(StoreError::Uri { uri: uri.into(), problem: "empty location".into() });
        }
        Ok(Location::Local(PathBuf::from(uri)))
    }

    /// The location of `name` inside this one.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(p) => Location::Local(p.join(name)),
            Location::S3 { bucket, prefix } => Location::S3 {
                bucket: bucket.clone(),
                prefix: if prefix.is_empty() { name.into() } else { format!("{prefix}/{name}") },
            },
        }
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, Location::S3 { .. })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Reads and writes bundles at a [`Location`]. The S3 client is built once from the standard
/// AWS environment (region, credentials, `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`).
#[derive(Clone, Default)]
pub struct Store {
    // Built on first S3 use: loading the AWS configuration may probe the network (instance
    // metadata for a region), which a run on local files must never do.
    s3: std::sync::Arc<tokio::sync::OnceCell<aws_sdk_s3::Client>>,
}

/// Bounded retries with exponential backoff for transient S3 errors (the SDK's standard mode).
const S3_ATTEMPTS: u32 = 4;

impl Store {
    /// A store whose S3 client, when first needed, is built from the standard AWS environment.
    pub fn new() -> Store {
        Store::default()
    }

    async fn client(&self) -> &aws_sdk_s3::Client {
        self.s3.get_or_init(Self::client_from_env).await
    }

    /// The S3 client (built on first use), for callers that stream objects themselves.
    pub async fn s3(&self) -> &aws_sdk_s3::Client {
        self.client().await
    }

    /// Builds the S3 client now (a Lambda does it during init, not on the first request).
    pub async fn connect(&self) {
        self.client().await;
    }

    async fn client_from_env() -> aws_sdk_s3::Client {
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        let https = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
        // The loader's own region and credential chains get this client too (a chain built
        // apart from the loader would have none: the SDK's default client is not compiled in).
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https)
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(S3_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(100)),
            )
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .load()
            .await;
        let shared = match shared.region() {
            Some(_) => shared,
            None => shared.into_builder().region(aws_config::Region::from_static("us-east-1")).build(),
        };
        // A custom endpoint (a local or on-premises S3 server) rarely resolves virtual-hosted
        // bucket names; path-style addressing works everywhere.
        let custom = std::env::var_os("AWS_ENDPOINT_URL_S3").or_else(|| std::env::var_os("AWS_ENDPOINT_URL")).is_some();
        let config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(custom).build();
        aws_sdk_s3::Client::from_conf(config)
    }

    fn s3_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        op: &str,
        loc: &Location,
        e: aws_sdk_s3::error::SdkError<E>,
    ) -> StoreError {
        let code = e.as_service_error().and_then(|s| s.code()).map(str::to_string);
        StoreError::S3 { op: op.into(), uri: loc.to_string(), code, message: DisplayErrorContext(&e).to_string() }
    }

    /// The bytes of one object / file.
    pub async fn get(&self, loc: &Location) -> Result<Vec<u8>, StoreError> {
        match loc {
            Location::Local(p) => tokio::fs::read(p).await.map_err(|e| StoreError::Io { path: p.display().to_string(), error: e }),
            Location::S3 { bucket, prefix } => {
                let out = self.client().await.get_object().bucket(bucket).key(prefix).send().await.map_err(|e| Self::s3_error("GetObject", loc, e))?;
                let body = out.body.collect().await.map_err(|e| StoreError::S3 {
                    op: "GetObject body".into(),
                    uri: loc.to_string(),
                    code: None,
                    message: e.to_string(),
                })?;
                Ok(body.into_bytes().to_vec())
            }
        }
    }

    /// Writes an object that must not change once written: identical bytes already there are
    /// accepted (re-running an upload is safe), different bytes are refused.
    pub async fn put_immutable(&self, loc: &Location, bytes: Vec<u8>) -> Result<(), StoreError> {
        match loc {
            Location::Local(p) => {
                if let Ok(existing) = tokio::fs::read(p).await {
                    return if existing == bytes { Ok(()) } else { Err(StoreError::Exists { uri: loc.to_string() }) };
                }
                if let Some(parent) = p.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(|e| StoreError::Io { path: parent.display().to_string(), error: e })?;
                }
                tokio::fs::write(p, bytes).await.map_err(|e| StoreError::Io { path: p.display().to_string(), error: e })
            }
            Location::S3 { bucket, prefix } => {
                match self.get(loc).await {
                    Ok(existing) => {
                        return if existing == bytes { Ok(()) } else { Err(StoreError::Exists { uri: loc.to_string() }) };
                    }
                    Err(StoreError::S3 { code: Some(c), .. }) if c == "NoSuchKey" => {}
                    Err(e) => return Err(e),
                }
                self.client()
                    .await
                    .put_object()
                    .bucket(bucket)
                    .key(prefix)
                    .body(ByteStream::from(bytes))
                    .send()
                    .await
                    .map_err(|e| Self::s3_error("PutObject", loc, e))?;
                Ok(())
            }
        }
    }

    /// Uploads the bundle in `local` to `dest`: every file first, the manifest last, so a
    /// reader that finds the manifest finds a complete bundle. Checksums are verified before
    /// anything leaves the machine.
    pub async fn upload_bundle(&self, local: &Path, dest: &Location) -> Result<Manifest, StoreError> {
        let files = read_verified(local)?;
        let manifest_bytes = files.get(bundle::MANIFEST).cloned().expect("read_verified returns the manifest");
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| StoreError::Core(CoreError::Bundle {
            dir: local.display().to_string(),
            message: format!("{}: {e}", bundle::MANIFEST),
        }))?;
        let uploads = files
            .iter()
            .filter(|(name, _)| name.as_str() != bundle::MANIFEST)
            .map(|(name, bytes)| self.put_immutable_owned(dest.join(name), bytes.clone()));
        try_join_all(uploads).await?;
        self.put_immutable(&dest.join(bundle::MANIFEST), manifest_bytes).await?;
        Ok(manifest)
    }

    async fn put_immutable_owned(&self, loc: Location, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.put_immutable(&loc, bytes).await
    }

    /// Every file of the bundle at `loc`, keyed by name, each checked against the manifest.
    pub async fn fetch_bundle_files(&self, loc: &Location) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        self.fetch_bundle_files_where(loc, |_| true).await
    }

    /// The files of the bundle at `loc` that `wanted` selects (and the manifest), each checked
    /// against the manifest.
    async fn fetch_bundle_files_where(&self, loc: &Location, wanted: impl Fn(&str) -> bool) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        let manifest_bytes = self.get(&loc.join(bundle::MANIFEST)).await?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| StoreError::Core(CoreError::Bundle {
            dir: loc.to_string(),
            message: format!("{} is not valid: {e}", bundle::MANIFEST),
        }))?;
        let names: Vec<String> = manifest.files.keys().filter(|n| wanted(n)).cloned().collect();
        let bodies = try_join_all(names.iter().map(|n| {
            let l = loc.join(n);
            async move { self.get(&l).await }
        }))
        .await?;
        let mut files: BTreeMap<String, Vec<u8>> = names.into_iter().zip(bodies).collect();
        for (name, expected) in manifest.files.iter().filter(|(n, _)| files.contains_key(*n)) {
            let actual = churn_core::sha256_hex(&files[name]);
            if &actual != expected {
                return Err(StoreError::Core(CoreError::Checksum {
                    dir: loc.to_string(),
                    file: name.clone(),
                    expected: expected.clone(),
                    actual,
                }));
            }
        }
        files.insert(bundle::MANIFEST.into(), manifest_bytes);
        Ok(files)
    }

    /// Loads and verifies the bundle at `loc`, ready to score.
    pub async fn load_bundle(&self, loc: &Location) -> Result<Bundle, StoreError> {
        if let Location::Local(dir) = loc {
            return Ok(Bundle::load_dir(dir)?);
        }
        let files = self.fetch_bundle_files_where(loc, |n| bundle::LOADED_FILES.contains(&n)).await?;
        let bundle = Bundle::load_with(&loc.to_string(), |name| {
            files.get(name).cloned().ok_or_else(|| CoreError::Bundle { dir: loc.to_string(), message: format!("{name} is missing") })
        })?;
        Ok(bundle)
    }

    /// Copies the bundle at `loc` into the local directory `to` (checksums verified).
    pub async fn download_bundle(&self, loc: &Location, to: &Path) -> Result<Manifest, StoreError> {
        let files = self.fetch_bundle_files(loc).await?;
        std::fs::create_dir_all(to).map_err(|e| StoreError::Io { path: to.display().to_string(), error: e })?;
        for (name, bytes) in &files {
            std::fs::write(to.join(name), bytes).map_err(|e| StoreError::Io { path: to.join(name).display().to_string(), error: e })?;
        }
        serde_json::from_slice(&files[bundle::MANIFEST])
            .map_err(|e| StoreError::Core(CoreError::Bundle { dir: loc.to_string(), message: e.to_string() }))
    }
}

/// Reads a local bundle directory and verifies every file against its manifest.
pub fn read_verified(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| StoreError::Io { path: dir.join(name).display().to_string(), error: e });
    let manifest_bytes = read(bundle::MANIFEST)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| StoreError::Core(CoreError::Bundle {
        dir: dir.display().to_string(),
        message: format!("{} is not valid: {e}", bundle::MANIFEST),
    }))?;
    let mut files = BTreeMap::new();
    for (name, expected) in &manifest.files {
        let bytes = read(name)?;
        let actual = churn_core::sha256_hex(&bytes);
        if &actual != expected {
            return Err(StoreError::Core(CoreError::Checksum {
                dir: dir.display().to_string(),
                file: name.clone(),
                expected: expected.clone(),
                actual,
            }));
        }
        files.insert(name.clone(), bytes);
    }
    files.insert(bundle::MANIFEST.into(), manifest_bytes);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_join() {
        assert_eq!(
            Location::parse("s3://b/models/churn/").unwrap().join("x.json"),
            Location::S3 { bucket: "b".into(), prefix: "models/churn/x.json".into() }
        );
        assert_eq!(Location::parse("s3://b").unwrap().join("m"), Location::S3 { bucket: "b".into(), prefix: "m".into() });
        assert_eq!(Location::parse("out/model").unwrap(), Location::Local("out/model".into()));
        assert!(Location::parse("s3:///x").unwrap_err().to_string().contains("no bucket"));
        assert!(Location::parse("gs://b/x").unwrap_err().to_string().contains("s3://"));
        assert_eq!(Location::parse("s3://b/p").unwrap().to_string(), "s3://b/p");
    }

    #[tokio::test]
    async fn local_objects_are_immutable() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new();
        let loc = Location::Local(d.path().join("a/b.txt"));
        store.put_immutable(&loc, b"one".to_vec()).await.unwrap();
        store.put_immutable(&loc, b"one".to_vec()).await.unwrap();
        let e = store.put_immutable(&loc, b"two".to_vec()).await.unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(store.get(&loc).await.unwrap(), b"one");
    }
}
