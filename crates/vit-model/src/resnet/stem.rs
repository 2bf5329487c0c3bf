//! The ResNet stems: the hybrid's (7x7/2 conv, GroupNorm + ReLU, 3x3/2 max-pool with "SAME"
//! padding; timm `stem_type="same"`) and BiT's (7x7/2 conv, zero padding 1, 3x3/2 max-pool;
//! timm `stem_type="fixed"`, no norm: the first block pre-activates).

use burn::module::Module;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::{MaxPoolOptions, PadMode};
use burn::tensor::{Device, Tensor};

use super::bit_config::BitConfig;
use super::config::ResNetConfig;
use super::group_norm::GroupNormAct;
use super::same_pad::same_padding;
use super::std_conv::StdConv2d;

/// timm's `create_resnetv2_stem(stem_type="same", preact=False)`: `conv`, `norm`, `pool`.
#[derive(Module, Debug)]
pub struct Stem {
    /// 7x7/2 weight-standardised conv, no bias.
    pub conv: StdConv2d,
    /// GroupNorm + ReLU.
    pub norm: GroupNormAct,
}

impl Stem {
    /// The stem of `config` over `in_channels` input channels.
    pub fn new(config: &ResNetConfig, in_channels: usize, device: &Device) -> Self {
        let w = config.stem_width;
        Self {
            conv: config.conv([in_channels, w], 7, 2, device),
            norm: config.norm(w, true, false, device),
        }
    }

    /// # Shapes
    /// - images: `[B, C, H, W]`
    /// - output: `[B, stem_width, ceil(ceil(H / 2) / 2), ...]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let x = self.norm.forward(self.conv.forward(images));
        let [_, _, h, w] = x.dims();
        // Padded cells never win: the same as TF's "SAME" max-pool, or padding with -inf.
        let options = MaxPoolOptions::new([3, 3])
            .with_stride([2, 2])
            .with_padding_pairs([same_padding(h, 3, 2), same_padding(w, 3, 2)]);
        max_pool2d(x, options)
    }
}

/// timm's `create_resnetv2_stem(stem_type="fixed", preact=True)` (BiT): `conv`, `pad`, `pool`.
#[derive(Module, Debug)]
pub struct FixedStem {
    /// 7x7/2 weight-standardised conv with padding 3, no bias.
    pub conv: StdConv2d,
}

impl FixedStem {
    /// The stem of `config`.
    pub fn new(config: &BitConfig, device: &Device) -> Self {
        Self {
            conv: config.conv([config.in_channels, config.stem_channels()], 7, 2, device),
        }
    }

    /// # Shapes
    /// - images: `[B, C, H, W]`
    /// - output: `[B, stem_channels, (h - 1) / 2 + 1, (w - 1) / 2 + 1]` with
    ///   `h = (H - 1) / 2 + 1`, `w = (W - 1) / 2 + 1` (the conv's output)
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        // Zeros, not -inf: the conv's output is not yet through a ReLU, so a padded zero can
        // be a window's maximum (timm's nn.ConstantPad2d(1, 0.) before the pool).
        let x = self
            .conv
            .forward(images)
            .pad([(1, 1), (1, 1)], PadMode::Constant(0.0));
        max_pool2d(x, MaxPoolOptions::new([3, 3]).with_stride([2, 2]))
    }
}
