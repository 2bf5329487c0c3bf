//! GEMM on the CPU through the `gemm` crate: one (image, head)'s small products on the calling
//! thread ([`gemm_one`]), and token-batch products in blocks of rows with an epilogue run while
//! each block is in cache ([`gemm_rows`]).

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::buffer::{Unfilled, rows_per_task};
use super::simd::simd;

/// A read-only strided matrix: (start, row stride, column stride), borrowed from a slice.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a>(pub(super) &'a [f32], pub(super) isize, pub(super) isize);

impl<'a> Mat<'a> {
    /// Row-major rows of `stride` elements, starting at `data[0]`.
    pub(super) fn rows(data: &'a [f32], stride: usize) -> Self {
        Mat(data, stride as isize, 1)
    }
    /// The transpose (a view: the strides swap).
    pub(super) fn t(self) -> Self {
        Mat(self.0, self.2, self.1)
    }
}

/// A strided output matrix: (start, row stride, column stride).
pub(super) struct MatMut(pub(super) *mut f32, pub(super) isize, pub(super) isize);

/// `out = scale * a b` for `a` `[m, k]` and `b` `[k, n]`, on the calling thread (the callers
/// run many of these in parallel).
pub(super) fn gemm_one(out: MatMut, a: Mat, b: Mat, [m, k, n]: [usize; 3], scale: f32) {
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
pub(super) const GEMM_ROWS: usize = 1024;

/// A matrix operand for [`gemm_rows`]: `(pointer, row stride, column stride)` of `t` viewed as
/// `[rows, cols]` (`t` must be contiguous, or 2-D with non-negative strides).
pub(super) fn matrix(t: &FlexTensor, [rows, cols]: [usize; 2]) -> (*const f32, isize, isize) {
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
    assert_eq!(
        layout.num_elements(),
        rows * cols,
        "gemm operand of shape {:?} viewed as [{rows}, {cols}]",
        layout.shape()
    );
    let data: &[f32] = t.storage();
    (data[layout.start_offset()..].as_ptr(), rs, cs)
}

/// `a b` for `a` `[m, k]`, `b` `[k, n]`, as a dense row-major `[m, n]` buffer, in blocks of
/// [`GEMM_ROWS`] rows, each GEMM on all threads and followed by `epilogue` over the block's rows
/// (split across threads while they are still in cache: the bias, GELU). The GEMM writes the
/// buffer without reading it, so it is not zero-filled first.
pub(super) fn gemm_rows(
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
        // SAFETY: `a` (from `matrix`, which checked its element count) spans m rows of stride
        // a_rs and k columns of stride a_cs, so row `start` onwards is in bounds; `b` spans
        // [k, n] (likewise checked); `block` has rows * n elements.
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
