//! Everything one caller may read and write: its grants by table, and its logical messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use walcast_model::Catalog;

use crate::grant::{MessagePrefixes, TableGrant};

/// A caller's access. Its schema is built from it, and it is consulted for every event; it is
/// swapped when permissions are reloaded, so live subscriptions follow the new rules: a table
/// no longer granted ends them.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Sorted by table oid, one per table.
    tables: Vec<TableGrant>,
    /// The logical message prefixes the caller may read; None: no messages at all.
    pub messages: Option<MessagePrefixes>,
    /// Equal for accesses that read the same (catalog, tables, columns, row filters after claims
    /// substitution): subscriptions share event payloads only under an equal key. Set by
    /// [`Access::keyed`].
    pub key: Arc<str>,
}

impl Access {
    /// These grants (the last one of a table wins), no messages.
    pub fn new(grants: impl IntoIterator<Item = TableGrant>) -> Access {
        let by_oid: BTreeMap<u32, TableGrant> =
            grants.into_iter().map(|g| (g.table().oid, g)).collect();
        Access {
            tables: by_oid.into_values().collect(),
            messages: None,
            key: Arc::from(""),
        }
    }

    /// Every table, every column, every row, every operation.
    pub fn everything(catalog: &Catalog) -> Access {
        Access::new(full_view(catalog))
    }

    pub fn nothing() -> Access {
        Access::default()
    }

    /// This access with the logical message prefixes `messages`.
    pub fn with_messages(self, messages: Option<MessagePrefixes>) -> Access {
        Access { messages, ..self }
    }

    /// The grant on the table of this oid; none when the table is hidden.
    pub fn table(&self, oid: u32) -> Option<&TableGrant> {
        self.tables
            .binary_search_by_key(&oid, |g| g.table().oid)
            .ok()
            .and_then(|i| self.tables.get(i))
    }

    /// Every grant, by table oid.
    pub fn tables(&self) -> &[TableGrant] {
        &self.tables
    }

    pub fn table_by_gql(&self, gql_name: &str) -> Option<&TableGrant> {
        self.tables.iter().find(|g| g.table().gql_name == gql_name)
    }

    /// A key equal for accesses that give the same GraphQL schema over one catalog: tables,
    /// visible columns and mutation rights. Row filters are left out since they do not change
    /// the schema. Oids and column indexes only mean something within one catalog, so a cache
    /// keyed on this must be emptied when the catalog changes.
    pub fn shape_key(&self) -> String {
        let mut key = String::new();
        for (i, g) in self.tables.iter().enumerate() {
            if i > 0 {
                key.push(';');
            }
            key.push_str(&g.table().oid.to_string());
            key.push(':');
            match g.columns() {
                None => key.push('*'),
                Some(cols) => {
                    let cols: Vec<String> = cols.iter().map(usize::to_string).collect();
                    key.push_str(&cols.join(","));
                }
            }
            key.push(':');
            for (on, c) in [
                (g.writes.insert, 'i'),
                (g.writes.update, 'u'),
                (g.writes.delete, 'd'),
            ] {
                if on {
                    key.push(c);
                }
            }
        }
        // The `_logical_message` field exists or not; which prefixes is checked per request.
        if self.messages.is_some() {
            key.push_str("|m");
        }
        key
    }

    /// This access with its [`Access::key`] set. `catalog` identifies the catalog its grants
    /// were made from.
    pub fn keyed(mut self, catalog: u64) -> Access {
        // Everything the reads depend on: the catalog, the schema's shape and the row filters
        // as substituted (claims included).
        let mut key = format!("{catalog}|{}", self.shape_key());
        for g in &self.tables {
            key.push('|');
            match g.filter() {
                Some(f) => key.push_str(&f.to_string()),
                None => key.push('-'),
            }
        }
        if let Some(prefixes) = &self.messages {
            key.push_str(&format!("|{prefixes:?}"));
        }
        self.key = key.into();
        self
    }
}

/// Every table of the catalog, in its order, with every column and every mutation.
pub fn full_view(catalog: &Catalog) -> Vec<TableGrant> {
    catalog.tables.iter().map(TableGrant::full).collect()
}
