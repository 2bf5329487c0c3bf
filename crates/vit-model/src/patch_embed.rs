//! Patch embedding: a strided convolution that cuts the image (or, for a hybrid, the
//! backbone's feature map) into patches and projects them.

use burn::module::Module;
use burn::nn::Initializer;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

use crate::config::VitConfig;
use crate::hybrid::ResNetV2;

/// `patch_embed` of timm: `proj` is a Conv2d(C -> D, kernel = stride = patch); a hybrid
/// (timm `HybridEmbed`) runs `backbone` first, and `proj` sees its feature map.
#[derive(Module, Debug)]
pub struct PatchEmbed {
    /// The hybrid's ResNet, when `backbone` is configured.
    pub backbone: Option<ResNetV2>,
    /// Weight `[D, C, ph, pw]` (PyTorch layout), bias `[D]`.
    pub proj: Conv2d,
}

impl PatchEmbed {
    /// Builds the embedding of `config`: lecun-normal projection, zero bias.
    pub fn new(config: &VitConfig, device: &Device) -> Self {
        let (c, d, patch) = (
            config.embed_in_channels(),
            config.embed_dim,
            config.patch_size,
        );
        let fan_in = c * patch[0] * patch[1];
        let mut proj = Conv2dConfig::new([c, d], patch)
            .with_stride(patch)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: (1.0 / fan_in as f64).sqrt(),
            })
            .init(device);
        proj.bias = Some(Initializer::Zeros.init([d], device));
        Self {
            backbone: config
                .backbone
                .as_ref()
                .map(|b| b.init(config.in_channels, device)),
            proj,
        }
    }

    /// Embeds the patches of an image batch.
    ///
    /// # Shapes
    /// - images: `[B, C, H, W]`
    /// - output: `[B, N, D]` with N = (H / ph) * (W / pw) (of the feature map, for a
    ///   hybrid), patches in row-major order
    pub fn forward(&self, images: Tensor<4>) -> Tensor<3> {
        let x = match &self.backbone {
            Some(backbone) => backbone.forward(images),
            None => images,
        };
        self.proj.forward(x).flatten::<3>(2, 3).swap_dims(1, 2)
    }
}
