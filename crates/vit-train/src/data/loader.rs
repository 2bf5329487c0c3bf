//! Batches prepared on worker threads, delivered in order, a few steps ahead of the model.
//!
//! Every random choice is seeded from (seed, epoch, position), so a run is the same whatever
//! the thread timing, and a resumed run sees exactly the batches the straight run saw.
//!
//! A worker that cannot make a batch (an unreadable image, or a panic in a transform) sends
//! the error in the batch's place and stops; the loader yields it in order, so the run stops
//! on it instead of taking the closed channel for the end of the epoch.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use anyhow::{Context, Result, anyhow, bail};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::ImageSet;
use super::transforms::{Transform, mix_batch, soft_targets};
use crate::config::OnBadImage;

/// One batch: normalised images `[B, C, H, W]` flattened, labels, and soft targets `[B, K]`.
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub targets: Vec<f32>,
    /// Images of the plan left out as unreadable (`data.on_bad_image = "skip"`): why, naming
    /// the file.
    pub skipped: Vec<String>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// How batches are made.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Shuffled, augmented, label-smoothed and mixed as configured.
    Train {
        seed: u64,
        epoch: usize,
        smoothing: f64,
    },
    /// In order, normalised only, one-hot targets.
    Eval,
}

/// A stable 64-bit mix of the seed and positions (splitmix64 finaliser).
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &p in parts {
        h ^= p
            .wrapping_add(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

/// The batches of one epoch: index lists of `batch_size` (the last one may be short unless
/// `drop_last`).
pub fn plan(n: usize, batch_size: usize, mode: Mode, drop_last: bool) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    if let Mode::Train { seed, epoch, .. } = mode {
        idx.shuffle(&mut StdRng::seed_from_u64(mix_seed(&[seed, epoch as u64])));
    }
    idx.chunks(batch_size)
        .filter(|c| !drop_last || c.len() == batch_size)
        .map(|c| c.to_vec())
        .collect()
}

/// The batches of one training epoch of `set`: [`plan`]'s shuffle, or for WebDataset shards
/// a webdataset pipeline's order (shards shuffled, read by `streams` readers, mixed by a
/// shuffle buffer of `buffer` samples filled to `initial` first; `webdataset::order`).
pub fn train_plan(
    set: &ImageSet,
    batch_size: usize,
    mode: Mode,
    (streams, buffer, initial): (usize, usize, usize),
) -> Vec<Vec<usize>> {
    let (crate::data::Pixels::Shards { shard_of, .. }, Mode::Train { seed, epoch, .. }) =
        (&set.pixels, mode)
    else {
        return plan(set.len(), batch_size, mode, true);
    };
    let n_shards = shard_of.iter().max().map_or(0, |&m| m as usize + 1);
    let mut shards = vec![Vec::new(); n_shards];
    for (i, &s) in shard_of.iter().enumerate() {
        shards[s as usize].push(i);
    }
    let order =
        crate::data::webdataset::order::epoch_order(&shards, streams, buffer, initial, seed, epoch);
    order
        .chunks(batch_size)
        .filter(|c| c.len() == batch_size)
        .map(|c| c.to_vec())
        .collect()
}

/// Makes batch number `number` of the plan. An image that cannot be read stops the batch
/// with an error naming its file, or with `on_bad_image = "skip"` is left out of it and
/// reported in `skipped`; a batch left with no image at all is an error.
pub fn make_batch(
    set: &ImageSet,
    indices: &[usize],
    number: usize,
    mode: Mode,
    transform: &Transform,
) -> Result<Batch> {
    let classes = set.classes.len();
    let per = set.shape.iter().product::<usize>();
    let mut images = Vec::with_capacity(indices.len() * per);
    let mut labels = Vec::with_capacity(indices.len());
    let mut skipped = Vec::new();
    let mut add = |i: usize, made: Result<Vec<f32>>| -> Result<()> {
        match made {
            Ok(px) => {
                images.extend(px);
                labels.push(set.labels[i]);
                Ok(())
            }
            Err(e) if transform.on_bad_image == OnBadImage::Skip => {
                skipped.push(format!("{e:#}"));
                Ok(())
            }
            Err(e) => Err(e.context("set data.on_bad_image = \"skip\" to leave such files out")),
        }
    };
    match mode {
        Mode::Eval => {
            for &i in indices {
                add(i, transform.eval(set.source(i), set.shape))?;
            }
        }
        Mode::Train { seed, epoch, .. } => {
            for &i in indices {
                let mut rng = StdRng::seed_from_u64(mix_seed(&[seed, epoch as u64, i as u64, 1]));
                add(i, transform.train(set.source(i), set.shape, &mut rng))?;
            }
        }
    }
    if labels.is_empty() {
        bail!(
            "no image of the batch could be read: {}",
            skipped.first().map_or("", String::as_str)
        );
    }
    let smoothing = match mode {
        Mode::Train { smoothing, .. } => smoothing,
        Mode::Eval => 0.0,
    };
    let mut targets = soft_targets(&labels, classes, smoothing);
    if let Mode::Train { seed, epoch, .. } = mode {
        let a = &transform.augment;
        let mut rng = StdRng::seed_from_u64(mix_seed(&[seed, epoch as u64, number as u64, 2]));
        mix_batch(
            &mut images,
            &mut targets,
            set.shape,
            classes,
            a.mixup_alpha,
            a.cutmix_alpha,
            &mut rng,
        );
    }
    Ok(Batch {
        images,
        labels,
        targets,
        skipped,
    })
}

/// Makes a batch on a worker thread: an error or a panic becomes an error that names the
/// batch and its images.
fn make_batch_reported(
    set: &ImageSet,
    indices: &[usize],
    number: usize,
    mode: Mode,
    transform: &Transform,
) -> Result<Batch> {
    let made = catch_unwind(AssertUnwindSafe(|| {
        make_batch(set, indices, number, mode, transform)
    }))
    .unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a loader worker panicked".into());
        Err(anyhow!(message))
    });
    made.with_context(|| {
        let shown: Vec<String> = indices.iter().take(8).map(|i| i.to_string()).collect();
        let more = if indices.len() > 8 { ", ..." } else { "" };
        format!(
            "cannot make batch {number} (images {}{more})",
            shown.join(", ")
        )
    })
}

/// Iterates the batches of a plan, made on `workers` threads (each two batches ahead), as
/// `Result`s: a batch that could not be made is an error, in its place.
pub struct Loader {
    receivers: Vec<Receiver<Result<Batch>>>,
    skip: usize,
    next: usize,
    total: usize,
}

impl Loader {
    /// Starts the workers for `plan`, skipping its first `skip` batches (resume).
    pub fn new(
        set: Arc<ImageSet>,
        plan: Vec<Vec<usize>>,
        skip: usize,
        mode: Mode,
        transform: Arc<Transform>,
        workers: usize,
    ) -> Self {
        let workers = workers.max(1);
        let total = plan.len();
        let plan = Arc::new(plan);
        let receivers = (0..workers)
            .map(|w| {
                let (tx, rx): (SyncSender<Result<Batch>>, Receiver<Result<Batch>>) =
                    sync_channel(2);
                let (set, plan, transform) = (set.clone(), plan.clone(), transform.clone());
                thread::spawn(move || {
                    let mut number = skip + w;
                    while number < plan.len() {
                        let batch =
                            make_batch_reported(&set, &plan[number], number, mode, &transform);
                        let failed = batch.is_err();
                        if tx.send(batch).is_err() || failed {
                            return; // the loader was dropped, or this worker is done
                        }
                        number += workers;
                    }
                });
                rx
            })
            .collect();
        Self {
            receivers,
            skip,
            next: skip,
            total,
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    /// The next batch of the plan; `None` only after the last one. A worker that ended
    /// without sending its batch is an error, not the end of the epoch.
    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.total {
            return None;
        }
        // Worker w makes batches skip + w, skip + w + workers, ...
        let worker = (self.next - self.skip) % self.receivers.len();
        let number = self.next;
        self.next += 1;
        Some(self.receivers[worker].recv().unwrap_or_else(|_| {
            Err(anyhow!(
                "the loader worker making batch {number} of {} stopped without a result",
                self.total
            ))
        }))
    }
}
