//! `Commitment::from_bytes`: a commitment arrives with every store request.
#![no_main]
use quloud::domain::proof::Commitment;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quloud_fuzz::round_trip(data, Commitment::from_bytes, |c| c.to_bytes().to_vec());
});
