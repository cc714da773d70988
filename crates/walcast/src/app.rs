//! The state every part of the server shares.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use walcast_access::{Access, Authenticator, Identity, Permissions};
use walcast_graphql::{ConnectionHandle, Ctx, EventSource, PayloadGroups, Schema, SharedAccess};
use walcast_model::Catalog;

use crate::config::ServeArgs;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// The schemas of the current catalog, one per view shape (tables, columns, mutations), built
/// on first use: roles that see the same shape share one.
pub struct SchemaSet {
    pub catalog: Arc<Catalog>,
    /// Distinct for every set made: identifies the catalog in access keys.
    pub serial: u64,
    mutations: bool,
    by_shape: Mutex<HashMap<String, Arc<Schema>>>,
}

impl SchemaSet {
    pub fn new(catalog: Arc<Catalog>, mutations: bool) -> SchemaSet {
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        SchemaSet {
            catalog,
            serial: SERIAL.fetch_add(1, Relaxed),
            mutations,
            by_shape: Mutex::new(HashMap::new()),
        }
    }

    /// The schema of `access`'s shape, built once per shape.
    pub fn for_view(&self, access: &Access) -> Arc<Schema> {
        let key = access.shape_key();
        let mut cache = walcast_model::sync::lock(&self.by_shape);
        if let Some(schema) = cache.get(&key) {
            return schema.clone();
        }
        let schema = Arc::new(walcast_graphql::build_schema(
            self.catalog.clone(),
            access.tables(),
            self.mutations,
            access.messages.is_some(),
        ));
        cache.insert(key, schema.clone());
        schema
    }
}

pub struct App {
    pub cfg: ServeArgs,
    pub schemas: ArcSwap<SchemaSet>,
    pub hub: Arc<Hub>,
    pub source: Arc<dyn EventSource>,
    pub pool: deadpool_postgres::Pool,
    pub auth: ArcSwap<Authenticator>,
    pub permissions: ArcSwap<Permissions>,
    pub metrics: Arc<Metrics>,
    /// Event payloads shared by identical subscriptions.
    pub payloads: Arc<PayloadGroups>,
    /// Replication stream live and schema loaded.
    pub ready: AtomicBool,
    /// The server sends logical messages (pgoutput's `messages` option, Postgres 14+): only then
    /// do schemas offer `_logical_message`.
    pub logical_messages: AtomicBool,
    next_connection: AtomicU64,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Bumped when permissions, tokens or the catalog change: sessions recompute their view.
    pub generation: tokio::sync::watch::Sender<u64>,
}

pub struct AppParts {
    pub cfg: ServeArgs,
    pub catalog: Arc<Catalog>,
    pub hub: Arc<Hub>,
    pub source: Arc<dyn EventSource>,
    pub pool: deadpool_postgres::Pool,
    pub auth: Authenticator,
    pub permissions: Permissions,
    pub metrics: Arc<Metrics>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl App {
    pub fn new(p: AppParts) -> App {
        let mutations = p.cfg.mutations;
        App {
            cfg: p.cfg,
            schemas: ArcSwap::from_pointee(SchemaSet::new(p.catalog, mutations)),
            hub: p.hub,
            source: p.source,
            pool: p.pool,
            auth: ArcSwap::from_pointee(p.auth),
            permissions: ArcSwap::from_pointee(p.permissions),
            payloads: p.metrics.payloads.clone(),
            metrics: p.metrics,
            ready: AtomicBool::new(false),
            logical_messages: AtomicBool::new(false),
            next_connection: AtomicU64::new(1),
            shutdown: p.shutdown,
            generation: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    pub fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Relaxed)
    }

    /// Installs a new catalog; every session recomputes its view.
    pub fn set_catalog(&self, catalog: Arc<Catalog>) {
        self.schemas
            .store(Arc::new(SchemaSet::new(catalog, self.cfg.mutations)));
        self.generation.send_modify(|g| *g += 1);
    }

    /// Re-reads the tokens and permissions files (SIGHUP). On error the old ones stay.
    pub fn reload_auth(&self) {
        let tokens = match self.auth.load().reload() {
            Ok(a) => {
                self.auth.store(Arc::new(a));
                true
            }
            Err(e) => {
                tracing::error!(error = %format!("{:#}", anyhow::Error::new(e)), "tokens not reloaded; the previous ones stay");
                false
            }
        };
        let permissions = match self.permissions.load().reload() {
            Ok(p) => {
                self.permissions.store(Arc::new(p));
                true
            }
            Err(e) => {
                tracing::error!(error = %format!("{:#}", anyhow::Error::new(e)), "permissions not reloaded; the previous ones stay");
                false
            }
        };
        match (tokens, permissions) {
            (true, true) => tracing::info!("tokens and permissions reloaded"),
            (true, false) => tracing::info!("tokens reloaded"),
            (false, true) => tracing::info!("permissions reloaded"),
            (false, false) => return,
        }
        self.generation.send_modify(|g| *g += 1);
    }

    /// What a caller may read and write now, keyed to the current catalog.
    pub fn access(&self, who: &Identity) -> Access {
        let schemas = self.schemas.load();
        let mut access = self.permissions.load().view(&schemas.catalog, who);
        if !self.logical_messages.load(Relaxed) {
            access.messages = None;
        }
        access.keyed(schemas.serial)
    }

    pub fn context(&self, access: SharedAccess, connection: Option<ConnectionHandle>) -> Ctx {
        Ctx {
            events: self.source.clone(),
            pool: self.pool.clone(),
            connection,
            reads: Arc::new(walcast_graphql::QuerySession::new(self.pool.clone())),
            relation_queries: self.metrics.relation_queries.clone(),
            outbox: Default::default(),
            sharing: None,
            access,
            limits: walcast_graphql::Limits {
                filters: walcast_filter::Limits {
                    max_list_items: self.cfg.max_list_items,
                },
                max_operation_cost: self.cfg.max_operation_cost,
            },
        }
    }
}
