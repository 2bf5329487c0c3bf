//! When a step is followed by a validation and a checkpoint.

use crate::config::TrainSection;

/// What is due after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Nothing,
    /// `last` only (`train.checkpoint_every`).
    Checkpoint,
    /// Validation, then `last` (and `best` when it improved): at each epoch's end, every
    /// `train.eval_every` steps, and at the run's last step.
    ValidateAndCheckpoint,
}

/// What is due after optimiser step `step` (1-based) of a run stopping at `stop`.
pub fn due(t: &TrainSection, step: usize, epoch_end: bool, stop: usize) -> Due {
    let periodic = t.eval_every > 0 && step.is_multiple_of(t.eval_every);
    if epoch_end || periodic || step == stop {
        Due::ValidateAndCheckpoint
    } else if t.checkpoint_every > 0 && step.is_multiple_of(t.checkpoint_every) {
        Due::Checkpoint
    } else {
        Due::Nothing
    }
}
