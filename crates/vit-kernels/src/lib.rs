//! vit's kernel layer: the models' hot ops as a Burn backend extension, forward and backward —
//! LayerNorm, scaled softmax, GELU, multi-head attention, Linear (and Linear + GELU) for the
//! ViT; convolution and GroupNorm (+ ReLU) for the ResNets — and the CPU GEMM they call
//! ([`cpu_gemm`]: MKL or the gemm crate, `VIT_CPU_GEMM`).
//!
//! `vit-model`'s modules call the functions here as burn-nn's call Burn's ops. On the Flex CPU
//! backend (plain or under autodiff) each op is one multi-threaded, vectorised kernel with a
//! hand-written gradient ([`flex`], [`autodiff`]); on every other backend the functions call
//! Burn's own ops, so the numbers are the same everywhere (the parity tests against timm run on
//! Flex; vit-train's `tests/backends.rs` runs the Burn path on ndarray and wgpu against them).
//!
//! Each function checks the shapes it needs ([`shapes`]) and panics with a message naming the
//! op and the shapes when they do not fit, on every backend and in release builds.

mod autodiff;
mod conv;
pub mod cpu_gemm;
mod flex;
pub mod math;
mod shapes;

use burn::backend::{
    Backend, Dispatch, DispatchDevice, TensorMetadata, backend_extension, tensor::FloatTensor,
};
use burn::nn::Linear;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Slice, Tensor, activation};

pub use conv::{ConvOps, conv2d, group_norm};

/// The fused ops as a Burn backend extension (implemented for `Flex` and `Autodiff<Flex>`).
#[backend_extension(Flex, Autodiff)]
pub trait VitOps: Backend {
    /// `x * Phi(x)` (exact GELU). Shape unchanged.
    fn vit_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `grad * gelu'(x)`.
    fn vit_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// LayerNorm over the last axis: `(x - mean) / sqrt(var + eps) * gamma + beta`.
    fn vit_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
    /// Gradients of [`VitOps::vit_layer_norm`] for `x`, `gamma` and `beta` (statistics
    /// recomputed from `x`).
    fn vit_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// `softmax(x * scale)` over the last axis.
    fn vit_softmax(x: FloatTensor<Self>, scale: f64) -> FloatTensor<Self>;
    /// Gradient of [`VitOps::vit_softmax`] for `x`, from its output `y`:
    /// `scale * y * (grad - sum(grad * y))`.
    fn vit_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self>;
    /// `x W + b` over the last axis of `x` (`[..., K]`, weight `[K, N]`, bias `[N]`).
    fn vit_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `gelu(x W + b)`: the MLP's first layer and activation, fused (the GELU runs on each
    /// block of GEMM output while it is in cache).
    fn vit_linear_gelu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// Gradients of [`VitOps::vit_linear`] for `x`, the weight and the bias.
    fn vit_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// Multi-head self-attention from the fused projection `qkv` (`[B, S, 3D]`, timm's
    /// q | k | v layout, heads contiguous within each): softmax(Q K^T / sqrt(Dh)) V with the
    /// heads merged back, `[B, S, D]`.
    fn vit_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self>;
    /// [`VitOps::vit_attention`] and its attention weights `[B, h, S, S]` (kept for backward).
    fn vit_attention_with_weights(
        qkv: FloatTensor<Self>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// Gradient of [`VitOps::vit_attention`] for `qkv`, `[B, S, 3D]`, from `qkv`, the weights
    /// and the output gradient `[B, S, D]`.
    fn vit_attention_backward(
        qkv: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self>;
}

/// Whether `tensor` lives on Flex (with or without autodiff), where the fused kernels run.
fn on_flex<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(
        tensor.device().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// GELU (the exact, erf form of the paper and timm).
///
/// # Shapes
/// - x, output: any
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if on_flex(&x) {
        Tensor::from_dispatch(<Dispatch as VitOps>::vit_gelu(x.into_dispatch()))
    } else if x.device().is_autodiff() {
        // Burn 0.22's GELU gradient is the derivative of the tanh approximation
        // (burn-backend's `gelu_backward`), 1% off the exact one near |x| = 2 (measured
        // against the closed form in vit-train's tests/backends.rs). Written out, the erf form
        // has the exact gradient, as timm's and Flex's kernel.
        let erf = (x.clone() * core::f64::consts::FRAC_1_SQRT_2).erf();
        x * (erf + 1.0) * 0.5
    } else {
        activation::gelu(x)
    }
}

/// LayerNorm over the last axis with weight `gamma` and bias `beta`.
///
/// # Shapes
/// - x, output: `[..., D]`; gamma, beta: `[D]`
///
/// # Panics
/// When gamma or beta is not `[D]`.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    shapes::layer_norm(
        "fused::layer_norm",
        &x.dims(),
        &gamma.dims(),
        Some(&beta.dims()),
    );
    if on_flex(&x) {
        Tensor::from_dispatch(<Dispatch as VitOps>::vit_layer_norm(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            eps,
        ))
    } else {
        burn::tensor::module::layer_norm(x, gamma, Some(beta), eps)
    }
}

/// `softmax(x * scale)` over the last axis (the attention weights, `scale` = 1/sqrt(head dim)).
///
/// # Shapes
/// - x, output: `[..., S]`
pub fn scaled_softmax<const D: usize>(x: Tensor<D>, scale: f64) -> Tensor<D> {
    if on_flex(&x) {
        Tensor::from_dispatch(<Dispatch as VitOps>::vit_softmax(x.into_dispatch(), scale))
    } else {
        activation::softmax(x * scale, D - 1)
    }
}

/// Multi-head self-attention from timm's fused `qkv` projection: softmax(Q K^T / sqrt(Dh)) V,
/// heads merged.
///
/// On Flex (f32): one op whose Q, K, V and output gradient are strided views of `qkv` and of
/// the gradient (no split or merge copies besides the output's), two batched matmuls around the
/// fused softmax, and in training one autodiff node whose backward packs dQ, dK, dV into one
/// `[B, S, 3D]` gradient in a single pass. Burn's split (reshape, permute, chunk) costs three
/// copies forward, and its gradient three zero-filled full-size buffers, three slice
/// assignments, two additions and a copy backward. Elsewhere: Burn's split and attention op.
///
/// # Shapes
/// - qkv: `[B, S, 3D]`; output: `[B, S, D]`
///
/// # Panics
/// When `heads` is 0 or the width of `qkv` is not `3 * D` with `heads` dividing D.
pub fn multi_head_attention(qkv: Tensor<3>, heads: usize) -> Tensor<3> {
    shapes::attention("fused::multi_head_attention", &qkv.dims(), heads);
    if on_flex(&qkv) && qkv.dtype() == DType::F32 {
        return Tensor::from_dispatch(<Dispatch as VitOps>::vit_attention(
            qkv.into_dispatch(),
            heads,
        ));
    }
    let [q, k, v] = split_heads(qkv, heads);
    let options = AttentionModuleOptions::default();
    merge_heads(burn::tensor::module::attention(
        q, k, v, None, None, options,
    ))
}

/// Q, K, V from timm's fused projection with Burn's ops (views where the backend allows).
///
/// # Shapes
/// - qkv: `[B, S, 3D]`; each output: `[B, h, S, Dh]`
///
/// # Panics
/// As [`multi_head_attention`].
pub fn split_heads(qkv: Tensor<3>, heads: usize) -> [Tensor<4>; 3] {
    shapes::attention("fused::split_heads", &qkv.dims(), heads);
    let [b, s, d3] = qkv.dims();
    let qkv = qkv
        .reshape([b, s, 3, heads, d3 / 3 / heads])
        .permute([2, 0, 3, 1, 4]);
    [0, 1, 2].map(|i| qkv.clone().narrow(0, i, 1).squeeze_dim::<4>(0))
}

/// The heads side by side again.
///
/// # Shapes
/// - x: `[B, h, S, Dh]`; output: `[B, S, h * Dh]`
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, s, dh] = x.dims();
    x.swap_dims(1, 2).reshape([b, s, h * dh])
}

/// A Linear layer over a token sequence.
///
/// On Flex (f32, with a bias): the product written onto the bias rows by the GEMM itself, in
/// row blocks (see `flex::gemm_rows`), with its own gradient node. Elsewhere: one
/// `[B * S, D] x [D, N]` matmul, because Burn keeps `[B, S, D] x [D, N]` as B batched matmuls
/// when S is not a multiple of its row tile (65 and 197 tokens are not), which packs the weight
/// again for every image.
///
/// # Shapes
/// - x: `[B, S, D]`; output: `[B, S, N]`
///
/// # Panics
/// When D is not the layer's input width.
pub fn linear(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    check_linear("fused::linear", layer, &x);
    if let Some([weight, bias]) = kernel_params(layer, &x) {
        return Tensor::from_dispatch(<Dispatch as VitOps>::vit_linear(
            x.into_dispatch(),
            weight,
            bias,
        ));
    }
    let [b, s, d] = x.dims();
    let y = layer.forward(x.reshape([b * s, d]));
    let n = y.dims()[1];
    y.reshape([b, s, n])
}

/// `gelu(linear(x))`, the MLP's first layer and its activation.
///
/// On Flex (f32, with a bias): one op, the GELU applied to each block of the GEMM's output while
/// it is in cache (with the bias, in the same pass); in training one autodiff node. Elsewhere:
/// [`linear`] then [`gelu`].
///
/// # Shapes
/// - x: `[B, S, D]`; output: `[B, S, N]`
///
/// # Panics
/// When D is not the layer's input width.
pub fn linear_gelu(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    check_linear("fused::linear_gelu", layer, &x);
    if let Some([weight, bias]) = kernel_params(layer, &x) {
        return Tensor::from_dispatch(<Dispatch as VitOps>::vit_linear_gelu(
            x.into_dispatch(),
            weight,
            bias,
        ));
    }
    gelu(linear(layer, x))
}

fn check_linear(op: &str, layer: &Linear, x: &Tensor<3>) {
    let bias = layer.bias.as_ref().map(|b| b.dims().to_vec());
    shapes::linear(op, &x.dims(), &layer.weight.dims(), bias.as_deref());
}

/// `layer`'s weight and bias for the Flex Linear kernels, when they apply to `x` (f32 on Flex,
/// a layer with a bias).
fn kernel_params(layer: &Linear, x: &Tensor<3>) -> Option<[FloatTensor<Dispatch>; 2]> {
    let bias = layer.bias.as_ref()?;
    (on_flex(x) && x.dtype() == DType::F32).then(|| {
        [
            layer.weight.val().into_dispatch(),
            bias.val().into_dispatch(),
        ]
    })
}

// The same ops from Burn's primitives: the fallback for dtypes the kernels do not cover (the
// kernels are f32) and the body of the second-order ops under autodiff.

fn gelu_composed<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::gelu(x)
}

fn gelu_backward_composed<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    B::gelu_backward(x, grad)
}

fn layer_norm_composed<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    eps: f64,
) -> FloatTensor<B> {
    B::layer_norm(x, gamma, Some(beta), eps)
}

fn layer_norm_backward_composed<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    grad: FloatTensor<B>,
    eps: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let last = shape.num_dims() - 1;
    let d = shape[last];
    let rows = shape.num_elements() / d.max(1);
    let x = B::float_reshape(x, [rows, d].into());
    let grad = B::float_reshape(grad, [rows, d].into());
    let gamma = B::float_reshape(gamma, [1, d].into());

    let mean = B::float_mean_dim(x.clone(), 1);
    let centered = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), 1);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, eps.into())));
    let xhat = B::float_mul(centered, rstd.clone());
    let gy = B::float_mul(grad.clone(), gamma);
    let a = B::float_mean_dim(gy.clone(), 1);
    let b = B::float_mean_dim(B::float_mul(gy.clone(), xhat.clone()), 1);
    let dx = B::float_mul(
        B::float_sub(B::float_sub(gy, a), B::float_mul(xhat.clone(), b)),
        rstd,
    );
    let dgamma = B::float_sum_dim(B::float_mul(grad.clone(), xhat), 0);
    let dbeta = B::float_sum_dim(grad, 0);
    (
        B::float_reshape(dx, shape),
        B::float_reshape(dgamma, [d].into()),
        B::float_reshape(dbeta, [d].into()),
    )
}

fn softmax_composed<B: Backend>(x: FloatTensor<B>, scale: f64) -> FloatTensor<B> {
    let last = x.shape().num_dims() - 1;
    B::softmax(B::float_mul_scalar(x, scale.into()), last)
}

fn softmax_backward_composed<B: Backend>(
    y: FloatTensor<B>,
    grad: FloatTensor<B>,
    scale: f64,
) -> FloatTensor<B> {
    let last = y.shape().num_dims() - 1;
    let dot = B::float_sum_dim(B::float_mul(y.clone(), grad.clone()), last);
    let dx = B::float_mul(y, B::float_sub(grad, dot));
    B::float_mul_scalar(dx, scale.into())
}

/// Q, K, V `[B, h, S, Dh]` from `qkv` `[B, S, 3D]` with Burn's primitives.
fn split_heads_composed<B: Backend>(qkv: FloatTensor<B>, heads: usize) -> [FloatTensor<B>; 3] {
    let shape = qkv.shape();
    let (b, s, dh) = (shape[0], shape[1], shape[2] / 3 / heads);
    let x = B::float_reshape(qkv, [b, s, 3, heads, dh].into());
    let x = B::float_permute(x, &[2, 0, 3, 1, 4]);
    [0, 1, 2].map(|p| {
        let mut slices = [Slice::full(); 5];
        slices[0] = Slice::new(p, Some(p + 1), 1);
        let part = B::float_slice(x.clone(), &slices);
        B::float_reshape(part, [b, heads, s, dh].into())
    })
}

/// `[B, h, S, Dh]` -> `[B, S, h * Dh]`.
fn merge_heads_composed<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let shape = x.shape();
    let (b, h, s, dh) = (shape[0], shape[1], shape[2], shape[3]);
    B::float_reshape(B::float_swap_dims(x, 1, 2), [b, s, h * dh].into())
}

fn attention_composed<B: Backend + VitOps>(
    qkv: FloatTensor<B>,
    heads: usize,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let [q, k, v] = split_heads_composed::<B>(qkv, heads);
    let scale = (q.shape()[3] as f64).powf(-0.5);
    let weights = B::vit_softmax(B::float_matmul(q, B::float_swap_dims(k, 2, 3)), scale);
    let out = B::float_matmul(weights.clone(), v);
    (merge_heads_composed::<B>(out), weights)
}

fn attention_backward_composed<B: Backend + VitOps>(
    qkv: FloatTensor<B>,
    weights: FloatTensor<B>,
    grad: FloatTensor<B>,
    heads: usize,
) -> FloatTensor<B> {
    let shape = qkv.shape();
    let (b, s, d) = (shape[0], shape[1], shape[2] / 3);
    let [q, k, v] = split_heads_composed::<B>(qkv, heads);
    let scale = (q.shape()[3] as f64).powf(-0.5);
    let d_out = B::float_swap_dims(
        B::float_reshape(grad, [b, s, heads, d / heads].into()),
        1,
        2,
    );
    let dv = B::float_matmul(B::float_swap_dims(weights.clone(), 2, 3), d_out.clone());
    let dw = B::float_matmul(d_out, B::float_swap_dims(v, 2, 3));
    let ds = B::vit_softmax_backward(weights, dw, scale);
    let dq = B::float_matmul(ds.clone(), k);
    let dk = B::float_matmul(B::float_swap_dims(ds, 2, 3), q);
    let parts = [dq, dk, dv].map(merge_heads_composed::<B>);
    B::float_cat(parts.into(), 2)
}

fn linear_composed<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    B::linear(x, weight, Some(bias))
}

fn linear_gelu_composed<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    B::gelu(B::linear(x, weight, Some(bias)))
}

fn linear_backward_composed<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    (
        B::linear_x_backward(weight, grad.clone()),
        B::linear_weight_backward(x, grad.clone()),
        B::linear_bias_backward(grad),
    )
}
