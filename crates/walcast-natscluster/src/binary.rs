//! Locating the nats-server binary.

use std::env;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::NatsError;

/// Environment variable naming the nats-server binary.
pub const SERVER_ENV: &str = "WALCAST_NATS_SERVER";

/// `$WALCAST_NATS_SERVER` (an error if it is not an executable file), else `nats-server` on PATH.
pub fn find_server() -> Result<PathBuf, NatsError> {
    if let Some(path) = env::var_os(SERVER_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if is_executable(&path) {
            return Ok(path);
        }
        return Err(NatsError::NotFound {
            searched: format!(
                "{SERVER_ENV}={} is set but not an executable file",
                path.display()
            ),
        });
    }
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join("nats-server"))
        .find(|p| is_executable(p))
        .ok_or_else(|| NatsError::NotFound {
            searched: format!("{SERVER_ENV} is unset and PATH has no nats-server"),
        })
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
