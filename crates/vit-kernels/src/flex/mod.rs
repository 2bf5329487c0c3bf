//! The fused kernels on Burn's Flex (CPU) backend: one pass over rows, split across rayon's
//! threads, each chunk compiled for the widest SIMD the CPU has.
//!
//! Flex runs GELU and its gradient one scalar `erff` at a time on one thread, and under autodiff
//! Burn decomposes LayerNorm and softmax into eight to ten single-threaded passes each way; these
//! were the largest costs after the matmuls in a training step's profile (BENCHMARKS.md).
//!
//! - [`rows`]: the row kernels (LayerNorm, softmax, GELU and their gradients);
//! - [`gemm`]: GEMM calls and the row blocking of token-batch products;
//! - [`linear`]: Linear (+ GELU) forward and backward on top of it;
//! - [`attention`]: multi-head attention per (image, head);
//! - [`conv`]: 2-D convolution and its gradients through the GEMM, patches packed in tiles;
//! - [`group_norm`]: GroupNorm + affine + ReLU and its gradient;
//! - [`buffer`]: unfilled outputs, shared output pointers, parallel in-place loops;
//! - [`simd`]: the AVX-512 / AVX2 dispatch.
//!
//! Every op below first falls back to Burn's own ops for dtypes other than f32, then checks
//! the shapes the kernels index by ([`super::shapes`]), in release builds too.

mod attention;
mod buffer;
mod conv;
mod gemm;
mod group_norm;
mod linear;
mod rows;
mod simd;

use burn::backend::Flex;
use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::DType;

use buffer::f32s;

use super::conv::{
    ConvOps, conv2d_backward_composed, conv2d_composed, conv2d_weight_backward_composed,
    group_norm_backward_composed, group_norm_composed,
};
use super::math;
use super::{VitOps, shapes};

fn dims(t: &FlexTensor) -> Vec<usize> {
    t.shape().to_vec()
}

impl VitOps for Flex {
    fn vit_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        if [x.dtype(), weight.dtype(), bias.dtype()] != [DType::F32; 3] {
            return super::linear_composed::<Flex>(x, weight, bias);
        }
        shapes::linear("vit_linear", &dims(&x), &dims(&weight), Some(&dims(&bias)));
        linear::linear_act(
            x,
            &weight,
            &bias,
            #[inline(always)]
            |v| v,
        )
    }

    fn vit_linear_gelu(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        if [x.dtype(), weight.dtype(), bias.dtype()] != [DType::F32; 3] {
            return super::linear_gelu_composed::<Flex>(x, weight, bias);
        }
        shapes::linear(
            "vit_linear_gelu",
            &dims(&x),
            &dims(&weight),
            Some(&dims(&bias)),
        );
        linear::linear_act(x, &weight, &bias, math::gelu)
    }

    fn vit_linear_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if [x.dtype(), weight.dtype(), grad.dtype()] != [DType::F32; 3] {
            return super::linear_backward_composed::<Flex>(x, weight, grad);
        }
        shapes::linear_backward(
            "vit_linear_backward",
            &dims(&x),
            &dims(&weight),
            &dims(&grad),
        );
        linear::linear_backward(x, weight, grad)
    }

    fn vit_attention(qkv: FlexTensor, heads: usize) -> FlexTensor {
        if qkv.dtype() != DType::F32 {
            return super::attention_composed::<Flex>(qkv, heads).0;
        }
        shapes::attention("vit_attention", &dims(&qkv), heads);
        attention::attention_heads(&qkv.to_contiguous(), heads, None)
    }

    fn vit_attention_with_weights(qkv: FlexTensor, heads: usize) -> (FlexTensor, FlexTensor) {
        if qkv.dtype() != DType::F32 {
            return super::attention_composed::<Flex>(qkv, heads);
        }
        shapes::attention("vit_attention_with_weights", &dims(&qkv), heads);
        attention::attention_with_weights(qkv, heads)
    }

    fn vit_attention_backward(
        qkv: FlexTensor,
        weights: FlexTensor,
        grad: FlexTensor,
        heads: usize,
    ) -> FlexTensor {
        if [qkv.dtype(), weights.dtype(), grad.dtype()] != [DType::F32; 3] {
            return super::attention_backward_composed::<Flex>(qkv, weights, grad, heads);
        }
        shapes::attention_backward(
            "vit_attention_backward",
            &dims(&qkv),
            &dims(&weights),
            &dims(&grad),
            heads,
        );
        attention::attention_backward(qkv, weights, grad, heads)
    }

    fn vit_gelu(x: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return super::gelu_composed::<Flex>(x);
        }
        rows::gelu(x)
    }

    fn vit_gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return super::gelu_backward_composed::<Flex>(x, grad);
        }
        shapes::same("vit_gelu_backward", &dims(&x), &dims(&grad));
        rows::gelu_backward(x, grad)
    }

    fn vit_layer_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, eps: f64) -> FlexTensor {
        if [x.dtype(), gamma.dtype(), beta.dtype()] != [DType::F32; 3] {
            return super::layer_norm_composed::<Flex>(x, gamma, beta, eps);
        }
        shapes::layer_norm(
            "vit_layer_norm",
            &dims(&x),
            &dims(&gamma),
            Some(&dims(&beta)),
        );
        rows::layer_norm(x, gamma, beta, eps)
    }

    fn vit_layer_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        grad: FlexTensor,
        eps: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if [x.dtype(), gamma.dtype(), grad.dtype()] != [DType::F32; 3] {
            return super::layer_norm_backward_composed::<Flex>(x, gamma, grad, eps);
        }
        shapes::layer_norm("vit_layer_norm_backward", &dims(&x), &dims(&gamma), None);
        shapes::same("vit_layer_norm_backward", &dims(&x), &dims(&grad));
        rows::layer_norm_backward(x, gamma, grad, eps)
    }

    fn vit_softmax(x: FlexTensor, scale: f64) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return super::softmax_composed::<Flex>(x, scale);
        }
        shapes::rows("vit_softmax", &dims(&x));
        rows::softmax(x, scale)
    }

    fn vit_softmax_backward(y: FlexTensor, grad: FlexTensor, scale: f64) -> FlexTensor {
        if y.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return super::softmax_backward_composed::<Flex>(y, grad, scale);
        }
        shapes::same("vit_softmax_backward", &dims(&y), &dims(&grad));
        rows::softmax_backward(y, grad, scale)
    }
}

impl ConvOps for Flex {
    fn vit_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        stride: [usize; 2],
        padding: [(usize, usize); 2],
    ) -> FlexTensor {
        if [x.dtype(), weight.dtype()] != [DType::F32; 2] {
            return conv2d_composed::<Flex>(x, weight, stride, padding);
        }
        shapes::conv2d("vit_conv2d", &dims(&x), &dims(&weight), stride, padding);
        let geometry = conv::Geometry::new(&dims(&x), &dims(&weight), stride, padding);
        conv::conv2d(&x.to_contiguous(), &weight.to_contiguous(), geometry)
    }

    fn vit_conv2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        stride: [usize; 2],
        padding: [(usize, usize); 2],
    ) -> (FlexTensor, FlexTensor) {
        if [x.dtype(), weight.dtype(), grad.dtype()] != [DType::F32; 3] {
            return conv2d_backward_composed::<Flex>(x, weight, grad, stride, padding);
        }
        let (dx, dw) = conv_backward(x, weight, grad, stride, padding, true);
        (dx.expect("asked for the input's gradient"), dw)
    }

    fn vit_conv2d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        stride: [usize; 2],
        padding: [(usize, usize); 2],
    ) -> FlexTensor {
        if [x.dtype(), weight.dtype(), grad.dtype()] != [DType::F32; 3] {
            return conv2d_weight_backward_composed::<Flex>(x, weight, grad, stride, padding);
        }
        conv_backward(x, weight, grad, stride, padding, false).1
    }

    fn vit_group_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        groups: usize,
        eps: f64,
        relu: bool,
    ) -> FlexTensor {
        if [x.dtype(), gamma.dtype(), beta.dtype()] != [DType::F32; 3] {
            return group_norm_composed::<Flex>(x, gamma, beta, groups, eps, relu);
        }
        shapes::group_norm(
            "vit_group_norm",
            &dims(&x),
            &dims(&gamma),
            &dims(&beta),
            groups,
        );
        let (gamma, beta) = (gamma.to_contiguous(), beta.to_contiguous());
        group_norm::group_norm(x, f32s(&gamma), f32s(&beta), groups, eps, relu)
    }

    fn vit_group_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        grad: FlexTensor,
        groups: usize,
        eps: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if [x.dtype(), gamma.dtype(), beta.dtype(), grad.dtype()] != [DType::F32; 4] {
            return group_norm_backward_composed::<Flex>(x, gamma, beta, grad, groups, eps, relu);
        }
        shapes::group_norm(
            "vit_group_norm_backward",
            &dims(&x),
            &dims(&gamma),
            &dims(&beta),
            groups,
        );
        shapes::same("vit_group_norm_backward", &dims(&x), &dims(&grad));
        let (x, gamma, beta) = (
            x.to_contiguous(),
            gamma.to_contiguous(),
            beta.to_contiguous(),
        );
        group_norm::group_norm_backward(&x, [f32s(&gamma), f32s(&beta)], grad, groups, eps, relu)
    }
}

/// Both gradients of a convolution, or the weight's alone (f32, shapes checked here).
fn conv_backward(
    x: FlexTensor,
    weight: FlexTensor,
    grad: FlexTensor,
    stride: [usize; 2],
    padding: [(usize, usize); 2],
    input_grad: bool,
) -> (Option<FlexTensor>, FlexTensor) {
    let (xd, wd) = (dims(&x), dims(&weight));
    shapes::conv2d_backward(
        "vit_conv2d_backward",
        &xd,
        &wd,
        &dims(&grad),
        stride,
        padding,
    );
    let geometry = conv::Geometry::new(&xd, &wd, stride, padding);
    let (x, weight, grad) = (
        x.to_contiguous(),
        weight.to_contiguous(),
        grad.to_contiguous(),
    );
    conv::conv2d_backward(&x, &weight, &grad, geometry, input_grad)
}
