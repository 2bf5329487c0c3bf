//! Patch embedding: a strided convolution that cuts the image (or, for a hybrid, the
//! backbone's feature map) into patches and projects them.

use burn::module::Module;
use burn::nn::Initializer;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

use crate::config::VitConfig;
use crate::resnet::ResNetV2;

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
        let [b, c, h, w] = x.dims();
        let [ph, pw] = self.proj.kernel_size;
        let [sh, sw] = self.proj.stride;
        let plain = self.proj.groups == 1
            && self.proj.dilation == [1, 1]
            && matches!(self.proj.padding, burn::nn::PaddingConfig2d::Valid);
        if !plain || (sh, sw) != (ph, pw) || h % ph != 0 || w % pw != 0 {
            return self.proj.forward(x).flatten::<3>(2, 3).swap_dims(1, 2);
        }
        // Non-overlapping patches: the convolution is a matrix product of the weight `[D, K]`
        // (K = C * ph * pw, the weight's own order) with the patches: one copy of the input
        // instead of the backend's general convolution (several times faster on the CPU for
        // the large patches of a ViT). The weight is the left operand as it is stored, so
        // that its gradient comes out contiguous: multiplied as a transposed view, its
        // gradient was a strided view, and wgpu's AdamW step then scrambled the weight (CPU
        // and SGD were right; tests/devices.rs caught it).
        let (gh, gw) = (h / ph, w / pw);
        let d = self.proj.weight.dims()[0];
        let (k, n) = (c * ph * pw, gh * gw);
        // [B * N, K]: one patch a row, in the weight's (c, y, x) order.
        let patches = x
            .reshape([b, c, gh, ph, gw, pw])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b * n, k]);
        let weight = self.proj.weight.val().reshape([d, k]);
        // [D, B * N] = weight @ patches^T, then back to [B, N, D].
        let out = weight
            .matmul(patches.transpose())
            .transpose()
            .reshape([b, n, d]);
        match &self.proj.bias {
            Some(bias) => out + bias.val().reshape([1, 1, d]),
            None => out,
        }
    }
}
