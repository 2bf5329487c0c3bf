//! Buffers and the parallel loops over them: outputs written without a zero fill
//! ([`Unfilled`], [`SyncPtr`]), in-place passes over chunks or rows on rayon's threads, and
//! conversions between Flex tensors and f32 slices.

use burn::backend::TensorMetadata;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape};
use rayon::prelude::*;

use super::simd::simd;

/// Elements per rayon task: large enough to amortise the task, small enough to balance.
pub(super) const CHUNK: usize = 16 * 1024;

/// A buffer of f32 that kernels write through raw pointers without zero-filling it first,
/// handed over as a `Vec` once every element is written.
pub(super) struct Unfilled {
    data: Vec<f32>,
    len: usize,
}

impl Unfilled {
    pub(super) fn new(len: usize) -> Self {
        Self {
            data: Vec::with_capacity(len),
            len,
        }
    }

    /// Where the writers write (element 0).
    pub(super) fn ptr(&mut self) -> SyncPtr {
        SyncPtr(self.data.as_mut_ptr())
    }

    /// # Safety
    /// Every one of the `len` elements has been written.
    pub(super) unsafe fn assume_written(mut self) -> Vec<f32> {
        // SAFETY: the capacity is `len` and the caller wrote every element.
        unsafe { self.data.set_len(self.len) };
        self.data
    }
}

/// Runs `f` over `chunk`-element pieces of `out`'s buffer, in place, on rayon's threads, each
/// call compiled for the CPU's SIMD (`f` must be `#[inline(always)]` for that).
pub(super) fn par_in_place(
    mut out: FlexTensor,
    chunk: usize,
    f: impl Fn(&mut [f32]) + Sync,
) -> FlexTensor {
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
pub(super) fn par_rows(out: FlexTensor, d: usize, f: impl Fn(&mut [f32]) + Sync) -> FlexTensor {
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
pub(super) fn par_in_place_with(
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
pub(super) fn add_into(mut a: Vec<f32>, b: impl AsRef<[f32]>) -> Vec<f32> {
    a.iter_mut().zip(b.as_ref()).for_each(|(a, b)| *a += b);
    a
}

/// Rows per rayon task for rows of `d` elements.
pub(super) fn rows_per_task(d: usize) -> usize {
    (CHUNK / d.max(1)).max(1)
}

/// `x` as a dense f32 tensor whose buffer the op overwrites with its result: `storage_mut`
/// then writes in place when nothing else holds the buffer (an op's fresh output, a gradient)
/// and copies it first otherwise (an input autodiff keeps for backward).
pub(super) fn owned(x: FlexTensor) -> FlexTensor {
    let x = x.to_contiguous();
    let layout = x.layout();
    if layout.start_offset() == 0 && x.bytes().len() == layout.num_elements() * 4 {
        x
    } else {
        let shape = x.shape();
        tensor(f32s(&x).to_vec(), shape)
    }
}

pub(super) fn f32s(x: &FlexTensor) -> &[f32] {
    x.as_slice::<f32>()
        .expect("a contiguous f32 tensor (checked by the caller)")
}

pub(super) fn tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// A raw output pointer shared by rayon tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(super) struct SyncPtr(*mut f32);
// SAFETY: a `SyncPtr` is only dereferenced by tasks that write disjoint elements of one live
// buffer (each use says how), so sending it to another thread races with nothing.
unsafe impl Send for SyncPtr {}
// SAFETY: as for `Send`: shared references only hand out the pointer, and the writes through it
// are disjoint.
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// The pointer `offset` elements on (a method, so that closures capture the `SyncPtr`).
    ///
    /// # Safety
    /// As `pointer::add`.
    pub(super) unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller keeps `offset` within the buffer (this function's contract).
        unsafe { self.0.add(offset) }
    }
}
