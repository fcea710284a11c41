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

/// Like [`round_trip`], and what is accepted re-encodes to exactly the bytes received: a node
/// binds its signed reply to the hash of a request's encoding, recomputed from the decoded value
/// for each challenge of an audit batch, so decoding must be exact.
pub fn exact_round_trip<T, E>(data: &[u8], decode: fn(&[u8]) -> Result<T, E>, encode: fn(&T) -> Vec<u8>)
where
    T: PartialEq + std::fmt::Debug,
{
    if let Ok(value) = decode(data) {
        assert_eq!(encode(&value), data, "an accepted message re-encodes to other bytes");
    }
}
