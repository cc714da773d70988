//! The state every part of the server shares.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use walcast_graphql::{ConnectionHandle, Ctx, EventSource, Schema};
use walcast_model::Catalog;

use crate::auth::{Authenticator, Identity};
use crate::config::ServeArgs;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// The schemas of the current catalog: every role's view is one of these.
pub struct SchemaSet {
    pub catalog: Arc<Catalog>,
    /// Every exposed table.
    pub full: Arc<Schema>,
    /// No table: the view of a role no permission grants anything.
    pub empty: Arc<Schema>,
}

impl SchemaSet {
    pub fn build(catalog: Arc<Catalog>, mutations: bool) -> SchemaSet {
        let view = walcast_graphql::full_view(&catalog);
        let full = Arc::new(walcast_graphql::build_schema(catalog.clone(), &view, mutations));
        let empty = Arc::new(walcast_graphql::build_schema(catalog.clone(), &[], false));
        SchemaSet {
            catalog,
            full,
            empty,
        }
    }

    /// The schema of a role. Without a permissions file every role but `public` sees everything.
    pub fn for_role(&self, role: &str) -> Arc<Schema> {
        if role == "public" {
            self.empty.clone()
        } else {
            self.full.clone()
        }
    }
}

pub struct App {
    pub cfg: ServeArgs,
    pub schemas: ArcSwap<SchemaSet>,
    pub hub: Arc<Hub>,
    pub source: Arc<dyn EventSource>,
    pub pool: deadpool_postgres::Pool,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    /// Replication stream live and schema loaded.
    pub ready: AtomicBool,
    next_connection: AtomicU64,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: ServeArgs,
        catalog: Arc<Catalog>,
        hub: Arc<Hub>,
        source: Arc<dyn EventSource>,
        pool: deadpool_postgres::Pool,
        auth: Authenticator,
        metrics: Arc<Metrics>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> App {
        let mutations = cfg.mutations;
        App {
            cfg,
            schemas: ArcSwap::from_pointee(SchemaSet::build(catalog, mutations)),
            hub,
            source,
            pool,
            auth,
            metrics,
            ready: AtomicBool::new(false),
            next_connection: AtomicU64::new(1),
            shutdown,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    pub fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Relaxed)
    }

    pub fn context(&self, who: &Identity, connection: Option<ConnectionHandle>) -> Ctx {
        Ctx {
            events: self.source.clone(),
            pool: self.pool.clone(),
            role: who.role.as_str().into(),
            connection,
            reads: Arc::new(walcast_graphql::QuerySession::new(self.pool.clone())),
        }
    }
}
