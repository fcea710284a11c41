//! `ControlRequest::decode` (docs/DESIGN.md §5: every wire message is decoded without panics; an
//! accepted request re-encodes to the bytes received, which its bound reply hashes).
#![no_main]
use quloud::domain::wire::ControlRequest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quloud_fuzz::exact_round_trip(data, ControlRequest::decode, ControlRequest::encode);
});
