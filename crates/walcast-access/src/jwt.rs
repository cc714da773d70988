//! JWT verification pinned to the configured keys: `HS256` with `WALCAST_JWT_SECRET`, and
//! `RS256` (RSA key), `ES256` (EC P-256 key) or `ES384` (EC P-384 key) with
//! `WALCAST_JWT_PUBLIC_KEY`. A token whose header names any other algorithm (`none` included) is
//! refused, so an HS256 token signed with a public key as its secret never passes. `exp` is
//! required and `nbf` honoured, both with [`CLOCK_LEEWAY`] of tolerance for clock skew.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::identity::{role_of, Identity, Origin};
use crate::refusal::AuthError;

/// Tolerance on `exp` and `nbf` for clocks that disagree a little.
pub const CLOCK_LEEWAY: Duration = Duration::from_secs(30);

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::Invalid(reason.into())
}

/// Why `WALCAST_JWT_PUBLIC_KEY` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading PEM file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("this is a private key; give the public key")]
    Private,
    #[error("decoding the EC key's base64")]
    Base64(#[source] base64::DecodeError),
    #[error("unsupported EC curve: P-256 (ES256) or P-384 (ES384) expected")]
    Curve,
    #[error("not an RSA or EC public key in PEM form (-----BEGIN PUBLIC KEY-----)")]
    NotAKey,
}

/// A JWT verification key and the one algorithm it accepts.
#[derive(Clone)]
pub(crate) struct JwtKey {
    pub(crate) alg: Algorithm,
    key: DecodingKey,
}

impl JwtKey {
    pub(crate) fn hs256(secret: &str) -> JwtKey {
        JwtKey {
            alg: Algorithm::HS256,
            key: DecodingKey::from_secret(secret.as_bytes()),
        }
    }
}

/// Verifies `token` with the key of the algorithm its header names, at `now`.
pub(crate) fn verify(keys: &[JwtKey], token: &str, now: SystemTime) -> Result<Identity, AuthError> {
    let alg = header_alg(token)?;
    let Some(key) = keys.iter().find(|k| alg_name(k.alg) == alg) else {
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
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|e| {
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
    let role = role_of(&claims).ok_or_else(|| invalid("role claim must be a non-empty string"))?;
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

/// DER encodings of the named-curve OIDs found in an EC SubjectPublicKeyInfo.
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Reads a PEM public key (the text itself, or a path to it) and pins its algorithm.
pub(crate) fn load_public_key(value: &str) -> Result<JwtKey, KeyError> {
    let pem = if value.trim_start().starts_with("-----BEGIN") {
        // Environment variables often carry PEM with literal `\n` escapes.
        if value.contains('\n') {
            value.to_owned()
        } else {
            value.replace("\\n", "\n")
        }
    } else {
        let path = value.trim();
        std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?
    };
    if pem.contains("PRIVATE KEY") {
        return Err(KeyError::Private);
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok(JwtKey {
            alg: Algorithm::RS256,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        let der = pem_body(&pem).map_err(KeyError::Base64)?;
        let alg = if contains(&der, OID_P256) {
            Algorithm::ES256
        } else if contains(&der, OID_P384) {
            Algorithm::ES384
        } else {
            return Err(KeyError::Curve);
        };
        return Ok(JwtKey { alg, key });
    }
    Err(KeyError::NotAKey)
}

fn pem_body(pem: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
