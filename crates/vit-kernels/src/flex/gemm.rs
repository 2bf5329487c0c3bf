//! GEMM on the CPU, through the `gemm` crate or the BLAS [`crate::cpu_gemm`] chose: one (image,
//! head)'s small products on the calling thread ([`gemm_one`]), token-batch products in blocks
//! of rows with an epilogue run while each block is in cache ([`gemm_rows`]), and the weight
//! gradient's `x^T g` ([`gemm_tn`]).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::Shape;
use rayon::prelude::*;

use super::buffer::{SyncPtr, Unfilled, rows_per_task, tensor};
use super::simd::simd;
use crate::cpu_gemm::{Blas, blas};

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
pub(super) fn gemm_one(out: MatMut, a: Mat, b: Mat, mkn: [usize; 3], scale: f32) {
    gemm_one_on(blas(), out, a, b, mkn, scale)
}

/// `out += a b` on the calling thread: [`gemm_one`] adding onto `out` (which must be
/// initialised) instead of overwriting it.
pub(super) fn gemm_acc(out: MatMut, a: Mat, b: Mat, mkn: [usize; 3]) {
    gemm_into_on(blas(), out, a, b, mkn, 1.0, true)
}

/// [`gemm_one`] on the given BLAS (`None`: the gemm crate).
fn gemm_one_on(blas: Option<&Blas>, out: MatMut, a: Mat, b: Mat, mkn: [usize; 3], scale: f32) {
    gemm_into_on(blas, out, a, b, mkn, scale, false)
}

/// `out = scale * a b`, or `out += scale * a b` with `accumulate`, on the given BLAS (`None`:
/// the gemm crate), on the calling thread.
fn gemm_into_on(
    blas: Option<&Blas>,
    out: MatMut,
    a: Mat,
    b: Mat,
    [m, k, n]: [usize; 3],
    scale: f32,
    accumulate: bool,
) {
    // The last element each operand reaches must lie in its slice.
    let last = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows.max(1) - 1) as isize * rs + (cols.max(1) - 1) as isize * cs
    };
    assert!(last(m, k, a.1, a.2) < a.0.len() as isize && last(k, n, b.1, b.2) < b.0.len() as isize);
    if let Some(blas) = blas {
        // A non-unit column stride is not a CBLAS output: the gemm crate below takes it.
        if out.2 == 1 {
            let beta = if accumulate { 1.0 } else { 0.0 };
            // SAFETY: as for the gemm crate below; `out` has unit column stride (checked) and,
            // when accumulating, holds initialised values (`gemm_acc`'s contract).
            let done = unsafe {
                blas.sgemm_beta(
                    [m, k, n],
                    (a.0.as_ptr(), a.1, a.2),
                    (b.0.as_ptr(), b.1, b.2),
                    (out.0, out.1),
                    scale,
                    beta,
                )
            };
            if done.is_some() {
                return;
            }
        }
    }
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
            accumulate,
            a.0.as_ptr(),
            a.2,
            a.1,
            b.0.as_ptr(),
            b.2,
            b.1,
            1.0,
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
    a: (*const f32, isize, isize),
    b: (*const f32, isize, isize),
    mkn: [usize; 3],
    epilogue: Option<impl Fn(&mut [f32]) + Sync>,
) -> Vec<f32> {
    gemm_rows_on(blas(), a, b, mkn, epilogue)
}

/// [`gemm_rows`] on the given BLAS (`None`: the gemm crate).
fn gemm_rows_on(
    blas: Option<&Blas>,
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
    if let Some(blas) = blas
        && blas_rows(
            blas,
            (a, a_rs, a_cs),
            (b, b_rs, b_cs),
            [m, k, n],
            base,
            &epilogue,
        )
    {
        // SAFETY: `blas_rows` wrote all m rows.
        return unsafe { out.assume_written() };
    }
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

/// Most rows per task of [`blas_rows`]: a task's output (up to 256 rows of `n`) stays in L2 for
/// its epilogue, and each task's sgemm is large enough to amortise packing `b`.
const BLAS_ROWS: usize = 256;

/// [`gemm_rows`] on a single-threaded BLAS: the rows split into tasks on rayon's threads, each
/// an sgemm followed by the epilogue on its rows. `false` (nothing written) when the operands'
/// strides are not a BLAS layout.
fn blas_rows(
    blas: &Blas,
    a: (*const f32, isize, isize),
    b: (*const f32, isize, isize),
    [m, k, n]: [usize; 3],
    out: SyncPtr,
    epilogue: &Option<impl Fn(&mut [f32]) + Sync>,
) -> bool {
    let layout_ok = |rs: isize, cs: isize| cs == 1 || rs == 1;
    if !layout_ok(a.1, a.2) || !layout_ok(b.1, b.2) {
        return false;
    }
    // A multiple of the thread count of tasks, so that no thread runs one task more than the
    // others (7 tasks on 2 threads would idle one thread for a seventh of the product).
    let threads = rayon::current_num_threads().max(1);
    let tasks = threads * m.div_ceil(threads * BLAS_ROWS).max(1);
    let rows = m.div_ceil(tasks).max(16);
    let ((a_ptr, a_rs, a_cs), (b_ptr, b_rs, b_cs)) = (a, b);
    let (a_ptr, b_ptr) = (SyncConst(a_ptr), SyncConst(b_ptr));
    (0..m.div_ceil(rows)).into_par_iter().all(|task| {
        let start = task * rows;
        let len = rows.min(m - start);
        // SAFETY: rows start..start + len of the m * n output.
        let block = unsafe { out.at(start * n) };
        // SAFETY: `a` spans m rows of stride a.1 (checked by `matrix`), so row `start` onwards
        // is in bounds; `b` spans [k, n]; `block` has len * n elements, its own to this task.
        let done = unsafe {
            blas.sgemm(
                [len, k, n],
                (a_ptr.get().offset(start as isize * a_rs), a_rs, a_cs),
                (b_ptr.get(), b_rs, b_cs),
                (block, n as isize),
                1.0,
            )
        };
        if done.is_none() {
            return false;
        }
        if let Some(f) = epilogue {
            // SAFETY: the sgemm above wrote this task's rows.
            let rows = unsafe { std::slice::from_raw_parts_mut(block, len * n) };
            simd(
                #[inline(always)]
                || f(rows),
            );
        }
        true
    })
}

/// A read-only pointer shared by rayon's tasks.
#[derive(Clone, Copy)]
struct SyncConst(*const f32);
impl SyncConst {
    // A method, so that closures capture the wrapper rather than its field.
    fn get(self) -> *const f32 {
        self.0
    }
}
// SAFETY: the tasks only read through it, while the caller's borrow keeps the data alive.
unsafe impl Send for SyncConst {}
// SAFETY: as above.
unsafe impl Sync for SyncConst {}

/// `x^T g` for `x` `[m, k]` and `g` `[m, n]` (both dense row-major): the weight gradient of a
/// Linear layer over m token rows. On a BLAS, the k output rows split across rayon's threads;
/// on the gemm crate, Flex's matmul.
pub(super) fn gemm_tn(x: FlexTensor, g: FlexTensor, mkn: [usize; 3]) -> FlexTensor {
    gemm_tn_on(blas(), x, g, mkn)
}

/// [`gemm_tn`] on the given BLAS (`None`: Flex's matmul).
fn gemm_tn_on(
    blas: Option<&Blas>,
    x: FlexTensor,
    g: FlexTensor,
    [m, k, n]: [usize; 3],
) -> FlexTensor {
    let x = x.to_contiguous().reshape(Shape::new([m, k]));
    let g = g.to_contiguous().reshape(Shape::new([m, n]));
    if let Some(blas) = blas
        && m > 0
    {
        let (xp, _, _) = matrix(&x, [m, k]);
        let (gp, _, _) = matrix(&g, [m, n]);
        let mut out = Unfilled::new(k * n);
        let base = out.ptr();
        let threads = rayon::current_num_threads().max(1);
        let rows = k.div_ceil(threads).max(1);
        let (xp, gp) = (SyncConst(xp), SyncConst(gp));
        let ok = (0..k.div_ceil(rows)).into_par_iter().all(|task| {
            let start = task * rows;
            let len = rows.min(k - start);
            // SAFETY: x^T viewed from column `start` is [len, m] with strides (1, k) inside x's
            // m * k elements; g is [m, n]; the output rows start..start + len are this task's.
            unsafe {
                blas.sgemm(
                    [len, m, n],
                    (xp.get().add(start), 1, k as isize),
                    (gp.get(), n as isize, 1),
                    (base.at(start * n), n as isize),
                    1.0,
                )
            }
            .is_some()
        });
        if ok {
            // SAFETY: the tasks wrote all k rows.
            return tensor(unsafe { out.assume_written() }, Shape::new([k, n]));
        }
    }
    Flex::float_matmul(x.transpose(0, 1), g)
}

#[cfg(test)]
mod tests {
    //! Each GEMM entry point on the gemm crate and on MKL (when installed; `VIT_REQUIRE_MKL=1`
    //! makes a missing MKL a failure, as in CI) against a float64 reference, with transposed
    //! operands, row counts that do not divide into tasks, and an epilogue.
    use super::*;
    use crate::cpu_gemm::{CpuGemm, resolve};

    fn mkl() -> Option<Blas> {
        match resolve(Some("mkl")) {
            Ok(CpuGemm::Blas(blas)) => Some(blas),
            Ok(CpuGemm::GemmCrate) => unreachable!("`mkl` resolves to a BLAS or an error"),
            Err(e) if std::env::var_os("VIT_REQUIRE_MKL").is_some() => panic!("{e}"),
            Err(e) => {
                eprintln!("MKL paths not tested: {e}");
                None
            }
        }
    }

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// `a b` in f64 for strided operands.
    fn reference(a: Mat, b: Mat, [m, k, n]: [usize; 3]) -> Vec<f64> {
        let at =
            |x: Mat, i: usize, j: usize| x.0[(i as isize * x.1 + j as isize * x.2) as usize] as f64;
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| at(a, i, p) * at(b, p, j)).sum();
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what}: element {i} is {g}, expected {w}"
            );
        }
    }

    fn backends() -> Vec<(Option<Blas>, &'static str)> {
        let mut v = vec![(None, "gemm crate")];
        if let Some(blas) = mkl() {
            v.push((Some(blas), "MKL"));
        }
        v
    }

    #[test]
    fn gemm_one_with_transposed_operands() {
        let (m, k, n) = (13, 9, 11);
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        for (blas, name) in backends() {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                // A transposed operand is the transpose of a row-major [cols, rows] buffer.
                let am = if ta {
                    Mat::rows(&a, m).t()
                } else {
                    Mat::rows(&a, k)
                };
                let bm = if tb {
                    Mat::rows(&b, k).t()
                } else {
                    Mat::rows(&b, n)
                };
                let mut out = vec![f32::NAN; m * n];
                gemm_one_on(
                    blas.as_ref(),
                    MatMut(out.as_mut_ptr(), n as isize, 1),
                    am,
                    bm,
                    [m, k, n],
                    0.5,
                );
                let want: Vec<f64> = reference(am, bm, [m, k, n])
                    .iter()
                    .map(|v| v * 0.5)
                    .collect();
                assert_close(&out, &want, &format!("{name} gemm_one ta={ta} tb={tb}"));
            }
        }
    }

    #[test]
    fn gemm_rows_in_tasks_with_an_epilogue() {
        // 1,100 rows: several tasks of BLAS_ROWS and a GEMM_ROWS block plus a remainder.
        let (m, k, n) = (1100, 24, 40);
        let a = values(m * k, 3);
        let w = values(n * k, 4);
        for (blas, name) in backends() {
            // b as the transpose of a row-major [n, k] weight, as the backward's W^T.
            let bm = Mat::rows(&w, k).t();
            let out = gemm_rows_on(
                blas.as_ref(),
                (a.as_ptr(), k as isize, 1),
                (w.as_ptr(), bm.1, bm.2),
                [m, k, n],
                Some(|rows: &mut [f32]| rows.iter_mut().for_each(|v| *v = 2.0 * *v + 1.0)),
            );
            let want: Vec<f64> = reference(Mat::rows(&a, k), bm, [m, k, n])
                .iter()
                .map(|v| 2.0 * v + 1.0)
                .collect();
            assert_close(&out, &want, &format!("{name} gemm_rows"));
        }
    }

    #[test]
    fn gemm_tn_is_the_weight_gradient() {
        let (m, k, n) = (301, 7, 5);
        let x = values(m * k, 5);
        let g = values(m * n, 6);
        let want = reference(Mat::rows(&x, k).t(), Mat::rows(&g, n), [k, m, n]);
        for (blas, name) in backends() {
            let xt = tensor(x.clone(), Shape::new([m, k]));
            let gt = tensor(g.clone(), Shape::new([m, n]));
            let out = gemm_tn_on(blas.as_ref(), xt, gt, [m, k, n]);
            let out = out.to_contiguous();
            assert_close(
                super::super::buffer::f32s(&out),
                &want,
                &format!("{name} gemm_tn"),
            );
        }
    }
}
