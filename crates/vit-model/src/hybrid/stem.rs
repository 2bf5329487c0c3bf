//! The ResNet stem: 7x7/2 conv, GroupNorm + ReLU, 3x3/2 max-pool (timm `stem_type="same"`).

use burn::module::Module;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};

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
