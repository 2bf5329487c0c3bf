//! LayerNorm on the fused kernel ([`vit_kernels::layer_norm`]).

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};

/// timm's `nn.LayerNorm(D, eps)`. The fields are named as Burn's own `LayerNorm` (`gamma`,
/// `beta`), so records written by earlier versions load, and the state dict maps them to timm's
/// `weight` / `bias`.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// Scale, `[D]`, initialised to ones.
    pub gamma: Param<Tensor<1>>,
    /// Shift, `[D]`, initialised to zeros.
    pub beta: Option<Param<Tensor<1>>>,
    epsilon: f64,
}

impl LayerNorm {
    /// A LayerNorm over `d` features with `epsilon` added to the variance.
    pub fn new(d: usize, epsilon: f64, device: &Device) -> Self {
        Self {
            gamma: Initializer::Ones.init([d], device),
            beta: Some(Initializer::Zeros.init([d], device)),
            epsilon,
        }
    }

    /// # Shapes
    /// - x, output: `[..., D]`
    pub fn forward<const N: usize>(&self, x: Tensor<N>) -> Tensor<N> {
        match &self.beta {
            Some(beta) => vit_kernels::layer_norm(x, self.gamma.val(), beta.val(), self.epsilon),
            None => burn::tensor::module::layer_norm(x, self.gamma.val(), None, self.epsilon),
        }
    }
}
