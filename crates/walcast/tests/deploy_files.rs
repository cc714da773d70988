//! The deployment files and the configuration page agree with the real command line: every
//! setting they name exists in `walcast serve --help`, and every setting there is documented.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Names that look like a walcast setting.
fn is_setting_name(name: &str) -> bool {
    let well_formed = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    well_formed
        && (name == "DATABASE_URL"
            || name == "RUST_LOG"
            || name.starts_with("WALCAST_")
            || name.starts_with("WEBSOCKETS_"))
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(s)
}

/// The line without its YAML comment (a `#` at the start or after white space).
fn strip_yaml_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// Environment keys set in a YAML file: mapping keys (`KEY: value`, compose `environment:` and
/// ConfigMap `data:`), list items (`- KEY=value`) and Kubernetes `- name: KEY`.
fn yaml_env_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        let line = strip_yaml_comment(line).trim();
        let item = line.strip_prefix("- ").map(str::trim).unwrap_or(line);
        let candidate = if let Some(name) = item.strip_prefix("name:") {
            unquote(name)
        } else if let Some((key, _)) = item.split_once(':') {
            unquote(key)
        } else if let Some((key, _)) = item.split_once('=') {
            unquote(key)
        } else {
            continue;
        };
        // `- KEY=value:with:colons` is split at the first ':' above; take the part before '='.
        let candidate = candidate.split('=').next().unwrap_or(candidate).trim();
        if is_setting_name(candidate) {
            keys.insert(candidate.to_owned());
        }
    }
    keys
}

/// The values a YAML file gives `key` as a mapping entry (`KEY: value`), unquoted.
fn yaml_env_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let (k, v) = strip_yaml_comment(line).trim().split_once(':')?;
            (unquote(k) == key).then(|| unquote(v).to_owned())
        })
        .collect()
}

/// Keys of an env file (`KEY=value`), including commented-out examples (`#KEY=value`).
fn env_file_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches('#').trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, _) = line.split_once('=')?;
            let key = key.trim();
            is_setting_name(key).then(|| key.to_owned())
        })
        .collect()
}

/// Keys of systemd `Environment=` lines (`Environment=A=1 "B=2 3"`).
fn systemd_env_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("Environment=") else {
            continue;
        };
        // Split at white space outside quotes.
        let mut words = vec![String::new()];
        let mut quote = None;
        for c in rest.chars() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => words.push(String::new()),
                (_, c) => words.last_mut().expect("a word").push(c),
            }
        }
        for word in words.iter().filter(|w| !w.is_empty()) {
            let key = word.split('=').next().unwrap_or_default();
            assert!(
                is_setting_name(key),
                "deploy/walcast.service sets {key:?}, which is not a walcast setting"
            );
            keys.insert(key.to_owned());
        }
    }
    keys
}

/// Keys of Dockerfile `ENV` instructions (`ENV A=1 B=2` or `ENV A 1`).
fn dockerfile_env_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line
            .strip_prefix("ENV ")
            .or_else(|| line.strip_prefix("env "))
        else {
            continue;
        };
        let rest = rest.trim();
        let names: Vec<&str> = if rest.contains('=') {
            rest.split_whitespace()
                .filter_map(|a| a.split_once('=').map(|(k, _)| k))
                .collect()
        } else {
            rest.split_whitespace().take(1).collect()
        };
        for name in names {
            if is_setting_name(name) {
                keys.insert(name.to_owned());
            }
        }
    }
    keys
}

fn walcast() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walcast"));
    // Values of the test's own environment must not leak into the help text or the settings.
    cmd.env_clear();
    cmd
}

/// The environment variables `walcast serve --help` lists (`[env: NAME=...]` or `[env: NAME]`).
fn cli_env_names() -> BTreeSet<String> {
    let out = walcast()
        .args(["serve", "--help"])
        .output()
        .expect("running walcast serve --help");
    assert!(out.status.success(), "walcast serve --help failed: {out:?}");
    let help = String::from_utf8(out.stdout).expect("help is UTF-8");
    let mut names = BTreeSet::new();
    for (i, _) in help.match_indices("[env: ") {
        let rest = &help[i + "[env: ".len()..];
        let end = rest
            .find(['=', ']'])
            .expect("an [env: ...] entry is closed");
        names.insert(rest[..end].trim().to_owned());
    }
    assert!(
        names.contains("DATABASE_URL") && names.contains("WALCAST_LISTEN"),
        "no env names found in walcast serve --help:\n{help}"
    );
    names
}

fn assert_known(file: &str, keys: &BTreeSet<String>, known: &BTreeSet<String>, must: &[&str]) {
    for key in must {
        assert!(
            keys.contains(*key),
            "{file}: expected it to set {key}; found {keys:?}"
        );
    }
    let unknown: Vec<&String> = keys
        .iter()
        .filter(|k| k.as_str() != "RUST_LOG" && !known.contains(k.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "{file} sets {unknown:?}, which walcast serve does not read (walcast serve --help lists {known:?})"
    );
}

#[test]
fn deploy_files_only_set_real_settings() {
    let known = cli_env_names();

    let compose = yaml_env_keys(&read("docker-compose.yml"));
    assert_known(
        "docker-compose.yml",
        &compose,
        &known,
        &[
            "DATABASE_URL",
            "WALCAST_LISTEN",
            "WEBSOCKETS_GRAPHQL_AUTH",
            "WALCAST_TOKENS_FILE",
        ],
    );

    let k8s = yaml_env_keys(&read("deploy/kubernetes.yaml"));
    assert_known(
        "deploy/kubernetes.yaml",
        &k8s,
        &known,
        &["DATABASE_URL", "WALCAST_LISTEN", "WALCAST_TOKENS_FILE"],
    );

    const CLUSTER: &[&str] = &[
        "DATABASE_URL",
        "WALCAST_LISTEN",
        "WALCAST_TOKENS_FILE",
        "WALCAST_NATS_URL",
        "WALCAST_ROLE",
        "WALCAST_STREAM_REPLICAS",
    ];
    for file in [
        "docker-compose.cluster.yml",
        "deploy/kubernetes-cluster.yaml",
    ] {
        let text = read(file);
        assert_known(file, &yaml_env_keys(&text), &known, CLUSTER);
        // Three NATS servers, a stream replica on each.
        assert_eq!(
            yaml_env_values(&text, "WALCAST_STREAM_REPLICAS"),
            ["3"],
            "{file}: WALCAST_STREAM_REPLICAS"
        );
        // The NATS client takes one server address: a list would not parse.
        for url in yaml_env_values(&text, "WALCAST_NATS_URL") {
            assert!(
                url.starts_with("nats://") && !url.contains(','),
                "{file}: WALCAST_NATS_URL {url:?} is not one nats:// URL"
            );
        }
    }

    assert!(
        read("deploy/kubernetes-cluster.yaml").contains("\n  replicas: 3\n"),
        "deploy/kubernetes-cluster.yaml: the Deployment runs three pods"
    );

    let env_example = env_file_keys(&read("deploy/walcast.env.example"));
    assert_known(
        "deploy/walcast.env.example",
        &env_example,
        &known,
        &["DATABASE_URL", "WALCAST_LISTEN"],
    );
    // The example env file shows every setting but the config file itself.
    for name in known.iter().filter(|n| n.as_str() != "WALCAST_CONFIG") {
        assert!(
            env_example.contains(name),
            "deploy/walcast.env.example does not show {name}"
        );
    }

    let unit = read("deploy/walcast.service");
    assert!(unit.contains("EnvironmentFile=/etc/walcast/walcast.env"));
    assert_known(
        "deploy/walcast.service",
        &systemd_env_keys(&unit),
        &known,
        &[],
    );

    let dockerfile = read("Dockerfile");
    assert_known(
        "Dockerfile",
        &dockerfile_env_keys(&dockerfile),
        &known,
        &["WALCAST_LISTEN"],
    );
    assert!(dockerfile.contains(r#"ENTRYPOINT ["walcast"]"#));
    assert!(dockerfile.contains("EXPOSE 8080"));
}

#[test]
fn configuration_page_documents_every_setting() {
    let doc = read("docs/configuration.md");
    for name in cli_env_names() {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/configuration.md does not mention {name}"
        );
    }
}

const REGENERATE: &str = "cargo run -p walcast -- config-reference --write docs/configuration.md";

/// A line diff of `old` to `new` (`-` old only, `+` new only, two spaces both), from their
/// longest common subsequence.
fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        } else {
            out += &format!("- {}\n", a[i]);
            i += 1;
        }
    }
    out
}

/// The settings table of docs/configuration.md is the one `walcast config-reference` renders
/// from the command-line definitions (flags, environment variables, defaults, help texts).
#[test]
fn configuration_page_reference_is_current() {
    let out = walcast()
        .arg("config-reference")
        .output()
        .expect("running walcast config-reference");
    assert!(
        out.status.success(),
        "walcast config-reference failed: {out:?}"
    );
    let generated = String::from_utf8(out.stdout).expect("UTF-8");
    let end_marker = generated.lines().last().expect("an end marker");
    for name in cli_env_names() {
        assert!(
            generated.contains(&format!("| `{name}` |")),
            "walcast config-reference has no row for {name}:\n{generated}"
        );
    }
    let doc = read("docs/configuration.md");
    let lines: Vec<&str> = doc.lines().collect();
    let begin = lines
        .iter()
        .position(|l| l.starts_with("<!-- walcast config-reference"))
        .unwrap_or_else(|| {
            panic!("docs/configuration.md has no <!-- walcast config-reference --> marker line; add one and its end marker {end_marker:?} where the settings table goes, then run: {REGENERATE}")
        });
    let end = lines
        .iter()
        .skip(begin)
        .position(|l| *l == end_marker)
        .map(|n| begin + n)
        .unwrap_or_else(|| {
            panic!("docs/configuration.md has no end marker {end_marker:?} after its settings reference; add it, then run: {REGENERATE}")
        });
    let documented: String = lines[begin..=end]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        documented == generated,
        "docs/configuration.md's settings reference is out of date with the command-line definitions \
         (crates/walcast/src/config.rs). Differences (- in the doc, + generated):\n{}\nRegenerate it with:\n    {REGENERATE}\n",
        line_diff(&documented, &generated)
    );
}

#[test]
fn line_diff_marks_changes() {
    assert_eq!(
        line_diff("a\nb\nc\n", "a\nx\nc\nd\n"),
        "  a\n+ x\n- b\n  c\n+ d\n"
    );
}

/// The example TOML of docs/configuration.md is accepted: `walcast check --config` gets past
/// configuration (exit code 2 is a configuration error) and fails only on the database.
#[test]
fn configuration_page_example_file_is_accepted() {
    let doc = read("docs/configuration.md");
    let start = doc
        .find("```toml\n# /etc/walcast/walcast.toml")
        .expect("example file")
        + 8;
    let end = start + doc[start..].find("```").expect("end of the example");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("walcast.toml");
    std::fs::write(&path, &doc[start..end]).expect("writing the example");

    let mut child = walcast()
        .args(["check", "--config"])
        .arg(&path)
        // Nothing listens on port 1: the environment wins over the file's database_url.
        .env("DATABASE_URL", "postgres://walcast@127.0.0.1:1/walcast")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running walcast check");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for walcast check") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("walcast check did not finish within 60s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("reading stderr");
    assert_ne!(
        status.code(),
        Some(2),
        "the example configuration file is refused:\n{stderr}"
    );
    assert!(
        !stderr.contains("config file"),
        "the example configuration file is refused:\n{stderr}"
    );
    assert!(!status.success(), "no database listens on port 1: {stderr}");
}

#[test]
fn extraction_reads_each_format() {
    let yaml = "services:\n  a:\n    environment:\n      DATABASE_URL: x # c\n      - WALCAST_SLOT=s\n    env:\n      - name: WEBSOCKETS_GRAPHQL_AUTH\n        value: strict\n      # WALCAST_COMMENTED: 1\n";
    let keys: Vec<String> = yaml_env_keys(yaml).into_iter().collect();
    assert_eq!(
        keys,
        ["DATABASE_URL", "WALCAST_SLOT", "WEBSOCKETS_GRAPHQL_AUTH"]
    );
    assert_eq!(
        yaml_env_values(
            "DATABASE_URL: x # c\n  WALCAST_STREAM_REPLICAS: \"3\"\n",
            "WALCAST_STREAM_REPLICAS"
        ),
        ["3"]
    );
    let env: Vec<String> = env_file_keys("A=1\nWALCAST_SLOT=x\n#WALCAST_TABLES=\n# prose\n")
        .into_iter()
        .collect();
    assert_eq!(env, ["WALCAST_SLOT", "WALCAST_TABLES"]);
    let unit: Vec<String> = systemd_env_keys("Environment=RUST_LOG=info \"WALCAST_SLOT=a b\"\n")
        .into_iter()
        .collect();
    assert_eq!(unit, ["RUST_LOG", "WALCAST_SLOT"]);
    let docker: Vec<String> =
        dockerfile_env_keys("ENV WALCAST_LISTEN=0.0.0.0:8080\nENV RUST_LOG info\n")
            .into_iter()
            .collect();
    assert_eq!(docker, ["RUST_LOG", "WALCAST_LISTEN"]);
}
