//! What every Quloud fuzz target checks: a decoder never panics, and what it accepts encodes
//! to bytes that decode to the same value.

/// Decodes `data` with `decode`; if it is accepted, checks that `encode` of the value decodes
/// to an equal value.
pub fn round_trip<T, E>(data: &[u8], decode: fn(&[u8]) -> Result<T, E>, encode: fn(&T) -> Vec<u8>)
where
    T: PartialEq + std::fmt::Debug,
{
    if let Ok(value) = decode(data) {
        let again = decode(&encode(&value)).ok();
        assert_eq!(again.as_ref(), Some(&value), "an accepted message does not survive re-encoding");
    }
}
