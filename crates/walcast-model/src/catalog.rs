//! The part of the Postgres catalog walcast exposes: tables, columns, types, keys, foreign keys.

use std::collections::HashMap;
use std::sync::Arc;

use crate::datum::{Kind, PgType};
use crate::naming::graphql_name;
use crate::value::kind_for_type_name;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading the catalog ({what}): {source}")]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("GraphQL name {name:?} is used by both {first} and {second}; exclude one with WALCAST_EXCLUDE_TABLES")]
    NameClash {
        name: String,
        first: String,
        second: String,
    },
}

/// Which tables to expose.
#[derive(Debug, Clone)]
pub struct TableSelection {
    pub schemas: Vec<String>,
    /// `schema.table` or `table`; empty means all.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// The publication walcast streams. On Postgres 15+ its column lists decide which columns
    /// of a table are exposed (an unpublished column never has a value in an event), and its
    /// row filters are recorded ([`Catalog::published`]). `None`: every column.
    pub publication: Option<String>,
}

impl Default for TableSelection {
    fn default() -> Self {
        TableSelection {
            schemas: vec!["public".into()],
            include: vec![],
            exclude: vec![],
            publication: None,
        }
    }
}

impl TableSelection {
    fn listed(list: &[String], schema: &str, table: &str) -> bool {
        list.iter().any(|entry| match entry.split_once('.') {
            Some((s, t)) => s == schema && t == table,
            None => entry == table,
        })
    }

    pub fn selects(&self, schema: &str, table: &str) -> bool {
        self.schemas.iter().any(|s| s == schema)
            && (self.include.is_empty() || Self::listed(&self.include, schema, table))
            && !Self::listed(&self.exclude, schema, table)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    Default,
    Nothing,
    Full,
    Index,
}

impl ReplicaIdentity {
    pub fn from_code(code: u8) -> Self {
        match code {
            b'f' => ReplicaIdentity::Full,
            b'n' => ReplicaIdentity::Nothing,
            b'i' => ReplicaIdentity::Index,
            _ => ReplicaIdentity::Default,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub gql_name: String,
    pub attnum: i16,
    pub ty: PgType,
    /// The type as SQL spells it (`format_type`), for casts in generated SQL.
    pub sql_type: String,
    pub not_null: bool,
}

#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub name: String,
    /// Column indexes in this table.
    pub columns: Vec<usize>,
    /// The referenced table's oid and column attnums.
    pub target_oid: u32,
    pub target_attnums: Vec<i16>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub gql_name: String,
    pub columns: Vec<Column>,
    /// Column indexes of the primary key, in key order.
    pub primary_key: Vec<usize>,
    pub replica_identity: ReplicaIdentity,
    pub foreign_keys: Vec<ForeignKey>,
}

impl Table {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn column_by_gql(&self, gql_name: &str) -> Option<(usize, &Column)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.gql_name == gql_name)
    }
}

/// How the publication publishes one table (Postgres 15+: `FOR TABLE t (a, b) WHERE (...)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// The publication's column list, in the table's column order; `None`: every column.
    pub columns: Option<Vec<String>>,
    /// Columns of the table left out by the column list: not exposed by walcast.
    pub hidden: Vec<String>,
    /// The row filter as Postgres prints it (`pg_get_expr`), without `WHERE`.
    pub row_filter: Option<String>,
}

/// A snapshot of the exposed part of the catalog. Immutable: a change builds a new one.
#[derive(Debug, Default)]
pub struct Catalog {
    pub tables: Vec<Arc<Table>>,
    by_oid: HashMap<u32, usize>,
    /// Tables the publication publishes with a column list or a row filter, by oid.
    published: HashMap<u32, Published>,
}

impl Catalog {
    pub fn new(tables: Vec<Table>) -> Result<Catalog, CatalogError> {
        let mut seen: HashMap<&str, &Table> = HashMap::new();
        for t in &tables {
            if let Some(first) = seen.insert(&t.gql_name, t) {
                return Err(CatalogError::NameClash {
                    name: t.gql_name.clone(),
                    first: first.qualified_name(),
                    second: t.qualified_name(),
                });
            }
        }
        let tables: Vec<Arc<Table>> = tables.into_iter().map(Arc::new).collect();
        let by_oid = tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();
        Ok(Catalog {
            tables,
            by_oid,
            published: HashMap::new(),
        })
    }

    /// The column list and row filter the publication has for table `oid`; `None` when it
    /// publishes every column of every row (or the server predates Postgres 15).
    pub fn published(&self, oid: u32) -> Option<&Published> {
        self.published.get(&oid)
    }

    pub fn table_by_oid(&self, oid: u32) -> Option<&Arc<Table>> {
        self.by_oid.get(&oid).and_then(|&i| self.tables.get(i))
    }

    pub fn table_by_gql(&self, gql_name: &str) -> Option<&Arc<Table>> {
        self.tables.iter().find(|t| t.gql_name == gql_name)
    }

    pub fn table_by_name(&self, schema: &str, name: &str) -> Option<&Arc<Table>> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
    }

    /// Reads the catalog of the selected tables.
    pub async fn load(
        client: &tokio_postgres::Client,
        selection: &TableSelection,
    ) -> Result<Catalog, CatalogError> {
        let q = |what| move |source| CatalogError::Query { what, source };
        let rows = client
            .query(
                "SELECT c.oid, n.nspname::text, c.relname::text, c.relreplident::text \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY($1) \
                 ORDER BY n.nspname, c.relname",
                &[&selection.schemas],
            )
            .await
            .map_err(q("tables"))?;
        let mut tables: Vec<Table> = Vec::new();
        for row in rows {
            let schema: String = row.get(1);
            let name: String = row.get(2);
            if !selection.selects(&schema, &name) {
                continue;
            }
            let ident: String = row.get(3);
            let gql_name = if schema == "public" {
                graphql_name(&name)
            } else {
                graphql_name(&format!("{schema}_{name}"))
            };
            tables.push(Table {
                oid: row.get(0),
                schema,
                name,
                gql_name,
                columns: vec![],
                primary_key: vec![],
                replica_identity: ReplicaIdentity::from_code(ident.bytes().next().unwrap_or(b'd')),
                foreign_keys: vec![],
            });
        }
        let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
        let types = TypeMap::load(client).await?;
        let publication = match &selection.publication {
            Some(name) => PublicationRules::load(client, name, &oids).await?,
            None => PublicationRules::default(),
        };

        let cols = client
            .query(
                "SELECT a.attrelid, a.attnum, a.attname::text, a.atttypid, a.attnotnull, \
                 format_type(a.atttypid, NULL) \
                 FROM pg_attribute a \
                 WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attrelid, a.attnum",
                &[&oids],
            )
            .await
            .map_err(q("columns"))?;
        let index: HashMap<u32, usize> =
            tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();
        let mut published: HashMap<u32, Published> = HashMap::new();
        for row in cols {
            let relid: u32 = row.get(0);
            let Some(&ti) = index.get(&relid) else {
                continue;
            };
            let name: String = row.get(2);
            let type_oid: u32 = row.get(3);
            let attnum: i16 = row.get(1);
            if let Some(rule) = publication.rules.get(&relid) {
                let entry = published.entry(relid).or_insert_with(|| Published {
                    columns: rule.attnums.as_ref().map(|_| Vec::new()),
                    hidden: Vec::new(),
                    row_filter: rule.row_filter.clone(),
                });
                match &rule.attnums {
                    // Left out of the column list: pgoutput never sends it, so it is not exposed.
                    Some(list) if !list.contains(&attnum) => {
                        entry.hidden.push(name);
                        continue;
                    }
                    Some(_) => {
                        if let Some(columns) = entry.columns.as_mut() {
                            columns.push(name.clone());
                        }
                    }
                    None => {}
                }
            }
            tables[ti].columns.push(Column {
                gql_name: graphql_name(&name),
                name,
                attnum,
                ty: types.resolve(type_oid),
                not_null: row.get(4),
                sql_type: row.get(5),
            });
        }

        let cons = client
            .query(
                "SELECT c.conrelid, c.contype::text, c.conname::text, c.conkey, c.confrelid, c.confkey \
                 FROM pg_constraint c \
                 WHERE c.conrelid = ANY($1) AND c.contype IN ('p', 'f') \
                 ORDER BY c.conrelid, c.conname",
                &[&oids],
            )
            .await
            .map_err(q("constraints"))?;
        for row in cons {
            let relid: u32 = row.get(0);
            let Some(&ti) = index.get(&relid) else {
                continue;
            };
            let table = &mut tables[ti];
            let kind: String = row.get(1);
            let conkey: Vec<i16> = row.get::<_, Option<Vec<i16>>>(3).unwrap_or_default();
            let cols: Vec<usize> = conkey
                .iter()
                .filter_map(|n| table.columns.iter().position(|c| c.attnum == *n))
                .collect();
            if cols.len() != conkey.len() {
                continue;
            }
            if kind == "p" {
                table.primary_key = cols;
            } else {
                table.foreign_keys.push(ForeignKey {
                    name: row.get(2),
                    columns: cols,
                    target_oid: row.get(4),
                    target_attnums: row.get::<_, Option<Vec<i16>>>(5).unwrap_or_default(),
                });
            }
        }
        let mut catalog = Catalog::new(tables)?;
        catalog.published = published;
        Ok(catalog)
    }
}

/// One table's entry in the publication: column list (attnums) and row filter.
struct PublicationRule {
    attnums: Option<Vec<i16>>,
    row_filter: Option<String>,
}

/// The column lists and row filters of a publication (Postgres 15+), by table oid. Tables
/// published in full and without a filter have no entry.
#[derive(Default)]
struct PublicationRules {
    rules: HashMap<u32, PublicationRule>,
}

impl PublicationRules {
    async fn load(
        client: &tokio_postgres::Client,
        publication: &str,
        oids: &[u32],
    ) -> Result<PublicationRules, CatalogError> {
        let q = |what| move |source| CatalogError::Query { what, source };
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(q("server version"))?
            .get(0);
        // Column lists and row filters (pg_publication_rel.prattrs, prqual) exist from 15 on.
        if version < 150_000 {
            return Ok(PublicationRules::default());
        }
        // `FOR TABLES IN SCHEMA` and `FOR ALL TABLES` publish whole tables: no row here.
        let rows = client
            .query(
                "SELECT r.prrelid, r.prattrs::int2[], pg_get_expr(r.prqual, r.prrelid) \
                 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid \
                 WHERE p.pubname = $1 AND r.prrelid = ANY($2) \
                 AND (r.prattrs IS NOT NULL OR r.prqual IS NOT NULL)",
                &[&publication, &oids],
            )
            .await
            .map_err(q("publication column lists and row filters"))?;
        let rules = rows
            .into_iter()
            .map(|row| {
                (
                    row.get::<_, u32>(0),
                    PublicationRule {
                        attnums: row.get(1),
                        row_filter: row.get(2),
                    },
                )
            })
            .collect();
        Ok(PublicationRules { rules })
    }
}

struct PgTypeRow {
    name: String,
    typtype: u8,
    elem: u32,
    base: u32,
    category: u8,
}

/// Every type of the database, to resolve domains, arrays and enums.
struct TypeMap {
    types: HashMap<u32, PgTypeRow>,
    enums: HashMap<u32, Vec<String>>,
}

impl TypeMap {
    async fn load(client: &tokio_postgres::Client) -> Result<TypeMap, CatalogError> {
        let rows = client
            .query(
                "SELECT oid, typname::text, typtype::text, typelem, typbasetype, typcategory::text FROM pg_type",
                &[],
            )
            .await
            .map_err(|source| CatalogError::Query { what: "types", source })?;
        let first = |s: String| s.bytes().next().unwrap_or(b' ');
        let types = rows
            .into_iter()
            .map(|r| {
                (
                    r.get::<_, u32>(0),
                    PgTypeRow {
                        name: r.get(1),
                        typtype: first(r.get(2)),
                        elem: r.get(3),
                        base: r.get(4),
                        category: first(r.get(5)),
                    },
                )
            })
            .collect();
        let mut enums: HashMap<u32, Vec<String>> = HashMap::new();
        let rows = client
            .query(
                "SELECT enumtypid, enumlabel::text FROM pg_enum ORDER BY enumtypid, enumsortorder",
                &[],
            )
            .await
            .map_err(|source| CatalogError::Query {
                what: "enums",
                source,
            })?;
        for r in rows {
            enums.entry(r.get(0)).or_default().push(r.get(1));
        }
        Ok(TypeMap { types, enums })
    }

    /// Domains resolve to their base type; arrays to their element kind with `array` set.
    fn resolve(&self, oid: u32) -> PgType {
        let mut oid = oid;
        let original = oid;
        let mut array = false;
        for _ in 0..16 {
            let Some(t) = self.types.get(&oid) else { break };
            if t.typtype == b'd' && t.base != 0 {
                oid = t.base;
                continue;
            }
            if t.category == b'A' && t.elem != 0 && !array {
                array = true;
                oid = t.elem;
                continue;
            }
            let (kind, enum_values) = if t.typtype == b'e' {
                (
                    Kind::Enum,
                    self.enums.get(&oid).cloned().unwrap_or_default(),
                )
            } else {
                (kind_for_type_name(&t.name), vec![])
            };
            let name = self
                .types
                .get(&original)
                .map(|t| t.name.clone())
                .unwrap_or_else(|| t.name.clone());
            return PgType {
                oid: original,
                name,
                kind,
                array,
                enum_values,
            };
        }
        PgType {
            oid: original,
            name: format!("oid {original}"),
            kind: Kind::Other,
            array,
            enum_values: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TableSelection;

    #[test]
    fn selection_honours_schemas_include_and_exclude() {
        let sel = TableSelection {
            schemas: vec!["public".into(), "app".into()],
            include: vec![],
            exclude: vec!["secrets".into(), "app.audit".into()],
            publication: None,
        };
        assert!(sel.selects("public", "messages"));
        assert!(sel.selects("app", "messages"));
        assert!(!sel.selects("other", "messages"));
        assert!(!sel.selects("public", "secrets"));
        assert!(!sel.selects("app", "audit"));
        assert!(sel.selects("public", "audit"));
        let only = TableSelection {
            include: vec!["public.messages".into()],
            ..TableSelection::default()
        };
        assert!(only.selects("public", "messages"));
        assert!(!only.selects("public", "users"));
    }
}
