//! Patch embedding: a strided convolution that cuts the image into patches and projects them.

use burn::module::Module;
use burn::nn::Initializer;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

/// `patch_embed` of timm: `proj` is a Conv2d(C -> D, kernel = stride = patch).
#[derive(Module, Debug)]
pub struct PatchEmbed {
    /// Weight `[D, C, ph, pw]` (PyTorch layout), bias `[D]`.
    pub proj: Conv2d,
}

impl PatchEmbed {
    /// Builds the projection with lecun-normal weights and zero bias.
    pub fn new(in_channels: usize, embed_dim: usize, patch: [usize; 2], device: &Device) -> Self {
        let fan_in = in_channels * patch[0] * patch[1];
        let mut proj = Conv2dConfig::new([in_channels, embed_dim], patch)
            .with_stride(patch)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: (1.0 / fan_in as f64).sqrt(),
            })
            .init(device);
        proj.bias = Some(Initializer::Zeros.init([embed_dim], device));
        Self { proj }
    }

    /// Embeds the patches of an image batch.
    ///
    /// # Shapes
    /// - images: `[B, C, H, W]`
    /// - output: `[B, N, D]` with N = (H / ph) * (W / pw), patches in row-major order
    pub fn forward(&self, images: Tensor<4>) -> Tensor<3> {
        self.proj.forward(images).flatten::<3>(2, 3).swap_dims(1, 2)
    }
}
