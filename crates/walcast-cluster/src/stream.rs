//! The slot's JetStream stream: created with walcast's settings, or checked when it exists.

use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{
    Config, DiscardPolicy, Info, RetentionPolicy, StorageType, Stream,
};
use async_nats::jetstream::Context;
use async_nats::jetstream::ErrorCode;

use crate::decode::{self, Meta};
use crate::encode::Subjects;
use crate::error::ClusterError;

/// Dedupe window when retention allows it: covers a publisher's retries after a reconnect.
const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// What walcast asks of the stream. Zero limits mean unlimited.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// The replication slot the stream carries.
    pub slot: String,
    pub replicas: usize,
    /// How long events stay: how long cursors stay valid.
    pub max_age: Duration,
    pub max_bytes: i64,
    pub max_messages: i64,
    /// File storage survives a server restart; memory storage is for tests.
    pub storage: StorageType,
}

impl StreamSettings {
    pub fn new(slot: impl Into<String>) -> StreamSettings {
        StreamSettings {
            slot: slot.into(),
            replicas: 1,
            max_age: Duration::ZERO,
            max_bytes: -1,
            max_messages: -1,
            storage: StorageType::File,
        }
    }

    /// `WALCAST_<slot>`: slot names are `[a-z0-9_]`, valid in stream names.
    pub fn stream_name(&self) -> String {
        format!("WALCAST_{}", self.slot)
    }

    pub fn subjects(&self) -> Subjects {
        Subjects::new(&self.slot)
    }

    fn duplicate_window(&self) -> Duration {
        if self.max_age.is_zero() {
            DEFAULT_DUPLICATE_WINDOW
        } else {
            DEFAULT_DUPLICATE_WINDOW.min(self.max_age)
        }
    }

    /// The configuration walcast creates the stream with.
    pub fn config(&self) -> Config {
        Config {
            name: self.stream_name(),
            description: Some(format!("walcast change events of slot {}", self.slot)),
            subjects: vec![self.subjects().all()],
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            storage: self.storage,
            num_replicas: self.replicas,
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            max_messages: self.max_messages,
            duplicate_window: self.duplicate_window(),
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            // The publisher's epoch is one atomic batch (nats-server 2.12+).
            allow_atomic_publish: true,
            ..Default::default()
        }
    }
}

/// The slot's stream, ready to publish to or read from.
#[derive(Debug, Clone)]
pub struct ClusterStream {
    pub(crate) context: Context,
    pub(crate) stream: Stream,
    pub(crate) name: String,
    pub(crate) subjects: Subjects,
    epoch: u64,
}

impl ClusterStream {
    /// Creates the stream, or checks an existing one: a field that differs from `settings`
    /// in a way walcast depends on is an error naming the field. Atomic batches (off on a
    /// stream an earlier walcast created) are switched on.
    pub async fn open(
        context: &Context,
        settings: &StreamSettings,
    ) -> Result<ClusterStream, ClusterError> {
        let name = settings.stream_name();
        let wanted = settings.config();
        let mut stream = match context.get_stream(&name).await {
            Ok(stream) => stream,
            Err(e) if is_not_found(&e.kind()) => {
                match context.create_stream(wanted.clone()).await {
                    Ok(stream) => stream,
                    // Another node created it first: check theirs.
                    Err(_) => context.get_stream(&name).await.map_err(|e| {
                        ClusterError::nats(format!("getting stream {name} after creating it"), e)
                    })?,
                }
            }
            Err(e) => return Err(ClusterError::nats(format!("getting stream {name}"), e)),
        };
        let info = stream
            .info()
            .await
            .map_err(|e| ClusterError::nats(format!("reading stream {name}'s info"), e))?
            .clone();
        check_config(&name, &wanted, &info.config)?;
        if !info.config.allow_atomic_publish {
            // Created by an earlier walcast: atomic batches can be switched on in place. A
            // server before 2.12 does not know the field, so it stays off: an error naming it.
            let config = Config {
                allow_atomic_publish: true,
                ..info.config.clone()
            };
            let updated = context.update_stream(config).await.map_err(|e| {
                ClusterError::nats(format!("allowing atomic batches on stream {name}"), e)
            })?;
            if !updated.config.allow_atomic_publish {
                return Err(ClusterError::StreamConfig {
                    stream: name,
                    field: "allow_atomic",
                    expected: "true (nats-server 2.12 or later)".into(),
                    found: "false".into(),
                });
            }
        }
        let epoch = u64::try_from(info.created.unix_timestamp_nanos()).unwrap_or_default();
        Ok(ClusterStream {
            context: context.clone(),
            stream,
            name,
            subjects: settings.subjects(),
            epoch,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Names this incarnation of the stream (its creation time in nanoseconds): a cursor from a
    /// deleted and recreated stream does not apply.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// `(first, last)` sequence of the messages kept; `first == last + 1` when it is empty.
    pub async fn bounds(&self) -> Result<(u64, u64), ClusterError> {
        let info = self.info().await?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// The server name of the stream's leader (`None` for a stream without one: not clustered,
    /// or during an election).
    pub async fn leader(&self) -> Result<Option<String>, ClusterError> {
        let info = self.info().await?;
        Ok(info.cluster.and_then(|c| c.leader))
    }

    /// The stream's current info, from its leader.
    async fn info(&self) -> Result<Info, ClusterError> {
        let mut stream = self.stream.clone();
        stream
            .info()
            .await
            .cloned()
            .map_err(|e| ClusterError::nats(format!("reading stream {}'s info", self.name), e))
    }

    /// The walcast headers of message `seq` (a direct get: any replica answers).
    pub async fn meta_at(&self, seq: u64) -> Result<Meta, ClusterError> {
        let message = self.stream.direct_get(seq).await.map_err(|e| {
            ClusterError::nats(format!("direct get of {seq} from {}", self.name), e)
        })?;
        decode::meta(seq, Some(&message.headers))
    }
}

fn is_not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// The fields walcast depends on; others (description, limits per subject, metadata) are the
/// operator's.
fn check_config(stream: &str, wanted: &Config, found: &Config) -> Result<(), ClusterError> {
    let mismatch = |field: &'static str, expected: String, found: String| {
        Err(ClusterError::StreamConfig {
            stream: stream.to_owned(),
            field,
            expected,
            found,
        })
    };
    if !found.subjects.iter().any(|s| wanted.subjects.contains(s)) {
        return mismatch(
            "subjects",
            format!("{:?}", wanted.subjects),
            format!("{:?}", found.subjects),
        );
    }
    macro_rules! same {
        ($field:ident) => {
            if wanted.$field != found.$field {
                return mismatch(
                    stringify!($field),
                    format!("{:?}", wanted.$field),
                    format!("{:?}", found.$field),
                );
            }
        };
    }
    same!(retention);
    same!(discard);
    same!(storage);
    same!(num_replicas);
    same!(max_age);
    same!(max_bytes);
    same!(max_messages);
    same!(deny_delete);
    same!(deny_purge);
    same!(allow_direct);
    same!(sealed);
    if found.duplicate_window.is_zero() {
        return mismatch(
            "duplicate_window",
            format!("{:?}", wanted.duplicate_window),
            "0s (no dedupe)".into(),
        );
    }
    if found.mirror.is_some() {
        return mismatch("mirror", "none".into(), "a mirror".into());
    }
    Ok(())
}
