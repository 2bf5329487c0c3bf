//! The ResNets' hot ops — 2-D convolution and GroupNorm (+ affine + ReLU) — forward and
//! backward, through Burn's backend extension, as [`VitOps`](crate::VitOps) does for the ViT's.
//!
//! On Flex (f32, plain or under autodiff): the convolution runs through the project's GEMM
//! (`flex::conv`: a 1x1 reads the image as its patch matrix, any other packs its patches in
//! cache-sized tiles; both gradients in one pass per image), GroupNorm + affine + ReLU is one
//! pass with its own gradient (`flex::group_norm`), each one autodiff node. Elsewhere: Burn's
//! `conv2d` and GroupNorm composed from Burn's ops, the same numbers (tests/conv.rs; vit-train's
//! tests/backends.rs on ndarray and wgpu).

use burn::backend::{Backend, Dispatch, tensor::FloatTensor};
use burn::backend::{TensorMetadata, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Tensor};

use crate::{on_flex, shapes};

/// The convolution ops as a Burn backend extension (implemented for `Flex` and `Autodiff<Flex>`).
#[backend_extension(Flex, Autodiff)]
pub trait ConvOps: Backend {
    /// `conv2d(x, weight)` without bias, groups or dilation: `x` `[B, C, H, W]`, `weight`
    /// `[O, C, kh, kw]`, padding `[(top, bottom), (left, right)]`; `[B, O, Ho, Wo]`.
    fn vit_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [(usize, usize); 2],
    ) -> FloatTensor<Self>;
    /// Gradients of [`ConvOps::vit_conv2d`] for `x` and the weight from the output gradient.
    fn vit_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [(usize, usize); 2],
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// The weight's gradient alone (the input needs none: a network's first convolution).
    fn vit_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [(usize, usize); 2],
    ) -> FloatTensor<Self>;
    /// GroupNorm over `[B, C, ...]` (statistics per image and group of `C / groups` channels,
    /// biased variance), then `* gamma + beta` per channel, then ReLU when `relu`.
    fn vit_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        relu: bool,
    ) -> FloatTensor<Self>;
    /// Gradients of [`ConvOps::vit_group_norm`] for `x`, `gamma` and `beta` (statistics and
    /// the ReLU's mask recomputed from `x`).
    #[allow(clippy::too_many_arguments)]
    fn vit_group_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// A 2-D convolution without bias (groups 1, dilation 1) with per-side padding
/// `[(top, bottom), (left, right)]` — TF's "SAME" padding is asymmetric.
///
/// On Flex (f32): the project's GEMM with patches packed in cache-sized tiles (none for a
/// stride-1 1x1), both gradients in one pass per image, one autodiff node. Elsewhere: Burn's
/// `conv2d`.
///
/// # Shapes
/// - x: `[B, C, H, W]`; weight: `[O, C, kh, kw]`
/// - output: `[B, O, (H + top + bottom - kh) / stride + 1, (W + left + right - kw) / stride + 1]`
///
/// # Panics
/// When the weight's input channels are not x's, the stride is 0 or the kernel does not fit.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> Tensor<4> {
    shapes::conv2d(
        "vit_kernels::conv2d",
        &x.dims(),
        &weight.dims(),
        stride,
        padding,
    );
    if on_flex(&x) && x.dtype() == DType::F32 && weight.dtype() == DType::F32 {
        return Tensor::from_dispatch(<Dispatch as ConvOps>::vit_conv2d(
            x.into_dispatch(),
            weight.into_dispatch(),
            stride,
            padding,
        ));
    }
    burn::tensor::module::conv2d(x, weight, None, options(stride, padding))
}

/// GroupNorm with its per-channel affine and, when `relu`, a ReLU after (timm's
/// `GroupNormAct`): statistics per image and group of `C / groups` channels, biased variance.
///
/// On Flex (f32): one pass forward, and one autodiff node that keeps only `x`. Elsewhere:
/// composed from Burn's ops.
///
/// # Shapes
/// - x, output: `[B, C, H, W]`; gamma, beta: `[C]`
///
/// # Panics
/// When `groups` does not divide C or gamma and beta are not `[C]`.
pub fn group_norm(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    groups: usize,
    eps: f64,
    relu: bool,
) -> Tensor<4> {
    shapes::group_norm(
        "vit_kernels::group_norm",
        &x.dims(),
        &gamma.dims(),
        &beta.dims(),
        groups,
    );
    let flex = on_flex(&x);
    let (x, gamma, beta) = (
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
    );
    Tensor::from_dispatch(if flex {
        <Dispatch as ConvOps>::vit_group_norm(x, gamma, beta, groups, eps, relu)
    } else {
        group_norm_composed::<Dispatch>(x, gamma, beta, groups, eps, relu)
    })
}

pub(crate) fn options(stride: [usize; 2], padding: [(usize, usize); 2]) -> ConvOptions<2> {
    ConvOptions::new_with_padding(stride, padding, [1, 1], 1)
}

// The same ops from Burn's primitives: the fallback for dtypes the kernels do not cover and
// the body of the second-order ops under autodiff.

pub(crate) fn conv2d_composed<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> FloatTensor<B> {
    B::conv2d(x, weight, None, options(stride, padding))
}

pub(crate) fn conv2d_backward_composed<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> (FloatTensor<B>, FloatTensor<B>) {
    let options = options(stride, padding);
    (
        B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone()),
        B::conv2d_weight_backward(x, weight, grad, options),
    )
}

pub(crate) fn conv2d_weight_backward_composed<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> FloatTensor<B> {
    B::conv2d_weight_backward(x, weight, grad, options(stride, padding))
}

/// `x` `[B, C, ...]` as `[B, groups, C / groups * rest]` (the statistics' rows), and `[1, C, 1]`
/// views of the per-channel parameters against `[B, C, rest]`.
fn group_rows<B: Backend>(x: &FloatTensor<B>, groups: usize) -> ([usize; 3], [usize; 3]) {
    let shape = x.shape();
    let (b, c) = (shape[0], shape[1]);
    let rest = shape.num_elements() / (b * c).max(1);
    ([b, groups, c / groups * rest], [b, c, rest])
}

pub(crate) fn group_norm_composed<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    groups: usize,
    eps: f64,
    relu: bool,
) -> FloatTensor<B> {
    let shape = x.shape();
    let (rows, channels) = group_rows::<B>(&x, groups);
    let c = channels[1];
    let x = B::float_reshape(x, rows.into());
    let mean = B::float_mean_dim(x.clone(), 2);
    let centered = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), 2);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, eps.into())));
    let xhat = B::float_reshape(B::float_mul(centered, rstd), channels.into());
    let y = B::float_add(
        B::float_mul(xhat, B::float_reshape(gamma, [1, c, 1].into())),
        B::float_reshape(beta, [1, c, 1].into()),
    );
    let y = if relu { B::relu(y) } else { y };
    B::float_reshape(y, shape)
}

pub(crate) fn group_norm_backward_composed<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    grad: FloatTensor<B>,
    groups: usize,
    eps: f64,
    relu: bool,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let (rows, channels) = group_rows::<B>(&x, groups);
    let c = channels[1];
    let (gamma_c, beta_c) = (
        B::float_reshape(gamma, [1, c, 1].into()),
        B::float_reshape(beta, [1, c, 1].into()),
    );
    let x = B::float_reshape(x, rows.into());
    let mean = B::float_mean_dim(x.clone(), 2);
    let centered = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), 2);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, eps.into())));
    let xhat = B::float_mul(centered, rstd.clone());
    let xhat_c = B::float_reshape(xhat.clone(), channels.into());
    let mut grad = B::float_reshape(grad, channels.into());
    if relu {
        let pre = B::float_add(B::float_mul(xhat_c.clone(), gamma_c.clone()), beta_c);
        grad = B::relu_backward(pre, grad);
    }
    let sum_bs = |t: FloatTensor<B>| {
        B::float_reshape(B::float_sum_dim(B::float_sum_dim(t, 2), 0), [c].into())
    };
    let dgamma = sum_bs(B::float_mul(grad.clone(), xhat_c));
    let dbeta = sum_bs(grad.clone());
    let gy = B::float_reshape(B::float_mul(grad, gamma_c), rows.into());
    let a = B::float_mean_dim(gy.clone(), 2);
    let b = B::float_mean_dim(B::float_mul(gy.clone(), xhat.clone()), 2);
    let dx = B::float_mul(
        B::float_sub(B::float_sub(gy, a), B::float_mul(xhat, b)),
        rstd,
    );
    (B::float_reshape(dx, shape), dgamma, dbeta)
}
