//! The artifact store: a bundle lives either in a local directory (the embedded default) or
//! under an S3 prefix. One type hides which, so every `--out` / `--model` / `MODEL_URI` takes
//! both. S3 objects are written once: re-uploading identical bytes is a no-op, different bytes
//! under an existing key are refused (a bundle's files never change after upload).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
#[cfg(feature = "sdk")]
use std::time::Duration;

#[cfg(feature = "sdk")]
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
#[cfg(feature = "sdk")]
use aws_sdk_s3::primitives::ByteStream;
use churn_core::bundle::{self, Manifest};
use churn_core::{Bundle, CoreError};
use futures::future::try_join_all;

use crate::StoreError;
use crate::s3read::{self, S3Reader};

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
            return Err(StoreError::Uri { uri: uri.into(), problem: "only s3://bucket/prefix or a local directory is supported".into() });
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
            Location::S3 { bucket, prefix } => {
                Location::S3 { bucket: bucket.clone(), prefix: if prefix.is_empty() { name.into() } else { format!("{prefix}/{name}") } }
            }
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

/// Reads and writes bundles at a [`Location`]. S3 settings come from the standard AWS
/// environment (region, credentials, `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`). Objects are
/// read with a signed GET (`s3read`); writing and streaming use the SDK client, which
/// only the `sdk` feature builds.
#[derive(Clone, Default)]
pub struct Store {
    // Both built on first S3 use: loading the AWS configuration may probe the network (instance
    // metadata for a region), which a run on local files must never do.
    reader: std::sync::Arc<tokio::sync::OnceCell<S3Reader>>,
    #[cfg(feature = "sdk")]
    sdk: std::sync::Arc<tokio::sync::OnceCell<(aws_config::SdkConfig, aws_sdk_s3::Client)>>,
    // The chain's last answer: resolving it can mean a network call (instance metadata, SSO).
    #[cfg(feature = "sdk")]
    chain_credentials: std::sync::Arc<tokio::sync::Mutex<Option<aws_credential_types::Credentials>>>,
}

/// Bounded retries with exponential backoff for transient S3 errors (the SDK's standard mode).
#[cfg(feature = "sdk")]
const S3_ATTEMPTS: u32 = 4;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// An error and its sources, as text (the SDK's `DisplayErrorContext` adds a debug dump that
/// buries the provider list a user needs).
#[cfg(feature = "sdk")]
fn display_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

impl Store {
    /// A store whose S3 access, when first needed, is set up from the standard AWS environment.
    pub fn new() -> Store {
        Store::default()
    }

    async fn reader(&self) -> Result<&S3Reader, StoreError> {
        self.reader
            .get_or_try_init(|| async {
                let region = match s3read::env_region(env) {
                    Some(r) => r,
                    #[cfg(feature = "sdk")]
                    None => self.sdk().await.0.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into()),
                    #[cfg(not(feature = "sdk"))]
                    None => "us-east-1".into(),
                };
                S3Reader::new(s3read::env_endpoint(env), region)
            })
            .await
    }

    /// Credentials for a signed request: the standard variables (what Lambda gives a function),
    /// else, with the `sdk` feature, the SDK's whole chain (profiles, SSO, instance roles).
    async fn credentials(&self, loc: &Location) -> Result<aws_credential_types::Credentials, StoreError> {
        if let Some(c) = s3read::env_credentials(env) {
            return Ok(c);
        }
        let missing = |message: String| StoreError::S3 { op: "credentials".into(), uri: loc.to_string(), code: None, message };
        #[cfg(feature = "sdk")]
        {
            use aws_credential_types::provider::ProvideCredentials;
            let mut cached = self.chain_credentials.lock().await;
            // Temporary credentials are renewed five minutes before they expire.
            let fresh = |c: &aws_credential_types::Credentials| {
                c.expiry().is_none_or(|t| t > std::time::SystemTime::now() + Duration::from_secs(300))
            };
            if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
                return Ok(c.clone());
            }
            let provider =
                self.sdk().await.0.credentials_provider().ok_or_else(|| missing("no credentials provider is configured".into()))?;
            let c = provider.provide_credentials().await.map_err(|e| missing(display_chain(&e)))?;
            *cached = Some(c.clone());
            Ok(c)
        }
        #[cfg(not(feature = "sdk"))]
        Err(missing("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)".into()))
    }

    #[cfg(feature = "sdk")]
    async fn sdk(&self) -> &(aws_config::SdkConfig, aws_sdk_s3::Client) {
        self.sdk.get_or_init(Self::client_from_env).await
    }

    #[cfg(feature = "sdk")]
    async fn client(&self) -> &aws_sdk_s3::Client {
        &self.sdk().await.1
    }

    /// The S3 client (built on first use), for callers that stream objects themselves.
    #[cfg(feature = "sdk")]
    pub async fn s3(&self) -> &aws_sdk_s3::Client {
        self.client().await
    }

    #[cfg(feature = "sdk")]
    async fn client_from_env() -> (aws_config::SdkConfig, aws_sdk_s3::Client) {
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        let https = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
        // The loader's own region and credential chains get this client too (a chain built
        // apart from the loader would have none: the SDK's default client is not compiled in).
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https)
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(S3_ATTEMPTS).with_initial_backoff(Duration::from_millis(100)),
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
        let custom = s3read::env_endpoint(env).is_some();
        let config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(custom).build();
        let client = aws_sdk_s3::Client::from_conf(config);
        (shared, client)
    }

    #[cfg(feature = "sdk")]
    fn s3_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        op: &str,
        loc: &Location,
        e: aws_sdk_s3::error::SdkError<E>,
    ) -> StoreError {
        use aws_sdk_s3::error::SdkError;
        if matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)) {
            return StoreError::Unreachable {
                service: "S3",
                target: loc.to_string(),
                detail: format!("{op}: {}", DisplayErrorContext(&e)),
                attempts: S3_ATTEMPTS,
                hint: "check the network and, for a non-AWS server, AWS_ENDPOINT_URL_S3",
            };
        }
        let code = e.as_service_error().and_then(|s| s.code()).map(str::to_string);
        StoreError::S3 { op: op.into(), uri: loc.to_string(), code, message: DisplayErrorContext(&e).to_string() }
    }

    /// The bytes of one object / file. A local file is read on the calling thread: these are
    /// bundle and package files on local disk, and `tokio::fs` would hand the read to a
    /// blocking-pool thread, whose start (a stack and a malloc arena) costs a function's cold
    /// start more than the read itself.
    pub async fn get(&self, loc: &Location) -> Result<Vec<u8>, StoreError> {
        match loc {
            Location::Local(p) => std::fs::read(p).map_err(|e| StoreError::Io { path: p.display().to_string(), error: e }),
            Location::S3 { bucket, prefix } => {
                let credentials = self.credentials(loc).await?;
                self.reader().await?.get(&credentials, bucket, prefix).await
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
            #[cfg(not(feature = "sdk"))]
            Location::S3 { .. } => Err(StoreError::Uri {
                uri: loc.to_string(),
                problem: "this build only reads from S3 (churn-store without its sdk feature)".into(),
            }),
            #[cfg(feature = "sdk")]
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
        let manifest = parse_manifest(&local.display().to_string(), &manifest_bytes)?;
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

    /// Every file of the bundle at `loc`, keyed by name, each checked against the manifest. The
    /// manifest is read first: it names the files.
    pub async fn fetch_bundle_files(&self, loc: &Location) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        let manifest_bytes = self.get(&loc.join(bundle::MANIFEST)).await?;
        let manifest = parse_manifest(&loc.to_string(), &manifest_bytes)?;
        let names: Vec<String> = manifest.files.keys().cloned().collect();
        let bodies = try_join_all(names.iter().map(|n| self.get_owned(loc.join(n)))).await?;
        let mut files: BTreeMap<String, Vec<u8>> = names.into_iter().zip(bodies).collect();
        verify(&loc.to_string(), &manifest, &files)?;
        files.insert(bundle::MANIFEST.into(), manifest_bytes);
        Ok(files)
    }

    async fn get_owned(&self, loc: Location) -> Result<Vec<u8>, StoreError> {
        self.get(&loc).await
    }

    /// The files a scorer loads, requested together with the manifest: one round of requests
    /// instead of two, which a cold start pays for. A file the manifest does not list (a bundle
    /// from before explanations has no background sample) is left out whatever its request gave.
    pub(crate) async fn fetch_loaded_files(&self, loc: &Location) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        let manifest_loc = loc.join(bundle::MANIFEST);
        let (manifest_bytes, bodies) = futures::future::join(
            self.get(&manifest_loc),
            futures::future::join_all(bundle::LOADED_FILES.iter().map(|n| self.get_owned(loc.join(n)))),
        )
        .await;
        let manifest_bytes = manifest_bytes?;
        let manifest = parse_manifest(&loc.to_string(), &manifest_bytes)?;
        let mut files = BTreeMap::new();
        for (name, body) in bundle::LOADED_FILES.iter().zip(bodies) {
            if manifest.files.contains_key(*name) {
                files.insert(name.to_string(), body?);
            }
        }
        verify(&loc.to_string(), &manifest, &files)?;
        files.insert(bundle::MANIFEST.into(), manifest_bytes);
        Ok(files)
    }

    /// Loads and verifies the bundle at `loc`, ready to score.
    pub async fn load_bundle(&self, loc: &Location) -> Result<Bundle, StoreError> {
        if let Location::Local(dir) = loc {
            return Ok(Bundle::load_dir(dir)?);
        }
        let start = std::time::Instant::now();
        let files = self.fetch_loaded_files(loc).await?;
        // Cold starts are on the request path: say how much of one is waiting for S3.
        tracing::info!(location = %loc, files = files.len(), bytes = files.values().map(Vec::len).sum::<usize>(), fetch_ms = start.elapsed().as_secs_f64() * 1e3, "bundle fetched");
        let bundle = Bundle::from_files(&loc.to_string(), files)?;
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
    let read =
        |name: &str| std::fs::read(dir.join(name)).map_err(|e| StoreError::Io { path: dir.join(name).display().to_string(), error: e });
    let manifest_bytes = read(bundle::MANIFEST)?;
    let manifest = parse_manifest(&dir.display().to_string(), &manifest_bytes)?;
    let mut files = BTreeMap::new();
    for name in manifest.files.keys() {
        files.insert(name.clone(), read(name)?);
    }
    verify(&dir.display().to_string(), &manifest, &files)?;
    files.insert(bundle::MANIFEST.into(), manifest_bytes);
    Ok(files)
}

fn parse_manifest(dir: &str, bytes: &[u8]) -> Result<Manifest, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| {
        StoreError::Core(CoreError::Bundle { dir: dir.to_string(), message: format!("{} is not valid: {e}", bundle::MANIFEST) })
    })
}

/// Every file in `files` has the SHA-256 the manifest gives it.
fn verify(dir: &str, manifest: &Manifest, files: &BTreeMap<String, Vec<u8>>) -> Result<(), StoreError> {
    for (name, expected) in manifest.files.iter().filter(|(n, _)| files.contains_key(*n)) {
        let actual = churn_core::sha256_hex(&files[name]);
        if &actual != expected {
            return Err(StoreError::Core(CoreError::Checksum {
                dir: dir.to_string(),
                file: name.clone(),
                expected: expected.clone(),
                actual,
            }));
        }
    }
    Ok(())
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
