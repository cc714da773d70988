//! The pgoutput decoder must return an error, never panic, whatever the bytes; both entry
//! points must agree. `scripts/fuzz.sh pgoutput`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let copied = walcast_wal::decode(data);
    let shared = walcast_wal::decode_bytes(&bytes::Bytes::copy_from_slice(data));
    assert_eq!(copied, shared);
});
