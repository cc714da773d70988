//! Subscriptions (to a collection, or a GraphQL document) and item requests, each its own
//! task.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use walcast_graphql::{Ctx, PayloadGroups, Schema, TableInfo};

use super::state::{uid_key, Session};
use crate::request::Request;
use crate::ws::directus::codec::{self, code, Items, Subscribe};
use crate::ws::directus::fields::{self, Selection};
use crate::ws::directus::requests::{self, Refusal};
use crate::ws::directus::routes::{raw, Shape};
use crate::ws::operation::{self, Outlet};
use crate::ws::operations::OpHandle;
use crate::ws::outgoing::Out;

/// A collection subscription's task: the items now, then every change after the position
/// they were read at.
struct Collection {
    schema: Arc<Schema>,
    /// The first read's context; the stream's is `ctx`.
    read_ctx: Ctx,
    ctx: Ctx,
    groups: Arc<PayloadGroups>,
    table: Arc<TableInfo>,
    sel: Selection,
    sub: Subscribe,
    filter: Option<Value>,
    /// The subscription document of the stream.
    doc: String,
    out: mpsc::Sender<Out>,
    outlet: Outlet,
    op: String,
}

impl Collection {
    async fn run(self) {
        // The read is boxed: this task lives as long as the subscription, and its state is as
        // large as its largest await.
        let read = Box::pin(requests::read(
            &self.schema,
            &self.read_ctx,
            &self.table,
            &self.sel,
            &self.sub.query,
            self.filter.clone(),
        ));
        let uid = self.sub.uid.clone();
        let (rows, cursor) = match read.await {
            Ok(r) => r,
            Err(r) => {
                let text = codec::error("subscribe", r.code, &r.message, uid.as_ref());
                let _ = self.out.send(raw(text)).await;
                return;
            }
        };
        let Collection {
            schema,
            read_ctx,
            ctx,
            groups,
            table,
            sel,
            sub,
            filter,
            doc,
            out,
            outlet,
            op,
        } = self;
        let event = sub.event.map(|e| e.name());
        // What the stream does not need goes before it starts.
        drop((read_ctx, sub, table, sel));
        let init = codec::subscription(Some("init"), rows, uid.as_ref());
        let _ = out.send(raw(init)).await;
        let request = Request {
            query: doc,
            variables: Some(requests::variables_without_nulls(
                json!({"where": filter, "event": event, "after": cursor}),
            )),
            operation_name: None,
        };
        operation::run(schema, ctx, groups, op, request, outlet).await;
    }
}

impl Session {
    pub(super) fn subscribe(&mut self, sub: Subscribe) -> Result<(), Refusal> {
        self.authorized()?;
        let key = uid_key(sub.uid.as_ref());
        // A uid in use is replaced, as in Directus.
        self.stop(&key);
        self.subs.retain(|_, (_, task)| !task.is_finished());
        let limit = self.app.cfg.max_subscriptions_per_connection;
        if self.subs.len() >= limit {
            return Err(Refusal::new(
                code::LIMIT_EXCEEDED,
                format!("too many subscriptions on this connection (limit {limit})"),
            ));
        }
        let op = self.next_op.to_string();
        self.next_op += 1;
        let task = if requests::is_document(&sub.collection) {
            self.document(&op, sub)
        } else {
            self.collection(&op, sub)?
        };
        self.subs.insert(key, (op, task));
        Ok(())
    }

    fn outlet(&self) -> Outlet {
        Outlet {
            messages: self.out.clone(),
            events: self.op_tx.clone(),
            serial: 0,
        }
    }

    /// A GraphQL document, run as it is.
    fn document(&self, op: &str, sub: Subscribe) -> OpHandle {
        let (schema, ctx) = self.schema_and_ctx(true);
        self.route(op, sub.uid, Shape::Document);
        let request = Request {
            query: sub.collection,
            variables: sub.variables,
            operation_name: None,
        };
        let groups = self.app.payloads.clone();
        self.runner.run(operation::run(
            schema,
            ctx,
            groups,
            op.to_owned(),
            request,
            self.outlet(),
        ))
    }

    fn collection(&self, op: &str, sub: Subscribe) -> Result<OpHandle, Refusal> {
        let (schema, ctx) = self.schema_and_ctx(true);
        let table = requests::table(&schema, &sub.collection)?;
        let sel = requests::selection(&table, &sub.query)?;
        let filter = requests::where_of(&table, &sub.query, sub.item.as_ref())?;
        let numeric_key = fields::id_field(&table).is_some_and(|(_, n)| n);
        let doc = requests::subscription_doc(&table, &sel);
        let shape = Shape::Items {
            sel: sel.clone(),
            numeric_key,
        };
        self.route(op, sub.uid.clone(), shape);
        let (_, read_ctx) = self.schema_and_ctx(false);
        let task = Collection {
            schema,
            read_ctx,
            ctx,
            groups: self.app.payloads.clone(),
            table,
            sel,
            sub,
            filter,
            doc,
            out: self.out.clone(),
            outlet: self.outlet(),
            op: op.to_owned(),
        };
        Ok(self.runner.run(task.run()))
    }

    pub(super) fn items(&self, msg: Items) {
        let (schema, ctx) = self.schema_and_ctx(false);
        let out = self.out.clone();
        let mutations = self.app.cfg.mutations;
        tokio::spawn(async move {
            let text = match requests::items(&schema, &ctx, mutations, &msg).await {
                Ok(data) => codec::items(data, msg.uid.as_ref()),
                Err(r) => codec::error("items", r.code, &r.message, msg.uid.as_ref()),
            };
            let _ = out.send(raw(text)).await;
        });
    }
}
