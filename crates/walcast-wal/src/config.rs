//! The replication settings and the connection parameters read from a libpq conninfo.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::tls::{split_conninfo, TlsClient};
use crate::WalError;

/// Where and what to replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// A libpq URL (`postgres://user:pw@host:port/db?sslmode=prefer`) or `key=value` string.
    pub conninfo: String,
    pub slot: String,
    pub publication: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Tcp {
        /// The host name, also used for TLS SNI.
        host: String,
        /// `hostaddr`, when given, is dialled instead of resolving `host`.
        addr: Option<std::net::IpAddr>,
        port: u16,
    },
    Unix {
        /// The socket file, `<dir>/.s.PGSQL.<port>`.
        path: PathBuf,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp {
                host,
                addr: Some(addr),
                port,
            } => write!(f, "{host} ({addr}) port {port}"),
            Target::Tcp { host, port, .. } => write!(f, "{host} port {port}"),
            Target::Unix { path } => write!(f, "Unix socket {}", path.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ConnectParams {
    pub targets: Vec<Target>,
    pub user: String,
    pub password: Option<Vec<u8>>,
    pub dbname: String,
    pub application_name: String,
    /// The user's own `options` (`-c name=value ...`), passed through.
    pub options: Option<String>,
    /// The TLS settings; `None` for `sslmode=disable`.
    pub tls: Option<TlsClient>,
    pub connect_timeout: Duration,
}

const DEFAULT_PORT: u16 = 5432;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Where libpq looks when no host is given (Debian's and the upstream default).
const DEFAULT_SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

impl ConnectParams {
    pub fn parse(conninfo: &str) -> Result<Self, WalError> {
        let (conninfo, tls) = split_conninfo(conninfo)?;
        let config = tokio_postgres::Config::from_str(&conninfo)
            .map_err(|e| WalError::Config(e.to_string()))?;
        let user = config
            .get_user()
            .ok_or_else(|| WalError::Config("no user given".into()))?
            .to_owned();
        let dbname = config.get_dbname().unwrap_or(&user).to_owned();
        Ok(ConnectParams {
            targets: targets(&config)?,
            password: config.get_password().map(<[u8]>::to_vec),
            dbname,
            application_name: config
                .get_application_name()
                .unwrap_or("walcast")
                .to_owned(),
            options: config.get_options().map(str::to_owned),
            tls: tls.client()?,
            connect_timeout: config
                .get_connect_timeout()
                .copied()
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            user,
        })
    }
}

fn targets(config: &tokio_postgres::Config) -> Result<Vec<Target>, WalError> {
    let hosts = config.get_hosts();
    let addrs = config.get_hostaddrs();
    let ports = config.get_ports();
    let port_for = |i: usize| -> Result<u16, WalError> {
        match ports {
            [] => Ok(DEFAULT_PORT),
            [port] => Ok(*port),
            ports => ports.get(i).copied().ok_or_else(|| {
                WalError::Config(format!(
                    "{} ports given for {} hosts",
                    ports.len(),
                    hosts.len().max(addrs.len())
                ))
            }),
        }
    };
    if hosts.is_empty() && addrs.is_empty() {
        let port = port_for(0)?;
        let mut targets: Vec<Target> = DEFAULT_SOCKET_DIRS
            .iter()
            .map(|dir| PathBuf::from(dir).join(format!(".s.PGSQL.{port}")))
            .filter(|path| path.exists())
            .map(|path| Target::Unix { path })
            .collect();
        targets.push(Target::Tcp {
            host: "localhost".into(),
            addr: None,
            port,
        });
        return Ok(targets);
    }
    if !hosts.is_empty() && !addrs.is_empty() && hosts.len() != addrs.len() {
        return Err(WalError::Config(format!(
            "{} hostaddr values given for {} hosts",
            addrs.len(),
            hosts.len()
        )));
    }
    (0..hosts.len().max(addrs.len()))
        .map(|i| {
            let port = port_for(i)?;
            let addr = addrs.get(i).copied();
            Ok(match hosts.get(i) {
                #[cfg(unix)]
                Some(tokio_postgres::config::Host::Unix(dir)) => Target::Unix {
                    path: dir.join(format!(".s.PGSQL.{port}")),
                },
                Some(tokio_postgres::config::Host::Tcp(host)) => Target::Tcp {
                    host: host.clone(),
                    addr,
                    port,
                },
                None => Target::Tcp {
                    host: addr.map(|a| a.to_string()).unwrap_or_default(),
                    addr,
                    port,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_everything() {
        let p = ConnectParams::parse(
            "postgres://u:p%40ss@db.example:6543/app?sslmode=disable&application_name=x&connect_timeout=3",
        )
        .expect("parses");
        assert_eq!(p.user, "u");
        assert_eq!(p.password.as_deref(), Some(&b"p@ss"[..]));
        assert_eq!(p.dbname, "app");
        assert_eq!(p.application_name, "x");
        assert!(p.tls.is_none(), "sslmode=disable");
        assert_eq!(p.connect_timeout, Duration::from_secs(3));
        assert_eq!(
            p.targets,
            vec![Target::Tcp {
                host: "db.example".into(),
                addr: None,
                port: 6543
            }]
        );
    }

    #[test]
    fn key_value_defaults() {
        let p = ConnectParams::parse("host=/run/pg user=walcast").expect("parses");
        assert_eq!(p.dbname, "walcast");
        assert_eq!(p.application_name, "walcast");
        assert_eq!(
            p.tls.as_ref().map(TlsClient::mode),
            Some(crate::tls::SslMode::Prefer)
        );
        assert_eq!(
            p.targets,
            vec![Target::Unix {
                path: "/run/pg/.s.PGSQL.5432".into()
            }]
        );
    }

    #[test]
    fn several_hosts_and_ports() {
        let p = ConnectParams::parse("host=a,b port=1,2 user=u").expect("parses");
        assert_eq!(p.targets.len(), 2);
        assert!(ConnectParams::parse("host=a,b,c port=1,2 user=u").is_err());
    }

    #[test]
    fn missing_user_is_an_error() {
        let err = ConnectParams::parse("host=a").expect_err("no user");
        assert!(err.to_string().contains("no user"), "{err}");
    }
}
