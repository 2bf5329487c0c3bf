//! LayerScale (Touvron et al., CaiT): a learned per-channel scale on each residual branch.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};

/// timm's `LayerScale` (`ls1`, `ls2`; HF DINOv2 calls the parameter `lambda1`).
#[derive(Module, Debug)]
pub struct LayerScale {
    /// Per-channel scale `[D]`.
    pub gamma: Param<Tensor<1>>,
}

impl LayerScale {
    /// A scale of `init` on every channel.
    pub fn new(dim: usize, init: f64, device: &Device) -> Self {
        Self {
            gamma: Initializer::Constant { value: init }.init([dim], device),
        }
    }

    /// # Shapes
    /// - x: `[B, S, D]`
    /// - output: `[B, S, D]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        x * self.gamma.val().unsqueeze::<3>()
    }
}
