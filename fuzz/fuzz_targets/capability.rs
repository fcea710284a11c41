//! `Capability::decode`: share capabilities are text that users paste.
#![no_main]
use quloud::domain::share::Capability;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Capability::decode(text);
    }
});
