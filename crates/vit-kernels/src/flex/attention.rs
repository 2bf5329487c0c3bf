//! Multi-head self-attention on the CPU, one (image, head) per rayon task: its S x S scores
//! stay in that core's cache from Q K^T through the softmax to P V (and, backward, through dP
//! and dS to dQ, dK, dV), and its results are written straight into its head's columns.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::Shape;
use rayon::prelude::*;

use super::buffer::{SyncPtr, Unfilled, f32s, tensor};
use super::gemm::{Mat, MatMut, gemm_one};
use super::rows::{softmax_backward_row, softmax_row};
use super::simd::simd;

/// softmax(Q K^T / sqrt(Dh)) V from `qkv` `[B, S, 3D]` (contiguous), `[B, S, D]`, one
/// (image, head) per rayon task: the task's S x S scores stay in its core's cache from the first
/// GEMM through the softmax to the second, and its output lands in its head's columns (no merge
/// copy). With `weights` (`[B, h, S, S]`), the scores are written there, for the backward.
pub(super) fn attention_heads(
    qkv: &FlexTensor,
    heads: usize,
    weights: Option<SyncPtr>,
) -> FlexTensor {
    let shape = qkv.shape();
    let (b, s, w) = (shape[0], shape[1], shape[2]);
    let (d, dh) = (w / 3, w / 3 / heads);
    let scale = (dh as f32).powf(-0.5);
    let x = f32s(qkv);
    let mut out = Unfilled::new(b * s * d);
    let dst = out.ptr();
    // `scores`: where the task's S x S scores go (written before they are read).
    let head = |task: usize, scores: *mut f32| {
        let (bi, hi) = (task / heads, task % heads);
        let at = bi * s * w + hi * dh;
        // The scale goes into the GEMM: scores = (Q K^T) * scale.
        let q = Mat::rows(&x[at..], w);
        let k_t = Mat::rows(&x[at + d..], w).t();
        gemm_one(MatMut(scores, s as isize, 1), q, k_t, [s, dh, s], scale);
        // SAFETY: the GEMM above wrote these S x S elements; no other task touches them.
        let scores = unsafe { std::slice::from_raw_parts_mut(scores, s * s) };
        simd(
            #[inline(always)]
            || {
                for r in scores.chunks_exact_mut(s) {
                    softmax_row(r, 1.0);
                }
            },
        );
        // SAFETY: each task writes only its image's rows and its head's columns of `out`.
        let o = MatMut(unsafe { dst.at(bi * s * d + hi * dh) }, d as isize, 1);
        let v = Mat::rows(&x[at + 2 * d..], w);
        gemm_one(o, Mat::rows(scores, s), v, [s, s, dh], 1.0);
    };
    (0..b * heads)
        .into_par_iter()
        .for_each(|task| match weights {
            // SAFETY: task `task`'s block of the `[B, h, S, S]` weights.
            Some(weights) => head(task, unsafe { weights.at(task * s * s) }),
            None => SCRATCH.with_borrow_mut(|scores| {
                scores.resize(s * s, 0.0);
                head(task, scores.as_mut_ptr())
            }),
        });
    // SAFETY: task (bi, hi)'s second GEMM wrote columns hi * dh .. (hi + 1) * dh of image bi's
    // S rows; heads * dh = D (`shapes::attention` checked that heads divides D at the entry),
    // so every column of every row is written.
    tensor(unsafe { out.assume_written() }, Shape::new([b, s, d]))
}

/// [`attention_heads`] that also returns the attention weights `[B, h, S, S]` (kept for the
/// backward).
pub(super) fn attention_with_weights(qkv: FlexTensor, heads: usize) -> (FlexTensor, FlexTensor) {
    let qkv = qkv.to_contiguous();
    let [b, s] = [qkv.shape()[0], qkv.shape()[1]];
    let mut weights = Unfilled::new(b * heads * s * s);
    let out = attention_heads(&qkv, heads, Some(weights.ptr()));
    // SAFETY: attention_heads wrote every head's S x S scores.
    let weights = unsafe { weights.assume_written() };
    (out, tensor(weights, Shape::new([b, heads, s, s])))
}

/// The gradient for `qkv` (`[B, S, 3D]`) of [`attention_heads`], from `qkv`, the weights
/// `[B, h, S, S]` and the output gradient `[B, S, D]`.
pub(super) fn attention_backward(
    qkv: FlexTensor,
    weights: FlexTensor,
    grad: FlexTensor,
    heads: usize,
) -> FlexTensor {
    let (qkv, weights, grad) = (
        qkv.to_contiguous(),
        weights.to_contiguous(),
        grad.to_contiguous(),
    );
    let shape = qkv.shape();
    let (b, s, w) = (shape[0], shape[1], shape[2]);
    let (d, dh) = (w / 3, w / 3 / heads);
    let scale = (dh as f32).powf(-0.5);
    let (x, p, g) = (f32s(&qkv), f32s(&weights), f32s(&grad));
    // Each (image, head)'s three GEMMs write its dQ, dK and dV straight into their columns
    // of every row of the `[B, S, 3D]` gradient: together, all of it.
    let mut dqkv = Unfilled::new(b * s * w);
    let out = dqkv.ptr();
    (0..b * heads).into_par_iter().for_each(|task| {
        SCRATCH.with_borrow_mut(|ds| {
            ds.resize(s * s, 0.0);
            let (bi, hi) = (task / heads, task % heads);
            let at = bi * s * w + hi * dh;
            let (q, k, v) = (&x[at..], &x[at + d..], &x[at + 2 * d..]);
            let go = &g[bi * s * d + hi * dh..];
            let p = &p[task * s * s..(task + 1) * s * s];
            let dout = |part: usize| {
                // SAFETY: each task writes only its image's rows and its head's columns.
                MatMut(unsafe { out.at(at + part * d) }, w as isize, 1)
            };
            // dP = dO V^T, then dS = scale * P * (dP - rowsum(dO' P)) in place.
            gemm_one(
                MatMut(ds.as_mut_ptr(), s as isize, 1),
                Mat::rows(go, d),
                Mat::rows(v, w).t(),
                [s, dh, s],
                1.0,
            );
            let ds = &mut ds[..s * s];
            simd(
                #[inline(always)]
                || {
                    for (g, y) in ds.chunks_exact_mut(s).zip(p.chunks_exact(s)) {
                        softmax_backward_row(g, y, scale);
                    }
                },
            );
            let ds = Mat::rows(ds, s);
            gemm_one(dout(0), ds, Mat::rows(k, w), [s, s, dh], 1.0);
            gemm_one(dout(1), ds.t(), Mat::rows(q, w), [s, s, dh], 1.0);
            gemm_one(
                dout(2),
                Mat::rows(p, s).t(),
                Mat::rows(go, d),
                [s, s, dh],
                1.0,
            );
        })
    });
    // SAFETY: task (bi, hi) wrote its head's dh columns of the dQ, dK and dV thirds of image
    // bi's S rows; heads * dh = D and the width is 3D (checked at the entry by
    // `shapes::attention_backward`), so all 3D columns of every row are written.
    tensor(unsafe { dqkv.assume_written() }, shape)
}

thread_local! {
    /// Per-thread S x S scores of the attention kernels (reused: no allocation per head).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}
