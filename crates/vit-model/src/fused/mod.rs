//! Fused LayerNorm, softmax and GELU, forward and backward, through Burn's backend extension.
//!
//! On the Flex CPU backend (plain or under autodiff) each op is one multi-threaded, vectorised
//! pass with a hand-written gradient ([`flex`], [`autodiff`]); on every other backend the
//! functions here call Burn's own ops, so the numbers are the same everywhere (the parity tests
//! against timm run on Flex; the wgpu test runs the Burn path).

mod autodiff;
mod flex;
pub mod math;

use burn::backend::{
    Backend, Dispatch, DispatchDevice, TensorMetadata, backend_extension, tensor::FloatTensor,
};
use burn::nn::Linear;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Tensor, activation};

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
    } else {
        activation::gelu(x)
    }
}

/// LayerNorm over the last axis with weight `gamma` and bias `beta`.
///
/// # Shapes
/// - x, output: `[..., D]`; gamma, beta: `[D]`
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
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

/// Scaled dot-product attention, softmax(Q K^T / sqrt(Dh)) V.
///
/// On Flex: two batched matmuls around [`scaled_softmax`], which was faster than Flex's own
/// attention kernel at inference and is one autodiff node with a one-pass gradient in training
/// (Burn's attention under autodiff decomposes into single-threaded passes). Elsewhere: Burn's
/// attention op.
///
/// # Shapes
/// - q, k, v, output: `[B, h, S, Dh]`
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    if on_flex(&q) {
        let scale = (q.dims()[3] as f64).powf(-0.5);
        scaled_softmax(q.matmul(k.swap_dims(2, 3)), scale).matmul(v)
    } else {
        let options = AttentionModuleOptions::default();
        burn::tensor::module::attention(q, k, v, None, None, options)
    }
}

/// A Linear layer over a token sequence as one `[B * S, D] x [D, N]` matmul.
///
/// Burn keeps `[B, S, D] x [D, N]` as B batched matmuls when S is not a multiple of its row
/// tile (65 and 197 tokens are not), which packs the weight again for every image.
///
/// # Shapes
/// - x: `[B, S, D]`; output: `[B, S, N]`
pub fn linear(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, s, d] = x.dims();
    let y = layer.forward(x.reshape([b * s, d]));
    let n = y.dims()[1];
    y.reshape([b, s, n])
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
