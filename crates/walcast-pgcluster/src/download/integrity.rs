//! The registry's published hashes of a tarball (`dist.integrity`, `dist.shasum`) and checking
//! bytes against them.

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use sha1::Digest as _;
use sha2::Digest as _;

use super::DownloadError;

/// What the registry publishes for one tarball: an SRI `integrity` (`sha512-<base64>`, possibly
/// several space-separated) and the legacy hex sha1 `shasum`. Every hash present must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    sha512: Vec<Vec<u8>>,
    sha1: Option<Vec<u8>>,
}

impl Expected {
    /// From the registry's strings; at least one usable hash is required.
    pub fn parse(integrity: Option<&str>, shasum: Option<&str>) -> Result<Expected, String> {
        let mut sha512 = Vec::new();
        for item in integrity.unwrap_or("").split_whitespace() {
            // `sha512-<base64>[?options]`; other algorithms (sha1-, sha256-) are not used by npm
            // for new packages and are covered by shasum when sha1.
            let Some(b64) = item.strip_prefix("sha512-") else {
                continue;
            };
            let b64 = b64.split('?').next().unwrap_or(b64);
            let digest = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("integrity {item:?} is not base64: {e}"))?;
            if digest.len() != 64 {
                return Err(format!("integrity {item:?} is not a sha512 digest"));
            }
            sha512.push(digest);
        }
        let sha1 = match shasum.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(hex) => Some(
                decode_hex(hex)
                    .filter(|d| d.len() == 20)
                    .ok_or_else(|| format!("shasum {hex:?} is not a sha1 digest"))?,
            ),
        };
        if sha512.is_empty() && sha1.is_none() {
            return Err("it publishes neither a sha512 integrity nor a shasum".to_owned());
        }
        Ok(Expected { sha512, sha1 })
    }

    /// The strongest algorithm checked, for messages.
    pub fn algorithm(&self) -> &'static str {
        if self.sha512.is_empty() {
            "sha1"
        } else {
            "sha512"
        }
    }
}

/// Hashes bytes as they stream past (download or re-read of a cached file).
#[derive(Default)]
pub struct Hasher {
    sha512: sha2::Sha512,
    sha1: sha1::Sha1,
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha512.update(bytes);
        self.sha1.update(bytes);
    }

    /// Checks the hashes against `expected`; `what` names the bytes in the error.
    pub fn verify(self, expected: &Expected, what: &str) -> Result<(), DownloadError> {
        let sha512 = self.sha512.finalize().to_vec();
        let sha1 = self.sha1.finalize().to_vec();
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        if !expected.sha512.is_empty() && !expected.sha512.contains(&sha512) {
            return Err(DownloadError::Integrity {
                what: what.to_owned(),
                algorithm: "sha512",
                expected: format!("sha512-{}", b64(&expected.sha512[0])),
                actual: format!("sha512-{}", b64(&sha512)),
            });
        }
        if let Some(want) = &expected.sha1 {
            if *want != sha1 {
                return Err(DownloadError::Integrity {
                    what: what.to_owned(),
                    algorithm: "sha1",
                    expected: encode_hex(want),
                    actual: encode_hex(&sha1),
                });
            }
        }
        Ok(())
    }
}

/// Checks a file on disk against `expected`.
pub fn verify_file(path: &Path, expected: &Expected) -> Result<(), DownloadError> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| DownloadError::io(format!("opening {}", path.display()), e))?;
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| DownloadError::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.verify(expected, &path.display().to_string())
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).ok().filter(|p| p.len() == 2)?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(data: &[u8]) -> (String, String) {
        let sha512 = sha2::Sha512::digest(data);
        let sha1 = sha1::Sha1::digest(data);
        (
            format!(
                "sha512-{}",
                base64::engine::general_purpose::STANDARD.encode(sha512)
            ),
            encode_hex(&sha1),
        )
    }

    fn check(data: &[u8], expected: &Expected) -> Result<(), DownloadError> {
        let mut hasher = Hasher::default();
        hasher.update(data);
        hasher.verify(expected, "test bytes")
    }

    #[test]
    fn accepts_matching_and_refuses_other_bytes() {
        let (integrity, shasum) = hashes(b"postgres");
        let both = Expected::parse(Some(&integrity), Some(&shasum)).expect("parse");
        assert_eq!(both.algorithm(), "sha512");
        check(b"postgres", &both).expect("same bytes");
        let err = check(b"postgreS", &both).expect_err("other bytes");
        assert!(
            matches!(
                err,
                DownloadError::Integrity {
                    algorithm: "sha512",
                    ..
                }
            ),
            "{err}"
        );

        let only_sha1 = Expected::parse(None, Some(&shasum)).expect("parse");
        assert_eq!(only_sha1.algorithm(), "sha1");
        check(b"postgres", &only_sha1).expect("same bytes");
        assert!(check(b"other", &only_sha1).is_err());
    }

    #[test]
    fn every_published_hash_must_match() {
        let (integrity, _) = hashes(b"postgres");
        let (_, other_sha1) = hashes(b"other");
        let expected = Expected::parse(Some(&integrity), Some(&other_sha1)).expect("parse");
        let err = check(b"postgres", &expected).expect_err("sha1 differs");
        assert!(err.to_string().contains("sha1"), "{err}");
    }

    #[test]
    fn refuses_unusable_metadata() {
        assert!(Expected::parse(None, None).is_err());
        assert!(Expected::parse(Some("sha256-abc"), None).is_err());
        assert!(Expected::parse(Some("sha512-!!!"), None).is_err());
        assert!(Expected::parse(Some("sha512-AAAA"), None).is_err());
        assert!(Expected::parse(None, Some("xyz")).is_err());
        assert!(Expected::parse(None, Some("abcd")).is_err());
    }
}
