//! Matching cost per event: runs walcast-filter's own bench and keeps its tables.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::bench::workspace_root;

#[derive(Debug, Clone, Default)]
pub struct MatchingResult {
    /// The markdown tables the bench printed.
    pub tables: String,
    pub secs: f64,
    /// Why there is no table.
    pub skipped: Option<String>,
}

impl MatchingResult {
    pub fn markdown(&self) -> String {
        match &self.skipped {
            Some(why) => format!("Skipped: {why}\n"),
            None => format!(
                "`cargo bench -p walcast-filter --bench matching` (in-process: the subscription index \
                 against evaluating every subscription's filter), as printed:\n\n{}\n",
                self.tables.trim_end()
            ),
        }
    }
}

pub fn run() -> MatchingResult {
    let root = workspace_root();
    let bench_file = root.join("crates/walcast-filter/benches/matching.rs");
    if !bench_file.is_file() {
        return MatchingResult {
            skipped: Some("crates/walcast-filter/benches/matching.rs does not exist".into()),
            ..Default::default()
        };
    }
    let cargo = || {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.args(["bench", "-p", "walcast-filter", "--bench", "matching"])
            .current_dir(&root)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        cmd
    };
    // Building the bench (walcast-filter's dev-dependencies in the release profile) can take
    // minutes on a busy machine: it is done and timed apart from the run.
    eprintln!("matching: cargo bench -p walcast-filter --bench matching --no-run");
    let started = Instant::now();
    let built = cargo().arg("--no-run").stdout(Stdio::null()).status();
    eprintln!(
        "matching: the bench built in {:.0} s ({})",
        started.elapsed().as_secs_f64(),
        match &built {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        }
    );
    eprintln!("matching: cargo bench -p walcast-filter --bench matching");
    let started = Instant::now();
    let output = cargo().output();
    let secs = started.elapsed().as_secs_f64();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            return MatchingResult {
                skipped: Some(format!("could not run cargo: {e}")),
                secs,
                ..Default::default()
            }
        }
    };
    if !output.status.success() {
        return MatchingResult {
            skipped: Some(format!("the bench failed ({})", output.status)),
            secs,
            ..Default::default()
        };
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tables = extract_tables(&stdout);
    if tables.trim().is_empty() {
        return MatchingResult {
            skipped: Some("the bench printed no table".into()),
            secs,
            ..Default::default()
        };
    }
    MatchingResult {
        tables,
        secs,
        skipped: None,
    }
}

/// The markdown table lines, a blank line between tables.
fn extract_tables(text: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.trim_start().starts_with('|') {
            if !in_table && !out.is_empty() {
                out.push('\n');
            }
            out.push_str(line.trim());
            out.push('\n');
            in_table = true;
        } else {
            in_table = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_tables_only() {
        let text = "running\n| a | b |\n|---|---|\n| 1 | 2 |\n\nnoise\n| c |\n|---|\n";
        assert_eq!(
            extract_tables(text),
            "| a | b |\n|---|---|\n| 1 | 2 |\n\n| c |\n|---|\n"
        );
    }
}
