//! A file staged in part (docs/DESIGN.md §12): which byte ranges of its sparse staging copy hold
//! its content; every other byte below `base_len` still comes from its chunk list.

use crate::domain::fs::Extent;
use std::collections::BTreeMap;

/// The local part of a file staged in part: a byte of the file is *local* (read from the staging
/// copy) when it lies in a written range or at or beyond `base_len`; any other byte is the byte
/// of the file's committed chunks at the same offset (writes never move data, so offsets agree).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partial {
    /// Bytes below this may come from the chunk list (the committed size, lowered by truncates).
    base_len: u64,
    /// Written ranges, start → end, disjoint and not touching.
    present: BTreeMap<u64, u64>,
}

/// A run of bytes that all come from one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// `[start, end)` is in the staging copy.
    Local { start: u64, end: u64 },
    /// `[start, end)` is in the committed chunks.
    Chunks { start: u64, end: u64 },
}

/// Encoding version of [`Partial::encode`].
const VERSION: u8 = 1;
/// Most written ranges a record may hold (a malformed record must not allocate without bound).
const MAX_RANGES: usize = 1 << 24;

impl Partial {
    /// A file of `base_len` committed bytes with nothing staged yet.
    pub fn new(base_len: u64) -> Self {
        Partial { base_len, present: BTreeMap::new() }
    }

    /// Bytes below this may come from the chunk list.
    pub fn base_len(&self) -> u64 {
        self.base_len
    }

    /// Bytes written into the staging copy below `base_len` (the local part that replaced
    /// committed data).
    pub fn present_bytes(&self) -> u64 {
        self.present.iter().map(|(s, e)| e.min(&self.base_len).saturating_sub(*s)).sum()
    }

    /// Records that `[start, end)` was written into the staging copy.
    pub fn add(&mut self, start: u64, end: u64) {
        let end = end.min(self.base_len);
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        // Merge with every range that overlaps or touches [s, e).
        let touching: Vec<(u64, u64)> = self
            .present
            .range(..=e)
            .rev()
            .take_while(|(_, &re)| re >= s)
            .map(|(&rs, &re)| (rs, re))
            .collect();
        for (rs, re) in touching {
            self.present.remove(&rs);
            s = s.min(rs);
            e = e.max(re);
        }
        self.present.insert(s, e);
    }

    /// The file was truncated to `len`: nothing at or beyond it comes from the chunks any more.
    pub fn truncate(&mut self, len: u64) {
        self.base_len = self.base_len.min(len);
        let cut = self.base_len;
        self.present.retain(|&s, _| s < cut);
        for e in self.present.values_mut() {
            *e = (*e).min(cut);
        }
    }

    /// The run that starts at `pos`, ending no later than `end`.
    pub fn run(&self, pos: u64, end: u64) -> Run {
        if pos >= self.base_len {
            return Run::Local { start: pos, end };
        }
        if let Some((_, &re)) = self.present.range(..=pos).next_back().filter(|(_, &re)| re > pos) {
            return Run::Local { start: pos, end: re.min(end) };
        }
        let next = self.present.range(pos..).next().map_or(self.base_len, |(&s, _)| s);
        Run::Chunks { start: pos, end: next.min(self.base_len).min(end) }
    }

    /// The runs that make up `[start, end)`, in order.
    pub fn runs(&self, start: u64, end: u64) -> Vec<Run> {
        let mut out = Vec::new();
        let mut pos = start;
        while pos < end {
            let run = self.run(pos, end);
            pos = match run {
                Run::Local { end, .. } | Run::Chunks { end, .. } => end,
            };
            out.push(run);
        }
        out
    }

    /// Whether any byte of `[start, end)` is local (written, or beyond `base_len`).
    pub fn dirty(&self, start: u64, end: u64) -> bool {
        start < end && !matches!(self.run(start, end), Run::Chunks { end: e, .. } if e >= end)
    }

    /// Whether the committed chunk `e` is also a chunk of the file as it is now, whose size is
    /// `size`: its bytes are unchanged and its end is still a cut a fresh chunking would make.
    /// The last committed chunk (`last`) ended where the file ended, not at a content-defined
    /// cut, so it stays only if the file still ends there.
    pub fn keeps(&self, e: &Extent, last: bool, size: u64) -> bool {
        let end = e.offset + u64::from(e.len);
        !self.dirty(e.offset, end) && end <= size && (!last || end == size)
    }

    /// The record kept in the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13 + self.present.len() * 16);
        out.push(VERSION);
        out.extend_from_slice(&self.base_len.to_le_bytes());
        out.extend_from_slice(&(self.present.len() as u32).to_le_bytes());
        for (s, e) in &self.present {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
        }
        out
    }

    /// Decodes [`Partial::encode`]'s record; `None` when it is malformed.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let (&version, rest) = b.split_first()?;
        if version != VERSION || rest.len() < 12 {
            return None;
        }
        let u64_at =
            |b: &[u8], i: usize| b.get(i..i + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
        let base_len = u64_at(rest, 0)?;
        let n = u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
        let body = &rest[12..];
        if n > MAX_RANGES || body.len() != n * 16 {
            return None;
        }
        let mut p = Partial::new(base_len);
        for i in 0..n {
            let (s, e) = (u64_at(body, i * 16)?, u64_at(body, i * 16 + 8)?);
            if s >= e {
                return None;
            }
            p.add(s, e);
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn local_bytes(p: &Partial, size: u64) -> Vec<bool> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < size {
            let (local, end) = match p.run(pos, size) {
                Run::Local { end, .. } => (true, end),
                Run::Chunks { end, .. } => (false, end),
            };
            assert!(end > pos, "empty run at {pos}");
            out.extend(std::iter::repeat_n(local, (end - pos) as usize));
            pos = end;
        }
        out
    }

    proptest! {
        #[test]
        fn runs_follow_a_byte_model(
            base in 0u64..300,
            ops in proptest::collection::vec((any::<bool>(), 0u64..320, 0u64..64), 0..24),
        ) {
            let mut p = Partial::new(base);
            let mut model: Vec<bool> = vec![false; base as usize];
            let mut size = base;
            for (write, at, len) in ops {
                if write {
                    p.add(at, at + len);
                    size = size.max(at + len);
                    model.resize(size as usize, true);
                    for b in &mut model[at as usize..(at + len) as usize] {
                        *b = true;
                    }
                } else {
                    p.truncate(at);
                    size = at;
                    model.resize(size as usize, true);
                }
            }
            prop_assert_eq!(local_bytes(&p, size), model.clone());
            prop_assert_eq!(Partial::decode(&p.encode()), Some(p.clone()));
            for (s, e) in [(0, size), (size / 3, size / 2)] {
                prop_assert_eq!(p.dirty(s, e), model[s as usize..e as usize].iter().any(|&b| b));
            }
        }
    }

    #[test]
    fn malformed_records_are_refused() {
        let mut p = Partial::new(100);
        p.add(10, 20);
        let good = p.encode();
        assert!(Partial::decode(&good[..good.len() - 1]).is_none());
        assert!(Partial::decode(&[]).is_none());
        let mut bad = good.clone();
        bad[0] = 9;
        assert!(Partial::decode(&bad).is_none());
        let mut huge = good[..13].to_vec();
        huge[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Partial::decode(&huge).is_none());
    }
}
