//! Who a caller is: access tokens to roles and claims.
//!
//! A token is looked up among the static tokens first, then verified as a JWT when a key is
//! configured. JWTs are pinned to the configured keys: `HS256` with `WALCAST_JWT_SECRET`, and
//! `RS256` (RSA key), `ES256` (EC P-256 key) or `ES384` (EC P-384 key) with
//! `WALCAST_JWT_PUBLIC_KEY`. A token whose header names any other algorithm (`none` included) is
//! refused, so an HS256 token signed with a public key as its secret never passes. `exp` is
//! required and `nbf` honoured, both with [`CLOCK_LEEWAY`] of tolerance for clock skew.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Tolerance on `exp` and `nbf` for clocks that disagree a little.
pub const CLOCK_LEEWAY: Duration = Duration::from_secs(30);

/// The role of a caller without a token.
pub const PUBLIC_ROLE: &str = "public";
/// The role of a token that names none.
pub const DEFAULT_ROLE: &str = "authenticated";

/// Where an identity came from; permissions treat static-token roles differently when no
/// permissions file is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// No token: role `public`.
    Anonymous,
    StaticToken,
    Jwt,
}

/// The role and claims of a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub role: String,
    pub claims: Map<String, Value>,
    /// When the token stops being accepted (`exp` plus [`CLOCK_LEEWAY`]); `None` never expires.
    pub expires_at: Option<SystemTime>,
    pub origin: Origin,
}

impl Identity {
    pub fn public() -> Identity {
        Identity {
            role: PUBLIC_ROLE.into(),
            claims: Map::new(),
            expires_at: None,
            origin: Origin::Anonymous,
        }
    }

    /// True once the token has expired.
    pub fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| SystemTime::now() >= at)
    }
}

/// Why a token was refused. The messages go to clients: they never contain key material.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("missing access token")]
    Missing,
    #[error("invalid access token: {0}")]
    Invalid(String),
    #[error("access token expired")]
    Expired,
}

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::Invalid(reason.into())
}

/// Where tokens and keys come from (`WALCAST_TOKENS_FILE`, `WALCAST_JWT_SECRET`,
/// `WALCAST_JWT_PUBLIC_KEY`).
#[derive(Clone, Default)]
pub struct AuthConfig {
    pub tokens_file: Option<PathBuf>,
    pub jwt_secret: Option<String>,
    /// PEM text, or the path of a PEM file.
    pub jwt_public_key: Option<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tokens_file", &self.tokens_file)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwt_public_key", &self.jwt_public_key.is_some())
            .finish()
    }
}

/// A JWT verification key and the one algorithm it accepts.
#[derive(Clone)]
struct JwtKey {
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies tokens: static tokens from the tokens file, then JWTs.
///
/// Cheap to rebuild: [`Authenticator::reload`] re-reads the files of the same configuration
/// (for SIGHUP), leaving this one untouched if they are now broken.
#[derive(Clone, Default)]
pub struct Authenticator {
    config: AuthConfig,
    static_tokens: HashMap<String, Identity>,
    jwt_keys: Vec<JwtKey>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("static_tokens", &self.static_tokens.len())
            .field(
                "jwt_algorithms",
                &self.jwt_keys.iter().map(|k| k.alg).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Authenticator {
    /// Static tokens from the tokens file, and JWT verification with the configured key.
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Authenticator> {
        let static_tokens = match &config.tokens_file {
            Some(path) => load_tokens_file(path)?,
            None => HashMap::new(),
        };
        let mut jwt_keys = Vec::new();
        if let Some(secret) = &config.jwt_secret {
            if secret.is_empty() {
                anyhow::bail!("WALCAST_JWT_SECRET is set but empty");
            }
            if secret.len() < 32 {
                tracing::warn!(
                    "WALCAST_JWT_SECRET is shorter than 32 bytes: HS256 secrets that short can be guessed"
                );
            }
            jwt_keys.push(JwtKey {
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        if let Some(value) = &config.jwt_public_key {
            jwt_keys.push(load_public_key(value).context("WALCAST_JWT_PUBLIC_KEY")?);
        }
        Ok(Authenticator {
            config: config.clone(),
            static_tokens,
            jwt_keys,
        })
    }

    /// A fresh authenticator from the same configuration, its files read again.
    pub fn reload(&self) -> anyhow::Result<Authenticator> {
        Authenticator::from_config(&self.config)
    }

    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if let Some(identity) = self.static_tokens.get(token) {
            return Ok(identity.clone());
        }
        if self.jwt_keys.is_empty() || token.split('.').count() != 3 {
            return Err(invalid("unknown token"));
        }
        self.verify_jwt(token, SystemTime::now())
    }

    fn verify_jwt(&self, token: &str, now: SystemTime) -> Result<Identity, AuthError> {
        let alg = header_alg(token)?;
        let Some(key) = self.jwt_keys.iter().find(|k| alg_name(k.alg) == alg) else {
            return Err(invalid(format!(
                "tokens signed with {} are not accepted",
                printable_alg(&alg)
            )));
        };
        // Time claims are checked below rather than by the library, which skips an `nbf` it
        // cannot parse and refuses fractional NumericDates.
        let mut validation = Validation::new(key.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => invalid("bad signature"),
                    K::InvalidAlgorithm | K::InvalidAlgorithmName => {
                        invalid("token algorithm not accepted")
                    }
                    K::Json(_) => invalid("claims are not a JSON object"),
                    _ => invalid("malformed token"),
                }
            })?;
        let claims = data.claims;

        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let leeway = CLOCK_LEEWAY.as_secs_f64();
        let exp = match claims.get("exp") {
            None => return Err(invalid("token has no exp claim")),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| invalid("exp claim must be a number"))?,
        };
        if now > exp + leeway {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf
                .as_f64()
                .ok_or_else(|| invalid("nbf claim must be a number"))?;
            if nbf > now + leeway {
                return Err(invalid("token is not valid yet (nbf)"));
            }
        }
        let role = match claims.get("role") {
            None => DEFAULT_ROLE.to_owned(),
            Some(Value::String(r)) if !r.is_empty() => r.clone(),
            Some(_) => return Err(invalid("role claim must be a non-empty string")),
        };
        let expires_at = Duration::try_from_secs_f64(exp + leeway)
            .ok()
            .and_then(|d| UNIX_EPOCH.checked_add(d));
        Ok(Identity {
            role,
            claims,
            expires_at,
            origin: Origin::Jwt,
        })
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}

/// The `alg` of a client-supplied header, as safe to echo back: short names only.
fn printable_alg(alg: &str) -> String {
    if !alg.is_empty() && alg.len() <= 16 && alg.chars().all(|c| c.is_ascii_alphanumeric()) {
        alg.to_owned()
    } else {
        "an unsupported algorithm".to_owned()
    }
}

/// The `alg` of a JWT's header, read before any key is chosen.
fn header_alg(token: &str) -> Result<String, AuthError> {
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| invalid("malformed token header"))?;
    let header: Value =
        serde_json::from_slice(&bytes).map_err(|_| invalid("malformed token header"))?;
    match header.get("alg") {
        Some(Value::String(alg)) => Ok(alg.clone()),
        _ => Err(invalid("token header has no alg")),
    }
}

fn load_tokens_file(path: &Path) -> anyhow::Result<HashMap<String, Identity>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading WALCAST_TOKENS_FILE {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing WALCAST_TOKENS_FILE {}", path.display()))?;
    let mut tokens = HashMap::new();
    for (token, entry) in table {
        let toml::Value::Table(entry) = entry else {
            anyhow::bail!(
                "WALCAST_TOKENS_FILE {}: [{token}] must be a table with a role",
                path.display()
            );
        };
        // verify() trims what clients send, so such a token could never match.
        if token.is_empty() || token.chars().any(char::is_whitespace) {
            anyhow::bail!(
                "WALCAST_TOKENS_FILE {}: a token must be non-empty and contain no whitespace",
                path.display()
            );
        }
        let claims: Map<String, Value> = entry
            .into_iter()
            .map(|(k, v)| (k, toml_to_json(v)))
            .collect();
        let role = match claims.get("role") {
            None => DEFAULT_ROLE.to_owned(),
            Some(Value::String(r)) if !r.is_empty() => r.clone(),
            Some(_) => anyhow::bail!(
                "WALCAST_TOKENS_FILE {}: role of [{token}] must be a non-empty string",
                path.display()
            ),
        };
        tokens.insert(
            token,
            Identity {
                role,
                claims,
                expires_at: None,
                origin: Origin::StaticToken,
            },
        );
    }
    Ok(tokens)
}

/// DER encodings of the named-curve OIDs found in an EC SubjectPublicKeyInfo.
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Reads a PEM public key (the text itself, or a path to it) and pins its algorithm.
fn load_public_key(value: &str) -> anyhow::Result<JwtKey> {
    let pem = if value.trim_start().starts_with("-----BEGIN") {
        // Environment variables often carry PEM with literal `\n` escapes.
        if value.contains('\n') {
            value.to_owned()
        } else {
            value.replace("\\n", "\n")
        }
    } else {
        let path = value.trim();
        std::fs::read_to_string(path).with_context(|| format!("reading PEM file {path}"))?
    };
    if pem.contains("PRIVATE KEY") {
        anyhow::bail!("this is a private key; give the public key");
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok(JwtKey {
            alg: Algorithm::RS256,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        let der = pem_body(&pem).context("decoding the EC key's base64")?;
        let alg = if contains(&der, OID_P256) {
            Algorithm::ES256
        } else if contains(&der, OID_P384) {
            Algorithm::ES384
        } else {
            anyhow::bail!("unsupported EC curve: P-256 (ES256) or P-384 (ES384) expected");
        };
        return Ok(JwtKey { alg, key });
    }
    anyhow::bail!("not an RSA or EC public key in PEM form (-----BEGIN PUBLIC KEY-----)")
}

fn pem_body(pem: &str) -> anyhow::Result<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(body)?)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A TOML value as JSON (datetimes as their TOML text).
pub(crate) fn toml_to_json(v: toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s),
        toml::Value::Integer(i) => serde_json::Value::from(i),
        toml::Value::Float(f) => serde_json::Value::from(f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(toml_to_json).collect())
        }
        toml::Value::Table(t) => {
            serde_json::Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

/// The token in an init payload: `access_token`, `authToken`, or an `Authorization: Bearer`
/// value (at the top level or under `headers`).
pub fn token_from_init(payload: Option<&serde_json::Value>) -> Option<String> {
    let p = payload?.as_object()?;
    let str_of = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    if let Some(t) = p
        .get("access_token")
        .or_else(|| p.get("authToken"))
        .and_then(str_of)
    {
        return Some(t);
    }
    let header = p
        .get("Authorization")
        .or_else(|| p.get("authorization"))
        .or_else(|| {
            p.get("headers")
                .and_then(|h| h.get("Authorization").or_else(|| h.get("authorization")))
        })
        .and_then(str_of)?;
    bearer(&header)
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<String> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_tokens_in_init_payloads() {
        assert_eq!(
            token_from_init(Some(&json!({"access_token": "a"}))),
            Some("a".into())
        );
        assert_eq!(
            token_from_init(Some(&json!({"authToken": "b"}))),
            Some("b".into())
        );
        assert_eq!(
            token_from_init(Some(&json!({"Authorization": "Bearer c"}))),
            Some("c".into())
        );
        assert_eq!(
            token_from_init(Some(&json!({"headers": {"authorization": "bearer d"}}))),
            Some("d".into())
        );
        assert_eq!(
            token_from_init(Some(&json!({"Authorization": "Basic x"}))),
            None
        );
        assert_eq!(token_from_init(Some(&json!("text"))), None);
        assert_eq!(token_from_init(None), None);
    }

    // Test-only key pairs, generated for these tests with openssl.
    const RSA_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDllVYm1bwSAHfG
DlsxjgoV6jTO+Nb+7w5KB+r9U/Vu3XPZzPcNoWwMaFbXR70Bybbv+QSNd4hWt6EH
sE2JowNX5jlyPFv2otvnunb2n1WFEL9pymWZNIsJmK0davxrTNEGVEFAkttqx8cW
Rzvvx+Y81mtE2wqrdd0Db6NVWWtnyfTdqefTf/X6AV/mkTTch8PQRbdqp0d1K6jy
upAnQt/90riSAUd0Rr0FOqhNdgVTm7w5rxDic0aOIvKUcmFYsf1kFRCEP7bREutQ
0vFqsaVXJB37BIaB7Bi2tSw2dbMHJwjbe2eZe+AKcSaZNBZRpoMSMVmgqF6SO0AH
OsUvmjs1AgMBAAECggEACfSPeduHgXwhzxKOmHsPvsxuXrHSXteLNge0Xdvr0JNY
dsLizQvci9T9b23ir6Bpc9JhEZvzxOQT3tzua8/ucSITiFU/A3AJ9NLOERrIW+ul
pToVbQ7zq+ZoZ7ycwy/F5s41NMF5gF6ddTIArE16hoi7IFv9BGgPiqdzyXU5PIf9
TtHXJKlT4mwWG6FDNRcYxrtpqWBXxnodGN0wOcUvP2rDxCNEa/ZFKvz4WelyIN9S
VYwWEaVunVBx+Z2OxVfMEIlS7egfqEuIFlchwlqCqdD7zNSaQRiyeIOxHr5q3DAA
tXdZCS2PjQC0RJHfX7rSdF9PfxyvbBAlnmgr2v/LGQKBgQDzKdnU8gZ2MHizIjKk
ua2YP8RU2/ujEJd/79WU+WipoTFpuIFfLO1aEuDK89yTDLMm5bWeBUjT4pPd8VIz
DkW82zxoP3gD43uzQ5lMcbHVgg6f0++IXwwQlxWxvt8+55SkWQrXhagEBGO+oS3e
226MYmeNhSfDq2NIww30f6ZpTQKBgQDxs/Yp8Q6TlloRciiXaPehS3Va5rwBZFT/
Ne+yhu3hUvoIDJ9tHaDa4Z6NoibfK9IhNwUplERIU83zLgLtiPu5q2X7NYUXRf+S
XI8OTXMUV4lmZ95tRCRwRoYYOY3CpJvItMpf4ZR+OpejzcNajZc9jOFMS/x5V36A
nmXSk8LliQKBgQDMtqEjO5bhDbGv7cyBDajuElExt/nDsIY7OSiwwMCyfnhhLuoL
vIEeYeJKOr+qNPjmeGFMZdqIN6qRIUc4oH1pn5DdmwFpFKzhoLmAt/8lZtb1C7IP
NyWrGeczuyOri7+CFUyhYW6v4xouNPevNUF+gqH3bPCrNLDjYwNuocDxyQKBgHVd
TGf7THev51ZXV4yGBNCGgpq8NYh7fqZaO2U2DaZ/Ezf7YSKr42LFcacWmMd/UM6e
F9yjyTBRuUyfB/7tqEX1C1UbHOA7NimM1k48n2e+RdK7Fw95qjP2msCCmeps4dRo
rWg3clKFAwMgM/7xiAH0OaZBs3v8V0n/IDRLWbT5AoGAFc2+e/HWDoX7ydZ59yU+
9e5rBemJhwe5VnTxhtT4dxyd0knQRbmWbY5S02aq75r1dISy8kiSKhP9fe3FhiG3
bmxK+B2nfdaerHYuMUFT/sE/hWSFLZr7Jte/rnhCvOF6A4vnTk8EFJsIoc31um9a
sixk6vkfjGjHdD3BA6V0Ilk=
-----END PRIVATE KEY-----
";
    const RSA_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA5ZVWJtW8EgB3xg5bMY4K
Feo0zvjW/u8OSgfq/VP1bt1z2cz3DaFsDGhW10e9Acm27/kEjXeIVrehB7BNiaMD
V+Y5cjxb9qLb57p29p9VhRC/acplmTSLCZitHWr8a0zRBlRBQJLbasfHFkc778fm
PNZrRNsKq3XdA2+jVVlrZ8n03ann03/1+gFf5pE03IfD0EW3aqdHdSuo8rqQJ0Lf
/dK4kgFHdEa9BTqoTXYFU5u8Oa8Q4nNGjiLylHJhWLH9ZBUQhD+20RLrUNLxarGl
VyQd+wSGgewYtrUsNnWzBycI23tnmXvgCnEmmTQWUaaDEjFZoKhekjtABzrFL5o7
NQIDAQAB
-----END PUBLIC KEY-----
";
    const EC_PRIVATE: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgKg66mkjj4xXdVxbv
/uaZwCBPR+P2EZjiLMkQR+g1cvuhRANCAASxY64Nhe3mDAMNXGzyvlGyovp8rHDU
l6a1nzLkmHazfMXa8HGm0QF/2yXwHNWH0v8FV0vCV6OL7l3jlYJYKQE5
-----END PRIVATE KEY-----
";
    const EC_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsWOuDYXt5gwDDVxs8r5RsqL6fKxw
1JemtZ8y5Jh2s3zF2vBxptEBf9sl8BzVh9L/BVdLwleji+5d45WCWCkBOQ==
-----END PUBLIC KEY-----
";
    const EC384_PUBLIC: &str = r"-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEf2Fcg46dGDqKfIjvFw3Dl5kzvMSLW/6c
1j4hOkuT/EUmJpG8LITk8Wa8i/94biIENngedJPLCvgn+EegStXrCsbUOw5glSjj
mISRCF97xP/zYlqBZuZU/J+0+65A5TUd
-----END PUBLIC KEY-----
";
    const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64
    }

    fn sign(alg: Algorithm, key: &jsonwebtoken::EncodingKey, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, key).expect("signing")
    }

    fn hs(claims: serde_json::Value) -> String {
        sign(
            Algorithm::HS256,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
            claims,
        )
    }

    fn rs(claims: serde_json::Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa key");
        sign(Algorithm::RS256, &key, claims)
    }

    fn es(claims: serde_json::Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("ec key");
        sign(Algorithm::ES256, &key, claims)
    }

    fn with(secret: Option<&str>, public_key: Option<&str>) -> Authenticator {
        Authenticator::from_config(&AuthConfig {
            tokens_file: None,
            jwt_secret: secret.map(str::to_owned),
            jwt_public_key: public_key.map(str::to_owned),
        })
        .expect("authenticator")
    }

    fn tokens_file(text: &str) -> (tempfile::NamedTempFile, anyhow::Result<Authenticator>) {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
        let auth = Authenticator::from_config(&AuthConfig {
            tokens_file: Some(file.path().to_owned()),
            jwt_secret: Some(SECRET.into()),
            jwt_public_key: None,
        });
        (file, auth)
    }

    fn is_invalid(r: Result<Identity, AuthError>) -> String {
        match r {
            Err(AuthError::Invalid(reason)) => reason,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn static_tokens_carry_role_and_claims() {
        let (_f, auth) = tokens_file(
            "[ADMIN_TOKEN]\nrole = \"admin\"\n[d41d8cd98f00b204]\nrole = \"reader\"\nsub = \"42\"\n[plain]\nteam = 7\n",
        );
        let auth = auth.expect("loads");
        let admin = auth.verify("ADMIN_TOKEN").expect("admin");
        assert_eq!(admin.role, "admin");
        assert_eq!(admin.origin, Origin::StaticToken);
        assert_eq!(admin.expires_at, None);
        let reader = auth.verify(" d41d8cd98f00b204 ").expect("reader");
        assert_eq!(reader.role, "reader");
        assert_eq!(reader.claims.get("sub"), Some(&json!("42")));
        let plain = auth.verify("plain").expect("plain");
        assert_eq!(plain.role, DEFAULT_ROLE);
        assert_eq!(plain.claims.get("team"), Some(&json!(7)));
        assert_eq!(is_invalid(auth.verify("nope")), "unknown token");
        assert_eq!(auth.verify("  "), Err(AuthError::Missing));
        // Static lookup first, JWT verification after.
        let jwt = auth
            .verify(&hs(json!({"exp": now() + 60, "role": "writer"})))
            .expect("jwt");
        assert_eq!((jwt.role.as_str(), jwt.origin), ("writer", Origin::Jwt));
        // Reload reads the same file again.
        assert_eq!(
            auth.reload().expect("reload").verify("ADMIN_TOKEN"),
            Ok(admin)
        );
    }

    #[test]
    fn malformed_tokens_files_are_refused() {
        for (text, needle) in [
            ("[t]\nrole = 3\n", "role of [t]"),
            ("t = \"admin\"\n", "[t] must be a table"),
            ("[\"a b\"]\nrole = \"x\"\n", "no whitespace"),
            ("[t\nrole", "parsing WALCAST_TOKENS_FILE"),
        ] {
            let (_f, auth) = tokens_file(text);
            let err = format!("{:#}", auth.expect_err(text));
            assert!(err.contains(needle), "{err}");
        }
        let missing = Authenticator::from_config(&AuthConfig {
            tokens_file: Some("/nonexistent/tokens.toml".into()),
            ..AuthConfig::default()
        });
        assert!(format!("{:#}", missing.expect_err("missing file")).contains("reading"));
    }

    #[test]
    fn hs256_tokens_are_verified() {
        let auth = with(Some(SECRET), None);
        let exp = now() + 600;
        let who = auth
            .verify(&hs(json!({"exp": exp, "sub": "42", "role": "reader"})))
            .expect("valid");
        assert_eq!(who.role, "reader");
        assert_eq!(who.claims.get("sub"), Some(&json!("42")));
        assert_eq!(
            who.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(exp as u64) + CLOCK_LEEWAY)
        );
        assert!(!who.expired());
        let who = auth.verify(&hs(json!({"exp": exp}))).expect("valid");
        assert_eq!(who.role, DEFAULT_ROLE);
    }

    #[test]
    fn exp_and_nbf_are_enforced_with_leeway() {
        let auth = with(Some(SECRET), None);
        assert_eq!(
            auth.verify(&hs(json!({"exp": now() - 120}))),
            Err(AuthError::Expired)
        );
        assert!(auth.verify(&hs(json!({"exp": now() - 5}))).is_ok());
        assert!(
            is_invalid(auth.verify(&hs(json!({"exp": now() + 600, "nbf": now() + 300}))))
                .contains("not valid yet")
        );
        assert!(auth
            .verify(&hs(json!({"exp": now() + 600, "nbf": now() + 5})))
            .is_ok());
        assert!(is_invalid(auth.verify(&hs(json!({"sub": "x"})))).contains("no exp"));
        assert!(is_invalid(auth.verify(&hs(json!({"exp": "soon"})))).contains("exp claim"));
        assert!(
            is_invalid(auth.verify(&hs(json!({"exp": now() + 600, "nbf": "later"}))))
                .contains("nbf claim")
        );
        assert!(auth
            .verify(&hs(json!({"exp": (now() + 600) as f64 + 0.5})))
            .is_ok());
    }

    #[test]
    fn bad_signatures_and_bad_roles_are_refused() {
        let auth = with(Some(SECRET), None);
        let other = sign(
            Algorithm::HS256,
            &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-xx"),
            json!({"exp": now() + 600}),
        );
        assert_eq!(is_invalid(auth.verify(&other)), "bad signature");
        let mut tampered = hs(json!({"exp": now() + 600, "role": "reader"}));
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"exp": now() + 600, "role": "admin"}).to_string());
        let parts: Vec<&str> = tampered.split('.').collect();
        tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
        assert_eq!(is_invalid(auth.verify(&tampered)), "bad signature");
        assert!(
            is_invalid(auth.verify(&hs(json!({"exp": now() + 600, "role": 5}))))
                .contains("role claim")
        );
        assert!(is_invalid(auth.verify("a.b.c")).contains("malformed"));
        // Reasons never carry the secret.
        for r in [
            auth.verify(&other),
            auth.verify("a.b.c"),
            auth.verify(&hs(json!({"exp": now() - 600}))),
        ] {
            let message = r.expect_err("refused").to_string();
            assert!(!message.contains(SECRET), "{message}");
        }
    }

    #[test]
    fn alg_none_is_never_accepted() {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let claims = b64(json!({"exp": now() + 600, "role": "admin"}));
        for alg in ["none", "None", "NONE"] {
            let token = format!("{}.{claims}.", b64(json!({"alg": alg, "typ": "JWT"})));
            for auth in [
                with(Some(SECRET), None),
                with(None, Some(RSA_PUBLIC)),
                with(Some(SECRET), Some(EC_PUBLIC)),
            ] {
                let reason = is_invalid(auth.verify(&token));
                assert!(reason.contains("not accepted"), "{reason}");
            }
        }
        let token = format!("{}.{claims}.", b64(json!({"typ": "JWT"})));
        assert!(is_invalid(with(Some(SECRET), None).verify(&token)).contains("no alg"));
    }

    #[test]
    fn algorithms_are_pinned_to_the_configured_keys() {
        let claims = json!({"exp": now() + 600, "role": "admin"});
        let rsa_only = with(None, Some(RSA_PUBLIC));
        assert_eq!(
            rsa_only.verify(&rs(claims.clone())).expect("rs256").role,
            "admin"
        );
        // The confusion attack: an HS256 token keyed with the public key's PEM.
        let forged = sign(
            Algorithm::HS256,
            &jsonwebtoken::EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            claims.clone(),
        );
        assert!(is_invalid(rsa_only.verify(&forged)).contains("HS256"));
        // RS256 when only a secret is configured.
        let secret_only = with(Some(SECRET), None);
        assert!(is_invalid(secret_only.verify(&rs(claims.clone()))).contains("RS256"));
        // ES256 against an RSA key, RS256 against an EC key.
        assert!(is_invalid(rsa_only.verify(&es(claims.clone()))).contains("ES256"));
        let ec_only = with(None, Some(EC_PUBLIC));
        assert_eq!(
            ec_only.verify(&es(claims.clone())).expect("es256").role,
            "admin"
        );
        assert!(is_invalid(ec_only.verify(&rs(claims.clone()))).contains("RS256"));
        // Both configured: each algorithm with its own key.
        let both = with(Some(SECRET), Some(RSA_PUBLIC));
        assert!(both.verify(&hs(claims.clone())).is_ok());
        assert!(both.verify(&rs(claims.clone())).is_ok());
        assert!(both.verify(&forged).is_err());
        // No key at all: JWTs are unknown tokens.
        assert_eq!(
            is_invalid(with(None, None).verify(&hs(claims))),
            "unknown token"
        );
    }

    #[test]
    fn public_keys_load_from_text_escaped_text_or_a_path() {
        assert_eq!(
            with(None, Some(RSA_PUBLIC)).jwt_keys[0].alg,
            Algorithm::RS256
        );
        assert_eq!(
            with(None, Some(EC_PUBLIC)).jwt_keys[0].alg,
            Algorithm::ES256
        );
        assert_eq!(
            with(None, Some(EC384_PUBLIC)).jwt_keys[0].alg,
            Algorithm::ES384
        );
        let escaped = EC_PUBLIC.trim_end().replace('\n', "\\n");
        assert_eq!(with(None, Some(&escaped)).jwt_keys[0].alg, Algorithm::ES256);
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, RSA_PUBLIC.as_bytes()).expect("write");
        let path = file.path().to_str().expect("utf-8 path");
        assert_eq!(with(None, Some(path)).jwt_keys[0].alg, Algorithm::RS256);

        let load = |key: &str| {
            Authenticator::from_config(&AuthConfig {
                jwt_public_key: Some(key.into()),
                ..AuthConfig::default()
            })
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
        };
        assert!(load(RSA_PRIVATE)
            .expect_err("private")
            .contains("private key"));
        assert!(
            load("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .expect_err("garbage")
                .contains("not an RSA or EC public key")
        );
        assert!(load("/nonexistent/key.pem")
            .expect_err("missing")
            .contains("reading PEM"));
        let empty_secret = Authenticator::from_config(&AuthConfig {
            jwt_secret: Some(String::new()),
            ..AuthConfig::default()
        });
        assert!(empty_secret.is_err());
        let debug = format!(
            "{:?}",
            AuthConfig {
                jwt_secret: Some(SECRET.into()),
                ..AuthConfig::default()
            }
        );
        assert!(!debug.contains(SECRET), "{debug}");
    }
}
