//! Weight-standardised convolution (Qiao et al. 2019; BiT): each output channel's kernel is
//! standardised over (in, kh, kw) in every forward pass, once per batch (not per image).

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::same_pad::same_padding;

/// Where the epsilon of the weight standardisation goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdConvStyle {
    /// timm's `StdConv2dSame`: `(w - mean) / sqrt(var + eps)` (a batch norm over the kernel).
    Timm,
    /// The JAX code's `StdConv` (`models_resnet.py`): `(w - mean) / (std + eps)`.
    Jax,
}

/// timm's `StdConv2dSame` without bias: a convolution with TF "SAME" padding whose kernel is
/// standardised per output channel with the biased variance; with
/// [`with_fixed_padding`](Self::with_fixed_padding), timm's `StdConv2d` (BiT's) instead.
#[derive(Module, Debug)]
pub struct StdConv2d {
    /// Kernel `[out, in, kh, kw]` (PyTorch layout), before standardisation.
    pub weight: Param<Tensor<4>>,
    stride: usize,
    eps: f64,
    /// `true`: JAX's `(w - mean) / (std + eps)`; `false`: timm's (a plain flag: module fields
    /// are tensors, modules or primitives).
    jax_style: bool,
    /// `true`: TF "SAME" padding from the input's size (the hybrid); `false`: PyTorch's
    /// symmetric `((stride - 1) + (k - 1)) / 2` (timm's `get_padding`, BiT).
    same: bool,
}

impl StdConv2d {
    /// A `kernel x kernel` convolution from `c_in` to `c_out` channels with lecun-normal
    /// weights (flax's default; the scale is standardised away in the forward pass).
    pub fn new(
        [c_in, c_out]: [usize; 2],
        kernel: usize,
        stride: usize,
        eps: f64,
        style: StdConvStyle,
        device: &Device,
    ) -> Self {
        let fan_in = c_in * kernel * kernel;
        Self {
            weight: Initializer::Normal {
                mean: 0.0,
                std: (1.0 / fan_in as f64).sqrt(),
            }
            .init([c_out, c_in, kernel, kernel], device),
            stride,
            eps,
            jax_style: style == StdConvStyle::Jax,
            same: true,
        }
    }

    /// The same convolution with PyTorch's symmetric padding, `((stride - 1) + (k - 1)) / 2`
    /// on each side (timm's `StdConv2d`, as BiT's models use it).
    pub fn with_fixed_padding(mut self) -> Self {
        self.same = false;
        self
    }

    /// The kernel after standardisation, `[out, in, kh, kw]`.
    pub fn standardized_weight(&self) -> Tensor<4> {
        let w = self.weight.val();
        let [o, i, kh, kw] = w.dims();
        let flat = w.reshape([o, i * kh * kw]);
        let centered = flat.clone() - flat.mean_dim(1);
        let var = (centered.clone() * centered.clone()).mean_dim(1);
        let w = if self.jax_style {
            centered / (var.sqrt() + self.eps)
        } else {
            centered / (var + self.eps).sqrt()
        };
        w.reshape([o, i, kh, kw])
    }

    /// # Shapes
    /// - x: `[B, C_in, H, W]`
    /// - output: `[B, C_out, ceil(H / stride), ceil(W / stride)]` ("SAME"; fixed padding:
    ///   `(H + 2p - k) / stride + 1`)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let [_, _, kh, kw] = self.weight.dims();
        let s = self.stride;
        let pad = |size: usize, k: usize| {
            if self.same {
                same_padding(size, k, s)
            } else {
                let p = ((s - 1) + (k - 1)) / 2;
                (p, p)
            }
        };
        // vit-kernels' convolution: on the CPU through the project's GEMM with patches packed
        // in tiles, both gradients in one pass (Burn's conv2d on other backends).
        vit_kernels::conv2d(
            x,
            self.standardized_weight(),
            [s, s],
            [pad(h, kh), pad(w, kw)],
        )
    }
}
