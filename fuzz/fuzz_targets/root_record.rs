//! `RootRecord::verified_version`: root records come back from any node at `quloud restore`.
#![no_main]
use quloud::domain::snapshot::RootRecord;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let _ = RootRecord::verified_version(data, &key);
});
