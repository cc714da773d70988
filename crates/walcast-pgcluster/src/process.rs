//! Running external commands with captured output and descriptive errors.

use std::process::{Command, Output, Stdio};

use crate::ClusterError;

/// Connection variables that would otherwise leak from the caller's environment into the tools.
const PG_ENV_VARS: &[&str] = &[
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGOPTIONS",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGPASSFILE",
    "PGSSLMODE",
];

/// Removes caller-provided libpq settings so every tool talks to our cluster only.
pub(crate) fn scrub_env(cmd: &mut Command) -> &mut Command {
    for var in PG_ENV_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Human-readable command line, for error messages and logs.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}

/// Runs `cmd` to completion with no stdin; fails with the command line and its output unless it
/// exits with status 0.
pub(crate) fn run(cmd: &mut Command) -> Result<Output, ClusterError> {
    let command = describe(cmd);
    tracing::debug!(%command, "running");
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| ClusterError::io(format!("spawning `{command}`"), e))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(ClusterError::Command {
            command,
            status: output.status.to_string(),
            output: combined_output(&output),
        })
    }
}

/// Stdout and stderr of a finished command, trimmed, for error messages.
pub(crate) fn combined_output(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match (stdout.trim(), stderr.trim()) {
        ("", err) => err.to_owned(),
        (out, "") => out.to_owned(),
        (out, err) => format!("{out}\n{err}"),
    }
}
