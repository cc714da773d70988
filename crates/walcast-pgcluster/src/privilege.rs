//! Dropping root privileges for initdb, pg_ctl and postgres, which refuse to run as root.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::binaries::which;
use crate::process::run;
use crate::ClusterError;

/// Accounts tried, in order, when started as root.
const CANDIDATE_USERS: [&str; 2] = ["postgres", "nobody"];

/// Who runs the server tools.
#[derive(Debug, Clone)]
pub(crate) enum RunAs {
    /// Not root: run the tools directly.
    CurrentUser,
    /// Root: switch to an unprivileged account through `switch`.
    Other {
        user: String,
        uid: u32,
        gid: u32,
        switch: Switch,
    },
}

/// Tool used to run a program as another user.
#[derive(Debug, Clone)]
pub(crate) enum Switch {
    Runuser(PathBuf),
    Setpriv(PathBuf),
    Su(PathBuf),
}

impl RunAs {
    /// Decides how to run the server tools for the current process.
    pub(crate) fn detect() -> Result<RunAs, ClusterError> {
        if effective_uid()? != 0 {
            return Ok(RunAs::CurrentUser);
        }
        let (user, uid, gid) = CANDIDATE_USERS
            .iter()
            .find_map(|user| lookup_user(user).map(|(uid, gid)| (user.to_string(), uid, gid)))
            .ok_or_else(|| {
                ClusterError::Privileges(format!(
                    "none of the accounts {CANDIDATE_USERS:?} exists; create one, e.g. `useradd --system postgres`"
                ))
            })?;
        let switch = Switch::find().ok_or_else(|| {
            ClusterError::Privileges(
                "none of runuser, setpriv or su found; install util-linux".to_owned(),
            )
        })?;
        tracing::debug!(%user, uid, ?switch, "running Postgres tools as unprivileged user");
        Ok(RunAs::Other {
            user,
            uid,
            gid,
            switch,
        })
    }

    /// A command running `program` as the chosen user, in `cwd` (the invoking directory may not
    /// be accessible to that user). Arguments for `program` are appended by the caller.
    pub(crate) fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = match self {
            RunAs::CurrentUser => Command::new(program),
            RunAs::Other {
                user,
                uid,
                gid,
                switch,
            } => switch.command(user, *uid, *gid, program),
        };
        cmd.current_dir(cwd);
        cmd
    }

    /// Hands `path` to the chosen user so the server can write there.
    pub(crate) fn give(&self, path: &Path) -> Result<(), ClusterError> {
        match self {
            RunAs::CurrentUser => Ok(()),
            RunAs::Other { uid, gid, user, .. } => {
                std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                    .map_err(|e| ClusterError::io(format!("chown {} to {user}", path.display()), e))
            }
        }
    }

    /// Whether another account runs the server (its files must then be reachable by it).
    pub(crate) fn is_other(&self) -> bool {
        matches!(self, RunAs::Other { .. })
    }
}

impl Switch {
    fn find() -> Option<Switch> {
        let locate = |name: &str| {
            which(name).or_else(|| {
                ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                    .iter()
                    .map(|dir| Path::new(dir).join(name))
                    .find(|p| p.is_file())
            })
        };
        locate("runuser")
            .map(Switch::Runuser)
            .or_else(|| locate("setpriv").map(Switch::Setpriv))
            .or_else(|| locate("su").map(Switch::Su))
    }

    fn command(&self, user: &str, uid: u32, gid: u32, program: &Path) -> Command {
        match self {
            Switch::Runuser(tool) => {
                let mut cmd = Command::new(tool);
                cmd.args(["-u", user, "--"]).arg(program);
                cmd
            }
            Switch::Setpriv(tool) => {
                let mut cmd = Command::new(tool);
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .args(["--clear-groups", "--"])
                    .arg(program);
                cmd
            }
            // su only runs a shell; it execs the program with the remaining arguments.
            Switch::Su(tool) => {
                let mut cmd = Command::new(tool);
                cmd.args(["-s", "/bin/sh", "-c", r#"exec "$0" "$@""#, user, "--"])
                    .arg(program);
                cmd
            }
        }
    }
}

/// The effective uid: owner of `/proc/self` on Linux, else `id -u`.
pub(crate) fn effective_uid() -> Result<u32, ClusterError> {
    if let Ok(meta) = std::fs::metadata("/proc/self") {
        return Ok(meta.uid());
    }
    let output = run(Command::new("id").arg("-u"))?;
    parse_id(&output.stdout).ok_or_else(|| {
        ClusterError::Privileges(format!(
            "unexpected `id -u` output {:?}",
            String::from_utf8_lossy(&output.stdout)
        ))
    })
}

/// uid and gid of `user`, if the account exists.
fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| {
        let output = run(Command::new("id").args([flag, user])).ok()?;
        parse_id(&output.stdout)
    };
    Some((id("-u")?, id("-g")?))
}

fn parse_id(stdout: &[u8]) -> Option<u32> {
    std::str::from_utf8(stdout).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_id_output() {
        assert_eq!(parse_id(b"101\n"), Some(101));
        assert_eq!(parse_id(b"x"), None);
    }

    /// Every switch tool present must really run the program as the target user, with
    /// dash-prefixed arguments passed through untouched.
    #[test]
    fn every_available_switch_runs_as_target_user() {
        if effective_uid().expect("uid") != 0 {
            return; // Switching users needs root; non-root runs tools directly.
        }
        let (user, uid, gid) = CANDIDATE_USERS
            .iter()
            .find_map(|u| lookup_user(u).map(|(uid, gid)| (u.to_string(), uid, gid)))
            .expect("an unprivileged account exists");
        let id = which("id").expect("id on PATH");
        let switches = [
            which("runuser").map(Switch::Runuser),
            which("setpriv").map(Switch::Setpriv),
            which("su").map(Switch::Su),
        ];
        for switch in switches.into_iter().flatten() {
            let run_as = RunAs::Other {
                user: user.clone(),
                uid,
                gid,
                switch: switch.clone(),
            };
            let mut cmd = run_as.command(&id, Path::new("/"));
            let output = run(cmd.arg("-u")).expect("id -u as target user");
            assert_eq!(parse_id(&output.stdout), Some(uid), "{switch:?}");
        }
    }
}
