//! The pgoutput decoder against messages captured from a real PostgreSQL 15 (see the header of
//! `tests/data/pgoutput_v1_text.txt` for the statements that produced them), plus malformed input.

use bytes::Bytes;
use proptest::prelude::*;
use walcast_wal::{decode, decode_bytes, Lsn, PgOutput, Relation, RelationColumn, TupleValue};

const TEXT: &str = include_str!("data/pgoutput_v1_text.txt");
const BINARY: &str = include_str!("data/pgoutput_v1_binary.txt");

const MOOD: u32 = 16428;
const T_DEFAULT: u32 = 16435;
const T_FULL: u32 = 16442;
const WEIRD: u32 = 16449;
const COMMIT_TIME_1: i64 = 0x0003_0430_6082_4ee9;
const TS_TEXT: &str = "2024-01-02 03:04:05.123456+00";
const TAGS_TEXT: &str = r#"{a,"b c",NULL}"#;

fn hex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// (line number, lsn, payload) of each vector in a capture file.
fn vectors(file: &str) -> Vec<(usize, Lsn, Vec<u8>)> {
    file.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            let n = parts.next().and_then(|n| n.parse().ok()).expect("line no");
            let lsn = parts.next().and_then(|l| l.parse().ok()).expect("lsn");
            (n, lsn, hex(parts.next().expect("payload")))
        })
        .collect()
}

fn vector(file: &str, line: usize) -> Vec<u8> {
    vectors(file)
        .into_iter()
        .find(|(n, _, _)| *n == line)
        .map(|(_, _, bytes)| bytes)
        .unwrap_or_else(|| panic!("no vector {line}"))
}

fn t(s: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn b(bytes: &[u8]) -> TupleValue {
    TupleValue::Binary(Bytes::copy_from_slice(bytes))
}

fn col(flags: u8, name: &str, type_oid: u32, type_modifier: i32) -> RelationColumn {
    RelationColumn {
        flags,
        name: name.into(),
        type_oid,
        type_modifier,
    }
}

fn big() -> String {
    "x".repeat(2500)
}

/// t_default's row 1 after `SET name = 'alice2'`, `big` unchanged and TOASTed.
fn alice2(id: &str) -> Vec<TupleValue> {
    vec![
        t(id),
        t("alice2"),
        t("12.50"),
        t(TAGS_TEXT),
        t("happy"),
        t(TS_TEXT),
        TupleValue::UnchangedToast,
    ]
}

fn key_only(id: &str, ncols: usize) -> Vec<TupleValue> {
    let mut v = vec![t(id)];
    v.resize(ncols, TupleValue::Null);
    v
}

fn text_expectations() -> Vec<(usize, PgOutput)> {
    let t_full_row = vec![t("1"), t("bob"), TupleValue::Null];
    vec![
        (
            1,
            PgOutput::Begin {
                final_lsn: Lsn(0x0197_0510),
                commit_time: COMMIT_TIME_1,
                xid: 0x2f2,
            },
        ),
        (
            2,
            PgOutput::Type {
                type_oid: MOOD,
                namespace: "public".into(),
                name: "mood".into(),
            },
        ),
        (
            3,
            PgOutput::Relation(Relation {
                rel_id: T_DEFAULT,
                namespace: "public".into(),
                name: "t_default".into(),
                replica_identity: b'd',
                columns: vec![
                    col(1, "id", 23, -1),
                    col(0, "name", 25, -1),
                    // numeric(10,2): ((10 << 16) | 2) + VARHDRSZ
                    col(0, "score", 1700, (10 << 16) + 2 + 4),
                    col(0, "tags", 1009, -1),
                    col(0, "m", MOOD, -1),
                    col(0, "ts", 1184, -1),
                    col(0, "big", 25, -1),
                ],
            }),
        ),
        (
            4,
            PgOutput::Insert {
                rel_id: T_DEFAULT,
                new: vec![
                    t("1"),
                    t("alice"),
                    t("12.50"),
                    t(TAGS_TEXT),
                    t("happy"),
                    t(TS_TEXT),
                    t(&big()),
                ],
            },
        ),
        (
            5,
            PgOutput::Commit {
                flags: 0,
                commit_lsn: Lsn(0x0197_0510),
                end_lsn: Lsn(0x0197_0540),
                commit_time: COMMIT_TIME_1,
            },
        ),
        (
            7,
            PgOutput::Insert {
                rel_id: T_DEFAULT,
                new: key_only("2", 7),
            },
        ),
        (
            10,
            PgOutput::Update {
                rel_id: T_DEFAULT,
                old_kind: None,
                old: None,
                new: alice2("1"),
            },
        ),
        (
            13,
            PgOutput::Update {
                rel_id: T_DEFAULT,
                old_kind: Some(b'K'),
                old: Some(key_only("1", 7)),
                new: alice2("10"),
            },
        ),
        (
            16,
            PgOutput::Delete {
                rel_id: T_DEFAULT,
                old_kind: b'K',
                old: key_only("2", 7),
            },
        ),
        (
            19,
            PgOutput::Relation(Relation {
                rel_id: T_FULL,
                namespace: "public".into(),
                name: "t_full".into(),
                replica_identity: b'f',
                columns: vec![
                    col(1, "id", 23, -1),
                    col(1, "name", 25, -1),
                    col(1, "note", 25, -1),
                ],
            }),
        ),
        (
            20,
            PgOutput::Insert {
                rel_id: T_FULL,
                new: t_full_row.clone(),
            },
        ),
        (
            23,
            PgOutput::Update {
                rel_id: T_FULL,
                old_kind: Some(b'O'),
                old: Some(t_full_row.clone()),
                new: vec![t("1"), t("bob"), t("n")],
            },
        ),
        (
            26,
            PgOutput::Delete {
                rel_id: T_FULL,
                old_kind: b'O',
                old: vec![t("1"), t("bob"), t("n")],
            },
        ),
        (
            29,
            PgOutput::Relation(Relation {
                rel_id: WEIRD,
                namespace: "public".into(),
                name: "Weird \"Name\"".into(),
                replica_identity: b'd',
                columns: vec![col(1, "id", 20, -1), col(0, "v", 3802, -1)],
            }),
        ),
        (
            30,
            PgOutput::Insert {
                rel_id: WEIRD,
                new: vec![t("9223372036854775807"), t(r#"{"k": [1, "é"]}"#)],
            },
        ),
        (
            33,
            PgOutput::Message {
                transactional: true,
                lsn: Lsn(0x0197_0C58),
                prefix: "walcast".into(),
                content: Bytes::from_static(b"hello"),
            },
        ),
        (
            35,
            PgOutput::Message {
                transactional: false,
                lsn: Lsn(0x0197_0CC0),
                prefix: "nt".into(),
                content: Bytes::from_static(&[0x00, 0xff]),
            },
        ),
        (
            41,
            PgOutput::Truncate {
                options: 3, // CASCADE | RESTART IDENTITY
                rel_ids: vec![T_FULL, T_DEFAULT],
            },
        ),
        (
            45,
            PgOutput::Truncate {
                options: 0,
                rel_ids: vec![WEIRD],
            },
        ),
        (
            48,
            PgOutput::Origin {
                commit_lsn: Lsn(0x00AB_CDEF),
                name: "upstream".into(),
            },
        ),
        (
            51,
            PgOutput::Commit {
                flags: 0,
                commit_lsn: Lsn(0x0197_3680),
                end_lsn: Lsn(0x0197_36C8),
                // 2024-01-01 00:00:00 UTC, as given to pg_replication_origin_xact_setup
                commit_time: 757_382_400_000_000,
            },
        ),
    ]
}

#[test]
fn captured_text_messages_decode_to_expected_values() {
    for (line, expected) in text_expectations() {
        let got = decode(&vector(TEXT, line)).unwrap_or_else(|e| panic!("line {line}: {e}"));
        assert_eq!(got, expected, "line {line}");
    }
}

#[test]
fn captured_binary_messages_decode_to_expected_values() {
    let insert = decode(&vector(BINARY, 4)).expect("binary insert");
    let PgOutput::Insert { rel_id, new } = insert else {
        panic!("not an insert: {insert:?}")
    };
    assert_eq!(rel_id, T_DEFAULT);
    assert_eq!(new.len(), 7);
    assert_eq!(new[0], b(&1i32.to_be_bytes()));
    assert_eq!(new[1], b(b"alice"));
    // numeric 12.50: ndigits 2, weight 0, sign +, dscale 2, digits [12, 5000]
    assert_eq!(new[2], b(&[0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x13, 0x88]));
    assert_eq!(new[4], b(b"happy"));
    // 2024-01-02 03:04:05.123456 UTC in microseconds since 2000-01-01
    assert_eq!(new[5], b(&757_479_845_123_456i64.to_be_bytes()));
    assert_eq!(new[6], b(big().as_bytes()));

    assert_eq!(
        decode(&vector(BINARY, 7)).expect("binary insert of NULLs"),
        PgOutput::Insert {
            rel_id: T_DEFAULT,
            new: {
                let mut v = vec![b(&2i32.to_be_bytes())];
                v.resize(7, TupleValue::Null);
                v
            }
        }
    );
    let update = decode(&vector(BINARY, 10)).expect("binary update");
    let PgOutput::Update { old: None, new, .. } = update else {
        panic!("unexpected {update:?}")
    };
    assert_eq!(new.last(), Some(&TupleValue::UnchangedToast));
}

#[test]
fn every_captured_message_decodes() {
    let mut kinds = std::collections::BTreeSet::new();
    for (line, _, bytes) in vectors(TEXT).into_iter().chain(vectors(BINARY)) {
        let copied = decode(&bytes).unwrap_or_else(|e| panic!("line {line}: {e}"));
        let shared = decode_bytes(&Bytes::from(bytes.clone())).expect("decode_bytes");
        assert_eq!(copied, shared, "line {line}");
        kinds.insert(bytes[0]);
    }
    assert_eq!(kinds.len(), 10, "every message type is covered");
}

#[test]
fn every_truncation_of_a_captured_message_is_an_error() {
    for (line, _, bytes) in vectors(TEXT) {
        for len in 0..bytes.len() {
            let err = decode(&bytes[..len])
                .expect_err(&format!("line {line} cut to {len} bytes decoded"));
            if len > 0 {
                assert!(
                    err.to_string().contains(" message, "),
                    "line {line}, {len} bytes: no context in {err}"
                );
            }
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut bytes = vector(TEXT, 1);
    bytes.push(0);
    let err = decode(&bytes).expect_err("trailing byte accepted");
    assert!(err.to_string().contains("Begin message"), "{err}");
    assert!(err.to_string().contains("trailing"), "{err}");
}

#[test]
fn malformed_messages_name_message_and_field() {
    let cases: &[(&str, &[u8], &[&str])] = &[
        ("empty", b"", &["empty"]),
        ("unknown tag", b"Z", &["unknown message type Z"]),
        (
            "short begin",
            b"B\0\0\0\0",
            &["Begin message", "final LSN", "needs 8 bytes, 4 left"],
        ),
        (
            "negative column count",
            b"I\0\0\0\x01N\xff\xff",
            &[
                "Insert message",
                "new tuple column count",
                "negative count -1",
            ],
        ),
        (
            "column count beyond data",
            b"I\0\0\0\x01N\x7f\xff",
            &["Insert message", "new tuple column 0"],
        ),
        (
            "negative value length",
            b"I\0\0\0\x01N\0\x01t\xff\xff\xff\xfe",
            &[
                "Insert message",
                "new tuple column 0 length",
                "negative length -2",
            ],
        ),
        (
            "value longer than data",
            b"I\0\0\0\x01N\0\x01t\0\0\0\x09abc",
            &[
                "Insert message",
                "new tuple column 0 value",
                "needs 9 bytes, 3 left",
            ],
        ),
        (
            "bad column kind",
            b"I\0\0\0\x01N\0\x01x",
            &[
                "Insert message",
                "new tuple column 0",
                "'n', 'u', 't' or 'b'",
                "got x",
            ],
        ),
        (
            "insert without N",
            b"I\0\0\0\x01K\0\0",
            &["Insert message", "new tuple marker", "expected 'N'"],
        ),
        (
            "update with bad marker",
            b"U\0\0\0\x01X\0\0",
            &["Update message", "tuple marker", "'K', 'O' or 'N'"],
        ),
        (
            "update old tuple then no N",
            b"U\0\0\0\x01O\0\0O\0\0",
            &["Update message", "new tuple marker"],
        ),
        (
            "delete with N",
            b"D\0\0\0\x01N\0\0",
            &["Delete message", "old tuple marker", "'K' or 'O'"],
        ),
        (
            "string without NUL",
            b"Y\0\0\0\x01public",
            &["Type message", "namespace", "missing NUL"],
        ),
        (
            "invalid UTF-8",
            b"O\0\0\0\0\0\0\0\x01\xff\xfe\0",
            &["Origin message", "origin name", "invalid UTF-8"],
        ),
        (
            "huge truncate count",
            b"T\xff\xff\xff\xff\0\0\0\0\x01",
            &["Truncate message", "relation OID 1"],
        ),
        (
            "negative relation column count",
            b"R\0\0\0\x01public\0t\0d\x80\0",
            &["Relation message", "column count", "negative"],
        ),
        (
            "negative message content length",
            b"M\x01\0\0\0\0\0\0\0\x01p\0\x80\0\0\0",
            &["Message message", "content length", "negative"],
        ),
    ];
    for (name, bytes, needles) in cases {
        let err = decode(bytes).expect_err(name);
        for needle in *needles {
            assert!(
                err.to_string().contains(needle),
                "{name}: {needle:?} not in {err}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_bodies_of_known_messages_never_panic(
        tag in proptest::sample::select(b"BCORYIUDTM".to_vec()),
        body in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut bytes = vec![tag];
        bytes.extend(body);
        let _ = decode(&bytes);
    }

    #[test]
    fn mutated_captured_messages_never_panic(
        index in any::<proptest::sample::Index>(),
        at in any::<proptest::sample::Index>(),
        value in any::<u8>(),
    ) {
        let all = vectors(TEXT);
        let (_, _, mut bytes) = all[index.index(all.len())].clone();
        let i = at.index(bytes.len());
        bytes[i] = value;
        let _ = decode(&bytes);
    }
}

/// Inputs kept from fuzzing (`scripts/fuzz.sh pgoutput`): decoded without a panic, both entry
/// points agreeing, as the fuzz target demands.
#[test]
fn fuzz_regressions_decode_without_panicking() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/pgoutput");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let copied = walcast_wal::decode(&data);
        let shared = walcast_wal::decode_bytes(&bytes::Bytes::copy_from_slice(&data));
        assert_eq!(copied, shared, "{}", path.display());
    }
}
