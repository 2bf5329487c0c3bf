//! The fused kernels on Burn's Flex (CPU) backend: one pass over rows, split across rayon's
//! threads, each chunk compiled for the widest SIMD the CPU has.
//!
//! Flex runs GELU and its gradient one scalar `erff` at a time on one thread, and under autodiff
//! Burn decomposes LayerNorm and softmax into eight to ten single-threaded passes each way; these
//! were the largest costs after the matmuls in a training step's profile (BENCHMARKS.md).

use burn::backend::Flex;
use burn::backend::TensorMetadata;
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::FloatTensorOps;
use burn::tensor::{Bytes, DType, Shape};
use rayon::prelude::*;

use super::VitOps;
use super::math;

/// Elements per rayon task: large enough to amortise the task, small enough to balance.
const CHUNK: usize = 16 * 1024;

impl VitOps for Flex {
    fn vit_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        if [x.dtype(), weight.dtype(), bias.dtype()] != [DType::F32; 3] {
            return super::linear_composed::<Flex>(x, weight, bias);
        }
        linear_act(
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
        linear_act(x, &weight, &bias, math::gelu)
    }

    fn vit_linear_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if [x.dtype(), weight.dtype(), grad.dtype()] != [DType::F32; 3] {
            return super::linear_backward_composed::<Flex>(x, weight, grad);
        }
        let x_shape = x.shape();
        let k = x_shape[x_shape.num_dims() - 1];
        let n = weight.shape()[1];
        let m = x_shape.num_elements() / k.max(1);
        let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
        // dx = grad W^T, in row blocks like the forward.
        let w_t = weight.transpose(0, 1);
        let dx = gemm_rows(
            matrix(&grad, [m, n]),
            matrix(&w_t, [n, k]),
            [m, n, k],
            None::<fn(&mut [f32])>,
        );
        // dW = x^T grad: K rows only, Flex's matmul runs it at full rate.
        let x2 = x.reshape(Shape::new([m, k]));
        let g2 = grad.reshape(Shape::new([m, n]));
        let dw = Self::float_matmul(x2.transpose(0, 1), g2);
        // db = column sums of grad, partial sums per task.
        let rows = rows_per_task(n);
        let db = f32s(&grad)
            .par_chunks(rows * n)
            .map(|g| g.chunks_exact(n).fold(vec![0.0f32; n], add_into))
            .reduce(|| vec![0.0f32; n], add_into);
        (tensor(dx, x_shape), dw, tensor(db, Shape::new([n])))
    }

    fn vit_attention(qkv: FlexTensor, heads: usize) -> FlexTensor {
        if qkv.dtype() != DType::F32 {
            return super::attention_composed::<Flex>(qkv, heads).0;
        }
        attention_heads(&qkv.to_contiguous(), heads, None)
    }

    fn vit_attention_with_weights(qkv: FlexTensor, heads: usize) -> (FlexTensor, FlexTensor) {
        if qkv.dtype() != DType::F32 {
            return super::attention_composed::<Flex>(qkv, heads);
        }
        let qkv = qkv.to_contiguous();
        let [b, s] = [qkv.shape()[0], qkv.shape()[1]];
        let mut weights = Unfilled::new(b * heads * s * s);
        let out = attention_heads(&qkv, heads, Some(weights.ptr()));
        // SAFETY: attention_heads wrote every head's S x S scores.
        let weights = unsafe { weights.assume_written() };
        (out, tensor(weights, Shape::new([b, heads, s, s])))
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
        // SAFETY: see above.
        tensor(unsafe { dqkv.assume_written() }, shape)
    }

    fn vit_gelu(x: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return super::gelu_composed::<Flex>(x);
        }
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

    fn vit_gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return super::gelu_backward_composed::<Flex>(x, grad);
        }
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

    fn vit_layer_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, eps: f64) -> FlexTensor {
        if [x.dtype(), gamma.dtype(), beta.dtype()] != [DType::F32; 3] {
            return super::layer_norm_composed::<Flex>(x, gamma, beta, eps);
        }
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

    fn vit_layer_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        grad: FlexTensor,
        eps: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if [x.dtype(), gamma.dtype(), grad.dtype()] != [DType::F32; 3] {
            return super::layer_norm_backward_composed::<Flex>(x, gamma, grad, eps);
        }
        let x = x.to_contiguous();
        let gamma_shape = gamma.shape();
        let gamma = gamma.to_contiguous();
        let gamma = f32s(&gamma);
        let d = gamma.len();
        let rows = rows_per_task(d);
        let eps = eps as f32;
        // dx overwrites the output gradient; each task returns its rows' partial dgamma and
        // dbeta, summed after.
        let mut dx = owned(grad);
        let (dgamma, dbeta) = dx
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
                            let b =
                                sum3(x, dy, gamma, |x, dy, g| dy * g * (x - mean) * rstd) * inv_d;
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
            .reduce(
                || (vec![0.0f32; d], vec![0.0f32; d]),
                |(ga, ba), (gb, bb)| (add_into(ga, gb), add_into(ba, bb)),
            );
        (
            dx,
            tensor(dgamma, gamma_shape.clone()),
            tensor(dbeta, gamma_shape),
        )
    }

    fn vit_softmax(x: FlexTensor, scale: f64) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return super::softmax_composed::<Flex>(x, scale);
        }
        let d = x.shape()[x.shape().num_dims() - 1];
        let scale = scale as f32;
        par_rows(
            owned(x),
            d,
            #[inline(always)]
            |x| softmax_row(x, scale),
        )
    }

    fn vit_softmax_backward(y: FlexTensor, grad: FlexTensor, scale: f64) -> FlexTensor {
        if y.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return super::softmax_backward_composed::<Flex>(y, grad, scale);
        }
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
}

/// `softmax(x * scale)` of one row, in place.
#[inline(always)]
fn softmax_row(x: &mut [f32], scale: f32) {
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
fn softmax_backward_row(g: &mut [f32], y: &[f32], scale: f32) {
    let dot = sum3(y, g, y, |y, g, _| y * g);
    for (g, &y) in g.iter_mut().zip(y) {
        *g = scale * y * (*g - dot);
    }
}

/// softmax(Q K^T / sqrt(Dh)) V from `qkv` `[B, S, 3D]` (contiguous), `[B, S, D]`, one
/// (image, head) per rayon task: the task's S x S scores stay in its core's cache from the first
/// GEMM through the softmax to the second, and its output lands in its head's columns (no merge
/// copy). With `weights` (`[B, h, S, S]`), the scores are written there, for the backward.
fn attention_heads(qkv: &FlexTensor, heads: usize, weights: Option<SyncPtr>) -> FlexTensor {
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
    // SAFETY: the heads' second GEMMs wrote every column of every row.
    tensor(unsafe { out.assume_written() }, Shape::new([b, s, d]))
}

thread_local! {
    /// Per-thread S x S scores of the attention kernels (reused: no allocation per head).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A raw output pointer shared by rayon tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);
// SAFETY: the tasks sharing it write disjoint elements (each user says how).
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// The pointer `offset` elements on (a method, so that closures capture the `SyncPtr`).
    ///
    /// # Safety
    /// As `pointer::add`.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}

/// A read-only strided matrix: (start, row stride, column stride), borrowed from a slice.
#[derive(Clone, Copy)]
struct Mat<'a>(&'a [f32], isize, isize);

impl<'a> Mat<'a> {
    /// Row-major rows of `stride` elements, starting at `data[0]`.
    fn rows(data: &'a [f32], stride: usize) -> Self {
        Mat(data, stride as isize, 1)
    }
    /// The transpose (a view: the strides swap).
    fn t(self) -> Self {
        Mat(self.0, self.2, self.1)
    }
}

/// A strided output matrix: (start, row stride, column stride).
struct MatMut(*mut f32, isize, isize);

/// `out = scale * a b` for `a` `[m, k]` and `b` `[k, n]`, on the calling thread (the callers
/// run many of these in parallel).
fn gemm_one(out: MatMut, a: Mat, b: Mat, [m, k, n]: [usize; 3], scale: f32) {
    // The last element each operand reaches must lie in its slice.
    let last = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows.max(1) - 1) as isize * rs + (cols.max(1) - 1) as isize * cs
    };
    assert!(last(m, k, a.1, a.2) < a.0.len() as isize && last(k, n, b.1, b.2) < b.0.len() as isize);
    // SAFETY: `a` and `b` are in bounds (checked above); `out` spans [m, n] with its strides
    // (the callers' buffers are sized for it).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.0,
            out.2,
            out.1,
            false,
            a.0.as_ptr(),
            a.2,
            a.1,
            b.0.as_ptr(),
            b.2,
            b.1,
            0.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Rows per GEMM call. At these widths the gemm crate's throughput halves past a few thousand
/// rows (measured: [8320, 192] x [192, 576] at 75 GFLOP/s in one call, 163-169 in blocks of
/// 4160 or 2080 rows; BENCHMARKS.md), so long token batches go through in blocks.
const GEMM_ROWS: usize = 1024;

/// A matrix operand for [`gemm_rows`]: `(pointer, row stride, column stride)` of `t` viewed as
/// `[rows, cols]` (`t` must be contiguous, or 2-D with non-negative strides).
fn matrix(t: &FlexTensor, [rows, cols]: [usize; 2]) -> (*const f32, isize, isize) {
    let layout = t.layout();
    let (rs, cs) = if layout.num_dims() == 2 && layout.has_positive_strides() {
        (layout.strides()[0], layout.strides()[1])
    } else {
        assert!(
            layout.is_contiguous(),
            "gemm operand must be contiguous or 2-D"
        );
        (cols as isize, 1)
    };
    debug_assert_eq!(layout.num_elements(), rows * cols);
    let data: &[f32] = t.storage();
    (data[layout.start_offset()..].as_ptr(), rs, cs)
}

/// `act(x W + b)` over the last axis of `x` (`[..., K]`, weight `[K, N]`, bias `[N]`): the
/// bias and `act` applied to each block of rows right after its GEMM (see [`gemm_rows`]).
/// `act` must be `#[inline(always)]` to be compiled for the CPU's SIMD.
fn linear_act(
    x: FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    act: impl Fn(f32) -> f32 + Sync,
) -> FlexTensor {
    let mut shape = x.shape();
    let last = shape.num_dims() - 1;
    let (k, n) = (shape[last], weight.shape()[1]);
    let m = shape.num_elements() / k.max(1);
    let (x, bias) = (x.to_contiguous(), bias.to_contiguous());
    let bias = f32s(&bias);
    let out = gemm_rows(
        matrix(&x, [m, k]),
        matrix(weight, [k, n]),
        [m, k, n],
        Some(
            #[inline(always)]
            |rows: &mut [f32]| {
                for row in rows.chunks_exact_mut(n) {
                    for (v, &b) in row.iter_mut().zip(bias) {
                        *v = act(*v + b);
                    }
                }
            },
        ),
    );
    shape[last] = n;
    tensor(out, shape)
}

/// `a b` for `a` `[m, k]`, `b` `[k, n]`, as a dense row-major `[m, n]` buffer, in blocks of
/// [`GEMM_ROWS`] rows, each GEMM on all threads and followed by `epilogue` over the block's rows
/// (split across threads while they are still in cache: the bias, GELU). The GEMM writes the
/// buffer without reading it, so it is not zero-filled first.
fn gemm_rows(
    (a, a_rs, a_cs): (*const f32, isize, isize),
    (b, b_rs, b_cs): (*const f32, isize, isize),
    [m, k, n]: [usize; 3],
    epilogue: Option<impl Fn(&mut [f32]) + Sync>,
) -> Vec<f32> {
    if k == 0 {
        let mut out = vec![0.0f32; m * n];
        if let Some(f) = &epilogue {
            f(&mut out);
        }
        return out;
    }
    let mut out = Unfilled::new(m * n);
    let base = out.ptr();
    for start in (0..m).step_by(GEMM_ROWS) {
        let rows = GEMM_ROWS.min(m - start);
        // SAFETY: the block's rows lie within the m * n elements of `out`.
        let block = unsafe { base.at(start * n) };
        // SAFETY: `a` (from `matrix`) spans m rows of stride a_rs and k columns of stride a_cs,
        // so row `start` onwards is in bounds; `b` spans [k, n]; `block` has rows * n elements.
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                block,
                1,
                n as isize,
                false,
                a.offset(start as isize * a_rs),
                a_cs,
                a_rs,
                b,
                b_cs,
                b_rs,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
        if let Some(f) = &epilogue {
            // SAFETY: the GEMM has written the block.
            let block = unsafe { std::slice::from_raw_parts_mut(block, rows * n) };
            block.par_chunks_mut(rows_per_task(n) * n).for_each(|rows| {
                simd(
                    #[inline(always)]
                    || f(rows),
                )
            });
        }
    }
    // SAFETY: the blocks' GEMMs wrote all m rows.
    unsafe { out.assume_written() }
}

/// A buffer of f32 that kernels write through raw pointers without zero-filling it first,
/// handed over as a `Vec` once every element is written.
struct Unfilled {
    data: Vec<f32>,
    len: usize,
}

impl Unfilled {
    fn new(len: usize) -> Self {
        Self {
            data: Vec::with_capacity(len),
            len,
        }
    }

    /// Where the writers write (element 0).
    fn ptr(&mut self) -> SyncPtr {
        SyncPtr(self.data.as_mut_ptr())
    }

    /// # Safety
    /// Every one of the `len` elements has been written.
    unsafe fn assume_written(mut self) -> Vec<f32> {
        // SAFETY: the capacity is `len` and the caller wrote every element.
        unsafe { self.data.set_len(self.len) };
        self.data
    }
}

/// Runs `f` over `chunk`-element pieces of `out`'s buffer, in place, on rayon's threads, each
/// call compiled for the CPU's SIMD (`f` must be `#[inline(always)]` for that).
fn par_in_place(mut out: FlexTensor, chunk: usize, f: impl Fn(&mut [f32]) + Sync) -> FlexTensor {
    out.storage_mut::<f32>()
        .par_chunks_mut(chunk)
        .for_each(|o| {
            simd(
                #[inline(always)]
                || f(o),
            )
        });
    out
}

/// Runs `f` on every row (`d` elements) of `out`'s buffer, in place: [`par_in_place`] over
/// whole rows (`f` must be `#[inline(always)]`).
fn par_rows(out: FlexTensor, d: usize, f: impl Fn(&mut [f32]) + Sync) -> FlexTensor {
    par_in_place(
        out,
        rows_per_task(d) * d,
        #[inline(always)]
        |rows| {
            for row in rows.chunks_exact_mut(d) {
                f(row);
            }
        },
    )
}

/// [`par_in_place`] with the matching pieces of a second input.
fn par_in_place_with(
    mut out: FlexTensor,
    other: &[f32],
    chunk: usize,
    f: impl Fn(&mut [f32], &[f32]) + Sync,
) -> FlexTensor {
    out.storage_mut::<f32>()
        .par_chunks_mut(chunk)
        .zip(other.par_chunks(chunk))
        .for_each(|(o, x)| {
            simd(
                #[inline(always)]
                || f(o, x),
            )
        });
    out
}

/// `a += b`, element-wise (partial sums of a parallel reduction).
fn add_into(mut a: Vec<f32>, b: impl AsRef<[f32]>) -> Vec<f32> {
    a.iter_mut().zip(b.as_ref()).for_each(|(a, b)| *a += b);
    a
}

/// Rows per rayon task for rows of `d` elements.
fn rows_per_task(d: usize) -> usize {
    (CHUNK / d.max(1)).max(1)
}

/// `x` as a dense f32 tensor whose buffer the op overwrites with its result: `storage_mut`
/// then writes in place when nothing else holds the buffer (an op's fresh output, a gradient)
/// and copies it first otherwise (an input autodiff keeps for backward).
fn owned(x: FlexTensor) -> FlexTensor {
    let x = x.to_contiguous();
    let layout = x.layout();
    if layout.start_offset() == 0 && x.bytes().len() == layout.num_elements() * 4 {
        x
    } else {
        let shape = x.shape();
        tensor(f32s(&x).to_vec(), shape)
    }
}

fn f32s(x: &FlexTensor) -> &[f32] {
    x.as_slice::<f32>()
        .expect("a contiguous f32 tensor (checked by the caller)")
}

fn tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// Mean and 1/sqrt(var + eps) of a row, two-pass (as PyTorch), vectorised accumulators.
#[inline(always)]
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let inv_d = 1.0 / x.len() as f32;
    let mean = sum3(x, x, x, |v, _, _| v) * inv_d;
    let var = sum3(x, x, x, |v, _, _| (v - mean) * (v - mean)) * inv_d;
    (mean, 1.0 / (var + eps).sqrt())
}

const LANES: usize = 16;

/// `sum(f(a[i], b[i], c[i]))` with sixteen partial sums: f32 addition is not associative, so
/// LLVM vectorises a reduction only when the code spells the lanes out.
#[inline(always)]
fn sum3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
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
fn row_max(x: &[f32]) -> f32 {
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

/// Runs `f` compiled for AVX-512 or AVX2 + FMA when the CPU has them (`f` and what it calls must
/// be `#[inline(always)]` to be compiled for the wider target).
#[inline(always)]
fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
