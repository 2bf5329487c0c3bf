//! The order a training epoch sees a shard set in, as a webdataset pipeline makes it: the
//! shards shuffled from the seed and the epoch, split over `streams` readers (shard k of the
//! epoch's order to reader k mod `streams`, each reading its shards front to back), the
//! readers' samples taken in turn, and mixed by a shuffle buffer (webdataset's `shuffle`:
//! fill to `initial`, then emit a random element, replaced by the next sample). A pure
//! function of the seed, the epoch and the shard sizes: an epoch resumed at batch `k` replays
//! it to the same samples without reading any of the skipped ones.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::data::loader::mix_seed;

/// The buffer of [`shuffle`]: timm's `reader_wds` defaults (`WDS_SHUFFLE_SIZE`,
/// `WDS_INITIAL_SIZE`).
pub const SHUFFLE_BUFFER: usize = 8192;
pub const SHUFFLE_INITIAL: usize = 2048;

/// Sample indices of one epoch. `shards[s]` lists the indices of shard `s`'s samples in the
/// shard's order.
pub fn epoch_order(
    shards: &[Vec<usize>],
    streams: usize,
    buffer: usize,
    initial: usize,
    seed: u64,
    epoch: usize,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..shards.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(mix_seed(&[
        seed,
        epoch as u64,
        11,
    ])));
    let streams = streams.clamp(1, shards.len().max(1));
    // Each reader's samples, front to back through its shards.
    let mut readers: Vec<std::iter::Flatten<std::vec::IntoIter<std::slice::Iter<'_, usize>>>> = (0
        ..streams)
        .map(|r| {
            order
                .iter()
                .skip(r)
                .step_by(streams)
                .map(|&s| shards[s].iter())
                .collect::<Vec<_>>()
                .into_iter()
                .flatten()
        })
        .collect();
    let mut interleaved = Vec::with_capacity(shards.iter().map(Vec::len).sum());
    let mut live = streams;
    while live > 0 {
        live = 0;
        for r in readers.iter_mut() {
            if let Some(&i) = r.next() {
                interleaved.push(i);
                live += 1;
            }
        }
    }
    let mut rng = StdRng::seed_from_u64(mix_seed(&[seed, epoch as u64, 12]));
    shuffle(interleaved, buffer, initial, &mut rng)
}

/// webdataset's `_shuffle(data, bufsize, initial)`: each sample read joins the buffer (with
/// one more while the buffer is short of `bufsize`); once it holds `initial`, each step emits
/// a random element (the last one moved into its place); at the end the buffer drains.
pub fn shuffle(data: Vec<usize>, bufsize: usize, initial: usize, rng: &mut impl Rng) -> Vec<usize> {
    let initial = initial.min(bufsize).max(1);
    let mut out = Vec::with_capacity(data.len());
    let mut buf: Vec<usize> = Vec::with_capacity(bufsize + 1);
    let mut pick = |buf: &mut Vec<usize>, out: &mut Vec<usize>| {
        let k = rng.random_range(0..buf.len());
        out.push(buf.swap_remove(k));
    };
    let mut it = data.into_iter();
    while let Some(sample) = it.next() {
        buf.push(sample);
        if buf.len() < bufsize
            && let Some(next) = it.next()
        {
            buf.push(next);
        }
        if buf.len() >= initial {
            pick(&mut buf, &mut out);
        }
    }
    while !buf.is_empty() {
        pick(&mut buf, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_is_a_permutation_mixed_across_shards_and_new_each_epoch() {
        let shards: Vec<Vec<usize>> = (0..6).map(|s| (s * 10..s * 10 + 10).collect()).collect();
        let a = epoch_order(&shards, 2, 16, 4, 7, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..60).collect::<Vec<_>>());
        // The first batch of 8 already holds samples of more than one shard.
        let first: std::collections::BTreeSet<usize> = a[..8].iter().map(|i| i / 10).collect();
        assert!(first.len() > 1, "{a:?}");
        assert_eq!(a, epoch_order(&shards, 2, 16, 4, 7, 0));
        assert_ne!(a, epoch_order(&shards, 2, 16, 4, 7, 1));
        // A buffer of one is no shuffle: the readers' samples in turn.
        let plain = epoch_order(&shards, 1, 1, 1, 7, 0);
        let mut by_shard: Vec<usize> = plain.iter().map(|i| i / 10).collect();
        by_shard.dedup();
        assert_eq!(by_shard.len(), 6, "whole shards, front to back: {plain:?}");
    }
}
