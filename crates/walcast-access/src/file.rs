//! The permissions file's shape: roles, their table entries and their message prefixes, checked
//! when the file is read. Names are matched against the catalog later, per caller
//! ([`crate::Permissions::view`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use walcast_model::{Catalog, Table};

use crate::claims::{check_placeholders, BadPlaceholder};
use crate::grant::{MessagePrefixes, Writes};
use crate::toml_json::toml_to_json;

/// The role-level key that grants logical message prefixes. A table with this name is still
/// a table when its value is a table (`[role.logical_messages]`).
const MESSAGES_KEY: &str = "logical_messages";

const ENTRY_KEYS: &[&str] = &["select", "columns", "filter", "insert", "update", "delete"];

/// What is wrong with the file, and where (`at`: the entry, such as `[reader.articles]`).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("not valid TOML")]
    Toml(#[source] toml::de::Error),
    #[error("`{role}` must be a table of tables: [{role}.<table>]")]
    RoleNotTable { role: String },
    #[error("`{role}.{name}` must be a table: [{role}.{name}]")]
    EntryNotTable { role: String, name: String },
    #[error("{at} must be a table")]
    QualifiedNotTable { at: String },
    #[error("[{role}.\"{name}\"]: expected schema.table")]
    BadTableName { role: String, name: String },
    #[error("{at}: `{key}` must be true or false")]
    NotAFlag { at: String, key: String },
    #[error("{at}: `columns` must be a list of column names")]
    Columns { at: String },
    #[error("{at}: `columns` is empty; leave it out for every column, or set select = false")]
    NoColumns { at: String },
    #[error("{at}: `filter` must be a table (a WhereInput such as {{ status = \"published\" }})")]
    FilterNotTable { at: String },
    #[error("{at}: `filter`")]
    Placeholder {
        at: String,
        #[source]
        source: BadPlaceholder,
    },
    #[error("{at}: unknown key `{key}` (expected one of {})", ENTRY_KEYS.join(", "))]
    UnknownKey { at: String, key: String },
    #[error("{at} must be a list of message prefixes (\"*\": all)")]
    Prefixes { at: String },
    #[error("{at} is empty; leave it out to grant no messages")]
    NoPrefixes { at: String },
}

/// A table as the file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TableRef {
    /// The GraphQL name (`articles`, `shop_orders`).
    Gql(String),
    /// `schema.table`.
    Qualified { schema: String, name: String },
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableRef::Gql(name) => f.write_str(name),
            TableRef::Qualified { schema, name } => write!(f, "{schema}.{name}"),
        }
    }
}

impl TableRef {
    pub(crate) fn resolve<'c>(&self, catalog: &'c Catalog) -> Option<&'c Arc<Table>> {
        match self {
            TableRef::Gql(name) => catalog
                .table_by_gql(name)
                // The SQL name of a public table whose GraphQL name had to be rewritten.
                .or_else(|| catalog.table_by_name("public", name)),
            TableRef::Qualified { schema, name } => catalog.table_by_name(schema, name),
        }
    }
}

/// One `[role.table]` entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) table: TableRef,
    pub(crate) select: bool,
    pub(crate) columns: Option<Vec<String>>,
    pub(crate) filter: Option<Value>,
    pub(crate) writes: Writes,
}

/// The file as read: each role's entries in file order, and its message prefixes.
#[derive(Debug, Default)]
pub(crate) struct PermissionsFile {
    pub(crate) roles: BTreeMap<String, Vec<Entry>>,
    pub(crate) messages: BTreeMap<String, MessagePrefixes>,
}

pub(crate) fn parse(text: &str) -> Result<PermissionsFile, FileError> {
    let file: toml::Table = text.parse().map_err(FileError::Toml)?;
    let mut parsed = PermissionsFile::default();
    for (role, tables) in file {
        let toml::Value::Table(tables) = tables else {
            return Err(FileError::RoleNotTable { role });
        };
        let mut entries = Vec::new();
        for (name, value) in tables {
            if name == MESSAGES_KEY && !value.is_table() {
                parsed
                    .messages
                    .insert(role.clone(), parse_prefixes(&role, &value)?);
                continue;
            }
            let toml::Value::Table(body) = value else {
                return Err(FileError::EntryNotTable { role, name });
            };
            if is_schema_level(&body) {
                // [role.schema.table], which TOML nests one level deeper.
                for (table, body) in body {
                    let table_ref = TableRef::Qualified {
                        schema: name.clone(),
                        name: table,
                    };
                    let toml::Value::Table(body) = body else {
                        return Err(FileError::QualifiedNotTable {
                            at: format!("[{role}.{table_ref}]"),
                        });
                    };
                    entries.push(parse_entry(&role, table_ref, body)?);
                }
            } else {
                let table_ref = match name.split_once('.') {
                    Some((schema, table)) if !schema.is_empty() && !table.is_empty() => {
                        TableRef::Qualified {
                            schema: schema.to_owned(),
                            name: table.to_owned(),
                        }
                    }
                    Some(_) => return Err(FileError::BadTableName { role, name }),
                    None => TableRef::Gql(name),
                };
                entries.push(parse_entry(&role, table_ref, body)?);
            }
        }
        parsed.roles.insert(role, entries);
    }
    Ok(parsed)
}

/// `logical_messages = ["outbox", ...]`, or `["*"]` for every prefix.
fn parse_prefixes(role: &str, value: &toml::Value) -> Result<MessagePrefixes, FileError> {
    let at = || format!("[{role}] {MESSAGES_KEY}");
    let prefixes = value
        .as_array()
        .and_then(|list| {
            list.iter()
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<BTreeSet<String>>>()
        })
        .ok_or_else(|| FileError::Prefixes { at: at() })?;
    if prefixes.is_empty() {
        return Err(FileError::NoPrefixes { at: at() });
    }
    Ok(if prefixes.contains("*") {
        MessagePrefixes::All
    } else {
        MessagePrefixes::Only(prefixes)
    })
}

/// A `[role.x]` whose keys are all tables and none an entry key is a schema holding
/// `[role.x.table]` entries.
fn is_schema_level(body: &toml::Table) -> bool {
    !body.is_empty()
        && body
            .iter()
            .all(|(k, v)| v.is_table() && !ENTRY_KEYS.contains(&k.as_str()))
}

fn parse_entry(role: &str, table: TableRef, body: toml::Table) -> Result<Entry, FileError> {
    let at = format!("[{role}.{table}]");
    let mut entry = Entry {
        table,
        select: false,
        columns: None,
        filter: None,
        writes: Writes::NONE,
    };
    let flag = |key: &str, v: &toml::Value| {
        v.as_bool().ok_or_else(|| FileError::NotAFlag {
            at: at.clone(),
            key: key.to_owned(),
        })
    };
    for (key, value) in body {
        match key.as_str() {
            "select" => entry.select = flag(&key, &value)?,
            "insert" => entry.writes.insert = flag(&key, &value)?,
            "update" => entry.writes.update = flag(&key, &value)?,
            "delete" => entry.writes.delete = flag(&key, &value)?,
            "columns" => {
                let names = value
                    .as_array()
                    .and_then(|list| {
                        list.iter()
                            .map(|c| c.as_str().map(str::to_owned))
                            .collect::<Option<Vec<String>>>()
                    })
                    .ok_or_else(|| FileError::Columns { at: at.clone() })?;
                if names.is_empty() {
                    return Err(FileError::NoColumns { at });
                }
                entry.columns = Some(names);
            }
            "filter" => {
                let toml::Value::Table(filter) = value else {
                    return Err(FileError::FilterNotTable { at });
                };
                let filter = toml_to_json(toml::Value::Table(filter));
                check_placeholders(&filter).map_err(|source| FileError::Placeholder {
                    at: at.clone(),
                    source,
                })?;
                entry.filter = Some(filter);
            }
            _ => return Err(FileError::UnknownKey { at, key }),
        }
    }
    if !entry.select && (entry.columns.is_some() || entry.filter.is_some() || entry.writes.any()) {
        tracing::warn!(
            "permissions file: {at} does not set select = true, so the table stays hidden and its other settings have no effect"
        );
    }
    Ok(entry)
}
