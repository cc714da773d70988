//! The harness against the real nats-server binary.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use walcast_natscluster::{NatsCluster, NatsServer};

/// The server's INFO line, which names the server and says whether JetStream is on.
fn info(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .expect("reads INFO");
    let _ = (&stream).write_all(b"CONNECT {}\r\n");
    line
}

#[test]
fn single_node_restarts_on_the_same_port_and_store() {
    let mut server = NatsServer::start().expect("starts");
    assert!(server.url().starts_with("nats://127.0.0.1:"));
    let first = info(server.port());
    assert!(first.contains("\"jetstream\":true"), "{first}");
    let store = server.store_dir();
    assert!(store.exists(), "store dir {store:?}");
    server.restart().expect("restarts");
    assert_eq!(server.store_dir(), store);
    assert!(info(server.port()).contains("\"jetstream\":true"));
    server.kill();
    assert!(!server.is_running());
    assert!(TcpStream::connect(("127.0.0.1", server.port())).is_err());
}

#[test]
fn three_nodes_form_a_cluster_and_a_node_comes_back() {
    let mut cluster = NatsCluster::start(3).expect("starts");
    assert_eq!(cluster.urls().split(',').count(), 3);
    for node in cluster.nodes() {
        let line = info(node.port());
        assert!(line.contains("\"cluster\":\"walcast\""), "{line}");
    }
    let node = cluster.node_mut(1).expect("node 1");
    node.restart().expect("restarts");
    assert!(info(node.port()).contains("\"jetstream\":true"));
}

/// What lets a start move to new ports when another process took one: the error says so.
#[test]
fn a_taken_port_is_reported_as_a_port_conflict() {
    let mut server = NatsServer::start().expect("starts");
    server.kill();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", server.port())).expect("binds");
    let err = server.start_again().expect_err("the client port is taken");
    assert!(err.is_port_conflict(), "{err}");
}
