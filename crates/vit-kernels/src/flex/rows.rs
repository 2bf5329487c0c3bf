//! The row kernels: GELU, LayerNorm and softmax, forward and backward, as passes over rows (or
//! chunks) on rayon's threads; and the per-row pieces they are made of (softmax of a row, its
//! gradient, a row's moments, vectorised sums and maxima), each `#[inline(always)]` so that
//! it is compiled inside the caller's [`simd`](super::simd::simd) region.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::super::math;
use super::buffer::{
    CHUNK, add_into, f32s, owned, par_in_place, par_in_place_with, par_rows, rows_per_task, tensor,
};
use super::simd::simd;

/// `gelu(x)` element-wise, in place where `x`'s buffer is not shared.
pub(super) fn gelu(x: FlexTensor) -> FlexTensor {
    par_in_place(
        owned(x),
        CHUNK,
        #[inline(always)]
        |o| {
            for v in o.iter_mut() {
                *v = math::gelu(*v);
            }
        },
    )
}

/// `grad * gelu'(x)`, over the gradient's buffer.
pub(super) fn gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
    let x = x.to_contiguous();
    par_in_place_with(
        owned(grad),
        f32s(&x),
        CHUNK,
        #[inline(always)]
        |g, x| {
            for (g, &x) in g.iter_mut().zip(x) {
                *g *= math::gelu_grad(x);
            }
        },
    )
}

/// LayerNorm over the last axis, one row per pass.
pub(super) fn layer_norm(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    eps: f64,
) -> FlexTensor {
    let (gamma, beta) = (gamma.to_contiguous(), beta.to_contiguous());
    let (gamma, beta) = (f32s(&gamma), f32s(&beta));
    let d = gamma.len();
    let eps = eps as f32;
    par_rows(
        owned(x),
        d,
        #[inline(always)]
        |x| {
            let (mean, rstd) = moments(x, eps);
            for ((x, &g), &b) in x.iter_mut().zip(gamma).zip(beta) {
                *x = (*x - mean) * rstd * g + b;
            }
        },
    )
}

/// dx, dgamma and dbeta of LayerNorm (statistics recomputed per row).
pub(super) fn layer_norm_backward(
    x: FlexTensor,
    gamma: FlexTensor,
    grad: FlexTensor,
    eps: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let x = x.to_contiguous();
    let gamma_shape = gamma.shape();
    let gamma = gamma.to_contiguous();
    let gamma = f32s(&gamma);
    let d = gamma.len();
    let rows = rows_per_task(d);
    let eps = eps as f32;
    // dx overwrites the output gradient; each task returns its rows' partial dgamma and
    // dbeta, summed after in task order (repeatable, unlike rayon's `reduce`).
    let mut dx = owned(grad);
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .storage_mut::<f32>()
        .par_chunks_mut(rows * d)
        .zip(f32s(&x).par_chunks(rows * d))
        .map(|(dy, x)| {
            let mut dgamma = vec![0.0f32; d];
            let mut dbeta = vec![0.0f32; d];
            simd(
                #[inline(always)]
                || {
                    let inv_d = 1.0 / d as f32;
                    for (dy, x) in dy.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                        let (mean, rstd) = moments(x, eps);
                        // a = mean(dy * gamma), b = mean(dy * gamma * xhat)
                        let a = sum3(x, dy, gamma, |_, dy, g| dy * g) * inv_d;
                        let b = sum3(x, dy, gamma, |x, dy, g| dy * g * (x - mean) * rstd) * inv_d;
                        let rows = dy.iter_mut().zip(x).zip(gamma);
                        let params = dgamma.iter_mut().zip(dbeta.iter_mut());
                        for (((dy, &x), &g), (dg, db)) in rows.zip(params) {
                            let xhat = (x - mean) * rstd;
                            *dg += *dy * xhat;
                            *db += *dy;
                            *dy = rstd * (*dy * g - a - xhat * b);
                        }
                    }
                },
            );
            (dgamma, dbeta)
        })
        .collect();
    let (dgamma, dbeta) = partial
        .into_iter()
        .fold((vec![0.0f32; d], vec![0.0f32; d]), |(ga, ba), (gb, bb)| {
            (add_into(ga, gb), add_into(ba, bb))
        });
    (
        dx,
        tensor(dgamma, gamma_shape.clone()),
        tensor(dbeta, gamma_shape),
    )
}

/// `softmax(x * scale)` over the last axis, one row per pass.
pub(super) fn softmax(x: FlexTensor, scale: f64) -> FlexTensor {
    let d = x.shape()[x.shape().num_dims() - 1];
    let scale = scale as f32;
    par_rows(
        owned(x),
        d,
        #[inline(always)]
        |x| softmax_row(x, scale),
    )
}

/// The gradient of `softmax(x * scale)` from its output `y`, over the gradient's buffer.
pub(super) fn softmax_backward(y: FlexTensor, grad: FlexTensor, scale: f64) -> FlexTensor {
    let y = y.to_contiguous();
    let d = y.shape()[y.shape().num_dims() - 1];
    let scale = scale as f32;
    par_in_place_with(
        owned(grad),
        f32s(&y),
        rows_per_task(d) * d,
        #[inline(always)]
        |g, y| {
            for (g, y) in g.chunks_exact_mut(d).zip(y.chunks_exact(d)) {
                softmax_backward_row(g, y, scale);
            }
        },
    )
}

/// `softmax(x * scale)` of one row, in place.
#[inline(always)]
pub(super) fn softmax_row(x: &mut [f32], scale: f32) {
    // max(x * scale) = max(x) * scale exactly (rounding is monotone).
    let max = row_max(x) * scale;
    for v in x.iter_mut() {
        *v = math::exp(*v * scale - max);
    }
    let inv = 1.0 / sum3(x, x, x, |v, _, _| v);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// The gradient of `softmax(x * scale)` for one row, from its output `y`, in place over the
/// output gradient `g`: `scale * y * (g - sum(g * y))`.
#[inline(always)]
pub(super) fn softmax_backward_row(g: &mut [f32], y: &[f32], scale: f32) {
    let dot = sum3(y, g, y, |y, g, _| y * g);
    for (g, &y) in g.iter_mut().zip(y) {
        *g = scale * y * (*g - dot);
    }
}

/// Mean and 1/sqrt(var + eps) of a row, two-pass (as PyTorch), vectorised accumulators.
#[inline(always)]
pub(super) fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let inv_d = 1.0 / x.len() as f32;
    let mean = sum3(x, x, x, |v, _, _| v) * inv_d;
    let var = sum3(x, x, x, |v, _, _| (v - mean) * (v - mean)) * inv_d;
    (mean, 1.0 / (var + eps).sqrt())
}

pub(super) const LANES: usize = 16;

/// `sum(f(a[i], b[i], c[i]))` with sixteen partial sums: f32 addition is not associative, so
/// LLVM vectorises a reduction only when the code spells the lanes out.
#[inline(always)]
pub(super) fn sum3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (mut ia, mut ib, mut ic) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    for ((a, b), c) in (&mut ia).zip(&mut ib).zip(&mut ic) {
        let (a, b, c): (&[f32; LANES], &[f32; LANES], &[f32; LANES]) = (
            a.try_into().unwrap(),
            b.try_into().unwrap(),
            c.try_into().unwrap(),
        );
        for l in 0..LANES {
            acc[l] += f(a[l], b[l], c[l]);
        }
    }
    let tail: f32 = ia
        .remainder()
        .iter()
        .zip(ib.remainder())
        .zip(ic.remainder())
        .map(|((&a, &b), &c)| f(a, b, c))
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// The largest element, with [`LANES`] partial maxima (vectorises; `fold(max)` does not).
#[inline(always)]
pub(super) fn row_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        let c: &[f32; LANES] = c.try_into().unwrap();
        for l in 0..LANES {
            acc[l] = acc[l].max(c[l]);
        }
    }
    let tail = it
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    acc.iter().fold(tail, |m, &v| m.max(v))
}
