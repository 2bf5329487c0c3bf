//! Linear layers over token batches: `act(x W + b)` with the bias and activation applied to each
//! block of GEMM rows while it is in cache, and the three gradients.

use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::tensor::Shape;
use rayon::prelude::*;

use super::buffer::{add_into, f32s, rows_per_task, tensor};
use super::gemm::{gemm_rows, gemm_tn, matrix};

/// `act(x W + b)` over the last axis of `x` (`[..., K]`, weight `[K, N]`, bias `[N]`): the
/// bias and `act` applied to each block of rows right after its GEMM (see [`gemm_rows`]).
/// `act` must be `#[inline(always)]` to be compiled for the CPU's SIMD.
pub(super) fn linear_act(
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

/// dx, dW and db of `x W + b` (`x` `[..., K]`, weight `[K, N]`, output gradient `[..., N]`).
pub(super) fn linear_backward(
    x: FlexTensor,
    weight: FlexTensor,
    grad: FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
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
    // dW = x^T grad.
    let dw = gemm_tn(x, grad.clone(), [m, k, n]);
    // db = column sums of grad: partial sums per task, added in task order (not rayon's
    // `reduce`, whose order follows the thread timing), so that a run is bit-for-bit repeatable.
    let rows = rows_per_task(n);
    let partial: Vec<Vec<f32>> = f32s(&grad)
        .par_chunks(rows * n)
        .map(|g| g.chunks_exact(n).fold(vec![0.0f32; n], add_into))
        .collect();
    let db = partial.into_iter().fold(vec![0.0f32; n], add_into);
    (tensor(dx, x_shape), dw, tensor(db, Shape::new([n])))
}
