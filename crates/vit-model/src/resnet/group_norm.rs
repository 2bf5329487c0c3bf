//! GroupNorm with an optional ReLU after it: timm's `GroupNormAct`.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};

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
        // One pass for norm, affine and ReLU, one autodiff node that keeps only x (vit-kernels).
        vit_kernels::group_norm(
            x,
            self.weight.val(),
            self.bias.val(),
            self.groups,
            self.eps,
            self.act,
        )
    }
}
