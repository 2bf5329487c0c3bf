//! GroupNorm with its per-channel affine and an optional ReLU as one pass on Flex (forward) and
//! one pair of passes per group (backward), in place where the buffer is free.
//!
//! Composed from Burn's ops under autodiff, GroupNorm + affine + ReLU is a LayerNorm node, a
//! multiply, an add and a ReLU, each a full pass that keeps its own copy of the activations for
//! the backward; here the node keeps only the input and recomputes the statistics and the ReLU's
//! mask from it.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::buffer::{f32s, owned, tensor};
use super::rows::{moments, sum3};
use super::simd::simd;

/// `[B, C, ...]` as (images, channels, elements per channel).
fn sizes(x: &FlexTensor) -> (usize, usize, usize) {
    let shape = x.shape();
    let (b, c) = (shape[0], shape[1]);
    (b, c, shape.num_elements() / (b * c).max(1))
}

/// The output of one element: the same expression in the forward and in the backward's mask.
#[inline(always)]
fn affine(x: f32, mean: f32, scale: f32, shift: f32) -> f32 {
    (x - mean) * scale + shift
}

/// `relu?((x - mean_g) rstd_g gamma_c + beta_c)` over `[B, C, ...]`, statistics per (image,
/// group of `C / groups` channels).
pub(super) fn group_norm(
    x: FlexTensor,
    gamma: &[f32],
    beta: &[f32],
    groups: usize,
    eps: f64,
    relu: bool,
) -> FlexTensor {
    let (_, c, hw) = sizes(&x);
    let cg = c / groups;
    let eps = eps as f32;
    let mut out = owned(x);
    out.storage_mut::<f32>()
        .par_chunks_mut((cg * hw).max(1))
        .enumerate()
        .for_each(|(i, group)| {
            let first = (i % groups) * cg;
            simd(
                #[inline(always)]
                || {
                    let (mean, rstd) = moments(group, eps);
                    for (ch, plane) in (first..).zip(group.chunks_exact_mut(hw)) {
                        let (scale, shift) = (rstd * gamma[ch], beta[ch]);
                        for v in plane {
                            let y = affine(*v, mean, scale, shift);
                            *v = if relu { y.max(0.0) } else { y };
                        }
                    }
                },
            )
        });
    out
}

/// dx, dgamma and dbeta of [`group_norm`] from its input `x` and the output gradient `grad`
/// (contiguous f32, checked by the caller).
pub(super) fn group_norm_backward(
    x: &FlexTensor,
    [gamma, beta]: [&[f32]; 2],
    grad: FlexTensor,
    groups: usize,
    eps: f64,
    relu: bool,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (_, c, hw) = sizes(x);
    let (cg, eps) = (c / groups, eps as f32);
    let n = (cg * hw).max(1);
    // dx overwrites the output gradient; each group returns its channels' dgamma and dbeta,
    // added per channel over the images in image order (repeatable).
    let mut dx = owned(grad);
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .storage_mut::<f32>()
        .par_chunks_mut(n)
        .zip(f32s(x).par_chunks(n))
        .enumerate()
        .map(|(i, (dy, x))| {
            let first = (i % groups) * cg;
            let (gamma, beta) = (&gamma[first..first + cg], &beta[first..first + cg]);
            simd(
                #[inline(always)]
                || backward_group([x, gamma, beta], dy, hw, eps, relu),
            )
        })
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0.0f32; c], vec![0.0f32; c]);
    for (i, (dg, db)) in partial.into_iter().enumerate() {
        let first = (i % groups) * cg;
        for (j, (g, b)) in dg.into_iter().zip(db).enumerate() {
            dgamma[first + j] += g;
            dbeta[first + j] += b;
        }
    }
    (dx, tensor(dgamma, [c].into()), tensor(dbeta, [c].into()))
}

/// One (image, group): the ReLU's mask applied to `dy` and the channels' dgamma and dbeta, then
/// dx written over `dy`.
#[inline(always)]
fn backward_group(
    [x, gamma, beta]: [&[f32]; 3],
    dy: &mut [f32],
    hw: usize,
    eps: f32,
    relu: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (mean, rstd) = moments(x, eps);
    let (mut dgamma, mut dbeta) = (vec![0.0f32; gamma.len()], vec![0.0f32; gamma.len()]);
    // s1 = sum(dy gamma), s2 = sum(dy gamma xhat) over the group.
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    let planes = dy.chunks_exact_mut(hw).zip(x.chunks_exact(hw));
    for (ch, (dy, x)) in planes.enumerate() {
        if relu {
            let (scale, shift) = (rstd * gamma[ch], beta[ch]);
            for (d, &v) in dy.iter_mut().zip(x) {
                if affine(v, mean, scale, shift) <= 0.0 {
                    *d = 0.0;
                }
            }
        }
        let db = sum3(dy, dy, dy, |d, _, _| d);
        let dg = sum3(dy, x, x, |d, v, _| d * (v - mean)) * rstd;
        dgamma[ch] = dg;
        dbeta[ch] = db;
        s1 += db * gamma[ch];
        s2 += dg * gamma[ch];
    }
    let inv_n = 1.0 / (gamma.len() * hw).max(1) as f32;
    let (a, b) = (s1 * inv_n, s2 * inv_n);
    for (ch, (dy, x)) in dy.chunks_exact_mut(hw).zip(x.chunks_exact(hw)).enumerate() {
        let g = gamma[ch];
        for (d, &v) in dy.iter_mut().zip(x) {
            let xhat = (v - mean) * rstd;
            *d = rstd * (*d * g - a - xhat * b);
        }
    }
    (dgamma, dbeta)
}
