//! `StaleReply::decode` (docs/DESIGN.md §5: every wire message is decoded without panics).
#![no_main]
use quloud::domain::wire::StaleReply;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quloud_fuzz::round_trip(data, StaleReply::decode, StaleReply::encode);
});
