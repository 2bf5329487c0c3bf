//! The transformer block's MLP: Linear -> GELU -> dropout -> Linear -> dropout.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear};
use burn::tensor::{Device, Tensor};

use crate::attention::xavier_linear;

/// timm's `Mlp` (`fc1`, `fc2`).
#[derive(Module, Debug)]
pub struct Mlp {
    /// Linear(D -> M).
    pub fc1: Linear,
    drop1: Dropout,
    /// Linear(M -> D).
    pub fc2: Linear,
    drop2: Dropout,
}

/// Configuration of an [`Mlp`] (timm `Mlp` with GELU).
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Input and output width D.
    pub dim: usize,
    /// Hidden width M.
    pub hidden: usize,
    /// Dropout after each Linear. Default: `0.0`.
    #[config(default = 0.0)]
    pub drop: f64,
}

impl MlpConfig {
    /// Builds the MLP with xavier-uniform weights and N(0, 1e-6) biases (the JAX init).
    pub fn init(&self, device: &Device) -> Mlp {
        let tiny_bias = Initializer::Normal {
            mean: 0.0,
            std: 1e-6,
        };
        let (dim, hidden) = (self.dim, self.hidden);
        let mut fc1 = xavier_linear(dim, hidden, true, device);
        let mut fc2 = xavier_linear(hidden, dim, true, device);
        fc1.bias = Some(tiny_bias.init([hidden], device));
        fc2.bias = Some(tiny_bias.init([dim], device));
        Mlp {
            fc1,
            drop1: DropoutConfig::new(self.drop).init(),
            fc2,
            drop2: DropoutConfig::new(self.drop).init(),
        }
    }
}

impl Mlp {
    /// # Shapes
    /// - x: `[B, S, D]`
    /// - output: `[B, S, D]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.drop1.forward(vit_kernels::linear_gelu(&self.fc1, x));
        self.drop2.forward(vit_kernels::linear(&self.fc2, x))
    }
}
