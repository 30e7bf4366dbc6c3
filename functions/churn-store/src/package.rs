//! Packaging a bundle for deployment: the files a function loads, fetched once at build time
//! from wherever the model lives (a directory, `s3://…`, or the MLflow registry), verified, and
//! laid out where the function reads them without a network round trip — a directory (the
//! content of a Lambda layer, mounted at `/opt`) or one archive object (`….tar`, one GET).
//!
//! A package is an ordinary bundle directory holding only what serving loads (the manifest,
//! unchanged, still lists every file with its SHA-256), plus [`SOURCE`]: where the bundle came
//! from and which registry version it is. A function that loads a package reports that version
//! (`GET /model`, its logs), exactly as if it had resolved `models:/…` itself.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use churn_core::bundle::{self, Manifest};
use churn_core::{Bundle, CoreError};
use serde::{Deserialize, Serialize};

use crate::mlflow::ModelVersion;
use crate::registry::{TAG_BUNDLE_SHA, bundle_location, check_registered, registry_version};
use crate::{Location, Mlflow, Store, StoreError};

/// The file of a package that says where its bundle came from.
pub const SOURCE: &str = "source.json";

/// Where a packaged bundle came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageSource {
    /// The model address given to `churn package`, as given.
    pub model_uri: String,
    /// Where the bundle's files were read.
    pub bundle_location: String,
    /// The registered model and version, when the address went through the registry.
    pub registered_model: Option<String>,
    pub version: Option<String>,
    /// The version's aliases when it was packaged (e.g. `champion`).
    pub aliases: Vec<String>,
    /// SHA-256 of the bundle's manifest: what `GET /model` reports as `sha256`.
    pub bundle_sha256: String,
    pub packaged_unix: u64,
}

impl PackageSource {
    /// The registry version the package serves, in the shape [`crate::registry::Resolved`] gives.
    pub fn model_version(&self) -> Option<ModelVersion> {
        Some(ModelVersion {
            name: self.registered_model.clone()?,
            version: self.version.clone()?,
            run_id: String::new(),
            source: self.bundle_location.clone(),
            tags: BTreeMap::from([(TAG_BUNDLE_SHA.to_string(), self.bundle_sha256.clone())]),
            aliases: self.aliases.clone(),
        })
    }
}

/// A bundle fetched for packaging: the files serving loads (manifest included), verified, and
/// the record of where they came from.
pub struct Package {
    pub source: PackageSource,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Package {
    /// The package's files in write order: every bundle file, the manifest, then [`SOURCE`].
    fn entries(&self) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> =
            self.files.iter().filter(|(n, _)| n.as_str() != bundle::MANIFEST).map(|(n, b)| (n.clone(), b.clone())).collect();
        out.push((bundle::MANIFEST.into(), self.files[bundle::MANIFEST].clone()));
        out.push((SOURCE.into(), serde_json::to_vec_pretty(&self.source).expect("source serialises")));
        out
    }

    /// The package as one tar archive (what `MODEL_URI=s3://…/model.tar` loads with one GET).
    pub fn archive(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in self.entries() {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(self.source.packaged_unix);
            header.set_cksum();
            builder.append_data(&mut header, &name, bytes.as_slice()).expect("writing to memory");
        }
        builder.into_inner().expect("writing to memory")
    }

    /// Writes the package as a directory, atomically (a temporary sibling renamed into place).
    /// An existing directory is only replaced when `replace` is set.
    pub fn write_dir(&self, dir: &Path, replace: bool) -> Result<(), StoreError> {
        let io = |p: &Path, e| StoreError::Io { path: p.display().to_string(), error: e };
        if dir.exists() && std::fs::read_dir(dir).map_err(|e| io(dir, e))?.next().is_some() && !replace {
            return Err(StoreError::Uri {
                uri: dir.display().to_string(),
                problem: "the directory exists and is not empty; choose another --out or pass --force to replace it".into(),
            });
        }
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        let tmp = parent.join(format!(".package.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        for (name, bytes) in self.entries() {
            std::fs::write(tmp.join(&name), bytes).map_err(|e| io(&tmp.join(&name), e))?;
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| io(dir, e))
    }
}

/// Whether `loc` names a package archive rather than a bundle directory or prefix.
pub fn is_archive(loc: &Location) -> bool {
    loc.to_string().ends_with(".tar")
}

/// The files of a package archive, by name. Entries other than plain files are refused.
pub fn read_archive(label: &str, bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
    let bad = |m: String| StoreError::Core(CoreError::Bundle { dir: label.to_string(), message: m });
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().map_err(|e| bad(format!("not a tar archive: {e}")))? {
        let mut entry = entry.map_err(|e| bad(format!("not a tar archive: {e}")))?;
        let name = entry.path().map_err(|e| bad(format!("bad entry name: {e}")))?.to_string_lossy().into_owned();
        if !entry.header().entry_type().is_file() || name.contains('/') {
            return Err(bad(format!("unexpected entry {name:?}: a package archive holds plain files only (write it with churn package)")));
        }
        let mut body = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut body).map_err(|e| bad(format!("{name}: {e}")))?;
        files.insert(name, body);
    }
    if files.is_empty() {
        return Err(bad("the archive is empty (write it with churn package)".into()));
    }
    Ok(files)
}

/// The files of the package archive at `location`, fetched with one GET.
pub(crate) async fn fetch_archive(store: &Store, location: &Location) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
    let start = std::time::Instant::now();
    let files = read_archive(&location.to_string(), &store.get(location).await?)?;
    tracing::info!(location = %location, bytes = files.values().map(Vec::len).sum::<usize>(), fetch_ms = start.elapsed().as_secs_f64() * 1e3, "package fetched");
    Ok(files)
}

/// The [`SOURCE`] file of a package directory at `location`; `None` for a plain bundle (S3
/// bundle prefixes are never packages: an archive carries its source among its files).
pub(crate) async fn source_beside(store: &Store, location: &Location) -> Result<Option<Vec<u8>>, StoreError> {
    match location {
        Location::Local(dir) if dir.join(SOURCE).is_file() => Ok(Some(store.get(&location.join(SOURCE)).await?)),
        _ => Ok(None),
    }
}

/// The package's [`SOURCE`] record, checked against the bundle it sits beside: a source that
/// names another bundle means the package was altered after it was written.
pub fn check_source(label: &str, source_bytes: &[u8], manifest: &Manifest) -> Result<PackageSource, StoreError> {
    let bad = |m: String| StoreError::Core(CoreError::Bundle { dir: label.to_string(), message: m });
    let source: PackageSource = serde_json::from_slice(source_bytes).map_err(|e| bad(format!("{SOURCE} is not valid: {e}")))?;
    let found = manifest.bundle_sha256();
    if source.bundle_sha256 != found {
        return Err(bad(format!(
            "{SOURCE} names bundle {} but the manifest here is {found}: the package was altered after it was written; run churn package again",
            source.bundle_sha256
        )));
    }
    Ok(source)
}

/// Fetches the bundle at any model address — a directory, `s3://…` (a bundle prefix or a
/// package archive), `models:/<name>@<alias>` or `models:/<name>/<version>` — keeps the files
/// serving loads, verifies them (checksums, the registry's `bundle_sha256` tag) and loads the
/// bundle once, so a package that would not serve is never written.
pub async fn fetch(store: &Store, mlflow: Option<&Mlflow>, uri: &str) -> Result<Package, StoreError> {
    let version = registry_version(mlflow, uri).await?;
    let location = match &version {
        Some(v) => bundle_location(v)?,
        None => Location::parse(uri)?,
    };
    let mut files =
        if is_archive(&location) { fetch_archive(store, &location).await? } else { store.fetch_loaded_files(&location).await? };
    // A package of a package keeps the original registry version.
    let previous = match files.remove(SOURCE) {
        Some(source) => Some(source),
        None => source_beside(store, &location).await?,
    };
    let label = location.to_string();
    let bundle = Bundle::from_files(&label, files.clone())?;
    let sha = bundle.manifest.bundle_sha256();
    if let Some(v) = &version {
        check_registered(v, &bundle.manifest, &location)?;
    }
    let earlier = previous.map(|b| check_source(&label, &b, &bundle.manifest)).transpose()?;
    files.retain(|name, _| name == bundle::MANIFEST || bundle::LOADED_FILES.contains(&name.as_str()));
    let packaged_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let source = match (version, earlier) {
        (Some(v), _) => PackageSource {
            model_uri: uri.to_string(),
            bundle_location: location.to_string(),
            registered_model: Some(v.name),
            version: Some(v.version),
            aliases: v.aliases,
            bundle_sha256: sha,
            packaged_unix,
        },
        (None, Some(earlier)) => PackageSource { model_uri: uri.to_string(), packaged_unix, ..earlier },
        (None, None) => PackageSource {
            model_uri: uri.to_string(),
            bundle_location: location.to_string(),
            registered_model: None,
            version: None,
            aliases: vec![],
            bundle_sha256: sha,
            packaged_unix,
        },
    };
    Ok(Package { source, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(files: &[(&str, &[u8])]) -> Package {
        Package {
            source: PackageSource {
                model_uri: "models:/churn@champion".into(),
                bundle_location: "s3://b/p".into(),
                registered_model: Some("churn".into()),
                version: Some("3".into()),
                aliases: vec!["champion".into()],
                bundle_sha256: "abc".into(),
                packaged_unix: 1,
            },
            files: files.iter().map(|(n, b)| (n.to_string(), b.to_vec())).collect(),
        }
    }

    #[test]
    fn archives_round_trip_with_the_source_last() {
        let p = package(&[("manifest.json", b"{}"), ("model.onnx", b"\x00\x01onnx")]);
        let files = read_archive("t", &p.archive()).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["manifest.json", "model.onnx", "source.json"]);
        assert_eq!(files["model.onnx"], b"\x00\x01onnx");
        let source: PackageSource = serde_json::from_slice(&files[SOURCE]).unwrap();
        assert_eq!(source, p.source);
        assert_eq!(source.model_version().unwrap().version, "3");
    }

    #[test]
    fn bad_archives_are_refused_with_a_reason() {
        let e = read_archive("s3://b/m.tar", b"").unwrap_err().to_string();
        assert!(e.contains("s3://b/m.tar") && e.contains("empty"), "{e}");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_cksum();
        b.append_data(&mut h, "dir/file", &b"x"[..]).unwrap();
        let e = read_archive("m.tar", &b.into_inner().unwrap()).unwrap_err().to_string();
        assert!(e.contains("dir/file") && e.contains("plain files"), "{e}");
        let e = read_archive("m.tar", &[7u8; 1024]).unwrap_err().to_string();
        assert!(e.contains("m.tar"), "{e}");
    }

    #[test]
    fn a_directory_is_not_replaced_without_being_asked() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        let p = package(&[("manifest.json", b"{}")]);
        p.write_dir(&out, false).unwrap();
        assert!(out.join(SOURCE).exists() && out.join("manifest.json").exists());
        let e = p.write_dir(&out, false).unwrap_err().to_string();
        assert!(e.contains("--force"), "{e}");
        p.write_dir(&out, true).unwrap();
    }
}
