//! Hand-built catalogs and events for tests that need no database.
#![allow(dead_code)]

use std::sync::Arc;

use walcast_model::{
    Catalog, Column, Cursor, Event, ForeignKey, Kind, Op, PgType, ReplicaIdentity, Row, Table,
};

pub fn column(name: &str, attnum: i16, kind: Kind, type_name: &str, sql_type: &str) -> Column {
    Column {
        name: name.into(),
        gql_name: name.into(),
        attnum,
        ty: PgType {
            oid: 0,
            name: type_name.into(),
            kind,
            array: false,
            enum_values: vec![],
        },
        sql_type: sql_type.into(),
        not_null: false,
    }
}

/// A table from (name, kind) pairs; the first column is the primary key.
pub fn table(oid: u32, name: &str, cols: &[(&str, Kind)]) -> Table {
    let columns = cols
        .iter()
        .enumerate()
        .map(|(i, (n, k))| {
            let (tn, st) = match k {
                Kind::Int4 => ("int4", "integer"),
                Kind::Int8 => ("int8", "bigint"),
                Kind::Numeric => ("numeric", "numeric"),
                Kind::Float8 => ("float8", "double precision"),
                Kind::Bool => ("bool", "boolean"),
                Kind::TimestampTz => ("timestamptz", "timestamp with time zone"),
                Kind::Date => ("date", "date"),
                Kind::Uuid => ("uuid", "uuid"),
                Kind::Json => ("json", "json"),
                Kind::Jsonb => ("jsonb", "jsonb"),
                _ => ("text", "text"),
            };
            column(n, i as i16 + 1, *k, tn, st)
        })
        .collect();
    Table {
        oid,
        schema: "public".into(),
        name: name.into(),
        gql_name: name.into(),
        columns,
        primary_key: vec![0],
        replica_identity: ReplicaIdentity::Full,
        foreign_keys: vec![],
    }
}

pub fn fk(name: &str, columns: &[usize], target_oid: u32, target_attnums: &[i16]) -> ForeignKey {
    ForeignKey {
        name: name.into(),
        columns: columns.to_vec(),
        target_oid,
        target_attnums: target_attnums.to_vec(),
    }
}

/// users, posts (author_id → users), follows (follower_id, followed_id → users), and
/// comments (post → posts, Directus style).
pub fn blog() -> Catalog {
    let users = table(1, "users", &[("id", Kind::Int4), ("name", Kind::Text)]);
    let mut posts = table(
        2,
        "posts",
        &[
            ("id", Kind::Int4),
            ("author_id", Kind::Int4),
            ("title", Kind::Text),
        ],
    );
    posts
        .foreign_keys
        .push(fk("posts_author_id_fkey", &[1], 1, &[1]));
    let mut follows = table(
        3,
        "follows",
        &[("follower_id", Kind::Int4), ("followed_id", Kind::Int4)],
    );
    follows.primary_key = vec![0, 1];
    follows
        .foreign_keys
        .push(fk("follows_followed_id_fkey", &[1], 1, &[1]));
    follows
        .foreign_keys
        .push(fk("follows_follower_id_fkey", &[0], 1, &[1]));
    let mut comments = table(
        4,
        "comments",
        &[
            ("id", Kind::Int4),
            ("post", Kind::Int4),
            ("body", Kind::Text),
        ],
    );
    comments
        .foreign_keys
        .push(fk("comments_post_fkey", &[1], 2, &[1]));
    match Catalog::new(vec![users, posts, follows, comments]) {
        Ok(c) => c,
        Err(e) => panic!("catalog: {e}"),
    }
}

pub fn event(table: &Arc<Table>, op: Op, new: Option<Row>, old: Option<Row>) -> Event {
    Event {
        table: table.clone(),
        op,
        key: String::new(),
        new,
        old,
        updated: None,
        cursor: Cursor::default(),
        xid: 1,
        commit_time: 0,
        batch: Default::default(),
    }
}
