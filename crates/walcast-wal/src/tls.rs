//! libpq's TLS settings — `sslmode`, `sslrootcert`, `sslcert`, `sslkey` — for the replication
//! connection and for ordinary `tokio_postgres` connections alike.
//!
//! `tokio_postgres` knows only `sslmode` disable/prefer/require and refuses the other keys, so
//! [`split_conninfo`] takes them out of a conninfo and leaves a string it accepts; the
//! [`TlsClient`] built from them carries the rustls settings that do the verification.
//!
//! As libpq:
//! - `prefer` and `require` encrypt without authenticating the server, except that `require`
//!   verifies the chain like `verify-ca` when a root certificate file exists (`sslrootcert`, or
//!   `~/.postgresql/root.crt` by default);
//! - `verify-ca` verifies the chain against the root certificates, not the host name;
//! - `verify-full` verifies the chain and that the certificate names the host (DNS or IP SAN);
//! - `sslrootcert=system` uses the system's trusted roots and makes `verify-full` the default
//!   (weaker modes are refused);
//! - a client certificate is sent when `sslcert` (default `~/.postgresql/postgresql.crt`)
//!   exists, with the key of `sslkey` (default `~/.postgresql/postgresql.key`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::{TlsProblem, WalError};

/// libpq's `sslmode` (`allow` is not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, plain otherwise; the server is not authenticated.
    Prefer,
    /// TLS or nothing; the server is authenticated only when a root certificate file exists.
    Require,
    /// TLS, and the server's certificate chain must verify against the root certificates.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, WalError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(WalError::Config(format!(
                "invalid sslmode {other:?}: use disable, prefer, require, verify-ca or verify-full"
            )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate must be verified whatever files exist.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TLS settings of a conninfo, as written there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of root certificates, or `system`.
    pub root_cert: Option<String>,
    /// `sslcert`: the client certificate (PEM, optionally followed by intermediates).
    pub cert: Option<String>,
    /// `sslkey`: the client certificate's private key (PEM, unencrypted).
    pub key: Option<String>,
}

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Takes the TLS settings out of a libpq URL or key=value conninfo and returns what is left,
/// with an `sslmode` that `tokio_postgres` accepts (`require` for the `verify-*` modes), and the
/// settings. A conninfo that does not parse is returned as it is, for `tokio_postgres` to report.
pub fn split_conninfo(conninfo: &str) -> Result<(String, TlsSettings), WalError> {
    let mut found: Vec<(String, String)> = Vec::new();
    let rest = match url_parts(conninfo) {
        Some((base, query)) => {
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let key = percent_decode(key, "a URL parameter name")?;
                if TLS_KEYS.contains(&key.as_str()) {
                    found.push((key.clone(), percent_decode(value, &key)?));
                } else {
                    kept.push(pair);
                }
            }
            Rest::Url {
                base: base.to_owned(),
                kept: kept.join("&"),
            }
        }
        None => match key_values(conninfo) {
            Some(pairs) => {
                let mut kept = Vec::new();
                for (key, value) in pairs {
                    if TLS_KEYS.contains(&key.as_str()) {
                        found.push((key, value));
                    } else {
                        kept.push(format!("{key}='{}'", escape_value(&value)));
                    }
                }
                Rest::KeyValue(kept.join(" "))
            }
            None => return Ok((conninfo.to_owned(), TlsSettings::default_prefer())),
        },
    };
    // The last occurrence of a key wins, as in libpq.
    let last = |name: &str| {
        found
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let root_cert = last("sslrootcert").filter(|v| !v.is_empty());
    let system = root_cert.as_deref() == Some("system");
    let mode = match last("sslmode") {
        Some(value) => SslMode::parse(&value)?,
        // libpq 16: the system's roots are only worth anything with the host name checked.
        None if system => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if system && mode != SslMode::VerifyFull {
        return Err(WalError::Config(format!(
            "sslrootcert=system needs sslmode=verify-full (the system's roots vouch for host \
             names, so a weaker check would accept any publicly certified server); \
             sslmode is {mode}"
        )));
    }
    let settings = TlsSettings {
        mode,
        root_cert,
        cert: last("sslcert").filter(|v| !v.is_empty()),
        key: last("sslkey").filter(|v| !v.is_empty()),
    };
    let pg_mode = match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        _ => "require",
    };
    let rest = match rest {
        Rest::Url { base, kept } if kept.is_empty() => format!("{base}?sslmode={pg_mode}"),
        Rest::Url { base, kept } => format!("{base}?{kept}&sslmode={pg_mode}"),
        Rest::KeyValue(kept) if kept.is_empty() => format!("sslmode={pg_mode}"),
        Rest::KeyValue(kept) => format!("{kept} sslmode={pg_mode}"),
    };
    Ok((rest, settings))
}

enum Rest {
    Url { base: String, kept: String },
    KeyValue(String),
}

impl TlsSettings {
    fn default_prefer() -> TlsSettings {
        TlsSettings {
            mode: SslMode::Prefer,
            root_cert: None,
            cert: None,
            key: None,
        }
    }

    /// Reads the certificate files and builds the rustls settings; `None` for `disable`.
    pub fn client(&self) -> Result<Option<TlsClient>, WalError> {
        self.client_with_home(home_dir().as_deref())
    }

    fn client_with_home(&self, home: Option<&Path>) -> Result<Option<TlsClient>, WalError> {
        if self.mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = if self.mode == SslMode::Prefer {
            None
        } else {
            self.roots(home)?
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| WalError::tls(TlsProblem::Config, format!("configuring TLS: {e}")))?
            .dangerous();
        let (builder, verification) = match roots {
            None => (
                builder.with_custom_certificate_verifier(Arc::new(RootVerifier::unauthenticated(
                    provider.clone(),
                ))),
                Verification::None,
            ),
            Some((store, source)) => {
                let check_name = self.mode == SslMode::VerifyFull;
                let verifier = RootVerifier {
                    roots: Some(Arc::new(store)),
                    check_name,
                    provider: provider.clone(),
                };
                let verification = if check_name {
                    Verification::Full(source)
                } else {
                    Verification::Chain(source)
                };
                (
                    builder.with_custom_certificate_verifier(Arc::new(verifier)),
                    verification,
                )
            }
        };
        let config = match self.client_certificate(home)? {
            Some((chain, key, cert_path, key_path)) => {
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    WalError::tls(
                        TlsProblem::ClientCertificate,
                        format!(
                            "client certificate {} (sslcert) with key {} (sslkey): {e}",
                            cert_path.display(),
                            key_path.display()
                        ),
                    )
                })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Some(TlsClient {
            config: Arc::new(config),
            mode: self.mode,
            verification,
        }))
    }

    /// The root certificates, when the server is to be verified.
    fn roots(&self, home: Option<&Path>) -> Result<Option<(RootCertStore, Roots)>, WalError> {
        let verify = self.mode.verifies();
        if self.root_cert.as_deref() == Some("system") {
            return system_roots().map(|store| Some((store, Roots::System)));
        }
        let path = match (&self.root_cert, home) {
            (Some(file), _) => PathBuf::from(file),
            (None, Some(home)) => home.join(".postgresql").join("root.crt"),
            (None, None) if verify => {
                return Err(WalError::tls(
                    TlsProblem::RootCertificates,
                    format!(
                    "sslmode={} needs root certificates: no sslrootcert is given and there is no \
                     home directory to find ~/.postgresql/root.crt in. Set sslrootcert to the \
                     file of the CA that signed the server's certificate, or sslrootcert=system",
                    self.mode
                ),
                ))
            }
            (None, None) => return Ok(None),
        };
        let setting = if self.root_cert.is_some() {
            "sslrootcert"
        } else {
            "the default of sslrootcert"
        };
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !verify => {
                // libpq: without the file, require only encrypts.
                if self.root_cert.is_some() {
                    tracing::warn!(
                        file = %path.display(),
                        "sslrootcert file does not exist: sslmode={} encrypts without verifying the server",
                        self.mode
                    );
                }
                return Ok(None);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(WalError::tls(
                    TlsProblem::RootCertificates,
                    format!(
                    "root certificate file {} ({setting}) does not exist; sslmode={} needs it to \
                     verify the server. Give the file of the CA that signed the server's \
                     certificate in sslrootcert, use sslrootcert=system for the system's trusted \
                     roots, or choose an sslmode that does not verify",
                    path.display(),
                    self.mode
                ),
                ))
            }
            Err(e) => {
                return Err(WalError::tls(
                    TlsProblem::RootCertificates,
                    format!(
                        "reading root certificate file {} ({setting}): {e}",
                        path.display()
                    ),
                ))
            }
        };
        let mut store = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                WalError::tls(
                    TlsProblem::RootCertificates,
                    format!(
                        "root certificate file {} ({setting}) is not valid PEM: {e}",
                        path.display()
                    ),
                )
            })?;
            store.add(cert).map_err(|e| {
                WalError::tls(
                    TlsProblem::RootCertificates,
                    format!(
                        "root certificate file {} ({setting}) holds an unusable certificate: {e}",
                        path.display()
                    ),
                )
            })?;
        }
        if store.is_empty() {
            return Err(WalError::tls(
                TlsProblem::RootCertificates,
                format!(
                    "root certificate file {} ({setting}) holds no PEM certificate \
                 (-----BEGIN CERTIFICATE-----)",
                    path.display()
                ),
            ));
        }
        Ok(Some((store, Roots::File(path))))
    }

    /// The client certificate chain and key, when the certificate file exists.
    #[allow(clippy::type_complexity)]
    fn client_certificate(
        &self,
        home: Option<&Path>,
    ) -> Result<
        Option<(
            Vec<CertificateDer<'static>>,
            PrivateKeyDer<'static>,
            PathBuf,
            PathBuf,
        )>,
        WalError,
    > {
        let default_dir = home.map(|h| h.join(".postgresql"));
        let cert_path = match (&self.cert, &default_dir) {
            (Some(file), _) => PathBuf::from(file),
            (None, Some(dir)) => dir.join("postgresql.crt"),
            (None, None) => return Ok(None),
        };
        let pem = match std::fs::read(&cert_path) {
            Ok(pem) => pem,
            // libpq: no certificate file, no client certificate.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.cert.is_some() {
                    tracing::warn!(
                        file = %cert_path.display(),
                        "sslcert file does not exist: no client certificate is sent"
                    );
                }
                return Ok(None);
            }
            Err(e) => {
                return Err(WalError::tls(
                    TlsProblem::ClientCertificate,
                    format!(
                        "reading client certificate file {} (sslcert): {e}",
                        cert_path.display()
                    ),
                ))
            }
        };
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                WalError::tls(
                    TlsProblem::ClientCertificate,
                    format!(
                        "client certificate file {} (sslcert) is not valid PEM: {e}",
                        cert_path.display()
                    ),
                )
            })?;
        if chain.is_empty() {
            return Err(WalError::tls(
                TlsProblem::ClientCertificate,
                format!(
                    "client certificate file {} (sslcert) holds no PEM certificate",
                    cert_path.display()
                ),
            ));
        }
        let key_path = match (&self.key, &default_dir) {
            (Some(file), _) => PathBuf::from(file),
            (None, Some(dir)) => dir.join("postgresql.key"),
            (None, None) => {
                return Err(WalError::tls(
                    TlsProblem::ClientCertificate,
                    format!(
                        "client certificate {} (sslcert) is given but no sslkey",
                        cert_path.display()
                    ),
                ))
            }
        };
        let key_pem = std::fs::read(&key_path).map_err(|e| {
            WalError::tls(
                TlsProblem::ClientCertificate,
                format!(
                    "reading the private key file {} (sslkey) of client certificate {}: {e}",
                    key_path.display(),
                    cert_path.display()
                ),
            )
        })?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            WalError::tls(
                TlsProblem::ClientCertificate,
                format!(
                    "private key file {} (sslkey) holds no usable unencrypted PEM key \
                 (PKCS#8, PKCS#1 or SEC1): {e}",
                    key_path.display()
                ),
            )
        })?;
        Ok(Some((chain, key, cert_path, key_path)))
    }
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn system_roots() -> Result<RootCertStore, WalError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        let why = found
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(WalError::tls(
            TlsProblem::RootCertificates,
            format!(
                "sslrootcert=system: no trusted root certificates found on this system{}{why} \
             (SSL_CERT_FILE or SSL_CERT_DIR point elsewhere)",
                if why.is_empty() { "" } else { ": " }
            ),
        ));
    }
    Ok(store)
}

/// Where the trusted roots come from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    File(PathBuf),
    System,
}

impl std::fmt::Display for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Roots::File(path) => write!(f, "root certificate file {}", path.display()),
            Roots::System => f.write_str("the system's trusted roots (sslrootcert=system)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verification {
    None,
    Chain(Roots),
    Full(Roots),
}

/// The TLS client of one conninfo: rustls settings and what they verify.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    mode: SslMode,
    verification: Verification,
}

impl TlsClient {
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// The `sslmode` asked for.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// Whether the server's certificate chain is verified.
    pub fn verifies_chain(&self) -> bool {
        self.verification != Verification::None
    }

    /// Whether the server's certificate must also name the host.
    pub fn verifies_host_name(&self) -> bool {
        matches!(self.verification, Verification::Full(_))
    }

    /// What is checked of the server, in words: "certificate chain and host name verified
    /// against root certificate file /etc/ca.crt (sslmode=verify-full)".
    pub fn describe(&self) -> String {
        match &self.verification {
            Verification::None if self.mode == SslMode::Prefer => {
                "encrypted if the server offers TLS, server not verified (sslmode=prefer)".to_owned()
            }
            Verification::None => format!("encrypted, server not verified (sslmode={})", self.mode),
            Verification::Chain(roots) => format!(
                "server certificate chain verified against {roots}, host name not checked (sslmode={})",
                self.mode
            ),
            Verification::Full(roots) => format!(
                "server certificate chain and host name verified against {roots} (sslmode={})",
                self.mode
            ),
        }
    }

    /// The message for a failed TLS handshake on `connection` ("replication connection",
    /// "query pool") to `host`: a certificate that did not verify says so and why.
    pub fn explain(&self, connection: &str, host: &str, error: &io::Error) -> WalError {
        let rustls_error = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let roots = match &self.verification {
            Verification::Chain(roots) | Verification::Full(roots) => roots.to_string(),
            Verification::None => "no root certificates".to_owned(),
        };
        match rustls_error {
            Some(rustls::Error::InvalidCertificate(cert)) => {
                let problem = match cert {
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. } => TlsProblem::NameMismatch,
                    _ => TlsProblem::UntrustedCertificate,
                };
                let why = match cert {
                    CertificateError::UnknownIssuer => format!(
                        "unknown issuer: the server's certificate is not signed by a certificate \
                         of {roots}"
                    ),
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. } => format!(
                        "name mismatch: {cert}; sslmode=verify-full needs the certificate to name \
                         the host of the connection string (DNS or IP subjectAltName)"
                    ),
                    #[allow(deprecated)]
                    CertificateError::BadSignature => format!(
                        "bad signature: the server's certificate names an issuer of {roots} but                          was not signed by it (a different CA of the same name?)"
                    ),
                    other => other.to_string(),
                };
                WalError::tls(
                    problem,
                    format!(
                        "certificate verification failed on the {connection} to {host} (sslmode={}): {why}",
                        self.mode
                    ),
                )
            }
            _ => WalError::tls(
                TlsProblem::Handshake,
                format!("TLS handshake on the {connection} to {host} failed: {error}"),
            ),
        }
    }
}

/// The TLS client settings of `sslmode=prefer|require` without root certificates, kept for
/// callers that want encryption without verification.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, WalError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| WalError::tls(TlsProblem::Config, format!("configuring TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RootVerifier::unauthenticated(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `verify-ca` and `verify-full` (and `require` with root certificates): the chain must lead to
/// one of the roots; with `check_name`, the certificate must also name the host.
///
/// Without roots (libpq's `require`/`prefer` without root certificates) the server is not
/// authenticated, but the handshake signatures are still checked, so the session keys belong to
/// whoever holds the certificate's private key.
#[derive(Debug)]
struct RootVerifier {
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl RootVerifier {
    fn unauthenticated(provider: Arc<rustls::crypto::CryptoProvider>) -> RootVerifier {
        RootVerifier {
            roots: None,
            check_name: false,
            provider,
        }
    }
}

impl ServerCertVerifier for RootVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if self.check_name {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The base (up to and without `?`) and the query of a `postgres://` URL, split where
/// `tokio_postgres` splits them: at the first `?` after the first `@`.
fn url_parts(conninfo: &str) -> Option<(&str, &str)> {
    let prefix = ["postgres://", "postgresql://"]
        .into_iter()
        .find(|p| conninfo.starts_with(p))?;
    let body_start = prefix.len();
    let body = &conninfo[body_start..];
    let after_creds = body.find('@').map_or(0, |i| i + 1);
    match body[after_creds..].find('?') {
        Some(q) => {
            let at = body_start + after_creds + q;
            Some((&conninfo[..at], &conninfo[at + 1..]))
        }
        None => Some((conninfo, "")),
    }
}

fn percent_decode(text: &str, what: &str) -> Result<String, WalError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits: at most 255.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| WalError::Config(format!("{what} is not valid UTF-8 once decoded")))
}

/// The pairs of a key=value conninfo, read as `tokio_postgres` reads them; `None` if it does
/// not parse.
fn key_values(conninfo: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut it = conninfo.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            return if it.peek().is_none() {
                Some(pairs)
            } else {
                None
            };
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        it.next_if_eq(&'=')?;
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next()? {
                    '\'' => break,
                    '\\' => value.push(it.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = it.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return None;
            }
        }
        pairs.push((key, value));
    }
}

fn escape_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(conninfo: &str) -> (String, TlsSettings) {
        split_conninfo(conninfo).expect("splits")
    }

    #[test]
    fn url_loses_the_keys_tokio_postgres_refuses() {
        let (rest, s) = split(
            "postgres://u:p%3Fw@db.example:5432/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.crt&application_name=x&sslcert=c.pem&sslkey=k.pem",
        );
        assert_eq!(
            rest,
            "postgres://u:p%3Fw@db.example:5432/app?application_name=x&sslmode=require"
        );
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some("/etc/ca.crt"));
        assert_eq!(s.cert.as_deref(), Some("c.pem"));
        assert_eq!(s.key.as_deref(), Some("k.pem"));
        tokio_postgres::Config::from_str(&rest).expect("tokio_postgres accepts the rest");
    }

    #[test]
    fn url_without_parameters_and_with_a_question_mark_in_the_password() {
        let (rest, s) = split("postgresql://u:a?b@h/db");
        assert_eq!(rest, "postgresql://u:a?b@h/db?sslmode=prefer");
        assert_eq!(s.mode, SslMode::Prefer);
        let (rest, s) = split("postgres://h/db?sslmode=verify-ca");
        assert_eq!(rest, "postgres://h/db?sslmode=require");
        assert_eq!(s.mode, SslMode::VerifyCa);
    }

    #[test]
    fn key_value_loses_the_keys_and_keeps_the_rest_quoted() {
        // What does not parse is left for tokio_postgres to refuse.
        let malformed = "host=db user=walcast password='it''s' sslmode=verify-ca";
        assert_eq!(split(malformed).0, malformed);
        assert!(tokio_postgres::Config::from_str(malformed).is_err());

        let (rest, s) = split(
            "host=db user=walcast password='it\\'s' sslmode = verify-ca sslrootcert='/my certs/ca.pem' dbname=a\\ b",
        );
        assert_eq!(
            rest,
            "host='db' user='walcast' password='it\\'s' dbname='a b' sslmode=require"
        );
        assert_eq!(s.mode, SslMode::VerifyCa);
        assert_eq!(s.root_cert.as_deref(), Some("/my certs/ca.pem"));
        let cfg = tokio_postgres::Config::from_str(&rest).expect("tokio_postgres accepts it");
        assert_eq!(cfg.get_password(), Some(&b"it's"[..]));
        assert_eq!(cfg.get_dbname(), Some("a b"));
    }

    use std::str::FromStr;

    #[test]
    fn modes_and_system_roots() {
        assert_eq!(split("host=h").1.mode, SslMode::Prefer);
        assert_eq!(
            split("host=h sslmode=disable").0,
            "host='h' sslmode=disable"
        );
        assert_eq!(
            split("host=h sslrootcert=system").1.mode,
            SslMode::VerifyFull
        );
        let err = split_conninfo("host=h sslrootcert=system sslmode=require").expect_err("weak");
        assert!(err.to_string().contains("verify-full"), "{err}");
        let err = split_conninfo("postgres://h/d?sslmode=allow").expect_err("allow");
        assert!(
            err.to_string().contains("invalid sslmode \"allow\""),
            "{err}"
        );
        // The last occurrence wins.
        assert_eq!(
            split("postgres://h/d?sslmode=disable&sslmode=verify-full")
                .1
                .mode,
            SslMode::VerifyFull
        );
    }

    fn settings(mode: SslMode, root: Option<&Path>) -> TlsSettings {
        TlsSettings {
            mode,
            root_cert: root.map(|p| p.to_string_lossy().into_owned()),
            cert: None,
            key: None,
        }
    }

    #[test]
    fn a_missing_root_file_fails_the_verifying_modes_only() {
        let dir = tempdir();
        let dir = dir.path();
        let missing = dir.join("nope.crt");
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let err = settings(mode, Some(&missing))
                .client_with_home(None)
                .expect_err("no root file");
            let text = err.to_string();
            assert!(text.contains(&missing.display().to_string()), "{text}");
            assert!(text.contains("sslrootcert"), "{text}");
            assert!(text.contains("does not exist"), "{text}");
        }
        let require = settings(SslMode::Require, Some(&missing))
            .client_with_home(None)
            .expect("require without the file")
            .expect("TLS");
        assert!(!require.verifies_chain());
        // The default file is named when no sslrootcert is given.
        let err = settings(SslMode::VerifyFull, None)
            .client_with_home(Some(dir))
            .expect_err("no default file");
        assert!(err.to_string().contains(".postgresql/root.crt"), "{err}");
        assert!(settings(SslMode::Disable, Some(&missing))
            .client_with_home(None)
            .expect("disable")
            .is_none());
    }

    #[test]
    fn a_root_file_without_certificates_is_refused() {
        let dir = tempdir();
        let dir = dir.path();
        let file = dir.join("empty.crt");
        std::fs::write(&file, "not a certificate\n").expect("write");
        let err = settings(SslMode::VerifyCa, Some(&file))
            .client_with_home(None)
            .expect_err("no certificate");
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
    }

    /// A CA, a server certificate it signed for `localhost`, and a stranger CA.
    struct Pki {
        ca_pem: String,
        other_ca_pem: String,
        leaf: CertificateDer<'static>,
        leaf_key_pem: String,
        leaf_pem: String,
    }

    fn pki() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let other_key = KeyPair::generate().expect("key");
        let mut other_params = ca_params.clone();
        other_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "another CA");
        let other = other_params.self_signed(&other_key).expect("other CA");
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))
            .expect("leaf");
        Pki {
            ca_pem: ca.pem(),
            other_ca_pem: other.pem(),
            leaf: leaf.der().clone(),
            leaf_pem: leaf.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
        }
    }

    #[test]
    fn verifier_checks_chain_and_for_verify_full_the_name() {
        let pki = pki();
        let dir = tempdir();
        let dir = dir.path();
        let ca = dir.join("ca.crt");
        let other = dir.join("other.crt");
        std::fs::write(&ca, &pki.ca_pem).expect("write");
        std::fs::write(&other, &pki.other_ca_pem).expect("write");
        let now = UnixTime::now();
        let check = |mode: SslMode, root: &Path, host: &str| {
            let s = settings(mode, Some(root));
            let roots = s.roots(None).expect("roots").expect("some roots");
            let verifier = RootVerifier {
                roots: Some(Arc::new(roots.0)),
                check_name: mode == SslMode::VerifyFull,
                provider: Arc::new(rustls::crypto::ring::default_provider()),
            };
            let name = ServerName::try_from(host.to_owned()).expect("name");
            verifier
                .verify_server_cert(&pki.leaf, &[], &name, &[], now)
                .map(|_| ())
        };
        check(SslMode::VerifyFull, &ca, "localhost").expect("verify-full, right name");
        check(SslMode::VerifyCa, &ca, "127.0.0.1").expect("verify-ca ignores the name");
        check(SslMode::Require, &ca, "127.0.0.1").expect("require + root file = verify-ca");
        let mismatch = check(SslMode::VerifyFull, &ca, "127.0.0.1").expect_err("wrong name");
        assert!(
            matches!(
                mismatch,
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
                    | rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
            ),
            "{mismatch:?}"
        );
        let unknown = check(SslMode::VerifyCa, &other, "localhost").expect_err("other CA");
        assert_eq!(
            unknown,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );

        // And the messages say what failed.
        let client = settings(SslMode::VerifyFull, Some(&other))
            .client_with_home(None)
            .expect("client")
            .expect("TLS");
        assert!(client.verifies_host_name());
        let err = client.explain(
            "query pool",
            "localhost",
            &io::Error::new(io::ErrorKind::InvalidData, unknown),
        );
        assert!(
            matches!(
                err,
                WalError::Tls {
                    problem: TlsProblem::UntrustedCertificate,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("certificate verification failed"), "{text}");
        assert!(text.contains("unknown issuer"), "{text}");
        assert!(text.contains(&other.display().to_string()), "{text}");
        assert!(text.contains("query pool"), "{text}");
        let err = client.explain(
            "replication connection",
            "127.0.0.1",
            &io::Error::new(io::ErrorKind::InvalidData, mismatch),
        );
        assert!(
            matches!(
                err,
                WalError::Tls {
                    problem: TlsProblem::NameMismatch,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("name mismatch"), "{text}");
        assert!(text.contains("127.0.0.1"), "{text}");
    }

    #[test]
    fn client_certificate_files() {
        let pki = pki();
        let dir = tempdir();
        let dir = dir.path();
        let cert = dir.join("client.crt");
        let key = dir.join("client.key");
        std::fs::write(&cert, &pki.leaf_pem).expect("write");
        std::fs::write(&key, &pki.leaf_key_pem).expect("write");
        let mut s = settings(SslMode::Require, None);
        s.cert = Some(cert.to_string_lossy().into_owned());
        s.key = Some(key.to_string_lossy().into_owned());
        let client = s.client_with_home(None).expect("client").expect("TLS");
        assert!(client.config.client_auth_cert_resolver.has_certs());

        s.key = Some(dir.join("missing.key").to_string_lossy().into_owned());
        let err = s.client_with_home(None).expect_err("missing key");
        assert!(err.to_string().contains("missing.key"), "{err}");
        assert!(err.to_string().contains("sslkey"), "{err}");

        std::fs::write(&key, "garbage").expect("write");
        s.key = Some(key.to_string_lossy().into_owned());
        let err = s.client_with_home(None).expect_err("bad key");
        assert!(err.to_string().contains("client.key"), "{err}");

        // No certificate file: no client certificate, as libpq.
        s.cert = Some(dir.join("none.crt").to_string_lossy().into_owned());
        let client = s.client_with_home(None).expect("client").expect("TLS");
        assert!(!client.config.client_auth_cert_resolver.has_certs());
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }
}
