//! The backbone [`ResNetConfig`] builds, [`ResNetV2`] (timm's `ResNetV2` with
//! `preact=False, stem_type="same"`, as `_resnetv2` makes it for the hybrids).

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::bottleneck::Bottleneck;
use super::config::ResNetConfig;
use super::stem::Stem;

/// The hybrid's CNN. Field names are timm's (`stem`, `stages.{i}.blocks.{j}`).
#[derive(Module, Debug)]
pub struct ResNetV2 {
    /// Stem: conv, norm, max-pool.
    pub stem: Stem,
    /// The stages (none for a stem-only backbone).
    pub stages: Vec<ResNetStage>,
}

/// One stage: `blocks.0` carries the stride and the projection shortcut.
#[derive(Module, Debug)]
pub struct ResNetStage {
    /// The bottleneck blocks.
    pub blocks: Vec<Bottleneck>,
}

impl ResNetConfig {
    /// Builds the backbone for `in_channels` input channels.
    pub fn init(&self, in_channels: usize, device: &Device) -> ResNetV2 {
        let mut stages: Vec<ResNetStage> = Vec::new();
        for (i, channels, stride, first) in self.blocks() {
            if first {
                stages.push(ResNetStage { blocks: Vec::new() });
            }
            debug_assert_eq!(stages.len(), i + 1);
            stages[i]
                .blocks
                .push(Bottleneck::new(self, channels, stride, first, device));
        }
        ResNetV2 {
            stem: Stem::new(self, in_channels, device),
            stages,
        }
    }
}

impl ResNetV2 {
    /// The feature map.
    ///
    /// # Shapes
    /// - images: `[B, C, H, W]`
    /// - output: `[B, out_channels, H / stride, W / stride]` (rounded up), see
    ///   [`ResNetConfig::feature_size`]
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = self.stem.forward(images);
        for stage in &self.stages {
            for block in &stage.blocks {
                x = block.forward(x);
            }
        }
        x
    }
}
