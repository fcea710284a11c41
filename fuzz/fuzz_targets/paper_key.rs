//! `paper::decode`: paper keys are text that users type back in at `quloud restore`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = quloud::domain::paper::decode(text);
    }
});
