//! `StoreRequest::decode` (docs/DESIGN.md §5: every wire message is decoded without panics).
#![no_main]
use quloud::domain::wire::StoreRequest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quloud_fuzz::round_trip(data, StoreRequest::decode, StoreRequest::encode);
});
