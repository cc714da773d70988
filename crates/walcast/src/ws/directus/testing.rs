//! A small blog catalog for the codec's unit tests: `users`, `articles` (author_id to users) and
//! `comments` (article_id to articles), with every column visible.

use std::sync::Arc;

use walcast_graphql::{full_view, SchemaInfo};
use walcast_model::{Catalog, Column, ForeignKey, Kind, PgType, ReplicaIdentity, Table};

fn col(name: &str, kind: Kind, not_null: bool) -> Column {
    let (oid, ty) = match kind {
        Kind::Int4 => (23, "int4"),
        Kind::Bool => (16, "bool"),
        Kind::Float8 => (701, "float8"),
        _ => (25, "text"),
    };
    Column {
        name: name.into(),
        gql_name: name.into(),
        attnum: 0,
        ty: PgType {
            oid,
            name: ty.into(),
            kind,
            array: false,
            enum_values: vec![],
        },
        sql_type: ty.into(),
        not_null,
    }
}

fn table(oid: u32, name: &str, columns: Vec<Column>, fks: Vec<(usize, u32)>) -> Table {
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
        schema: "public".into(),
        name: name.into(),
        gql_name: name.into(),
        columns,
        primary_key: vec![0],
        replica_identity: ReplicaIdentity::Default,
        foreign_keys: fks
            .into_iter()
            .map(|(column, target_oid)| ForeignKey {
                name: format!("{name}_fk{column}"),
                columns: vec![column],
                target_oid,
                target_attnums: vec![1],
            })
            .collect(),
    }
}

/// The blog's catalog: `users`, `articles` and `comments`.
pub fn catalog() -> Arc<Catalog> {
    let users = table(
        1,
        "users",
        vec![col("id", Kind::Int4, true), col("name", Kind::Text, true)],
        vec![],
    );
    let articles = table(
        2,
        "articles",
        vec![
            col("id", Kind::Int4, true),
            col("title", Kind::Text, true),
            col("status", Kind::Text, true),
            col("author_id", Kind::Int4, false),
        ],
        vec![(3, 1)],
    );
    let comments = table(
        3,
        "comments",
        vec![
            col("id", Kind::Int4, true),
            col("article_id", Kind::Int4, true),
            col("body", Kind::Text, false),
        ],
        vec![(1, 2)],
    );
    Arc::new(Catalog::new(vec![users, articles, comments]).expect("catalog"))
}

/// The schema information of the blog, as every role of `admin` sees it.
pub fn blog() -> SchemaInfo {
    let catalog = catalog();
    let schema = walcast_graphql::build_schema(catalog.clone(), &full_view(&catalog), true, false);
    schema.query_info.clone()
}
