//! GroupNorm with an optional ReLU after it: timm's `GroupNormAct`.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::fused;

/// `GroupNormAct(C, num_groups, eps, apply_act)`: statistics over each group of channels and
/// the whole image (biased variance), a per-channel affine, then ReLU when `act`.
#[derive(Module, Debug)]
pub struct GroupNormAct {
    /// Per-channel scale `[C]` (timm `weight`).
    pub weight: Param<Tensor<1>>,
    /// Per-channel shift `[C]` (timm `bias`).
    pub bias: Param<Tensor<1>>,
    groups: usize,
    eps: f64,
    act: bool,
}

impl GroupNormAct {
    /// Scale ones (zeros with `zero_scale`, a residual branch's last norm), shift zeros.
    pub fn new(
        channels: usize,
        groups: usize,
        eps: f64,
        act: bool,
        zero_scale: bool,
        device: &Device,
    ) -> Self {
        let scale = if zero_scale {
            Initializer::Zeros
        } else {
            Initializer::Ones
        };
        Self {
            weight: scale.init([channels], device),
            bias: Initializer::Zeros.init([channels], device),
            groups,
            eps,
            act,
        }
    }

    /// # Shapes
    /// - x, output: `[B, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let (g, n) = (self.groups, (c / self.groups) * h * w);
        // A group's statistics are a LayerNorm's over its flattened values: the fused
        // kernel (one pass for the moments, one to normalise; its own gradient).
        let device = x.device();
        let (ones, zeros) = (Tensor::ones([n], &device), Tensor::zeros([n], &device));
        let y =
            fused::layer_norm(x.reshape([b, g, n]), ones, zeros, self.eps).reshape([b, c, h, w]);
        let y = y * self.weight.val().reshape([1, c, 1, 1]) + self.bias.val().reshape([1, c, 1, 1]);
        if self.act { relu(y) } else { y }
    }
}
