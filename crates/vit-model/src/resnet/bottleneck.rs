//! The bottleneck block without pre-activation (timm `resnetv2.Bottleneck`, the JAX code's
//! `ResidualUnit`): 1x1 -> 3x3 (with the stride) -> 1x1, a GroupNorm after each, ReLU after
//! the first two and after the residual sum.

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::config::ResNetConfig;
use super::group_norm::GroupNormAct;
use super::std_conv::StdConv2d;

/// The projection shortcut of a stage's first block (timm `DownsampleConv`): a strided 1x1
/// StdConv and a GroupNorm without activation.
#[derive(Module, Debug)]
pub struct DownsampleConv {
    /// 1x1 conv with the block's stride.
    pub conv: StdConv2d,
    /// GroupNorm, no activation.
    pub norm: GroupNormAct,
}

/// One bottleneck block; field names are timm's.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// The projection shortcut (first block of a stage), else the identity.
    pub downsample: Option<DownsampleConv>,
    /// 1x1, `in -> mid`.
    pub conv1: StdConv2d,
    /// GroupNorm + ReLU.
    pub norm1: GroupNormAct,
    /// 3x3 with the stride, `mid -> mid`.
    pub conv2: StdConv2d,
    /// GroupNorm + ReLU.
    pub norm2: GroupNormAct,
    /// 1x1, `mid -> out`.
    pub conv3: StdConv2d,
    /// GroupNorm, no activation, scale initialised to zero (the block starts as identity).
    pub norm3: GroupNormAct,
}

impl Bottleneck {
    /// A block from `c_in` to `c_out` channels (`mid = c_out / 4`); `project` adds the
    /// shortcut projection.
    pub fn new(
        config: &ResNetConfig,
        [c_in, c_out]: [usize; 2],
        stride: usize,
        project: bool,
        device: &Device,
    ) -> Self {
        let mid = c_out / 4;
        Self {
            downsample: project.then(|| DownsampleConv {
                conv: config.conv([c_in, c_out], 1, stride, device),
                norm: config.norm(c_out, false, false, device),
            }),
            conv1: config.conv([c_in, mid], 1, 1, device),
            norm1: config.norm(mid, true, false, device),
            conv2: config.conv([mid, mid], 3, stride, device),
            norm2: config.norm(mid, true, false, device),
            conv3: config.conv([mid, c_out], 1, 1, device),
            norm3: config.norm(c_out, false, true, device),
        }
    }

    /// # Shapes
    /// - x: `[B, C_in, H, W]`
    /// - output: `[B, C_out, ceil(H / stride), ceil(W / stride)]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some(d) => d.norm.forward(d.conv.forward(x.clone())),
            None => x.clone(),
        };
        let y = self.norm1.forward(self.conv1.forward(x));
        let y = self.norm2.forward(self.conv2.forward(y));
        let y = self.norm3.forward(self.conv3.forward(y));
        relu(y + shortcut)
    }
}
