//! Locating the Postgres server binaries and psql.

use std::env;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ClusterError;

/// Environment variable naming the directory with initdb, pg_ctl and postgres.
pub const BINDIR_ENV: &str = "WALCAST_PG_BINDIR";

const SERVER_TOOLS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Versioned install locations: `(parent, entry-name prefix)`; the rest of the entry name is the
/// major version and binaries live in `<parent>/<entry>/bin`.
const VERSIONED_ROOTS: &[(&str, &str)] = &[
    ("/usr/lib/postgresql", ""),          // Debian/Ubuntu
    ("/usr", "pgsql-"),                   // RHEL/Fedora (PGDG)
    ("/opt/homebrew/opt", "postgresql@"), // Homebrew on Apple silicon (keg-only)
    ("/usr/local/opt", "postgresql@"),    // Homebrew on Intel
];

/// Finds the directory holding initdb, pg_ctl and postgres.
///
/// Order: `$WALCAST_PG_BINDIR` (an error if it lacks the tools), PATH, `pg_config --bindir`, then
/// versioned install folders such as Debian's `/usr/lib/postgresql/<N>/bin` (highest N first).
pub fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    let mut searched = Vec::new();

    if let Some(dir) = env::var_os(BINDIR_ENV).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_server_tools(&dir) {
            return Ok(dir);
        }
        return Err(ClusterError::BinariesNotFound {
            searched: format!(
                "{BINDIR_ENV}={} (set, but lacks initdb/pg_ctl/postgres)",
                dir.display()
            ),
        });
    }

    // A PATH entry may be a symlink farm (e.g. /usr/local/bin); the real install dir next to the
    // resolved initdb also holds psql and the other tools of the same version.
    searched.push("PATH".to_owned());
    if let Some(initdb) = which("initdb") {
        let real_dir = initdb
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        if let Some(dir) = real_dir.filter(|d| has_server_tools(d)) {
            return Ok(dir);
        }
        if let Some(dir) = initdb.parent().filter(|d| has_server_tools(d)) {
            return Ok(dir.to_path_buf());
        }
    }

    searched.push("pg_config --bindir".to_owned());
    if let Some(dir) = pg_config_bindir().filter(|d| has_server_tools(d)) {
        return Ok(dir);
    }

    for (root, prefix) in VERSIONED_ROOTS {
        searched.push(format!("{root}/{prefix}<N>/bin"));
        if let Some(dir) = versioned_dirs(Path::new(root), prefix)
            .into_iter()
            .find(|d| has_server_tools(d))
        {
            return Ok(dir);
        }
    }

    Err(ClusterError::BinariesNotFound {
        searched: searched.join(", "),
    })
}

/// psql from the server's bin dir (same version) or else from PATH.
pub(crate) fn find_psql(bin_dir: &Path) -> Option<PathBuf> {
    let local = bin_dir.join("psql");
    if is_executable(&local) {
        return Some(local);
    }
    which("psql")
}

/// First executable named `name` on PATH.
pub(crate) fn which(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name.as_ref()))
        .find(|p| is_executable(p))
}

fn has_server_tools(dir: &Path) -> bool {
    SERVER_TOOLS
        .iter()
        .all(|tool| is_executable(&dir.join(tool)))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `<root>/<prefix><N>/bin` for every numeric N, highest version first.
fn versioned_dirs(root: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = root.read_dir() else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name.to_str()?.strip_prefix(prefix)?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    found.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    found.into_iter().map(|(_, dir)| dir).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_dirs_sorts_highest_first_and_skips_non_numeric() {
        let root = tempfile::tempdir().expect("tempdir");
        for name in ["9", "15", "17", "common", "pg-16"] {
            std::fs::create_dir(root.path().join(name)).expect("mkdir");
        }
        let dirs = versioned_dirs(root.path(), "");
        let expected: Vec<PathBuf> = ["17", "15", "9"]
            .iter()
            .map(|n| root.path().join(n).join("bin"))
            .collect();
        assert_eq!(dirs, expected);
    }

    #[test]
    fn versioned_dirs_honours_prefix() {
        let root = tempfile::tempdir().expect("tempdir");
        for name in ["postgresql@16", "postgresql@14", "postgresql", "other@99"] {
            std::fs::create_dir(root.path().join(name)).expect("mkdir");
        }
        let dirs = versioned_dirs(root.path(), "postgresql@");
        assert_eq!(
            dirs,
            vec![
                root.path().join("postgresql@16/bin"),
                root.path().join("postgresql@14/bin")
            ]
        );
    }

    #[test]
    fn missing_binaries_error_explains_installation() {
        let msg = ClusterError::BinariesNotFound {
            searched: "PATH".into(),
        }
        .to_string();
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(msg.contains("brew install postgresql@17"), "{msg}");
        assert!(msg.contains(BINDIR_ENV), "{msg}");
    }
}
