//! Stochastic depth (Huang et al. 2016): drop a whole residual branch per sample.

use burn::module::{Flag, Module, Param};
use burn::tensor::{Distribution, Tensor};

/// timm's `DropPath`: in training, zeroes the branch of each sample with probability `prob`
/// and scales the kept ones by `1 / (1 - prob)`; the identity in evaluation.
#[derive(Module, Debug)]
pub struct DropPath {
    /// Probability of dropping the branch of a sample.
    pub prob: f64,
    /// Whether to behave as during training (cleared by `valid()`/`freeze()`, as Dropout's).
    pub training: Param<Flag>,
}

impl DropPath {
    /// A DropPath with drop probability `prob`.
    pub fn new(prob: f64) -> Self {
        Self {
            prob,
            training: Param::from_bool(true),
        }
    }

    /// # Shapes
    /// - x: `[B, S, D]`
    /// - output: `[B, S, D]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        // Same rule as burn's Dropout: only on an autodiff device, in training mode.
        if self.prob == 0.0 || !self.training.is_enabled() || !x.device().is_autodiff() {
            return x;
        }
        let keep = 1.0 - self.prob;
        let [b, _, _] = x.dims();
        let mask = Tensor::<3>::random([b, 1, 1], Distribution::Bernoulli(keep), &x.device());
        x * mask / keep
    }
}
