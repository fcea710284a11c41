//! `Proof::from_bytes`: a proof arrives with every get, renew, delete and audit.
#![no_main]
use quloud::domain::proof::Proof;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quloud_fuzz::round_trip(data, Proof::from_bytes, |p| p.to_bytes().to_vec());
});
