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
//! `walcast::visibility`).
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

use walcast_model::{Catalog, Table};

use crate::claims::substitute;
use crate::file::{self, Entry, FileError, PermissionsFile, TableRef};
use crate::grant::{MessagePrefixes, TableGrant};
use crate::identity::{Identity, Origin, ADMIN_ROLE, DEFAULT_ROLE, PUBLIC_ROLE};
use crate::view::Access;

/// Why the permissions file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PermissionsError {
    #[error("reading WALCAST_PERMISSIONS_FILE {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("WALCAST_PERMISSIONS_FILE {}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: FileError,
    },
}

/// The parsed permissions file, or the rules without one.
pub struct Permissions {
    path: Option<PathBuf>,
    /// The file's roles and message grants; `None` without a file.
    file: Option<PermissionsFile>,
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
                    .file
                    .as_ref()
                    .map(|f| f.roles.keys().cloned().collect::<Vec<_>>()),
            )
            .finish()
    }
}

impl Permissions {
    /// Reads and checks the file; `None` gives the rules without a file.
    pub fn load(path: Option<&Path>) -> Result<Permissions, PermissionsError> {
        let file = match path {
            None => None,
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| PermissionsError::Read {
                        path: path.to_owned(),
                        source,
                    })?;
                let file = file::parse(&text).map_err(|source| PermissionsError::Invalid {
                    path: path.to_owned(),
                    source,
                })?;
                Some(file)
            }
        };
        if file
            .as_ref()
            .is_some_and(|f| f.roles.contains_key(ADMIN_ROLE))
        {
            tracing::warn!(
                "permissions file: entries for role {ADMIN_ROLE} are ignored: {ADMIN_ROLE} sees everything"
            );
        }
        Ok(Permissions::new(path.map(Path::to_path_buf), file))
    }

    fn new(path: Option<PathBuf>, file: Option<PermissionsFile>) -> Permissions {
        Permissions {
            path,
            file,
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// The same file read again (for SIGHUP); the current rules stay if it is now broken.
    pub fn reload(&self) -> Result<Permissions, PermissionsError> {
        Permissions::load(self.path.as_deref())
    }

    /// What `who` may read and write of `catalog`, with the claims of its token in the row
    /// filters; its [`Access::key`] is not set yet. Never fails: entries that do not fit the
    /// catalog or the token are logged once and hide what they name.
    pub fn view(&self, catalog: &Catalog, who: &Identity) -> Access {
        if who.role == ADMIN_ROLE {
            return Access::everything(catalog).with_messages(Some(MessagePrefixes::All));
        }
        let Some(file) = &self.file else {
            let token_holder = who.role == DEFAULT_ROLE || who.origin == Origin::StaticToken;
            return if who.role != PUBLIC_ROLE && token_holder {
                Access::everything(catalog)
            } else {
                Access::nothing()
            };
        };
        let Some(entries) = file.roles.get(&who.role) else {
            return Access::nothing();
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
        Access::new(grants.into_values()).with_messages(file.messages.get(&who.role).cloned())
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
                if indexes.is_empty() {
                    self.warn_once(
                        &who.role,
                        &entry.table,
                        "no columns",
                        format_args!("no listed column exists; the table is hidden"),
                    );
                    return None;
                }
                Some(indexes)
            }
        };
        let grant = TableGrant::new(Arc::clone(table), columns, entry.writes);
        let Some(template) = &entry.filter else {
            return Some(grant);
        };
        let filter = match substitute(template, &who.claims) {
            Ok(filter) => filter,
            Err(missing) => {
                let claim = missing.name;
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
        match grant.with_filter(filter) {
            Ok(grant) => Some(grant),
            Err(e) => {
                self.warn_once(
                    &who.role,
                    &entry.table,
                    "filter",
                    format_args!("invalid filter ({e}); the table is hidden"),
                );
                None
            }
        }
    }

    /// Logs a problem with one entry the first time it is met. The key leaves out claim
    /// values, so the set stays bounded by the file's size.
    fn warn_once(&self, role: &str, table: &TableRef, what: &str, message: fmt::Arguments<'_>) {
        let key = format!("{role}\u{0}{table}\u{0}{what}");
        let first = walcast_model::sync::lock(&self.warned).insert(key);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::chain;
    use serde_json::{json, Value};
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
        Permissions::new(
            None,
            Some(file::parse(text).expect("valid permissions file")),
        )
    }

    fn oids(view: &Access) -> Vec<u32> {
        view.tables().iter().map(|g| g.table().oid).collect()
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
            assert!(view.tables().iter().all(|g| g.columns().is_none()
                && g.filter().is_none()
                && g.writes.insert
                && g.writes.update
                && g.writes.delete));
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
        assert!(p.view(&cat, &Identity::public()).tables().is_empty());
        // A static token that says `public` is still the public role.
        let static_public = who(PUBLIC_ROLE, Origin::StaticToken, json!({}));
        assert!(p.view(&cat, &static_public).tables().is_empty());
        // A JWT role nobody granted anything to.
        assert!(p.view(&cat, &jwt("editor", json!({}))).tables().is_empty());
    }

    #[test]
    fn with_a_file_roles_see_only_their_entries() {
        let cat = catalog();
        let p = perms(FILE);
        let reader = p.view(&cat, &jwt("reader", json!({"sub": "42"})));
        assert_eq!(oids(&reader), vec![100]);
        let g = reader.table(100).expect("articles");
        assert_eq!(g.columns(), Some(&[0, 1, 2][..]));
        assert!(g.sees_column(2) && !g.sees_column(3));
        assert_eq!(
            g.filter(),
            Some(&json!({"status": "published", "author_id": "42"}))
        );
        assert!(g.row_filter().is_some());
        assert!(!g.writes.insert && !g.writes.update && !g.writes.delete);
        assert!(reader.table(50).is_none());
        assert!(reader.table_by_gql("articles").is_some());

        assert_eq!(oids(&p.view(&cat, &Identity::public())), vec![50]);
        // Roles without entries see nothing once a file exists, however they got their token.
        assert!(p
            .view(&cat, &jwt(DEFAULT_ROLE, json!({})))
            .tables()
            .is_empty());
        let static_role = who("ops", Origin::StaticToken, json!({}));
        assert!(p.view(&cat, &static_role).tables().is_empty());

        // select = false (or unset) hides the table whatever else the entry grants.
        let writer = p.view(&cat, &jwt("writer", json!({})));
        assert_eq!(oids(&writer), vec![100]);
        let g = writer.table(100).expect("articles");
        assert!(g.writes.insert && g.writes.update && !g.writes.delete);
        assert_eq!(g.columns(), None);
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
            view.table(100).and_then(|g| g.filter().cloned()),
            Some(json!({"OR": [{"author_id": 42}, {"status_in": ["draft", "published"]}]}))
        );
        // A number claim against a text column is compared as text.
        assert_eq!(
            view.table(200).and_then(|g| g.filter().cloned()),
            Some(json!({"owner": "42"}))
        );
        assert_eq!(
            view.table(50).and_then(|g| g.filter().cloned()),
            Some(json!({"body": "hello"}))
        );

        // Missing claims fail closed, table by table; so does a null one.
        let view = p.view(&cat, &jwt("r", json!({"sub": "7"})));
        assert_eq!(oids(&view), vec![200]);
        let view = p.view(&cat, &jwt("r", json!({"sub": null})));
        assert!(view.tables().is_empty());
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
            view.table(100)
                .and_then(|g| g.columns().map(<[usize]>::to_vec)),
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
            assert_eq!(view.tables().len(), 1, "{text}");
        }
        // The same table named twice is ambiguous: hidden.
        let p = perms("[r.articles]\nselect = true\n[r.\"public.articles\"]\nselect = true\ncolumns = [\"id\"]\n");
        assert!(p.view(&cat, &jwt("r", json!({}))).tables().is_empty());
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
            let err = chain(&Permissions::load(Some(file.path())).expect_err(text));
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(
                err.contains(&file.path().display().to_string()),
                "{text:?}: {err}"
            );
        }
        let err = Permissions::load(Some(Path::new("/nonexistent/permissions.toml")))
            .expect_err("missing file");
        assert!(chain(&err).contains("reading WALCAST_PERMISSIONS_FILE"));
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
        assert_ne!(admin.shape_key(), Access::everything(&cat).shape_key());
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
            let err = chain(&file::parse(text).expect_err(text));
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn shape_keys_follow_tables_columns_and_mutations_only() {
        let cat = catalog();
        let everything = Access::everything(&cat);
        assert_eq!(everything.shape_key(), "50:*:iud;100:*:iud;200:*:iud");
        assert_eq!(Access::nothing().shape_key(), "");
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
