//! In-memory evaluation and the SQL the filter compiles to agree, on a real Postgres: for random
//! rows (NULLs included) and random filters (every operator, nested AND/OR/NOT), the
//! three-valued result in memory equals the one Postgres computes. Relation conditions are
//! checked against a reference evaluation over the tables' rows held in memory.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};
use walcast_filter::sql::SqlBuilder;
use walcast_filter::{parse_where, parse_where_in, relation_sql, Quantifier, RowFilter, Truth};
use walcast_model::value::decode_text;
use walcast_model::{Catalog, Datum, Row, Table, TableSelection};
use walcast_pgcluster::PgCluster;

const SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; \
    SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3;";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn connect(cluster: &PgCluster) -> Client {
    let (client, conn) = tokio_postgres::connect(&cluster.url("postgres"), NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.batch_execute(SESSION).await.expect("session");
    client
}

async fn load_table(client: &Client, name: &str) -> (Catalog, Arc<Table>) {
    let catalog = Catalog::load(client, &TableSelection::default())
        .await
        .expect("catalog");
    let table = catalog
        .table_by_name("public", name)
        .expect("table in catalog")
        .clone();
    (catalog, table)
}

fn refs(params: &[Option<String>]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// Every row of a table, decoded from Postgres' text output as the WAL would carry it.
async fn rows(client: &Client, table: &Table, order: &str) -> Vec<Row> {
    let cols: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("\"{}\"::text", c.name))
        .collect();
    let sql = format!(
        "SELECT {} FROM public.\"{}\" ORDER BY {order}",
        cols.join(", "),
        table.name
    );
    let out = client.query(&sql, &[]).await.expect("select rows");
    out.iter()
        .map(|r| {
            table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| match r.get::<_, Option<String>>(i) {
                    Some(text) => decode_text(&c.ty, &text).expect("decodes"),
                    None => Datum::Null,
                })
                .collect()
        })
        .collect()
}

fn truth(v: Option<bool>) -> Truth {
    match v {
        Some(true) => Truth::True,
        Some(false) => Truth::False,
        None => Truth::Unknown,
    }
}

// ------------------------------------------------------------------------------------------
// Scalar operators
// ------------------------------------------------------------------------------------------

struct Col {
    name: &'static str,
    sql: &'static str,
    /// Stored values, in SQL input form.
    stored: &'static [&'static str],
    ordered: bool,
    text: bool,
}

const COLS: &[Col] = &[
    Col {
        name: "i4",
        sql: "int4",
        stored: &["-2", "0", "1", "2", "2147483647"],
        ordered: true,
        text: false,
    },
    Col {
        name: "i8",
        sql: "int8",
        stored: &["-1", "0", "1", "9007199254740993", "-9223372036854775808"],
        ordered: true,
        text: false,
    },
    Col {
        name: "num",
        sql: "numeric",
        stored: &[
            "0",
            "1.50",
            "-2",
            "NaN",
            "Infinity",
            "-Infinity",
            "0.001",
            "12345678901234567890.5",
        ],
        ordered: true,
        text: false,
    },
    Col {
        name: "f8",
        sql: "float8",
        stored: &[
            "0",
            "-0",
            "1.5",
            "NaN",
            "Infinity",
            "-Infinity",
            "0.1",
            "1e300",
            "-2",
        ],
        ordered: true,
        text: false,
    },
    Col {
        name: "txt",
        sql: "text",
        stored: &["", "a", "b", "ab", "ba", "aab", "é", "aé", "A"],
        ordered: true,
        text: true,
    },
    Col {
        name: "b",
        sql: "bool",
        stored: &["true", "false"],
        ordered: false,
        text: false,
    },
    Col {
        name: "ts",
        sql: "timestamptz",
        stored: &[
            "2024-01-01 00:00:00+00",
            "2024-01-01 00:00:00.5+00",
            "1999-12-31 23:59:59+00",
            "infinity",
            "-infinity",
            "0044-03-15 12:00:00+00 BC",
        ],
        ordered: true,
        text: false,
    },
    Col {
        name: "d",
        sql: "date",
        stored: &[
            "2024-01-01",
            "2024-01-02",
            "infinity",
            "-infinity",
            "0044-03-15 BC",
        ],
        ordered: true,
        text: false,
    },
    Col {
        name: "u",
        sql: "uuid",
        stored: &[
            "00000000-0000-0000-0000-000000000001",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
        ],
        ordered: true,
        text: false,
    },
    Col {
        name: "mood",
        sql: "mood",
        stored: &["sad", "ok", "happy"],
        ordered: true,
        text: false,
    },
];

/// Client literals per column: the stored values' spellings and others that read the same.
fn literals(col: usize) -> Vec<Value> {
    match COLS[col].name {
        "i4" => vec![json!(-2), json!(0), json!(1), json!("2"), json!(3)],
        "i8" => vec![
            json!("9007199254740993"),
            json!(9007199254740992i64),
            json!(0),
            json!(-1),
            json!("1"),
        ],
        "num" => vec![
            json!(1.5),
            json!("1.50"),
            json!("NaN"),
            json!("Infinity"),
            json!("-2"),
            json!("1e-3"),
            json!(0),
            json!("-Infinity"),
        ],
        "f8" => vec![
            json!(0),
            json!(-0.0),
            json!(1.5),
            json!("NaN"),
            json!("Infinity"),
            json!("-Infinity"),
            json!(0.1),
            json!(1e300),
            json!(-2),
        ],
        "txt" => vec![
            json!(""),
            json!("a"),
            json!("b"),
            json!("ab"),
            json!("é"),
            json!("A"),
            json!("aab"),
        ],
        "b" => vec![json!(true), json!(false)],
        "ts" => vec![
            json!("2024-01-01T00:00:00Z"),
            json!("2024-01-01T01:00:00.5+01:00"),
            json!("1999-12-31 23:59:59+00"),
            json!("infinity"),
            json!("-infinity"),
            json!("0044-03-15 12:00:00+00 BC"),
        ],
        "d" => vec![
            json!("2024-01-01"),
            json!("2024-01-02"),
            json!("infinity"),
            json!("0044-03-15 BC"),
        ],
        "u" => vec![
            json!("00000000-0000-0000-0000-000000000001"),
            json!("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
            json!("{ffffffff-ffff-ffff-ffff-ffffffffffff}"),
        ],
        _ => vec![json!("sad"), json!("ok"), json!("happy")],
    }
}

fn literal(col: usize) -> impl Strategy<Value = Value> {
    proptest::sample::select(literals(col))
}

fn stored_row() -> impl Strategy<Value = Vec<Option<String>>> {
    COLS.iter()
        .map(|c| {
            proptest::option::weighted(
                0.85,
                proptest::sample::select(c.stored).prop_map(str::to_owned),
            )
        })
        .collect::<Vec<_>>()
}

/// One `key: value` condition on a column.
fn condition() -> impl Strategy<Value = (String, Value)> {
    (0..COLS.len()).prop_flat_map(|col| {
        let c = &COLS[col];
        let mut suffixes = vec!["", "_not", "_in", "_not_in"];
        if c.ordered {
            suffixes.extend(["_lt", "_lte", "_gt", "_gte"]);
        }
        if c.text {
            suffixes.extend([
                "_contains",
                "_not_contains",
                "_starts_with",
                "_not_starts_with",
                "_ends_with",
                "_not_ends_with",
            ]);
        }
        (proptest::sample::select(suffixes), any::<u8>()).prop_flat_map(move |(suffix, coin)| {
            let key = format!("{}{suffix}", COLS[col].name);
            let value: BoxedStrategy<Value> = match suffix {
                "_in" | "_not_in" => proptest::collection::vec(
                    prop_oneof![6 => literal(col), 1 => Just(Value::Null)],
                    0..4,
                )
                .prop_map(Value::Array)
                .boxed(),
                "" | "_not" if coin < 25 => Just(Value::Null).boxed(),
                _ => literal(col).boxed(),
            };
            value.prop_map(move |v| (key.clone(), v))
        })
    })
}

fn where_input() -> impl Strategy<Value = Value> {
    let leaf = proptest::collection::vec(condition(), 1..3)
        .prop_map(|conds| Value::Object(conds.into_iter().collect::<Map<_, _>>()));
    leaf.prop_recursive(3, 16, 3, |inner| {
        (
            proptest::sample::select(vec!["AND", "OR", "NOT"]),
            proptest::collection::vec(inner, 0..3),
            proptest::option::of(condition()),
        )
            .prop_map(|(op, items, extra)| {
                let mut m = Map::new();
                m.insert(op.to_owned(), Value::Array(items));
                if let Some((k, v)) = extra {
                    m.insert(k, v);
                }
                Value::Object(m)
            })
    })
}

#[test]
fn memory_and_sql_agree_on_every_operator() {
    let cluster = PgCluster::start().expect("postgres cluster");
    let rt = runtime();
    let client = rt.block_on(async {
        let client = connect(&cluster).await;
        let cols: Vec<String> = COLS
            .iter()
            .map(|c| format!("{} {}", c.name, c.sql))
            .collect();
        client
            .batch_execute(&format!(
                "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); \
                 CREATE TABLE t (id int4 PRIMARY KEY, {})",
                cols.join(", ")
            ))
            .await
            .expect("create table");
        client
    });
    let (_, table) = rt.block_on(load_table(&client, "t"));
    let insert = format!(
        "INSERT INTO t VALUES ($1::text::int4, {})",
        COLS.iter()
            .enumerate()
            .map(|(i, c)| format!("${}::text::{}", i + 2, c.sql))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let next_id = AtomicI32::new(1);
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    let result = runner.run(&(stored_row(), where_input()), |(stored, input)| {
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let filter = parse_where(&table, &input)
            .map_err(|e| TestCaseError::fail(format!("{input}: {e}")))?;
        let mut b = SqlBuilder::new(&table, "t");
        let cond = b.filter(&filter);
        let mut params = b.params;
        params.push(Some(id.to_string()));
        let sql = format!(
            "SELECT ({cond})::bool FROM public.t AS t WHERE t.id = ${}::text::int4",
            params.len()
        );
        let (row, in_sql) = rt
            .block_on(async {
                let mut p = vec![Some(id.to_string())];
                p.extend(stored.iter().cloned());
                client.execute(&insert, &refs(&p)).await.expect("insert");
                let row = rows(&client, &table, "id")
                    .await
                    .into_iter()
                    .find(|r| r.first() == Some(&Datum::Int(i64::from(id))))
                    .expect("inserted row");
                let got = client
                    .query_one(&sql, &refs(&params))
                    .await
                    .map_err(|e| format!("{sql}: {e}"))?;
                Ok::<_, String>((row, truth(got.get::<_, Option<bool>>(0))))
            })
            .map_err(TestCaseError::fail)?;
        let in_memory = filter.evaluate_with(Some(&table), &row, &mut |_| Truth::Unknown);
        prop_assert_eq!(
            in_memory,
            in_sql,
            "\nwhere: {}\nrow: {:?}\nsql: {}\nparams: {:?}",
            input,
            row,
            sql,
            params
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ------------------------------------------------------------------------------------------
// Relations
// ------------------------------------------------------------------------------------------

const BLOG: &str = "
    CREATE TABLE users (id int4 PRIMARY KEY, name text);
    CREATE TABLE posts (id int4 PRIMARY KEY, author_id int4 REFERENCES users, title text);
    CREATE TABLE follows (
        follower_id int4 NOT NULL REFERENCES users,
        followed_id int4 NOT NULL REFERENCES users,
        PRIMARY KEY (follower_id, followed_id));";

struct Blog {
    tables: Vec<(Arc<Table>, Vec<Row>)>,
}

impl Blog {
    fn rows_of(&self, oid: u32) -> &[Row] {
        self.tables
            .iter()
            .find(|(t, _)| t.oid == oid)
            .map(|(_, r)| r.as_slice())
            .unwrap_or(&[])
    }

    /// Reference semantics: a relation condition over the related rows held in memory.
    fn eval(&self, table: &Table, filter: &RowFilter, row: &Row) -> Truth {
        filter.evaluate_with(Some(table), row, &mut |node| {
            let RowFilter::Relation {
                relation,
                kind,
                filter,
            } = node
            else {
                return Truth::Unknown;
            };
            let rel = &relation.relation;
            let related: Vec<&Row> = self
                .rows_of(rel.target_oid)
                .iter()
                .filter(|r| {
                    rel.local_columns
                        .iter()
                        .zip(&rel.remote_columns)
                        .all(|(l, rc)| match (row.get(*l), r.get(*rc)) {
                            (Some(a), Some(b)) => a.sql_eq(b),
                            _ => false,
                        })
                })
                .collect();
            let results = related
                .iter()
                .map(|r| self.eval(&relation.target, filter, r));
            Truth::from_bool(match kind {
                Quantifier::Single | Quantifier::Some => results.clone().any(|t| t.is_true()),
                Quantifier::None => !results.clone().any(|t| t.is_true()),
                Quantifier::Every => results.clone().all(|t| t.is_true()),
            })
        })
    }
}

fn user_rows() -> impl Strategy<Value = Vec<Option<&'static str>>> {
    proptest::collection::vec(
        proptest::option::weighted(0.8, proptest::sample::select(vec!["alice", "bob", "Ann"])),
        4,
    )
}

fn post_rows() -> impl Strategy<Value = Vec<(Option<i32>, Option<&'static str>)>> {
    proptest::collection::vec(
        (
            proptest::option::weighted(0.8, 1..5i32),
            proptest::option::weighted(0.8, proptest::sample::select(vec!["x", "y", "xy"])),
        ),
        0..7,
    )
}

fn follow_rows() -> impl Strategy<Value = Vec<(i32, i32)>> {
    proptest::collection::btree_set((1..5i32, 1..5i32), 0..8).prop_map(|s| s.into_iter().collect())
}

fn user_cond() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::sample::select(vec!["alice", "bob"]).prop_map(|n| json!({ "name": n })),
        Just(json!({"name_starts_with": "A"})),
        Just(json!({"name": null})),
        (1..5i32).prop_map(|id| json!({ "id": id })),
    ]
}

fn post_cond() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::sample::select(vec!["x", "y"]).prop_map(|t| json!({ "title_contains": t })),
        Just(json!({"title": null})),
    ]
}

/// Filters on posts (`true`) or users, nesting relations up to three deep.
fn relation_filter() -> impl Strategy<Value = (bool, Value)> {
    let users_leaf = user_cond().boxed();
    let posts_leaf = post_cond().boxed();
    // users -> posts (one-to-many), users -> follows -> users, posts -> users.
    let on_users = prop_oneof![
        users_leaf.clone(),
        (
            proptest::sample::select(vec!["posts_some", "posts_every", "posts_none"]),
            posts_leaf.clone()
        )
            .prop_map(|(k, v)| json!({ k: v })),
        (
            proptest::sample::select(vec![
                "follows_by_follower_id_some",
                "follows_by_followed_id_some",
                "follows_by_followed_id_every",
                "follows_by_follower_id_none"
            ]),
            proptest::sample::select(vec!["follower", "followed"]),
            users_leaf.clone()
        )
            .prop_map(|(k, side, v)| json!({ k: { side: v } })),
    ];
    let on_posts = prop_oneof![
        posts_leaf,
        users_leaf.prop_map(|v| json!({ "author": v })),
        on_users
            .clone()
            .prop_map(|v| json!({ "author": v, "title_not": "y" })),
        on_users
            .clone()
            .prop_map(|v| json!({ "OR": [{ "author": v }, { "title": "x" }] })),
        on_users
            .clone()
            .prop_map(|v| json!({ "NOT": [{ "author": v }] })),
    ];
    prop_oneof![
        on_posts.prop_map(|v| (true, v)),
        on_users.prop_map(|v| (false, v)),
    ]
}

#[test]
fn relation_conditions_agree_with_a_reference_evaluation() {
    let cluster = PgCluster::start().expect("postgres cluster");
    let rt = runtime();
    let client = rt.block_on(async {
        let client = connect(&cluster).await;
        client.batch_execute(BLOG).await.expect("schema");
        client
    });
    let (catalog, users) = rt.block_on(load_table(&client, "users"));
    let posts = catalog
        .table_by_name("public", "posts")
        .expect("posts")
        .clone();
    let mut runner = TestRunner::new(Config {
        cases: 120,
        ..Config::default()
    });
    let strategy = (user_rows(), post_rows(), follow_rows(), relation_filter());
    let result = runner.run(
        &strategy,
        |(names, post_list, follows, (on_posts, input))| {
            let blog = rt.block_on(async {
                client
                    .batch_execute("TRUNCATE follows, posts, users")
                    .await
                    .expect("truncate");
                for (i, name) in names.iter().enumerate() {
                    let p = [Some((i + 1).to_string()), name.map(str::to_owned)];
                    client
                        .execute("INSERT INTO users VALUES ($1::text::int4, $2)", &refs(&p))
                        .await
                        .expect("user");
                }
                for (i, (author, title)) in post_list.iter().enumerate() {
                    let p = [
                        Some((i + 1).to_string()),
                        author.map(|a| a.to_string()),
                        title.map(str::to_owned),
                    ];
                    client
                        .execute(
                            "INSERT INTO posts VALUES ($1::text::int4, $2::text::int4, $3)",
                            &refs(&p),
                        )
                        .await
                        .expect("post");
                }
                for (a, b) in &follows {
                    let p = [Some(a.to_string()), Some(b.to_string())];
                    client
                        .execute(
                            "INSERT INTO follows VALUES ($1::text::int4, $2::text::int4)",
                            &refs(&p),
                        )
                        .await
                        .expect("follow");
                }
                let mut tables = Vec::new();
                for t in &catalog.tables {
                    let order = if t.name == "follows" { "1, 2" } else { "id" };
                    tables.push((t.clone(), rows(&client, t, order).await));
                }
                Blog { tables }
            });
            let table = if on_posts { &posts } else { &users };
            let filter = parse_where_in(&catalog, table, &input)
                .map_err(|e| TestCaseError::fail(format!("{input}: {e}")))?;
            let table_rows = blog.rows_of(table.oid).to_vec();
            // A row that no longer exists (a delete's previous values) is judged the same way.
            let mut candidates = table_rows.clone();
            let gone: Row = if on_posts {
                vec![Datum::Int(99), Datum::Int(1), Datum::Text("x".into())]
            } else {
                vec![Datum::Int(99), Datum::Text("alice".into())]
            };
            candidates.push(gone);
            let expected: Vec<usize> = candidates
                .iter()
                .enumerate()
                .filter(|(_, r)| blog.eval(table, &filter, r).is_true())
                .map(|(i, _)| i)
                .collect();
            let refs_rows: Vec<&Row> = candidates.iter().collect();
            let q = relation_sql(table, &filter, &refs_rows);
            let mut got: Vec<usize> = rt
                .block_on(client.query(&q.sql, &refs(&q.params)))
                .map_err(|e| TestCaseError::fail(format!("{}: {e}", q.sql)))?
                .iter()
                .map(|r| r.get::<_, i64>(0) as usize)
                .collect();
            got.sort_unstable();
            prop_assert_eq!(
                &got,
                &expected,
                "\nwhere: {}\nsql: {}\nparams: {:?}",
                input,
                q.sql,
                q.params
            );

            // The same filter as a plain WHERE on the table finds the same stored rows.
            let mut b = SqlBuilder::new(table, "t");
            let cond = b.filter(&filter);
            let sql = format!(
                "SELECT t.id FROM public.\"{}\" AS t WHERE {cond} ORDER BY t.id",
                table.name
            );
            let ids: Vec<i32> = rt
                .block_on(client.query(&sql, &refs(&b.params)))
                .map_err(|e| TestCaseError::fail(format!("{sql}: {e}")))?
                .iter()
                .map(|r| r.get::<_, i32>(0))
                .collect();
            let stored: Vec<i32> = expected
                .iter()
                .filter(|&&i| i < table_rows.len())
                .filter_map(|&i| match table_rows[i].first() {
                    Some(Datum::Int(id)) => Some(*id as i32),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(ids, stored, "\nwhere: {}\nsql: {}", input, sql);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
