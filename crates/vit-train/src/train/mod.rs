//! Training: the [`Trainer`] (a run's state and its start, step, validation and checkpoint,
//! finish) and the pieces it calls: the schedule, one optimiser step (gradient accumulation,
//! global-norm clipping), the moving average, the cadence of validation and checkpoints, the
//! run's records, checkpoints and resume, the run folder's lock, and signals.

pub mod cadence;
pub mod checkpoint;
pub mod clip;
pub mod ema;
pub mod interrupt;
pub mod lock;
pub mod log;
pub mod optim;
pub mod schedule;
pub mod step;
pub mod trainer;

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::config::Config;
use crate::eval::EvalReport;
pub use interrupt::{Interrupt, Signal};
pub use trainer::{Ending, Start, Trainer};

/// What a finished run reports.
pub struct Summary {
    /// Optimiser steps done (in all, the run's earlier parts included) and the epoch reached.
    pub steps: usize,
    pub epoch: usize,
    /// How it ended: finished, `--stop-after`, or a signal.
    pub ending: Ending,
    pub val: Option<EvalReport>,
    pub test: Option<EvalReport>,
    pub seconds: f64,
    pub dir: PathBuf,
    /// Training loss of each step run in this process (for tests of resume).
    pub losses: Vec<f64>,
    /// Image files left out as unreadable (`data.on_bad_image = "skip"`), each once: why,
    /// naming the file.
    pub skipped: Vec<String>,
}

/// Options of a run beyond its recipe.
#[derive(Default, Clone)]
pub struct RunOptions {
    /// Stop after this many steps in total (the schedule still spans the whole run).
    pub stop_after: Option<usize>,
    /// Skip the final test-set evaluation.
    pub skip_test: bool,
    /// Run on this device instead of the recipe's `train.device` (a device name, as
    /// [`vit_model::device`] lists them): a resumed run moves to it, and its checkpoints
    /// record it from then on.
    pub device: Option<String>,
    /// Stop cleanly (after the current step, with `last` written) when this is set:
    /// [`Interrupt::install`] connects it to SIGINT and SIGTERM.
    pub interrupt: Option<Interrupt>,
}

/// Total optimiser steps of a run and steps per epoch.
pub fn step_counts(config: &Config, train_len: usize) -> Result<(usize, usize)> {
    let t = &config.train;
    let per_epoch = train_len / t.batch_size;
    if per_epoch == 0 {
        bail!(
            "train.batch_size {} is larger than the training set ({train_len} images)",
            t.batch_size
        );
    }
    let total = per_epoch * t.epochs;
    Ok((t.max_steps.map_or(total, |m| m.min(total)), per_epoch))
}

/// Runs a recipe (or resumes a run) to its end: [`Trainer::start`] then [`Trainer::run`].
pub fn run(start: Start, options: RunOptions) -> Result<Summary> {
    Trainer::start(start, options)?.run()
}
