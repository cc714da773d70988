//! Installing what the peer needs, when it is missing: Debian's `postgresql-<major>-wal2json`
//! for the server's major version, and `postgraphile@4` with `@graphile/subscriptions-lds` from
//! npm into a cache folder. Each step prints what it installs; a failure says what failed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use tokio_postgres::Client;

/// The npm packages, as `npm install` takes them.
pub const NPM_PACKAGES: &[&str] = &["postgraphile@4", "@graphile/subscriptions-lds@4"];

/// `$XDG_CACHE_HOME/walcast-bench/peers`, else `~/.cache/walcast-bench/peers`.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .context("neither XDG_CACHE_HOME nor HOME is set: no cache folder for the peer")?;
            PathBuf::from(home).join(".cache")
        }
    };
    Ok(base.join("walcast-bench").join("peers"))
}

/// The `postgraphile` command of an install in `cache`.
pub fn postgraphile_bin(cache: &Path) -> PathBuf {
    cache.join("node_modules/.bin/postgraphile")
}

/// The version of the PostGraphile installed in `cache`.
pub fn postgraphile_version(cache: &Path) -> Option<String> {
    let text =
        std::fs::read_to_string(cache.join("node_modules/postgraphile/package.json")).ok()?;
    let manifest: serde_json::Value = serde_json::from_str(&text).ok()?;
    manifest.get("version")?.as_str().map(str::to_owned)
}

fn npm_installed(cache: &Path) -> bool {
    postgraphile_bin(cache).is_file()
        && cache
            .join("node_modules/@graphile/subscriptions-lds/package.json")
            .is_file()
}

/// Installs PostGraphile 4 and the LDS plugin into `cache` unless they are there.
pub fn ensure_postgraphile(cache: &Path) -> anyhow::Result<()> {
    if npm_installed(cache) {
        return Ok(());
    }
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    eprintln!(
        "peers: installing {} into {} (npm)",
        NPM_PACKAGES.join(" "),
        cache.display()
    );
    let mut cmd = Command::new("npm");
    cmd.arg("install")
        .arg("--prefix")
        .arg(cache)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .args(NPM_PACKAGES);
    run(&mut cmd, "npm install (is Node.js with npm installed?)")?;
    if !npm_installed(cache) {
        bail!(
            "npm install finished but {} is missing",
            postgraphile_bin(cache).display()
        );
    }
    Ok(())
}

/// Whether the server can load the wal2json output plugin: a temporary slot is made on a
/// connection of its own, which drops it as it closes.
async fn has_wal2json(database_url: &str) -> anyhow::Result<bool> {
    let client: Client = crate::db::connect(database_url).await?;
    let probe = client
        .simple_query(
            "SELECT pg_create_logical_replication_slot('walcast_bench_wal2json_probe', 'wal2json', true)",
        )
        .await;
    match probe {
        Ok(_) => Ok(true),
        Err(e) => {
            let text = e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| e.to_string());
            if text.contains("wal2json") {
                Ok(false)
            } else {
                Err(e).context("checking for the wal2json output plugin")
            }
        }
    }
}

/// Installs `postgresql-<major>-wal2json` with apt-get unless the server already loads it.
pub async fn ensure_wal2json(database_url: &str, server_version_num: i32) -> anyhow::Result<()> {
    if has_wal2json(database_url).await? {
        return Ok(());
    }
    let package = format!("postgresql-{}-wal2json", server_version_num / 10_000);
    eprintln!("peers: installing {package} (apt-get)");
    let as_root = is_root();
    let apt = |args: &[&str]| -> Command {
        let mut cmd = if as_root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    if run(&mut apt(&["install", "-y", &package]), "apt-get install").is_err() {
        // A machine that never ran apt-get update knows no packages.
        run(&mut apt(&["update"]), "apt-get update")?;
        run(&mut apt(&["install", "-y", &package]), "apt-get install")?;
    }
    if !has_wal2json(database_url).await? {
        bail!(
            "{package} is installed but the server still cannot load wal2json: is it a Debian \
             PostgreSQL of that major version (the throw-away cluster may use other binaries)?"
        );
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `cmd` with its output shown; a failure carries `what` and the exit status.
fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("{what}: could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
