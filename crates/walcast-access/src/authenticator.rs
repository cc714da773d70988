//! Verifying tokens: the static tokens first, then JWTs when a key is configured.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::identity::Identity;
use crate::jwt::{self, JwtKey, KeyError};
pub use crate::refusal::AuthError;
use crate::tokens::{self, TokensFileError};

/// Why the authentication settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(transparent)]
    TokensFile(#[from] TokensFileError),
    #[error("WALCAST_JWT_SECRET is set but empty")]
    EmptySecret,
    #[error("WALCAST_JWT_PUBLIC_KEY")]
    PublicKey(#[source] KeyError),
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
    pub fn from_config(config: &AuthConfig) -> Result<Authenticator, AuthConfigError> {
        let static_tokens = match &config.tokens_file {
            Some(path) => tokens::load(path)?,
            None => HashMap::new(),
        };
        let mut jwt_keys = Vec::new();
        if let Some(secret) = &config.jwt_secret {
            if secret.is_empty() {
                return Err(AuthConfigError::EmptySecret);
            }
            if secret.len() < 32 {
                tracing::warn!(
                    "WALCAST_JWT_SECRET is shorter than 32 bytes: HS256 secrets that short can be guessed"
                );
            }
            jwt_keys.push(JwtKey::hs256(secret));
        }
        if let Some(value) = &config.jwt_public_key {
            jwt_keys.push(jwt::load_public_key(value).map_err(AuthConfigError::PublicKey)?);
        }
        Ok(Authenticator {
            config: config.clone(),
            static_tokens,
            jwt_keys,
        })
    }

    /// A fresh authenticator from the same configuration, its files read again.
    pub fn reload(&self) -> Result<Authenticator, AuthConfigError> {
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
            return Err(AuthError::Invalid("unknown token".into()));
        }
        jwt::verify(&self.jwt_keys, token, SystemTime::now())
    }

    /// [`Authenticator::verify`] for a token a request may not have carried: none is
    /// [`AuthError::Missing`].
    pub fn verify_presented(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        token.map_or(Err(AuthError::Missing), |t| self.verify(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Origin, DEFAULT_ROLE};
    use crate::jwt::CLOCK_LEEWAY;
    use crate::test_support::chain;
    use base64::Engine;
    use jsonwebtoken::Algorithm;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

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

    fn tokens_file(
        text: &str,
    ) -> (
        tempfile::NamedTempFile,
        Result<Authenticator, AuthConfigError>,
    ) {
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
            let err = chain(&auth.expect_err(text));
            assert!(err.contains(needle), "{err}");
        }
        let missing = Authenticator::from_config(&AuthConfig {
            tokens_file: Some("/nonexistent/tokens.toml".into()),
            ..AuthConfig::default()
        });
        assert!(chain(&missing.expect_err("missing file")).contains("reading"));
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
            .map_err(|e| chain(&e))
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
