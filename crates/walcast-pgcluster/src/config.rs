//! Server configuration written into a fresh data directory.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::ClusterError;

/// File in the data dir holding our settings; postgresql.conf includes it, so the port can be
/// rewritten on a retry without touching the stock file.
pub(crate) const CONF_FILE: &str = "walcast.conf";

/// Settings every cluster gets: logical decoding, no durability (the cluster is thrown away) and
/// enough walsenders/slots for tests that open many replication streams.
const BASE_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("wal_level", "logical"),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_wal_senders", "20"),
    ("max_replication_slots", "20"),
    ("shared_buffers", "32MB"),
];

const REPLICATION_HBA: &str = "host replication all 127.0.0.1/32 trust";

/// Appends the include of [`CONF_FILE`] to postgresql.conf and makes sure pg_hba.conf lets
/// local replication connections in.
pub(crate) fn prepare_data_dir(data_dir: &Path) -> Result<(), ClusterError> {
    append(
        &data_dir.join("postgresql.conf"),
        &format!("\ninclude '{CONF_FILE}'\n"),
    )?;
    let hba_path = data_dir.join("pg_hba.conf");
    let hba = fs::read_to_string(&hba_path)
        .map_err(|e| ClusterError::io(format!("reading {}", hba_path.display()), e))?;
    if !has_hba_line(&hba, REPLICATION_HBA) {
        append(&hba_path, &format!("\n{REPLICATION_HBA}\n"))?;
    }
    Ok(())
}

/// (Re)writes [`CONF_FILE`]; `extra` comes last so it can override the defaults.
pub(crate) fn write_settings(
    data_dir: &Path,
    port: u16,
    socket_dir: &Path,
    extra: &[(String, String)],
) -> Result<(), ClusterError> {
    let mut text = String::new();
    let socket_dir = socket_dir.to_string_lossy();
    let port = port.to_string();
    let fixed = [
        ("port", port.as_str()),
        ("unix_socket_directories", socket_dir.as_ref()),
    ];
    for (key, value) in BASE_SETTINGS.iter().chain(fixed.iter()) {
        text.push_str(&setting_line(key, value));
    }
    for (key, value) in extra {
        text.push_str(&setting_line(key, value));
    }
    let path = data_dir.join(CONF_FILE);
    fs::write(&path, text).map_err(|e| ClusterError::io(format!("writing {}", path.display()), e))
}

/// `key = 'value'`; any setting accepts a quoted value. Values already in quotes are kept.
fn setting_line(key: &str, value: &str) -> String {
    let quoted = value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'');
    if quoted {
        format!("{key} = {value}\n")
    } else {
        format!("{key} = '{}'\n", value.replace('\'', "''"))
    }
}

fn has_hba_line(hba: &str, wanted: &str) -> bool {
    let wanted: Vec<&str> = wanted.split_whitespace().collect();
    hba.lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .any(|line| line.split_whitespace().eq(wanted.iter().copied()))
}

fn append(path: &Path, text: &str) -> Result<(), ClusterError> {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| ClusterError::io(format!("appending to {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_values_and_escapes_quotes() {
        assert_eq!(setting_line("a", "on"), "a = 'on'\n");
        assert_eq!(setting_line("a", "it's"), "a = 'it''s'\n");
        assert_eq!(setting_line("a", "'all'"), "a = 'all'\n");
    }

    #[test]
    fn finds_hba_line_regardless_of_spacing_and_comments() {
        let hba = "# host replication all 127.0.0.1/32 trust\nhost    replication     all   127.0.0.1/32   trust  # x\n";
        assert!(has_hba_line(hba, REPLICATION_HBA));
        assert!(!has_hba_line(
            "# host replication all 127.0.0.1/32 trust\n",
            REPLICATION_HBA
        ));
    }

    #[test]
    fn extra_settings_come_after_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra = vec![("wal_level".to_owned(), "replica".to_owned())];
        write_settings(dir.path(), 5555, Path::new("/tmp/x"), &extra).expect("write");
        let text = fs::read_to_string(dir.path().join(CONF_FILE)).expect("read");
        let logical = text.find("wal_level = 'logical'").expect("default");
        let replica = text.find("wal_level = 'replica'").expect("extra");
        assert!(logical < replica);
        assert!(text.contains("port = '5555'"));
        assert!(text.contains("unix_socket_directories = '/tmp/x'"));
    }
}
