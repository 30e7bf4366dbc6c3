//! Reading one whole S3 object: a GET signed with SigV4 (`aws-sigv4`, the SDK's own signer)
//! and sent over `reqwest`, which this crate already uses for MLflow.
//!
//! Why not the SDK's `GetObject`: the prediction function reads a handful of small bundle files
//! once at start-up and does nothing else with S3. `aws-config` + `aws-sdk-s3` (with STS, SSO and
//! the smithy orchestrator) were the largest part of its binary after tract, and the Lambda zip
//! has a size budget. So every binary reads bundle files through this path (one read path, the
//! one the tests run), and only the functions that write or stream S3 objects build the SDK
//! client (feature `sdk`).
//!
//! Addressing: with `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (a local or on-premises server)
//! path-style `{endpoint}/{bucket}/{key}`; on AWS virtual-hosted
//! `https://{bucket}.s3.{region}.amazonaws.com/{key}`, or path-style for a bucket name with dots
//! (which the wildcard certificate does not cover).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::StoreError;
use crate::retry::{self, ATTEMPTS, Failure};

/// Every byte but SigV4's unreserved characters is encoded in a key segment.
const KEY_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Where S3 requests go and how they are signed.
#[derive(Clone, Debug)]
pub(crate) struct S3Reader {
    http: reqwest::Client,
    /// A custom endpoint (path-style addressing), without a trailing slash.
    endpoint: Option<String>,
    region: String,
}

/// Credentials from the standard variables, as Lambda sets them for the function's role.
pub(crate) fn env_credentials(var: impl Fn(&str) -> Option<String>) -> Option<Credentials> {
    let id = var("AWS_ACCESS_KEY_ID").filter(|s| !s.is_empty())?;
    let secret = var("AWS_SECRET_ACCESS_KEY").filter(|s| !s.is_empty())?;
    let token = var("AWS_SESSION_TOKEN").filter(|s| !s.is_empty());
    Some(Credentials::new(id, secret, token, None, "environment"))
}

/// The region from the standard variables.
pub(crate) fn env_region(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).filter(|s| !s.is_empty())
}

/// The custom endpoint from the standard variables (the S3-specific one first).
pub(crate) fn env_endpoint(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")).filter(|s| !s.is_empty())
}

impl S3Reader {
    pub(crate) fn new(endpoint: Option<String>, region: String) -> Result<S3Reader, StoreError> {
        let http =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(3)).timeout(Duration::from_secs(60)).build().map_err(|e| {
                StoreError::S3 { op: "client".into(), uri: endpoint.clone().unwrap_or_default(), code: None, message: e.to_string() }
            })?;
        Ok(S3Reader { http, endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()), region })
    }

    /// The object's URL, its key percent-encoded segment by segment.
    pub(crate) fn url(&self, bucket: &str, key: &str) -> String {
        let key: Vec<String> = key.split('/').map(|s| utf8_percent_encode(s, KEY_SEGMENT).to_string()).collect();
        let key = key.join("/");
        match &self.endpoint {
            Some(base) => format!("{base}/{bucket}/{key}"),
            None if bucket.contains('.') => format!("https://s3.{}.amazonaws.com/{bucket}/{key}", self.region),
            None => format!("https://{bucket}.s3.{}.amazonaws.com/{key}", self.region),
        }
    }

    /// The bytes of `s3://{bucket}/{key}`; an error answer keeps S3's code (`NoSuchKey`, …).
    pub(crate) async fn get(&self, credentials: &Credentials, bucket: &str, key: &str) -> Result<Vec<u8>, StoreError> {
        let uri = format!("s3://{bucket}/{key}");
        let url = self.url(bucket, key);
        let error = |code: Option<String>, message: String| StoreError::S3 { op: "GetObject".into(), uri: uri.clone(), code, message };
        // Signed once: a signature stays valid for 15 minutes, far longer than the retries take.
        let headers = sign_get(&url, &[], credentials, &self.region, SystemTime::now()).map_err(|e| error(None, e.to_string()))?;
        let (status, body) = retry::send("S3", "GetObject", || {
            let mut r = self.http.get(&url);
            for (k, v) in &headers {
                r = r.header(k, v);
            }
            r
        })
        .await
        .map_err(|f| match f {
            Failure::Unreachable(e) => StoreError::Unreachable {
                service: "S3",
                target: uri.clone(),
                detail: format!("GetObject: {e}"),
                attempts: ATTEMPTS,
                hint: "check the network and, for a non-AWS server, AWS_ENDPOINT_URL_S3",
            },
            Failure::Body(e) => error(None, format!("reading the object: {e}")),
        })?;
        if status == 200 {
            return Ok(body);
        }
        let text = String::from_utf8_lossy(&body);
        let code = xml_field(&text, "Code").or_else(|| (status == 404).then(|| "NoSuchKey".to_string()));
        let message = xml_field(&text, "Message").unwrap_or_default();
        Err(error(code, format!("HTTP {status}: {message}")))
    }
}

/// The headers that sign a GET of `url` (with `extra` headers, which are signed too) at `time`.
pub(crate) fn sign_get(
    url: &str,
    extra: &[(&str, &str)],
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, SigningError> {
    let failed = |detail: String| SigningError { url: url.to_string(), detail };
    let mut settings = SigningSettings::default();
    // S3's rules: the path is encoded once (the URL already is), never normalised, and the
    // payload hash travels in x-amz-content-sha256.
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| failed(e.to_string()))?
        .into();
    let request = SignableRequest::new("GET", url, extra.iter().copied(), SignableBody::Bytes(&[])).map_err(|e| failed(e.to_string()))?;
    let (instructions, _) = sign(request, &params).map_err(|e| failed(e.to_string()))?.into_parts();
    let mut headers: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    headers.extend(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())));
    Ok(headers)
}

/// A request that could not be signed (bad credentials or URL).
#[derive(Debug, thiserror::Error)]
#[error("signing {url}: {detail}")]
pub(crate) struct SigningError {
    url: String,
    detail: String,
}

/// The text of the first `<name>…</name>` element of an S3 error document.
fn xml_field(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn signs_the_documented_s3_example() {
        // "Example: GET Object" of Amazon S3's "Signature Calculations for the Authorization
        // Header": a 10-byte range of examplebucket/test.txt on 24 May 2013.
        let creds = Credentials::new("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let headers =
            sign_get("https://examplebucket.s3.amazonaws.com/test.txt", &[("range", "bytes=0-9")], &creds, "us-east-1", time).unwrap();
        let auth = headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.as_str()).unwrap();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(get("x-amz-date").as_deref(), Some("20130524T000000Z"));
        assert_eq!(get("range").as_deref(), Some("bytes=0-9"));
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let creds = Credentials::new("AKID", "SECRET", Some("TOKEN".into()), None, "test");
        let headers = sign_get("https://b.s3.us-east-1.amazonaws.com/k", &[], &creds, "us-east-1", SystemTime::now()).unwrap();
        assert!(headers.iter().any(|(k, v)| k == "x-amz-security-token" && v == "TOKEN"), "{headers:?}");
        let auth = &headers.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(auth.contains("x-amz-security-token"), "{auth}");
    }

    #[test]
    fn urls_encode_keys_and_pick_the_addressing() {
        let local = S3Reader::new(Some("http://127.0.0.1:9000/".into()), "us-east-1".into()).unwrap();
        assert_eq!(local.url("b", "models/run 1/ü+x.json"), "http://127.0.0.1:9000/b/models/run%201/%C3%BC%2Bx.json");
        let aws = S3Reader::new(None, "eu-west-1".into()).unwrap();
        assert_eq!(aws.url("churn-models", "m/model.onnx"), "https://churn-models.s3.eu-west-1.amazonaws.com/m/model.onnx");
        assert_eq!(aws.url("my.bucket", "k"), "https://s3.eu-west-1.amazonaws.com/my.bucket/k");
    }

    #[test]
    fn environment_settings() {
        assert!(env_credentials(vars(&[("AWS_ACCESS_KEY_ID", "a")])).is_none(), "a secret is needed too");
        let c = env_credentials(vars(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_SESSION_TOKEN", "")])).unwrap();
        assert_eq!((c.access_key_id(), c.secret_access_key(), c.session_token()), ("a", "s", None));
        assert_eq!(env_region(vars(&[("AWS_DEFAULT_REGION", "eu-west-1")])).as_deref(), Some("eu-west-1"));
        assert_eq!(env_region(vars(&[("AWS_REGION", "us-west-2"), ("AWS_DEFAULT_REGION", "eu-west-1")])).as_deref(), Some("us-west-2"));
        assert_eq!(
            env_endpoint(vars(&[("AWS_ENDPOINT_URL", "http://a"), ("AWS_ENDPOINT_URL_S3", "http://b")])).as_deref(),
            Some("http://b")
        );
    }

    /// A closed port is `Unreachable` (a variant a caller matches), not an S3 refusal.
    #[tokio::test]
    async fn an_unreachable_endpoint_is_reported_as_such() {
        let r = S3Reader::new(Some("http://127.0.0.1:9".into()), "us-east-1".into()).unwrap();
        let creds = Credentials::new("AKID", "SECRET", None, None, "test");
        let e = r.get(&creds, "b", "k").await.unwrap_err();
        assert!(matches!(e, StoreError::Unreachable { service: "S3", attempts: 4, .. }), "{e:?}");
        assert!(e.to_string().contains("s3://b/k") && e.to_string().contains("AWS_ENDPOINT_URL_S3"), "{e}");
    }

    #[test]
    fn error_documents_give_their_code() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";
        assert_eq!(xml_field(xml, "Code").as_deref(), Some("NoSuchKey"));
        assert_eq!(xml_field(xml, "Message").as_deref(), Some("The specified key does not exist."));
        assert_eq!(xml_field("<html>", "Code"), None);
    }
}
