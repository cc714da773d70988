//! Each socket protocol's message parser on arbitrary frames: a message or an error, never a
//! panic; an operation id a client chose comes back intact in the frames that answer it.
//! `scripts/fuzz.sh protocol`.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The codecs and the request they carry, compiled alone: the rest of the walcast crate (its
// server, juniper, NATS) has no part in parsing frames.
#[allow(dead_code)]
#[path = "../../crates/walcast/src/ws/protocol.rs"]
mod protocol;
#[path = "../../crates/walcast/src/request/message.rs"]
mod request_message;
mod request {
    pub use super::request_message::Request;
}

use protocol::{ClientMsg, Protocol, ServerMsg};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for p in [Protocol::Transport, Protocol::Legacy, Protocol::Graphcool] {
        let Ok(ClientMsg::Start { id, .. }) = p.decode(text) else {
            continue;
        };
        let answers = [
            ServerMsg::Complete { id: id.clone(), result: None },
            ServerMsg::Error {
                id: id.clone(),
                errors: serde_json::json!([{"message": "x"}]),
            },
        ];
        for answer in answers {
            if let Some(frame) = p.encode(&answer) {
                let v: serde_json::Value =
                    serde_json::from_str(&frame).expect("an encoded frame is JSON");
                assert_eq!(v["id"].as_str(), Some(id.as_str()), "id changed in {frame}");
            }
        }
    }
});
