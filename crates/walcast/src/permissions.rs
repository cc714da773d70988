//! Per-role table, column and row permissions (`WALCAST_PERMISSIONS_FILE`).
//!
//! ```toml
//! [reader.articles]                 # role `reader`, table `articles`
//! select = true
//! columns = ["id", "title"]         # default: every column
//! filter = { status = "published", author_id = "$claims.sub" }
//! insert = false                    # update, delete likewise; all default to false
//! ```
//!
//! The filter binds mutations as row-level security's `USING` and `WITH CHECK` do, and events
//! per subscriber on both versions of an updated row (`walcast-graphql::mutations`,
//! `crate::visibility`).
//!
//! Logical messages (`pg_logical_emit_message`, subscription `_logical_message`) are granted by
//! prefix in the role's own section; `"*"` grants every prefix:
//!
//! ```toml
//! [reader]
//! logical_messages = ["outbox"]
//! ```
//!
//! Tables are named as in GraphQL (`articles`, `shop_orders`) or as `schema.table`
//! (`[reader."shop.orders"]`, or the nested `[reader.shop.orders]`). Role `admin` sees everything
//! whatever the file says. Any other role sees only the tables its entries allow; without a
//! file, `authenticated` and static-token roles see everything and every other role, `public`
//! included, sees nothing.
//!
//! The file is checked for shape when loaded; names are matched against the catalog when a
//! caller's view is built, since the catalog can change under a running service. Anything that
//! does not fit the catalog, and any filter whose claims are missing, hides what it applies to:
//! a mistake never widens access.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde_json::{Map, Value};
use walcast_filter::{parse_where, RowFilter};
use walcast_graphql::MessagePrefixes;
use walcast_model::{Catalog, Table};

use crate::auth::{toml_to_json, Identity, Origin, DEFAULT_ROLE, PUBLIC_ROLE};

/// The role that sees everything without an entry.
pub const ADMIN_ROLE: &str = "admin";

/// The prefix of a filter value taken from the caller's token: `"$claims.sub"`.
const CLAIM_PREFIX: &str = "$claims.";

/// The role-level key that grants logical message prefixes. A table with this name is still
/// a table when its value is a table (`[role.logical_messages]`).
const MESSAGES_KEY: &str = "logical_messages";

const ENTRY_KEYS: &[&str] = &["select", "columns", "filter", "insert", "update", "delete"];

/// A table as the file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TableRef {
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
    fn resolve<'c>(&self, catalog: &'c Catalog) -> Option<&'c Arc<Table>> {
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
struct Entry {
    table: TableRef,
    select: bool,
    columns: Option<Vec<String>>,
    filter: Option<Value>,
    insert: bool,
    update: bool,
    delete: bool,
}

/// The parsed permissions file, or the rules without one.
pub struct Permissions {
    path: Option<PathBuf>,
    /// Role -> entries in file order; `None` without a file.
    roles: Option<BTreeMap<String, Vec<Entry>>>,
    /// Role -> the logical message prefixes it may read (`logical_messages`).
    messages: BTreeMap<String, MessagePrefixes>,
    /// Problems already logged, so a view built per connection does not flood the log.
    warned: Mutex<HashSet<String>>,
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permissions")
            .field("path", &self.path)
            .field(
                "roles",
                &self
                    .roles
                    .as_ref()
                    .map(|r| r.keys().cloned().collect::<Vec<_>>()),
            )
            .finish()
    }
}

/// What one caller may see of one table.
#[derive(Debug, Clone)]
pub struct TableGrant {
    pub table: Arc<Table>,
    /// Visible column indexes, ascending; `None` means every column.
    pub columns: Option<Vec<usize>>,
    /// The `<table>WhereInput` rows must match, claims substituted; `None` means every row.
    pub filter: Option<Value>,
    /// `filter`, parsed and validated against the table.
    pub row_filter: Option<RowFilter>,
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
}

impl TableGrant {
    fn full(table: &Arc<Table>) -> TableGrant {
        TableGrant {
            table: Arc::clone(table),
            columns: None,
            filter: None,
            row_filter: None,
            insert: true,
            update: true,
            delete: true,
        }
    }

    /// Whether the column at this index is visible.
    #[cfg(test)]
    pub fn sees_column(&self, index: usize) -> bool {
        match &self.columns {
            None => index < self.table.columns.len(),
            Some(cols) => cols.binary_search(&index).is_ok(),
        }
    }
}

/// The tables one caller may see.
#[derive(Debug, Clone, Default)]
pub struct RoleView {
    /// Sorted by table oid.
    pub tables: Vec<TableGrant>,
    /// The logical message prefixes the caller may read; None: none.
    pub messages: Option<MessagePrefixes>,
}

impl RoleView {
    /// Every table, every column, every row, every operation.
    pub fn everything(catalog: &Catalog) -> RoleView {
        let mut tables: Vec<TableGrant> = catalog.tables.iter().map(TableGrant::full).collect();
        tables.sort_by_key(|g| g.table.oid);
        RoleView {
            tables,
            messages: None,
        }
    }

    pub fn nothing() -> RoleView {
        RoleView::default()
    }

    #[cfg(test)]
    pub fn grant(&self, oid: u32) -> Option<&TableGrant> {
        self.tables
            .binary_search_by_key(&oid, |g| g.table.oid)
            .ok()
            .and_then(|i| self.tables.get(i))
    }

    #[cfg(test)]
    pub fn grant_by_gql(&self, gql_name: &str) -> Option<&TableGrant> {
        self.tables.iter().find(|g| g.table.gql_name == gql_name)
    }

    /// A key equal for views that give the same GraphQL schema over one catalog: tables,
    /// visible columns and mutation rights. Row filters are left out since they do not change
    /// the schema. Oids and column indexes only mean something within one catalog, so a cache
    /// keyed on this must be emptied when the catalog changes.
    pub fn shape_key(&self) -> String {
        let mut key = String::new();
        for (i, g) in self.tables.iter().enumerate() {
            if i > 0 {
                key.push(';');
            }
            key.push_str(&g.table.oid.to_string());
            key.push(':');
            match &g.columns {
                None => key.push('*'),
                Some(cols) => {
                    let cols: Vec<String> = cols.iter().map(usize::to_string).collect();
                    key.push_str(&cols.join(","));
                }
            }
            key.push(':');
            for (on, c) in [(g.insert, 'i'), (g.update, 'u'), (g.delete, 'd')] {
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
}

impl Permissions {
    /// Reads and checks the file; `None` gives the rules without a file.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Permissions> {
        let (roles, messages) = match path {
            None => (None, BTreeMap::new()),
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("reading WALCAST_PERMISSIONS_FILE {}", path.display())
                })?;
                let (roles, messages) = parse_file(&text)
                    .with_context(|| format!("WALCAST_PERMISSIONS_FILE {}", path.display()))?;
                (Some(roles), messages)
            }
        };
        if let Some(roles) = &roles {
            if roles.contains_key(ADMIN_ROLE) {
                tracing::warn!(
                    "permissions file: entries for role {ADMIN_ROLE} are ignored: {ADMIN_ROLE} sees everything"
                );
            }
        }
        Ok(Permissions {
            path: path.map(Path::to_path_buf),
            roles,
            messages,
            warned: Mutex::new(HashSet::new()),
        })
    }

    /// The same file read again (for SIGHUP); the current rules stay if it is now broken.
    pub fn reload(&self) -> anyhow::Result<Permissions> {
        Permissions::load(self.path.as_deref())
    }

    /// What `who` may see of `catalog`, with the claims of its token in the row filters.
    /// Never fails: entries that do not fit the catalog or the token are logged once and
    /// hide what they name.
    pub fn view(&self, catalog: &Catalog, who: &Identity) -> RoleView {
        if who.role == ADMIN_ROLE {
            return RoleView {
                messages: Some(MessagePrefixes::All),
                ..RoleView::everything(catalog)
            };
        }
        let Some(roles) = &self.roles else {
            let token_holder = who.role == DEFAULT_ROLE || who.origin == Origin::StaticToken;
            return if who.role != PUBLIC_ROLE && token_holder {
                RoleView::everything(catalog)
            } else {
                RoleView::nothing()
            };
        };
        let Some(entries) = roles.get(&who.role) else {
            return RoleView::nothing();
        };
        let mut grants: BTreeMap<u32, TableGrant> = BTreeMap::new();
        let mut named_twice: Vec<(u32, &TableRef)> = Vec::new();
        let mut seen: HashSet<u32> = HashSet::new();
        for entry in entries {
            let Some(table) = entry.table.resolve(catalog) else {
                self.warn_once(
                    &who.role,
                    &entry.table,
                    "table",
                    format_args!("names no table of the catalog; skipped"),
                );
                continue;
            };
            if !seen.insert(table.oid) {
                named_twice.push((table.oid, &entry.table));
                continue;
            }
            if !entry.select {
                continue;
            }
            if let Some(grant) = self.grant(table, entry, who) {
                grants.insert(table.oid, grant);
            }
        }
        for (oid, table) in named_twice {
            self.warn_once(
                &who.role,
                table,
                "twice",
                format_args!(
                    "names a table that another entry of the role names too; the table is hidden"
                ),
            );
            grants.remove(&oid);
        }
        RoleView {
            tables: grants.into_values().collect(),
            messages: self.messages.get(&who.role).cloned(),
        }
    }

    fn grant(&self, table: &Arc<Table>, entry: &Entry, who: &Identity) -> Option<TableGrant> {
        let columns = match &entry.columns {
            None => None,
            Some(names) => {
                let mut indexes = Vec::with_capacity(names.len());
                for name in names {
                    let found = table
                        .column_index(name)
                        .or_else(|| table.column_by_gql(name).map(|(i, _)| i));
                    match found {
                        Some(i) => indexes.push(i),
                        None => self.warn_once(
                            &who.role,
                            &entry.table,
                            &format!("column {name}"),
                            format_args!("column {name:?} does not exist; skipped"),
                        ),
                    }
                }
                indexes.sort_unstable();
                indexes.dedup();
                if indexes.is_empty() {
                    self.warn_once(
                        &who.role,
                        &entry.table,
                        "no columns",
                        format_args!("no listed column exists; the table is hidden"),
                    );
                    return None;
                }
                (indexes.len() < table.columns.len()).then_some(indexes)
            }
        };
        let (filter, row_filter) = match &entry.filter {
            None => (None, None),
            Some(template) => {
                let filter = match substitute(template, &who.claims) {
                    Ok(filter) => filter,
                    Err(claim) => {
                        self.warn_once(
                            &who.role,
                            &entry.table,
                            &format!("claim {claim}"),
                            format_args!(
                                "the filter needs claim {claim:?}, which a token of this role lacks; the table is hidden from such callers"
                            ),
                        );
                        return None;
                    }
                };
                match parse_filter(table, filter) {
                    Ok((filter, parsed)) => (Some(filter), Some(parsed)),
                    Err(e) => {
                        self.warn_once(
                            &who.role,
                            &entry.table,
                            "filter",
                            format_args!("invalid filter ({e}); the table is hidden"),
                        );
                        return None;
                    }
                }
            }
        };
        Some(TableGrant {
            table: Arc::clone(table),
            columns,
            filter,
            row_filter,
            insert: entry.insert,
            update: entry.update,
            delete: entry.delete,
        })
    }

    /// Logs a problem with one entry the first time it is met. The key leaves out claim
    /// values, so the set stays bounded by the file's size.
    fn warn_once(&self, role: &str, table: &TableRef, what: &str, message: fmt::Arguments<'_>) {
        let key = format!("{role}\u{0}{table}\u{0}{what}");
        let first = self
            .warned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key);
        if first {
            let file = self
                .path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            tracing::warn!("permissions file {file}: [{role}.{table}]: {message}");
        }
    }
}

/// Parses the filter; a claim that is a number or boolean is retried as a string, since a
/// token's `sub` may be `42` where the column is text (strings are accepted for every type).
fn parse_filter(
    table: &Table,
    filter: Value,
) -> Result<(Value, RowFilter), walcast_filter::FilterError> {
    match parse_where(table, &filter) {
        Ok(parsed) => Ok((filter, parsed)),
        Err(first) => {
            let text = stringify_scalars(&filter);
            if text == filter {
                return Err(first);
            }
            parse_where(table, &text)
                .map(|parsed| (text, parsed))
                .map_err(|_| first)
        }
    }
}

fn stringify_scalars(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Array(items) => Value::Array(items.iter().map(stringify_scalars).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), stringify_scalars(v)))
                .collect(),
        ),
        Value::Null | Value::String(_) => v.clone(),
    }
}

/// Replaces every `"$claims.<name>"` string by the claim's value. A missing or null claim
/// fails (returning its name): substituting null would turn an ownership filter into
/// `IS NULL` and show rows nobody owns.
fn substitute(template: &Value, claims: &Map<String, Value>) -> Result<Value, String> {
    Ok(match template {
        Value::String(s) => match s.strip_prefix(CLAIM_PREFIX) {
            Some(name) => match claim(claims, name) {
                Some(v) if !v.is_null() => v.clone(),
                _ => return Err(name.to_owned()),
            },
            None => template.clone(),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| substitute(item, claims))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, claims)?)))
                .collect::<Result<_, String>>()?,
        ),
        Value::Null | Value::Bool(_) | Value::Number(_) => template.clone(),
    })
}

/// A claim by name, or by a dotted path into nested claims (`$claims.app.org_id`) when no
/// claim has the whole name.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let (first, rest) = name.split_once('.')?;
    let mut v = claims.get(first)?;
    for part in rest.split('.') {
        v = v.as_object()?.get(part)?;
    }
    Some(v)
}

type ParsedFile = (
    BTreeMap<String, Vec<Entry>>,
    BTreeMap<String, MessagePrefixes>,
);

fn parse_file(text: &str) -> anyhow::Result<ParsedFile> {
    let file: toml::Table = text.parse().context("not valid TOML")?;
    let mut roles = BTreeMap::new();
    let mut messages = BTreeMap::new();
    for (role, tables) in file {
        let toml::Value::Table(tables) = tables else {
            anyhow::bail!("`{role}` must be a table of tables: [{role}.<table>]");
        };
        let mut entries = Vec::new();
        for (name, value) in tables {
            if name == MESSAGES_KEY && !value.is_table() {
                messages.insert(role.clone(), parse_prefixes(&role, &value)?);
                continue;
            }
            let toml::Value::Table(body) = value else {
                anyhow::bail!("`{role}.{name}` must be a table: [{role}.{name}]");
            };
            if is_schema_level(&body) {
                // [role.schema.table], which TOML nests one level deeper.
                for (table, body) in body {
                    let table_ref = TableRef::Qualified {
                        schema: name.clone(),
                        name: table,
                    };
                    let toml::Value::Table(body) = body else {
                        anyhow::bail!("[{role}.{table_ref}] must be a table");
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
                    Some(_) => anyhow::bail!("[{role}.\"{name}\"]: expected schema.table"),
                    None => TableRef::Gql(name),
                };
                entries.push(parse_entry(&role, table_ref, body)?);
            }
        }
        roles.insert(role, entries);
    }
    Ok((roles, messages))
}

/// `logical_messages = ["outbox", ...]`, or `["*"]` for every prefix.
fn parse_prefixes(role: &str, value: &toml::Value) -> anyhow::Result<MessagePrefixes> {
    let at = format!("[{role}] {MESSAGES_KEY}");
    let list = value
        .as_array()
        .with_context(|| format!("{at} must be a list of message prefixes (\"*\": all)"))?;
    let prefixes = list
        .iter()
        .map(|p| p.as_str().map(str::to_owned))
        .collect::<Option<std::collections::BTreeSet<String>>>()
        .with_context(|| format!("{at} must be a list of message prefixes (\"*\": all)"))?;
    if prefixes.is_empty() {
        anyhow::bail!("{at} is empty; leave it out to grant no messages");
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

fn parse_entry(role: &str, table: TableRef, body: toml::Table) -> anyhow::Result<Entry> {
    let at = format!("[{role}.{table}]");
    let mut entry = Entry {
        table,
        select: false,
        columns: None,
        filter: None,
        insert: false,
        update: false,
        delete: false,
    };
    let flag = |key: &str, v: &toml::Value| {
        v.as_bool()
            .with_context(|| format!("{at}: `{key}` must be true or false"))
    };
    for (key, value) in body {
        match key.as_str() {
            "select" => entry.select = flag(&key, &value)?,
            "insert" => entry.insert = flag(&key, &value)?,
            "update" => entry.update = flag(&key, &value)?,
            "delete" => entry.delete = flag(&key, &value)?,
            "columns" => {
                let list = value
                    .as_array()
                    .with_context(|| format!("{at}: `columns` must be a list of column names"))?;
                let names = list
                    .iter()
                    .map(|c| c.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                    .with_context(|| format!("{at}: `columns` must be a list of column names"))?;
                if names.is_empty() {
                    anyhow::bail!("{at}: `columns` is empty; leave it out for every column, or set select = false");
                }
                entry.columns = Some(names);
            }
            "filter" => {
                let toml::Value::Table(filter) = value else {
                    anyhow::bail!(
                        "{at}: `filter` must be a table (a WhereInput such as {{ status = \"published\" }})"
                    );
                };
                let filter = toml_to_json(toml::Value::Table(filter));
                check_placeholders(&filter).with_context(|| format!("{at}: `filter`"))?;
                entry.filter = Some(filter);
            }
            other => anyhow::bail!(
                "{at}: unknown key `{other}` (expected one of {})",
                ENTRY_KEYS.join(", ")
            ),
        }
    }
    if !entry.select
        && (entry.columns.is_some()
            || entry.filter.is_some()
            || entry.insert
            || entry.update
            || entry.delete)
    {
        tracing::warn!(
            "permissions file: {at} does not set select = true, so the table stays hidden and its other settings have no effect"
        );
    }
    Ok(entry)
}

fn check_placeholders(v: &Value) -> anyhow::Result<()> {
    match v {
        // Only what looks meant as a placeholder is checked; other `$` text is a literal.
        Value::String(s) if s.starts_with("$claim") => match s.strip_prefix(CLAIM_PREFIX) {
            Some(name) if !name.is_empty() => Ok(()),
            _ => anyhow::bail!("{s:?}: a placeholder is written \"$claims.<name>\""),
        },
        Value::Array(items) => items.iter().try_for_each(check_placeholders),
        Value::Object(map) => map.values().try_for_each(check_placeholders),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use walcast_model::{Column, Kind, PgType, ReplicaIdentity};

    fn column(name: &str, kind: Kind, ty: &str) -> Column {
        Column {
            name: name.into(),
            gql_name: name.into(),
            attnum: 0,
            ty: PgType {
                oid: 0,
                name: ty.into(),
                kind,
                array: false,
                enum_values: vec![],
            },
            sql_type: ty.into(),
            not_null: false,
        }
    }

    fn table(oid: u32, schema: &str, name: &str, gql_name: &str, columns: Vec<Column>) -> Table {
        let columns = columns
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                c.attnum = i as i16 + 1;
                c
            })
            .collect();
        Table {
            oid,
            schema: schema.into(),
            name: name.into(),
            gql_name: gql_name.into(),
            columns,
            primary_key: vec![0],
            replica_identity: ReplicaIdentity::Full,
            foreign_keys: vec![],
        }
    }

    fn catalog() -> Catalog {
        let int = |n: &str| column(n, Kind::Int4, "int4");
        let text = |n: &str| column(n, Kind::Text, "text");
        Catalog::new(vec![
            table(
                100,
                "public",
                "articles",
                "articles",
                vec![int("id"), text("title"), text("status"), int("author_id")],
            ),
            table(
                200,
                "shop",
                "orders",
                "shop_orders",
                vec![int("id"), text("owner")],
            ),
            table(
                50,
                "public",
                "messages",
                "messages",
                vec![int("id"), text("body")],
            ),
        ])
        .expect("catalog")
    }

    fn who(role: &str, origin: Origin, claims: Value) -> Identity {
        Identity {
            role: role.into(),
            claims: claims.as_object().cloned().unwrap_or_default(),
            expires_at: None,
            origin,
        }
    }

    fn jwt(role: &str, claims: Value) -> Identity {
        who(role, Origin::Jwt, claims)
    }

    fn perms(text: &str) -> Permissions {
        let (roles, messages) = parse_file(text).expect("valid permissions file");
        Permissions {
            path: None,
            roles: Some(roles),
            messages,
            warned: Mutex::new(HashSet::new()),
        }
    }

    fn oids(view: &RoleView) -> Vec<u32> {
        view.tables.iter().map(|g| g.table.oid).collect()
    }

    const FILE: &str = r#"
        [reader.articles]
        select = true
        columns = ["id", "title", "status"]
        filter = { status = "published", author_id = "$claims.sub" }

        [public.messages]
        select = true

        [admin.messages]
        select = false

        [writer.articles]
        select = true
        insert = true
        update = true

        [writer.messages]
        insert = true
    "#;

    #[test]
    fn admin_sees_everything_with_or_without_entries() {
        let cat = catalog();
        let admin = jwt("admin", json!({}));
        for p in [Permissions::load(None).expect("no file"), perms(FILE)] {
            let view = p.view(&cat, &admin);
            assert_eq!(oids(&view), vec![50, 100, 200]);
            assert!(view.tables.iter().all(|g| g.columns.is_none()
                && g.filter.is_none()
                && g.insert
                && g.update
                && g.delete));
        }
    }

    #[test]
    fn without_a_file_token_holders_see_everything_and_public_nothing() {
        let cat = catalog();
        let p = Permissions::load(None).expect("no file");
        let all = vec![50, 100, 200];
        assert_eq!(oids(&p.view(&cat, &jwt(DEFAULT_ROLE, json!({})))), all);
        let static_role = who("reader", Origin::StaticToken, json!({"role": "reader"}));
        assert_eq!(oids(&p.view(&cat, &static_role)), all);
        assert!(p.view(&cat, &Identity::public()).tables.is_empty());
        // A static token that says `public` is still the public role.
        let static_public = who(PUBLIC_ROLE, Origin::StaticToken, json!({}));
        assert!(p.view(&cat, &static_public).tables.is_empty());
        // A JWT role nobody granted anything to.
        assert!(p.view(&cat, &jwt("editor", json!({}))).tables.is_empty());
    }

    #[test]
    fn with_a_file_roles_see_only_their_entries() {
        let cat = catalog();
        let p = perms(FILE);
        let reader = p.view(&cat, &jwt("reader", json!({"sub": "42"})));
        assert_eq!(oids(&reader), vec![100]);
        let g = reader.grant(100).expect("articles");
        assert_eq!(g.columns, Some(vec![0, 1, 2]));
        assert!(g.sees_column(2) && !g.sees_column(3));
        assert_eq!(
            g.filter,
            Some(json!({"status": "published", "author_id": "42"}))
        );
        assert!(g.row_filter.is_some());
        assert!(!g.insert && !g.update && !g.delete);
        assert!(reader.grant(50).is_none());
        assert!(reader.grant_by_gql("articles").is_some());

        assert_eq!(oids(&p.view(&cat, &Identity::public())), vec![50]);
        // Roles without entries see nothing once a file exists, however they got their token.
        assert!(p
            .view(&cat, &jwt(DEFAULT_ROLE, json!({})))
            .tables
            .is_empty());
        let static_role = who("ops", Origin::StaticToken, json!({}));
        assert!(p.view(&cat, &static_role).tables.is_empty());

        // select = false (or unset) hides the table whatever else the entry grants.
        let writer = p.view(&cat, &jwt("writer", json!({})));
        assert_eq!(oids(&writer), vec![100]);
        let g = writer.grant(100).expect("articles");
        assert!(g.insert && g.update && !g.delete);
        assert_eq!(g.columns, None);
    }

    #[test]
    fn claim_placeholders_are_substituted_or_hide_the_table() {
        let cat = catalog();
        let p = perms(
            r#"
            [r.articles]
            select = true
            filter = { OR = [{ author_id = "$claims.sub" }, { status_in = "$claims.app.statuses" }] }
            [r.shop_orders]
            select = true
            filter = { owner = "$claims.sub" }
            [r.messages]
            select = true
            filter = { body = "$claims.https://example.com/claims" }
            "#,
        );
        let view = p.view(
            &cat,
            &jwt(
                "r",
                json!({
                    "sub": 42,
                    "app": {"statuses": ["draft", "published"]},
                    "https://example.com/claims": "hello",
                }),
            ),
        );
        assert_eq!(oids(&view), vec![50, 100, 200]);
        assert_eq!(
            view.grant(100).and_then(|g| g.filter.clone()),
            Some(json!({"OR": [{"author_id": 42}, {"status_in": ["draft", "published"]}]}))
        );
        // A number claim against a text column is compared as text.
        assert_eq!(
            view.grant(200).and_then(|g| g.filter.clone()),
            Some(json!({"owner": "42"}))
        );
        assert_eq!(
            view.grant(50).and_then(|g| g.filter.clone()),
            Some(json!({"body": "hello"}))
        );

        // Missing claims fail closed, table by table; so does a null one.
        let view = p.view(&cat, &jwt("r", json!({"sub": "7"})));
        assert_eq!(oids(&view), vec![200]);
        let view = p.view(&cat, &jwt("r", json!({"sub": null})));
        assert!(view.tables.is_empty());
    }

    #[test]
    fn entries_that_do_not_fit_the_catalog_are_skipped() {
        let cat = catalog();
        let p = perms(
            r#"
            [r.gone]
            select = true
            [r.articles]
            select = true
            columns = ["id", "nope", "title", "id"]
            [r.messages]
            select = true
            columns = ["nope"]
            [r.shop_orders]
            select = true
            filter = { colour = "red" }
            "#,
        );
        let view = p.view(&cat, &jwt("r", json!({})));
        assert_eq!(oids(&view), vec![100]);
        assert_eq!(
            view.grant(100).and_then(|g| g.columns.clone()),
            Some(vec![0, 1])
        );
        // Each problem is remembered once, not once per connection.
        let warned = p.warned.lock().expect("lock").len();
        p.view(&cat, &jwt("r", json!({})));
        assert_eq!(p.warned.lock().expect("lock").len(), warned);
        assert_eq!(warned, 5);
    }

    #[test]
    fn tables_may_be_named_by_graphql_or_schema_name() {
        let cat = catalog();
        for text in [
            "[r.shop_orders]\nselect = true\n",
            "[r.\"shop.orders\"]\nselect = true\n",
            "[r.shop.orders]\nselect = true\n",
            "[r.\"public.articles\"]\nselect = true\n",
        ] {
            let view = perms(text).view(&cat, &jwt("r", json!({})));
            assert_eq!(view.tables.len(), 1, "{text}");
        }
        // The same table named twice is ambiguous: hidden.
        let p = perms("[r.articles]\nselect = true\n[r.\"public.articles\"]\nselect = true\ncolumns = [\"id\"]\n");
        assert!(p.view(&cat, &jwt("r", json!({}))).tables.is_empty());
    }

    #[test]
    fn malformed_files_are_refused_naming_the_key_and_file() {
        for (text, needle) in [
            ("[r.articles\n", "not valid TOML"),
            ("r = 1\n", "`r` must be a table of tables"),
            ("[r]\narticles = true\n", "`r.articles` must be a table"),
            (
                "[r.articles]\nselect = true\ncolour = 1\n",
                "unknown key `colour`",
            ),
            (
                "[r.articles]\nselect = \"yes\"\n",
                "`select` must be true or false",
            ),
            (
                "[r.articles]\ncolumns = \"id\"\n",
                "`columns` must be a list",
            ),
            ("[r.articles]\ncolumns = [1]\n", "`columns` must be a list"),
            ("[r.articles]\ncolumns = []\n", "`columns` is empty"),
            ("[r.articles]\nfilter = \"x\"\n", "`filter` must be a table"),
            (
                "[r.articles]\nfilter = { a = \"$claims.\" }\n",
                "$claims.<name>",
            ),
            (
                "[r.articles]\nfilter = { a = [\"$claim.sub\"] }\n",
                "$claims.<name>",
            ),
            (
                "[r.\".articles\"]\nselect = true\n",
                "expected schema.table",
            ),
            (
                "[r.shop.orders]\nselect = true\ncolour = 1\n",
                "[r.shop.orders]: unknown key",
            ),
        ] {
            let mut file = tempfile::NamedTempFile::new().expect("temp file");
            std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
            let err = format!(
                "{:#}",
                Permissions::load(Some(file.path())).expect_err(text)
            );
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(
                err.contains(&file.path().display().to_string()),
                "{text:?}: {err}"
            );
        }
        let err = Permissions::load(Some(Path::new("/nonexistent/permissions.toml")))
            .expect_err("missing file");
        assert!(format!("{err:#}").contains("reading WALCAST_PERMISSIONS_FILE"));
    }

    #[test]
    fn load_and_reload_read_the_file() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, FILE.as_bytes()).expect("write");
        let p = Permissions::load(Some(file.path())).expect("loads");
        let cat = catalog();
        assert_eq!(oids(&p.view(&cat, &Identity::public())), vec![50]);
        std::fs::write(file.path(), "[public.articles]\nselect = true\n").expect("rewrite");
        let p = p.reload().expect("reloads");
        assert_eq!(oids(&p.view(&cat, &Identity::public())), vec![100]);
        assert_eq!(p.path.as_deref(), Some(file.path()));
    }

    #[test]
    fn logical_messages_are_granted_by_prefix() {
        let cat = catalog();
        let p = perms(
            r#"
            [relay]
            logical_messages = ["outbox", "audit"]
            [relay.messages]
            select = true
            [all]
            logical_messages = ["*", "outbox"]
            [reader.articles]
            select = true
            [odd.logical_messages]
            select = true
            "#,
        );
        let relay = p.view(&cat, &jwt("relay", json!({})));
        assert_eq!(oids(&relay), vec![50]);
        assert_eq!(
            relay.messages,
            Some(MessagePrefixes::Only(
                ["audit".to_owned(), "outbox".to_owned()].into()
            ))
        );
        assert_eq!(
            p.view(&cat, &jwt("all", json!({}))).messages,
            Some(MessagePrefixes::All)
        );
        assert_eq!(p.view(&cat, &jwt("reader", json!({}))).messages, None);
        // `[role.logical_messages]` is still a table entry, not a grant.
        assert_eq!(p.view(&cat, &jwt("odd", json!({}))).messages, None);
        let admin = p.view(&cat, &jwt(ADMIN_ROLE, json!({})));
        assert_eq!(admin.messages, Some(MessagePrefixes::All));
        // The field exists or not: part of the schema's shape.
        assert_ne!(admin.shape_key(), RoleView::everything(&cat).shape_key());
        // Without a file, only admin reads messages.
        let none = Permissions::load(None).expect("no file");
        assert_eq!(
            none.view(&cat, &jwt(DEFAULT_ROLE, json!({}))).messages,
            None
        );

        for (text, needle) in [
            ("[r]\nlogical_messages = \"outbox\"\n", "must be a list"),
            ("[r]\nlogical_messages = [1]\n", "must be a list"),
            ("[r]\nlogical_messages = []\n", "is empty"),
        ] {
            let err = format!("{:#}", parse_file(text).expect_err(text));
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn shape_keys_follow_tables_columns_and_mutations_only() {
        let cat = catalog();
        let everything = RoleView::everything(&cat);
        assert_eq!(everything.shape_key(), "50:*:iud;100:*:iud;200:*:iud");
        assert_eq!(RoleView::nothing().shape_key(), "");
        let p = perms(
            r#"
            [a.articles]
            select = true
            filter = { author_id = "$claims.sub" }
            [b.articles]
            select = true
            columns = ["id", "title", "status", "author_id"]
            [c.articles]
            select = true
            columns = ["title", "id"]
            "#,
        );
        let a1 = p.view(&cat, &jwt("a", json!({"sub": "1"})));
        let a2 = p.view(&cat, &jwt("a", json!({"sub": "2"})));
        let b = p.view(&cat, &jwt("b", json!({})));
        let c = p.view(&cat, &jwt("c", json!({})));
        assert_eq!(a1.shape_key(), a2.shape_key());
        // Listing every column is the same shape as listing none.
        assert_eq!(a1.shape_key(), b.shape_key());
        assert_eq!(b.shape_key(), "100:*:");
        assert_eq!(c.shape_key(), "100:0,1:");
    }
}
