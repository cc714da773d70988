//! The run-time type information juniper passes to every `meta` and `resolve` call: which
//! tables and columns exist, with their GraphQL names computed once.

use std::sync::{Arc, OnceLock, Weak};

use juniper::ArcStr;
use walcast_access::Writes;
use walcast_filter::{Relation, RelationKind};
use walcast_model::{Catalog, Table};

use crate::scalars::ScalarType;

/// The Subscription field of logical messages. A leading `_` keeps it apart from the common
/// table names; a table that maps to this name keeps it (see [`SchemaInfo::has_messages`]).
pub const MESSAGE_FIELD: &str = "_logical_message";
/// The type of a logical message.
pub const MESSAGE_TYPE: &str = "_LogicalMessage";

/// A column as one role sees it.
#[derive(Debug)]
pub struct ColumnInfo {
    pub index: usize,
    pub name: ArcStr,
    pub scalar: ScalarType,
    pub array: bool,
    pub not_null: bool,
}

/// A table as one role sees it, with the names of every GraphQL type built from it.
#[derive(Debug)]
pub struct TableInfo {
    pub table: Arc<Table>,
    /// The catalog the view was built from (relation filters resolve against it).
    pub catalog: Arc<Catalog>,
    pub columns: Vec<ColumnInfo>,
    pub name: ArcStr,
    pub mutated: ArcStr,
    pub payload: ArcStr,
    pub previous: ArcStr,
    pub where_input: ArcStr,
    pub sub_where_input: ArcStr,
    pub by_id: ArcStr,
    pub input: ArcStr,
    pub mutated_key: ArcStr,
    /// Which item mutations the view allows on this table.
    pub grants: Writes,
    /// Relations to other tables of the same view; set once every table's info exists.
    pub relations: OnceLock<Vec<RelationInfo>>,
}

/// A relation field: its catalog relation and the related table as this view sees it.
#[derive(Debug)]
pub struct RelationInfo {
    pub relation: Relation,
    pub target: Weak<TableInfo>,
    /// The field's name on the row type (`_rel` appended when a column has the name).
    pub name: ArcStr,
}

impl RelationInfo {
    pub fn target(&self) -> Option<Arc<TableInfo>> {
        self.target.upgrade()
    }

    pub fn is_to_one(&self) -> bool {
        self.relation.kind == RelationKind::ManyToOne
    }
}

impl TableInfo {
    /// `visible`: the column indexes this role may read (None: all).
    pub fn new(
        catalog: Arc<Catalog>,
        table: Arc<Table>,
        visible: Option<&[usize]>,
        grants: Writes,
    ) -> TableInfo {
        let single_pk = match table.primary_key.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        let columns = table
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| visible.is_none_or(|v| v.contains(i)))
            .map(|(i, c)| ColumnInfo {
                index: i,
                name: c.gql_name.as_str().into(),
                scalar: ScalarType::of(c, single_pk == Some(i)),
                array: c.ty.array,
                not_null: c.not_null || single_pk == Some(i),
            })
            .collect();
        let n = &table.gql_name;
        TableInfo {
            name: n.as_str().into(),
            mutated: format!("{n}_mutated").into(),
            payload: format!("{n}SubscriptionPayload").into(),
            previous: format!("{n}PreviousValues").into(),
            where_input: format!("{n}WhereInput").into(),
            sub_where_input: format!("{n}SubscriptionWhereInput").into(),
            by_id: format!("{n}_by_id").into(),
            input: format!("{n}_input").into(),
            mutated_key: format!("{n}_mutated_key").into(),
            grants,
            columns,
            table,
            catalog,
            relations: OnceLock::new(),
        }
    }

    pub fn column(&self, gql_name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| &*c.name == gql_name)
    }

    pub fn relations(&self) -> &[RelationInfo] {
        self.relations.get().map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn relation(&self, name: &str) -> Option<&RelationInfo> {
        self.relations().iter().find(|r| &*r.name == name)
    }

    /// Links every table of a view to the related tables the same view has: a relation whose
    /// target or key columns the view hides does not exist for it.
    pub fn link(catalog: &Catalog, tables: &[Arc<TableInfo>]) {
        for t in tables {
            let visible = |info: &TableInfo, cols: &[usize]| {
                cols.iter()
                    .all(|c| info.columns.iter().any(|ci| ci.index == *c))
            };
            let rels = walcast_filter::relations(catalog, &t.table)
                .into_iter()
                .filter_map(|r| {
                    let target = tables.iter().find(|x| x.table.oid == r.target_oid)?;
                    if !visible(t, &r.local_columns) || !visible(target, &r.remote_columns) {
                        return None;
                    }
                    let name: ArcStr = r.name.as_str().into();
                    Some(RelationInfo {
                        target: Arc::downgrade(target),
                        name,
                        relation: r,
                    })
                })
                .collect();
            let _ = t.relations.set(rels);
        }
    }

    /// The single-column primary key, if the role can see it.
    pub fn id_column(&self) -> Option<&ColumnInfo> {
        match self.table.primary_key.as_slice() {
            [one] => self.columns.iter().find(|c| c.index == *one),
            _ => None,
        }
    }
}

/// Everything one schema (one role's view) is built from.
#[derive(Debug, Clone)]
pub struct SchemaInfo {
    pub catalog: Arc<Catalog>,
    pub tables: Vec<Arc<TableInfo>>,
    pub mutations: bool,
    /// The view may read logical messages (see [`SchemaInfo::has_messages`]).
    pub messages: bool,
}

impl SchemaInfo {
    pub fn has_mutations(&self) -> bool {
        self.mutations && self.tables.iter().any(|t| t.grants.any())
    }

    /// Whether the Subscription root has `_logical_message`. A table whose GraphQL name is the
    /// field's or its type's keeps that name; the messages field then does not exist.
    pub fn has_messages(&self) -> bool {
        self.messages
            && self
                .tables
                .iter()
                .all(|t| &*t.name != MESSAGE_FIELD && &*t.name != MESSAGE_TYPE)
    }

    pub fn table(&self, gql_name: &str) -> Option<&Arc<TableInfo>> {
        self.tables.iter().find(|t| &*t.name == gql_name)
    }

    /// The table a root field names, and which family of field it is.
    pub fn root_field(&self, field: &str) -> Option<(RootField, &Arc<TableInfo>)> {
        if let Some(t) = self.table(field) {
            return Some((RootField::Table, t));
        }
        if let Some(t) = field.strip_suffix("_mutated").and_then(|n| self.table(n)) {
            return Some((RootField::Mutated, t));
        }
        field
            .strip_suffix("_by_id")
            .and_then(|n| self.table(n))
            .map(|t| (RootField::ById, t))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootField {
    Table,
    Mutated,
    ById,
}
