//! The replication connection before streaming: start-up, authentication, and the replication
//! commands IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT and START_REPLICATION.

use std::collections::HashMap;

use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{DataRowBody, Message};
use postgres_protocol::message::frontend;

use crate::config::{ConnectParams, Target};
use crate::quote::{quote_ident, quote_literal, replication_literal};
use crate::stream::ReplicationStream;
use crate::tls::{SslMode, TlsClient};
use crate::transport::Transport;
use crate::wire::{describe, Frame, Wire};
use crate::{Lsn, ServerError, TlsProblem, WalError};

/// What IDENTIFY_SYSTEM reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    /// The cluster's system identifier: a changed value means a different cluster.
    pub system_id: String,
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlogpos: Lsn,
    /// The database the connection is bound to.
    pub dbname: Option<String>,
}

/// A connection in replication mode (`replication=database`), before START_REPLICATION.
pub struct ReplicationClient {
    wire: Wire,
    /// ParameterStatus values reported by the server (`server_version`, `TimeZone`...).
    parameters: HashMap<String, String>,
    /// What the connection was made to, for error messages.
    target: String,
}

/// A result row of a simple query: text values, `None` for NULL.
type Row = Vec<Option<String>>;

impl ReplicationClient {
    /// Connects and authenticates, trying each host of `conninfo` in turn.
    ///
    /// The session is set up so pgoutput's text values do not depend on server defaults:
    /// UTF8, `DateStyle=ISO`, `TimeZone=UTC`, `IntervalStyle=iso_8601`, `extra_float_digits=3`.
    pub async fn connect(conninfo: &str) -> Result<Self, WalError> {
        let params = ConnectParams::parse(conninfo)?;
        let mut last_error = None;
        for target in &params.targets {
            let attempt = tokio::time::timeout(params.connect_timeout, connect_to(&params, target));
            let error = match attempt.await {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(e)) => e,
                Err(_) => WalError::Connect {
                    addr: target.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no session within {:?}", params.connect_timeout),
                    ),
                },
            };
            tracing::debug!(%target, %error, "replication connection attempt failed");
            last_error = Some(error);
        }
        Err(last_error.unwrap_or_else(|| WalError::Config("no host to connect to".into())))
    }

    /// A server parameter reported at start-up, e.g. `server_version`.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// The server's major version (`15` for 15.4), when it reported one.
    pub fn server_major_version(&self) -> Option<u32> {
        let version = self.parameter("server_version")?;
        let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    pub async fn identify_system(&mut self) -> Result<SystemInfo, WalError> {
        const CONTEXT: &str = "IDENTIFY_SYSTEM";
        let rows = self.simple_query("IDENTIFY_SYSTEM", CONTEXT).await?;
        let row = match rows.as_slice() {
            [row] => row,
            rows => {
                return Err(WalError::protocol(
                    CONTEXT,
                    format!("expected one row, got {}", rows.len()),
                ))
            }
        };
        let field = |i: usize, name: &str| -> Result<&str, WalError> {
            row.get(i)
                .and_then(Option::as_deref)
                .ok_or_else(|| WalError::protocol(CONTEXT, format!("missing column {name}")))
        };
        let timeline = field(1, "timeline")?;
        let xlogpos = field(2, "xlogpos")?;
        Ok(SystemInfo {
            system_id: field(0, "systemid")?.to_owned(),
            timeline: timeline.parse().map_err(|e| {
                WalError::protocol(CONTEXT, format!("invalid timeline {timeline:?}: {e}"))
            })?,
            xlogpos: xlogpos.parse().map_err(|e| {
                WalError::protocol(CONTEXT, format!("invalid xlogpos {xlogpos:?}: {e}"))
            })?,
            dbname: row.get(3).cloned().flatten(),
        })
    }

    /// Creates the logical slot `slot` with pgoutput unless it exists; true when it was created.
    /// An existing slot must be a logical pgoutput slot of this connection's database.
    pub async fn ensure_slot(&mut self, slot: &str) -> Result<bool, WalError> {
        validate_slot_name(slot)?;
        if self.check_existing_slot(slot).await? {
            return Ok(false);
        }
        let create = format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput NOEXPORT_SNAPSHOT",
            quote_ident(slot)
        );
        match self
            .simple_query(&create, &format!("creating replication slot {slot:?}"))
            .await
        {
            Ok(_) => {
                tracing::info!(slot, "created replication slot");
                Ok(true)
            }
            // Created by someone else between the check and here.
            Err(e) if e.sqlstate() == Some("42710") => {
                self.check_existing_slot(slot).await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the logical pgoutput slot `slot` for this session only: Postgres drops it when
    /// the connection ends, however it ends, so it never holds WAL after its reader is gone.
    pub async fn create_temporary_slot(&mut self, slot: &str) -> Result<(), WalError> {
        validate_slot_name(slot)?;
        let create = format!(
            "CREATE_REPLICATION_SLOT {} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT",
            quote_ident(slot)
        );
        self.simple_query(
            &create,
            &format!("creating temporary replication slot {slot:?}"),
        )
        .await?;
        Ok(())
    }

    async fn check_existing_slot(&mut self, slot: &str) -> Result<bool, WalError> {
        let context = format!("looking up replication slot {slot:?}");
        let sql = format!(
            "SELECT slot_type, plugin, database, current_database() \
             FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
            quote_literal(slot)
        );
        let rows = self.simple_query(&sql, &context).await?;
        let Some(row) = rows.first() else {
            return Ok(false);
        };
        let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let (slot_type, plugin, database, current) = (col(0), col(1), col(2), col(3));
        if slot_type != "logical" || plugin != "pgoutput" || database != current {
            return Err(WalError::Config(format!(
                "replication slot {slot:?} exists but is a {slot_type} slot with plugin \
                 {plugin:?} on database {database:?}; walcast needs a logical pgoutput slot \
                 on {current:?}"
            )));
        }
        Ok(true)
    }

    /// Starts streaming changes of `publication` from `slot`, at `start` or, when the slot has
    /// confirmed a later position, there. `start` also counts as already acknowledged: status
    /// updates report it until [`ReplicationStream::acknowledge`] moves further.
    pub async fn start(
        mut self,
        slot: &str,
        publication: &str,
        start: Lsn,
    ) -> Result<ReplicationStream, WalError> {
        validate_slot_name(slot)?;
        let context = format!("starting replication from slot {slot:?}");
        let mut options = vec![
            ("proto_version", "1".to_owned()),
            ("publication_names", quote_ident(publication)),
        ];
        // The `messages` option exists from Postgres 14 on.
        if self.server_major_version().is_some_and(|v| v >= 14) {
            options.push(("messages", "true".to_owned()));
        }
        let options: Vec<String> = options
            .into_iter()
            .map(|(name, value)| format!("{name} {}", replication_literal(&value)))
            .collect();
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {start} ({})",
            quote_ident(slot),
            options.join(", ")
        );
        self.wire
            .queue(&context, |buf| frontend::query(&sql, buf))?;
        self.wire.flush(&context).await?;
        match self.wire.read_significant(&context).await? {
            Frame::CopyBothResponse => {}
            Frame::Message(Message::ErrorResponse(body)) => {
                let error = Box::new(ServerError::from_fields(body.fields()));
                self.drain_until_ready(&context).await?;
                return Err(WalError::Server { context, error });
            }
            other => return Err(unexpected(&context, &other)),
        }
        tracing::info!(slot, publication, %start, target = %self.target, "replication started");
        Ok(ReplicationStream::new(self.wire, start))
    }

    /// Ends the session politely.
    pub async fn close(mut self) -> Result<(), WalError> {
        self.wire.queue("Terminate", |buf| {
            frontend::terminate(buf);
            Ok(())
        })?;
        self.wire.flush("Terminate").await?;
        self.wire.shutdown().await;
        Ok(())
    }

    /// Runs one statement with the simple query protocol (what a replication connection
    /// accepts), returning its rows as text.
    async fn simple_query(&mut self, sql: &str, context: &str) -> Result<Vec<Row>, WalError> {
        self.wire.queue(context, |buf| frontend::query(sql, buf))?;
        self.wire.flush(context).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.wire.read_significant(context).await? {
                Frame::Message(Message::RowDescription(_))
                | Frame::Message(Message::CommandComplete(_))
                | Frame::Message(Message::EmptyQueryResponse) => {}
                Frame::Message(Message::DataRow(body)) => rows.push(data_row(&body, context)?),
                Frame::Message(Message::ErrorResponse(body)) => {
                    error = Some(Box::new(ServerError::from_fields(body.fields())));
                }
                Frame::Message(Message::ReadyForQuery(_)) => break,
                other => return Err(unexpected(context, &other)),
            }
        }
        match error {
            Some(error) => Err(WalError::Server {
                context: context.to_owned(),
                error,
            }),
            None => Ok(rows),
        }
    }

    async fn drain_until_ready(&mut self, context: &str) -> Result<(), WalError> {
        loop {
            if let Frame::Message(Message::ReadyForQuery(_)) =
                self.wire.read_significant(context).await?
            {
                return Ok(());
            }
        }
    }
}

async fn connect_to(
    params: &ConnectParams,
    target: &Target,
) -> Result<ReplicationClient, WalError> {
    let mut wire = Wire::new(Transport::open(target).await?);
    if let (Target::Tcp { host, .. }, Some(tls)) = (target, &params.tls) {
        wire = negotiate_tls(wire, host, tls).await?;
    }
    let context = format!("starting a session on {target} as user {:?}", params.user);
    let mut startup: Vec<(&str, &str)> = vec![
        ("user", &params.user),
        ("database", &params.dbname),
        ("replication", "database"),
        ("application_name", &params.application_name),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "UTC"),
        ("IntervalStyle", "iso_8601"),
        ("extra_float_digits", "3"),
    ];
    if let Some(options) = &params.options {
        startup.push(("options", options));
    }
    wire.queue(&context, |buf| {
        frontend::startup_message(startup.iter().copied(), buf)
    })?;
    wire.flush(&context).await?;
    authenticate(&mut wire, params, &context).await?;

    let mut parameters = HashMap::new();
    loop {
        match wire.read_frame(&context).await? {
            Frame::Message(Message::ParameterStatus(body)) => {
                if let (Ok(name), Ok(value)) = (body.name(), body.value()) {
                    parameters.insert(name.to_owned(), value.to_owned());
                }
            }
            Frame::Message(Message::BackendKeyData(_)) => {}
            Frame::Message(Message::NoticeResponse(body)) => crate::wire::log_notice(body.fields()),
            Frame::Message(Message::ReadyForQuery(_)) => break,
            Frame::Message(Message::ErrorResponse(body)) => {
                return Err(WalError::Server {
                    context,
                    error: Box::new(ServerError::from_fields(body.fields())),
                })
            }
            other => return Err(unexpected(&context, &other)),
        }
    }
    Ok(ReplicationClient {
        wire,
        parameters,
        target: target.to_string(),
    })
}

async fn negotiate_tls(mut wire: Wire, host: &str, tls: &TlsClient) -> Result<Wire, WalError> {
    const CONTEXT: &str = "negotiating TLS";
    wire.queue(CONTEXT, |buf| {
        frontend::ssl_request(buf);
        Ok(())
    })?;
    wire.flush(CONTEXT).await?;
    match wire.read_byte(CONTEXT).await? {
        b'S' => Ok(Wire::new(
            wire.into_transport()?.start_tls(host, tls).await?,
        )),
        b'N' if tls.mode() == SslMode::Prefer => Ok(wire),
        b'N' => Err(WalError::tls(
            TlsProblem::NotOffered,
            format!(
                "sslmode={} but the server at {host} does not accept TLS connections",
                tls.mode()
            ),
        )),
        other => Err(WalError::protocol(
            CONTEXT,
            format!(
                "unexpected answer {} to SSLRequest",
                char::from(other).escape_default()
            ),
        )),
    }
}

async fn authenticate(
    wire: &mut Wire,
    params: &ConnectParams,
    context: &str,
) -> Result<(), WalError> {
    let password = || {
        params.password.as_deref().ok_or_else(|| {
            WalError::Auth(format!(
                "the server asks a password for user {:?} but the connection string has none",
                params.user
            ))
        })
    };
    let mut scram: Option<ScramSha256> = None;
    loop {
        let frame = wire.read_significant(context).await?;
        let Frame::Message(message) = frame else {
            return Err(unexpected(context, &frame));
        };
        match message {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                let pw = password()?;
                wire.queue("password", |buf| frontend::password_message(pw, buf))?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = postgres_protocol::authentication::md5_hash(
                    params.user.as_bytes(),
                    password()?,
                    body.salt(),
                );
                wire.queue("password", |buf| {
                    frontend::password_message(hash.as_bytes(), buf)
                })?;
            }
            Message::AuthenticationSasl(body) => {
                let mechanisms: Vec<String> = body
                    .mechanisms()
                    .map(|m| Ok(m.to_owned()))
                    .collect()
                    .map_err(|e| WalError::protocol(context, format!("SASL mechanisms: {e}")))?;
                if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                    return Err(WalError::Auth(format!(
                        "the server offers only SASL mechanisms {mechanisms:?}; \
                         walcast supports {SCRAM_SHA_256}"
                    )));
                }
                // Channel binding (SCRAM-SHA-256-PLUS) is not implemented: say so ('n').
                let client = ScramSha256::new(password()?, ChannelBinding::unsupported());
                wire.queue("SASL initial response", |buf| {
                    frontend::sasl_initial_response(SCRAM_SHA_256, client.message(), buf)
                })?;
                scram = Some(client);
            }
            Message::AuthenticationSaslContinue(body) => {
                let client = scram.as_mut().ok_or_else(|| {
                    WalError::protocol(context, "SASL continue before SASL start")
                })?;
                client
                    .update(body.data())
                    .map_err(|e| WalError::Auth(format!("SCRAM exchange failed: {e}")))?;
                wire.queue("SASL response", |buf| {
                    frontend::sasl_response(client.message(), buf)
                })?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let client = scram
                    .as_mut()
                    .ok_or_else(|| WalError::protocol(context, "SASL final before SASL start"))?;
                // Verifies the server's signature: it proves the server knows the password too.
                client.finish(body.data()).map_err(|e| {
                    WalError::Auth(format!("the server's SCRAM signature is invalid: {e}"))
                })?;
                continue;
            }
            Message::ErrorResponse(body) => {
                return Err(WalError::Server {
                    context: context.to_owned(),
                    error: Box::new(ServerError::from_fields(body.fields())),
                })
            }
            Message::AuthenticationGss
            | Message::AuthenticationGssContinue(_)
            | Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationSspi => {
                return Err(WalError::Auth(
                    "the server asks for GSSAPI, SSPI or Kerberos authentication; walcast \
                     supports trust, password, md5 and scram-sha-256"
                        .into(),
                ))
            }
            other => return Err(unexpected(context, &Frame::Message(other))),
        }
        wire.flush("authentication response").await?;
    }
}

fn data_row(body: &DataRowBody, context: &str) -> Result<Row, WalError> {
    let buffer = body.buffer();
    body.ranges()
        .map(|range| {
            Ok(range
                .and_then(|r| buffer.get(r))
                .map(|v| String::from_utf8_lossy(v).into_owned()))
        })
        .collect()
        .map_err(|e| WalError::protocol(context, format!("malformed DataRow: {e}")))
}

fn unexpected(context: &str, frame: &Frame) -> WalError {
    WalError::protocol(context, format!("unexpected {}", describe(frame)))
}

/// Postgres accepts slot names of lower-case letters, digits and underscores, up to 63 bytes.
fn validate_slot_name(slot: &str) -> Result<(), WalError> {
    let reason = if slot.is_empty() {
        Some("it is empty")
    } else if slot.len() > 63 {
        Some("it is longer than 63 characters")
    } else if !slot
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Some("only lower-case letters, digits and underscores are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(WalError::InvalidName {
            what: "replication slot",
            name: slot.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names() {
        assert!(validate_slot_name("walcast_1").is_ok());
        for bad in ["", "Walcast", "a-b", "a b", &"x".repeat(64)] {
            assert!(validate_slot_name(bad).is_err(), "{bad:?}");
        }
    }
}
