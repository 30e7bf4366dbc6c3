//! The conventions `churn` uses in the MLflow registry, shared by the CLI (which writes them)
//! and the serving functions (which read them): aliases, the version tags that point at the
//! bundle, and resolving any model address to a loaded, verified bundle.

use churn_core::Bundle;

use crate::mlflow::{ModelRef, ModelVersion};
use crate::package::{self, PackageSource};
use crate::{Location, Mlflow, Store, StoreError};

/// Alias every new version gets.
pub const CHALLENGER: &str = "challenger";
/// Alias the serving functions load.
pub const CHAMPION: &str = "champion";
/// Model-version tag holding the bundle's SHA-256 (the manifest's), used to avoid duplicates.
pub const TAG_BUNDLE_SHA: &str = "bundle_sha256";
/// Model-version tag holding where the bundle lives (s3://… or a directory).
pub const TAG_BUNDLE_URI: &str = "bundle_uri";

/// Where the bundle of a registered version lives: its `bundle_uri` tag.
pub fn bundle_location(v: &ModelVersion) -> Result<Location, StoreError> {
    let uri = v.tags.get(TAG_BUNDLE_URI).ok_or_else(|| StoreError::Uri {
        uri: format!("models:/{}/{}", v.name, v.version),
        problem: format!("the version has no {TAG_BUNDLE_URI} tag: it was not registered by churn (use churn register)"),
    })?;
    Location::parse(uri)
}

/// Loads a registered version's bundle (every file checked against its manifest) and checks
/// the manifest is the one registered: its SHA-256 must equal the version's `bundle_sha256`
/// tag, so a bundle replaced after registration is never served under that version.
pub async fn load_version(store: &Store, v: &ModelVersion) -> Result<Bundle, StoreError> {
    let location = bundle_location(v)?;
    let bundle = store.load_bundle(&location).await?;
    check_registered(v, &bundle.manifest, &location)?;
    Ok(bundle)
}

/// Checks that `manifest` (read at `location`) is the bundle `v` registered: its SHA-256 equals
/// the version's `bundle_sha256` tag, when the version has one.
pub fn check_registered(v: &ModelVersion, manifest: &churn_core::Manifest, location: &Location) -> Result<(), StoreError> {
    let Some(expected) = v.tags.get(TAG_BUNDLE_SHA) else { return Ok(()) };
    let found = manifest.bundle_sha256();
    if &found == expected {
        return Ok(());
    }
    Err(StoreError::Uri {
        uri: format!("models:/{}/{}", v.name, v.version),
        problem: format!(
            "the bundle at {location} has SHA-256 {found}, but the version's {TAG_BUNDLE_SHA} tag says {expected}: \
             the bundle was replaced after it was registered. Register the bundle as a new version (churn register), \
             or restore the registered one"
        ),
    })
}

/// The registry version a `models:/<name>@<alias>` or `models:/<name>/<version>` address names
/// (through MLflow, which must then be given); `None` for any other address.
pub async fn registry_version(mlflow: Option<&Mlflow>, uri: &str) -> Result<Option<ModelVersion>, StoreError> {
    let Some(r) = ModelRef::parse(uri) else { return Ok(None) };
    let mlflow = mlflow.ok_or_else(|| StoreError::Uri {
        uri: uri.to_string(),
        problem: "a models:/ address needs MLflow: set MLFLOW_TRACKING_URI".into(),
    })?;
    Ok(Some(mlflow.resolve(&r).await?))
}

/// A bundle loaded from a model address, with where it came from.
pub struct Resolved {
    pub bundle: Bundle,
    pub location: Location,
    /// The registry version when the address was `models:/…`, or a package of one.
    pub version: Option<ModelVersion>,
    /// Where a package's bundle came from, when the address is a package ([`crate::package`]).
    pub package: Option<PackageSource>,
}

/// Resolves any model address — a directory (a bundle or a package), `s3://…` (a bundle
/// prefix, or a package archive ending in `.tar`, read with one GET), `models:/<name>@<alias>`
/// or `models:/<name>/<version>` (through MLflow, which must then be given) — and loads the
/// bundle, every file checked against its manifest.
pub async fn resolve_model(store: &Store, mlflow: Option<&Mlflow>, uri: &str) -> Result<Resolved, StoreError> {
    if let Some(v) = registry_version(mlflow, uri).await? {
        let location = bundle_location(&v)?;
        let bundle = store.load_bundle(&location).await?;
        check_registered(&v, &bundle.manifest, &location)?;
        return Ok(Resolved { bundle, location, version: Some(v), package: None });
    }
    let location = Location::parse(uri)?;
    let label = location.to_string();
    let (bundle, source) = if package::is_archive(&location) {
        let mut files = package::fetch_archive(store, &location).await?;
        let source = files.remove(package::SOURCE);
        (Bundle::from_files(&label, files)?, source)
    } else {
        (store.load_bundle(&location).await?, package::source_beside(store, &location).await?)
    };
    let package = source.map(|b| package::check_source(&label, &b, &bundle.manifest)).transpose()?;
    let version = package.as_ref().and_then(PackageSource::model_version);
    Ok(Resolved { bundle, location, version, package })
}
