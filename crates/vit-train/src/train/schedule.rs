//! The learning rate of each optimiser step: linear warmup, then cosine / linear / constant.

use crate::config::{Schedule, TrainSection};

/// Learning rate for optimiser step `step` (0-based) of `total`.
///
/// Warmup rises linearly to the peak over `warmup_steps`, its first step at `lr / warmup`
/// (not 0, which would waste a step); the decay then runs from the peak to `min_lr` at the
/// last step.
pub fn lr_at(step: usize, total: usize, t: &TrainSection) -> f64 {
    if step < t.warmup_steps {
        return t.lr * (step + 1) as f64 / t.warmup_steps as f64;
    }
    let span = total.saturating_sub(t.warmup_steps).max(1);
    let p = ((step - t.warmup_steps) as f64 / span as f64).min(1.0);
    match t.schedule {
        Schedule::Constant => t.lr,
        Schedule::Linear => t.lr - (t.lr - t.min_lr) * p,
        Schedule::Cosine => {
            t.min_lr + (t.lr - t.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_min() {
        let t = TrainSection {
            lr: 1.0,
            min_lr: 0.1,
            warmup_steps: 4,
            ..Default::default()
        };
        assert_eq!(lr_at(0, 14, &t), 0.25);
        assert_eq!(lr_at(3, 14, &t), 1.0);
        assert_eq!(lr_at(4, 14, &t), 1.0);
        assert!((lr_at(9, 14, &t) - 0.55).abs() < 1e-12);
        assert!((lr_at(14, 14, &t) - 0.1).abs() < 1e-12);
        let lin = TrainSection {
            schedule: Schedule::Linear,
            ..t
        };
        assert!((lr_at(9, 14, &lin) - 0.55).abs() < 1e-12);
        assert!((lr_at(6, 14, &lin) - 0.82).abs() < 1e-12);
    }
}
