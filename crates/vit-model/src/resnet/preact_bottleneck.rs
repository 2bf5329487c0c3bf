//! The pre-activation bottleneck (He et al. 2016, "Identity Mappings"; timm
//! `resnetv2.PreActBottleneck`, BiT's unit): GroupNorm + ReLU before each of 1x1 -> 3x3 (with
//! the stride) -> 1x1, the projection shortcut taken from the pre-activated input, and no
//! activation after the sum.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::bit_config::BitConfig;
use super::group_norm::GroupNormAct;
use super::std_conv::StdConv2d;

/// The projection shortcut of a stage's first block (timm `DownsampleConv(preact=True)`): a
/// strided 1x1 StdConv, no norm.
#[derive(Module, Debug)]
pub struct PreActDownsample {
    /// 1x1 conv with the block's stride.
    pub conv: StdConv2d,
}

/// One pre-activation bottleneck; field names are timm's.
#[derive(Module, Debug)]
pub struct PreActBottleneck {
    /// The projection shortcut (first block of a stage), else the identity.
    pub downsample: Option<PreActDownsample>,
    /// GroupNorm + ReLU of the input (the pre-activation).
    pub norm1: GroupNormAct,
    /// 1x1, `in -> mid`.
    pub conv1: StdConv2d,
    /// GroupNorm + ReLU.
    pub norm2: GroupNormAct,
    /// 3x3 with the stride, `mid -> mid`.
    pub conv2: StdConv2d,
    /// GroupNorm + ReLU.
    pub norm3: GroupNormAct,
    /// 1x1, `mid -> out` (zero at start with `zero_init_last`).
    pub conv3: StdConv2d,
}

impl PreActBottleneck {
    /// A block of stage `stage` from `c_in` to `c_out` channels; `project` adds the shortcut
    /// projection.
    pub fn new(
        config: &BitConfig,
        stage: usize,
        [c_in, c_out]: [usize; 2],
        stride: usize,
        project: bool,
        device: &Device,
    ) -> Self {
        let mid = config.bottleneck_channels(stage);
        let mut conv3 = config.conv([mid, c_out], 1, 1, device);
        if config.zero_init_last {
            conv3.weight = conv3.weight.map(|w| w.zeros_like());
        }
        Self {
            downsample: project.then(|| PreActDownsample {
                conv: config.conv([c_in, c_out], 1, stride, device),
            }),
            norm1: config.norm(c_in, device),
            conv1: config.conv([c_in, mid], 1, 1, device),
            norm2: config.norm(mid, device),
            conv2: config.conv([mid, mid], 3, stride, device),
            norm3: config.norm(mid, device),
            conv3,
        }
    }

    /// # Shapes
    /// - x: `[B, C_in, H, W]`
    /// - output: `[B, C_out, (H - 1) / stride + 1, (W - 1) / stride + 1]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pre = self.norm1.forward(x.clone());
        let shortcut = match &self.downsample {
            Some(d) => d.conv.forward(pre.clone()),
            None => x,
        };
        let y = self.conv1.forward(pre);
        let y = self.conv2.forward(self.norm2.forward(y));
        let y = self.conv3.forward(self.norm3.forward(y));
        y + shortcut
    }
}
