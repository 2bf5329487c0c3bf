//! Byte-level mutations for the parser fuzz tests (shared by both crates' `tests/fuzz.rs`):
//! a seed file (a real one) changed by a few edits of the kinds that break parsers — flipped
//! bits, boundary values written over length and count fields, truncation, inserted or deleted
//! runs. proptest draws and shrinks the edits, so a failure is reported as a short list of them.
//!
//! Cases per property: `FUZZ_CASES` (default: the bounded run CI makes); a longer run is the
//! same test with a larger number, e.g. `FUZZ_CASES=200000 cargo test --release --test fuzz`.
#![allow(dead_code)]

use proptest::prelude::*;

/// One edit of a byte buffer; positions are fractions of its length (in 1/65536), so that an
/// edit means the same on any seed and shrinks towards the start.
#[derive(Clone, Debug)]
pub enum Edit {
    /// XOR a byte with a mask.
    Flip(u16, u8),
    /// Write a little- or big-endian u32 or u64 boundary value (a length or count field).
    Word(u16, u64, u8),
    /// Keep only the first part.
    Truncate(u16),
    /// Remove up to 64 bytes.
    Delete(u16, u8),
    /// Insert bytes.
    Insert(u16, Vec<u8>),
}

fn at(frac: u16, len: usize) -> usize {
    (frac as usize * len) >> 16
}

const BOUNDARY: [u64; 10] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<u16>(), 1u8..).prop_map(|(p, m)| Edit::Flip(p, m)),
        2 => (any::<u16>(), prop::sample::select(&BOUNDARY[..]), 0u8..4)
            .prop_map(|(p, v, k)| Edit::Word(p, v, k)),
        1 => any::<u16>().prop_map(Edit::Truncate),
        1 => (any::<u16>(), 1u8..64).prop_map(|(p, n)| Edit::Delete(p, n)),
        1 => (any::<u16>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| Edit::Insert(p, b)),
    ]
}

/// One to four edits.
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..=4)
}

pub fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let len = b.len();
        match e {
            Edit::Flip(p, m) if len > 0 => b[at(*p, len)] ^= m,
            Edit::Word(p, v, kind) => {
                let bytes: Vec<u8> = match kind {
                    0 => (*v as u32).to_le_bytes().to_vec(),
                    1 => (*v as u32).to_be_bytes().to_vec(),
                    2 => v.to_le_bytes().to_vec(),
                    _ => v.to_be_bytes().to_vec(),
                };
                let start = at(*p, len);
                for (i, x) in bytes.into_iter().enumerate() {
                    if let Some(slot) = b.get_mut(start + i) {
                        *slot = x;
                    }
                }
            }
            Edit::Truncate(p) => b.truncate(at(*p, len)),
            Edit::Delete(p, n) => {
                let start = at(*p, len);
                let end = (start + *n as usize).min(len);
                b.drain(start..end);
            }
            Edit::Insert(p, bytes) => {
                let start = at(*p, len);
                b.splice(start..start, bytes.iter().copied());
            }
            Edit::Flip(..) => {}
        }
    }
    b
}

/// Cases per property: `FUZZ_CASES`, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
