//! Batches prepared on worker threads, delivered in order, a few steps ahead of the model.
//!
//! Every random choice is seeded from (seed, epoch, position), so a run is the same whatever
//! the thread timing, and a resumed run sees exactly the batches the straight run saw.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::ImageSet;
use super::transforms::{Transform, mix_batch, soft_targets};

/// One batch: normalised images `[B, C, H, W]` flattened, labels, and soft targets `[B, K]`.
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub targets: Vec<f32>,
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

/// Makes batch number `number` of the plan.
pub fn make_batch(
    set: &ImageSet,
    indices: &[usize],
    number: usize,
    mode: Mode,
    transform: &Transform,
) -> Batch {
    let classes = set.classes.len();
    let per = set.shape.iter().product::<usize>();
    let mut images = Vec::with_capacity(indices.len() * per);
    let labels: Vec<u32> = indices.iter().map(|&i| set.labels[i]).collect();
    match mode {
        Mode::Eval => {
            for &i in indices {
                images.extend(transform.eval(&set.image(i), set.shape));
            }
            let targets = soft_targets(&labels, classes, 0.0);
            Batch {
                images,
                labels,
                targets,
            }
        }
        Mode::Train {
            seed,
            epoch,
            smoothing,
        } => {
            for &i in indices {
                let mut rng = StdRng::seed_from_u64(mix_seed(&[seed, epoch as u64, i as u64, 1]));
                images.extend(transform.train(&set.image(i), set.shape, &mut rng));
            }
            let mut targets = soft_targets(&labels, classes, smoothing);
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
            Batch {
                images,
                labels,
                targets,
            }
        }
    }
}

/// Iterates the batches of a plan, made on `workers` threads (each two batches ahead).
pub struct Loader {
    receivers: Vec<Receiver<Batch>>,
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
                let (tx, rx): (SyncSender<Batch>, Receiver<Batch>) = sync_channel(2);
                let (set, plan, transform) = (set.clone(), plan.clone(), transform.clone());
                thread::spawn(move || {
                    let mut number = skip + w;
                    while number < plan.len() {
                        let batch = make_batch(&set, &plan[number], number, mode, &transform);
                        if tx.send(batch).is_err() {
                            return; // the loader was dropped
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
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        // Worker w makes batches skip + w, skip + w + workers, ...
        let worker = (self.next - self.skip) % self.receivers.len();
        let batch = self.receivers[worker].recv().ok();
        self.next += 1;
        batch
    }
}
