//! Relation naming, relation conditions in filters, and validation errors.

mod common;

use serde_json::json;
use walcast_filter::{
    parse_subscription_where_in, parse_where, parse_where_in, relation_sql, relations, FilterError,
    Quantifier, RelationBatch, RelationKind, RowFilter, Truth,
};
use walcast_model::{Catalog, Datum, Kind, Op};

fn names(catalog: &Catalog, table: &str) -> Vec<(String, RelationKind)> {
    let t = catalog.table_by_gql(table).expect("table");
    relations(catalog, t)
        .into_iter()
        .map(|r| (r.name, r.kind))
        .collect()
}

#[test]
fn relation_names_follow_the_contract() {
    let c = common::blog();
    assert_eq!(
        names(&c, "users"),
        vec![
            ("posts".into(), RelationKind::OneToMany),
            ("follows_by_followed_id".into(), RelationKind::OneToMany),
            ("follows_by_follower_id".into(), RelationKind::OneToMany),
        ]
    );
    assert_eq!(
        names(&c, "posts"),
        vec![
            ("author".into(), RelationKind::ManyToOne),
            ("comments".into(), RelationKind::OneToMany),
        ]
    );
    assert_eq!(
        names(&c, "follows"),
        vec![
            ("followed".into(), RelationKind::ManyToOne),
            ("follower".into(), RelationKind::ManyToOne),
        ]
    );
    let comments = c.table_by_gql("comments").expect("comments");
    let rels = relations(&c, comments);
    // Directus style: the column `post` is itself the relation.
    assert_eq!(rels[0].name, "post");
    assert_eq!(rels[0].column_field, Some(1));
}

#[test]
fn clashes_get_a_rel_suffix_and_camel_case_ids_strip() {
    let users = common::table(1, "users", &[("id", Kind::Int4), ("posts", Kind::Int4)]);
    let mut posts = common::table(
        2,
        "posts",
        &[
            ("id", Kind::Int4),
            ("authorId", Kind::Int4),
            ("author", Kind::Text),
        ],
    );
    posts
        .foreign_keys
        .push(common::fk("posts_author_fkey", &[1], 1, &[1]));
    let c = Catalog::new(vec![users, posts]).expect("catalog");
    assert_eq!(names(&c, "posts")[0].0, "author_rel");
    assert_eq!(names(&c, "users")[0].0, "posts_rel");
}

#[test]
fn relation_conditions_parse_with_the_catalog() {
    let c = common::blog();
    let posts = c.table_by_gql("posts").expect("posts");
    let f = parse_where_in(
        &c,
        posts,
        &json!({"author": {"follows_by_followed_id_some": {"follower": {"name_starts_with": "A"}}}, "title_contains": "x"}),
    )
    .expect("parses");
    assert!(f.has_relations());
    let RowFilter::All(parts) = &f else {
        panic!("{f:?}")
    };
    let RowFilter::Relation { kind, filter, .. } = &parts[0] else {
        panic!("{f:?}")
    };
    assert_eq!(*kind, Quantifier::Single);
    assert!(matches!(
        **filter,
        RowFilter::Relation {
            kind: Quantifier::Some,
            ..
        }
    ));

    // Without the catalog a relation key is an unknown field.
    let err = parse_where(posts, &json!({"author": {"name": "A"}})).unwrap_err();
    assert!(matches!(err, FilterError::UnknownField { ref field, .. } if field == "author"));

    // Directus style: an object is the relation, a scalar the column.
    let comments = c.table_by_gql("comments").expect("comments");
    let rel = parse_where_in(&c, comments, &json!({"post": {"title": "t"}})).expect("relation");
    assert!(matches!(rel, RowFilter::Relation { .. }));
    let col = parse_where_in(&c, comments, &json!({"post": 3})).expect("column");
    assert!(matches!(col, RowFilter::Cmp { column: 1, .. }));

    // `author: null` means no author.
    let none = parse_where_in(&c, posts, &json!({"author": null})).expect("null");
    assert_eq!(
        none,
        RowFilter::All(vec![RowFilter::IsNull {
            column: 1,
            negated: false
        }])
    );

    let users = c.table_by_gql("users").expect("users");
    for key in ["posts_some", "posts_every", "posts_none"] {
        parse_where_in(&c, users, &json!({ key: {"title": "x"} })).expect(key);
    }
    let err = parse_where_in(&c, users, &json!({"posts_any": {}})).unwrap_err();
    assert!(err.to_string().contains("posts_any"), "{err}");
    let err = parse_where_in(&c, users, &json!({"posts_some": {"nope": 1}})).unwrap_err();
    assert!(err.to_string().contains("where.posts_some.nope"), "{err}");
    let err = parse_where_in(&c, users, &json!({"posts_some": 5})).unwrap_err();
    assert!(
        err.to_string().contains("expected an input object"),
        "{err}"
    );
}

#[test]
fn relation_sql_is_parameterised() {
    let c = common::blog();
    let posts = c.table_by_gql("posts").expect("posts");
    let f = parse_where_in(
        &c,
        posts,
        &json!({"author": {"name": "x'); DROP TABLE users; --"}}),
    )
    .expect("parses");
    let row_a = vec![Datum::Int(1), Datum::Int(7), Datum::Text("t".into())];
    let row_b = vec![Datum::Int(2), Datum::Unavailable, Datum::Text("t".into())];
    let q = relation_sql(posts, &f, &[&row_a, &row_b]);
    assert!(!q.sql.contains("DROP"), "{}", q.sql);
    assert_eq!(q.judged, vec![0]);
    assert_eq!(q.params[0].as_deref(), Some(r#"[[0,"7"]]"#));
    assert_eq!(q.params[1].as_deref(), Some("x'); DROP TABLE users; --"));
    assert!(
        q.sql.contains(r#"FROM "public"."users" AS c_1"#),
        "{}",
        q.sql
    );
}

#[test]
fn batch_answers_by_condition() {
    let c = common::blog();
    let posts = c.table_by_gql("posts").expect("posts").clone();
    let shared = json!({"node": {"author": {"name": "A"}}});
    let f1 = std::sync::Arc::new(parse_subscription_where_in(&c, &posts, &shared).expect("f1"));
    let f2 = std::sync::Arc::new(
        parse_subscription_where_in(
            &c,
            &posts,
            &json!({"node": {"author": {"name": "A"}, "title": "x"}}),
        )
        .expect("f2"),
    );
    let e0 = common::event(
        &posts,
        Op::Create,
        Some(vec![Datum::Int(1), Datum::Int(7), Datum::Text("x".into())]),
        None,
    );
    let e1 = common::event(
        &posts,
        Op::Delete,
        None,
        Some(vec![Datum::Int(2), Datum::Int(8), Datum::Text("y".into())]),
    );
    let mut batch = RelationBatch::new();
    for (i, ev) in [&e0, &e1].into_iter().enumerate() {
        for f in [&f1, &f2] {
            if f.evaluate(ev) == Truth::Unknown {
                batch.add(i, ev, f);
            }
        }
    }
    // f2 is false for e1 in memory (title), so it was not added; the shared condition is one query.
    let queries = batch.queries();
    assert_eq!(queries.len(), 1);
    assert_eq!(
        queries[0].params[0].as_deref(),
        Some(r#"[[0,"7"],[1,"8"]]"#)
    );
    // Pretend the database said: only event 1's author is named A.
    batch.answer(&queries[0], [1]);
    assert!(!batch.matches(0, &e0, &f1));
    assert!(batch.matches(1, &e1, &f1));
    assert!(!batch.matches(0, &e0, &f2));
    // An equal filter parsed separately finds the same answers.
    let again = parse_subscription_where_in(&c, &posts, &shared).expect("again");
    assert!(batch.matches(1, &e1, &again));
}

#[test]
fn validation_errors_name_the_field_and_value() {
    let t = common::table(
        9,
        "items",
        &[
            ("id", Kind::Int4),
            ("flag", Kind::Bool),
            ("title", Kind::Text),
            ("price", Kind::Numeric),
        ],
    );
    let cases = [
        (json!({"nope": 1}), "nope"),
        (json!({"id": "abc"}), "\"abc\""),
        (json!({"id": "1; DROP TABLE x"}), "1; DROP TABLE x"),
        (json!({"id": 1.5}), "1.5"),
        (json!({"id": 99999999999i64}), "99999999999"),
        (json!({"id_contains": "1"}), "contains"),
        (json!({"flag_lt": true}), "lt"),
        (json!({"title_in": "a"}), "where.title_in"),
        (json!({"title_contains": 5}), "where.title_contains"),
        (json!({"id_gt": null}), "where.id_gt"),
        (json!({"AND": [{"price": "ten"}]}), "where.AND[0].price"),
        (json!({"OR": [{"id_in": [1, "x"]}]}), "where.OR[0].id_in[1]"),
        (json!([1]), "input object"),
    ];
    for (input, needle) in cases {
        let err = parse_where(&t, &input).expect_err(&input.to_string());
        assert!(err.to_string().contains(needle), "{input}: {err}");
    }
    // SQL-looking text is a plain value.
    let f = parse_where(&t, &json!({"title": "1; DROP TABLE x"})).expect("text");
    assert!(
        matches!(f, RowFilter::Cmp { value: Datum::Text(ref s), .. } if s == "1; DROP TABLE x")
    );
    // Nesting is bounded.
    let mut deep = json!({"id": 1});
    for _ in 0..40 {
        deep = json!({ "AND": [deep] });
    }
    let err = parse_where(&t, &deep).unwrap_err();
    assert!(err.to_string().contains("nest"), "{err}");
}

#[test]
fn enum_labels_are_checked() {
    let mut t = common::table(9, "items", &[("id", Kind::Int4), ("mood", Kind::Enum)]);
    t.columns[1].ty.enum_values = vec!["sad".into(), "ok".into(), "happy".into()];
    t.columns[1].ty.name = "mood".into();
    let err = parse_where(&t, &json!({"mood_in": ["ok", "meh"]})).unwrap_err();
    assert!(err.to_string().contains("\"meh\""), "{err}");
    let f = parse_where(&t, &json!({"mood_gt": "sad"})).expect("parses");
    let row = vec![Datum::Int(1), Datum::Text("happy".into())];
    // Labels order by declaration ("happy" > "sad"), not bytewise.
    assert!(f.matches_in(&t, &row));
}

#[test]
fn lists_longer_than_the_limit_are_refused_by_path() {
    let c = common::blog();
    let posts = c.table_by_gql("posts").expect("posts");
    let limits = walcast_filter::Limits { max_list_items: 3 };
    let ok = json!({"id_in": [1, 2, 3]});
    walcast_filter::parse_where_limited(&c, posts, &ok, limits).expect("at the limit");
    let long = json!({"AND": [{"id_not_in": [1, 2, 3, 4]}]});
    let err = walcast_filter::parse_where_limited(&c, posts, &long, limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "where.AND[0].id_not_in: a list of 4 items; filter lists hold at most 3 (WALCAST_MAX_LIST_ITEMS)"
    );
    let sub = json!({"mutation_in": ["CREATED", "UPDATED", "DELETED", "CREATED"]});
    let err =
        walcast_filter::parse_subscription_where_limited(&c, posts, &sub, limits).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("where.mutation_in: a list of 4"),
        "{err}"
    );
    // Unbounded by default (the permissions file is trusted).
    walcast_filter::parse_where(posts, &json!({"id_in": [1, 2, 3, 4]})).expect("no limit");
}
