//! `AuditRequest::decode` (docs/DESIGN.md §5: every wire message is decoded without panics).
#![no_main]
use quloud::domain::wire::AuditRequest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quloud_fuzz::exact_round_trip(data, AuditRequest::decode, AuditRequest::encode);
});
