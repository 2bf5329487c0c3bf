//! 2-D convolution on Flex (NCHW, f32, no groups or dilation) through the project's GEMM, with
//! both gradients.
//!
//! Per image the output is `W [O, K] x col [K, P]` (`K = C kh kw` kernel taps, `P = Ho Wo`
//! positions). A 1x1 convolution with stride 1 and no padding reads the image itself as `col`
//! (no copy). Any other packs its patches one tile of output rows at a time into a buffer of the
//! task's own, sized to stay in cache between the packing and the GEMM that reads it, so the
//! whole `[K, P]` matrix is never materialised (Flex's im2col is per image, 7 MB for a 3x3 over
//! 64 channels at 56x56). Tasks are (image, tile) pairs on rayon's threads, each GEMM on its
//! calling thread.
//!
//! The backward computes both gradients in one pass over each image's tiles: a tile is packed
//! once, the weight gradient adds `dY_tile col_tile^T` onto its task group's `[O, K]` sum, and
//! `W^T dY_tile` is scattered back onto the input gradient (col2im). Burn's generic backward
//! runs the input gradient as a transposed convolution and the weight gradient as a convolution
//! of the batch-transposed input by the output gradient, each with its own copies.

use burn::backend::flex::FlexTensor;
use burn::tensor::Shape;
use rayon::prelude::*;

use super::buffer::{Unfilled, add_into, f32s, tensor};
use super::gemm::{Mat, MatMut, gemm_acc, gemm_one};

/// Bytes of one packed tile: half of a 1 MB L2 (Zen 4; 2 MB on Emerald Rapids), leaving room
/// for the GEMM's own packing of the weight.
const TILE_BYTES: usize = 512 * 1024;

/// At least this many positions per tile, so that the GEMM's output is wide enough to run at
/// speed even where the taps are many (3x3 over 512 channels: 4,608 rows).
const MIN_TILE_POSITIONS: usize = 64;

/// The sizes of one convolution (shapes checked by `shapes::conv2d`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    /// Padding before the first row and before the first column.
    pt: usize,
    pl: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    pub(super) fn new(
        x: &[usize],
        weight: &[usize],
        [sh, sw]: [usize; 2],
        [(pt, pb), (pl, pr)]: [(usize, usize); 2],
    ) -> Self {
        let (b, c, h, w) = (x[0], x[1], x[2], x[3]);
        let (o, kh, kw) = (weight[0], weight[2], weight[3]);
        Self {
            b,
            c,
            h,
            w,
            o,
            kh,
            kw,
            sh,
            sw,
            pt,
            pl,
            ho: (h + pt + pb - kh) / sh + 1,
            wo: (w + pl + pr - kw) / sw + 1,
        }
    }

    /// Kernel taps per output channel, `C kh kw`.
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output positions per image.
    fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// Elements of one input image.
    fn image(&self) -> usize {
        self.c * self.h * self.w
    }

    /// A 1x1, stride-1, unpadded convolution: the image is its own patch matrix.
    fn direct(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.ho == self.h
            && self.wo == self.w
    }

    /// Output rows per tile.
    fn tile_rows(&self) -> usize {
        if self.direct() {
            // Nothing is packed: tiles only spread the images over the threads (at least two
            // tasks per thread), and a wider GEMM runs faster.
            let threads = rayon::current_num_threads().max(1);
            let per_image = (2 * threads).div_ceil(self.b.max(1));
            return self.ho.div_ceil(per_image).max(1);
        }
        let row_bytes = self.k() * self.wo * 4;
        let rows = (TILE_BYTES / row_bytes.max(1)).max(MIN_TILE_POSITIONS.div_ceil(self.wo));
        rows.clamp(1, self.ho.max(1))
    }

    /// Tiles per image.
    fn tiles(&self) -> usize {
        self.ho.div_ceil(self.tile_rows())
    }

    /// Output rows `[start, end)` of tile `t`.
    fn tile(&self, t: usize) -> (usize, usize) {
        let rows = self.tile_rows();
        (t * rows, ((t + 1) * rows).min(self.ho))
    }

    /// For kernel column `j`: the output columns `[lo, hi)` whose input column lies inside the
    /// image (the others read padding), and the input column of `lo`.
    fn columns(&self, j: usize) -> (usize, usize, usize) {
        // iw = ow sw + j - pl must lie in [0, w).
        let lo = self.pl.saturating_sub(j).div_ceil(self.sw);
        let hi = if self.w + self.pl > j {
            ((self.w + self.pl - j - 1) / self.sw + 1).min(self.wo)
        } else {
            0
        };
        let lo = lo.min(hi);
        (lo, hi, (lo * self.sw + j).saturating_sub(self.pl))
    }

    /// The input row of output row `oh` for kernel row `i`, if inside the image.
    fn input_row(&self, oh: usize, i: usize) -> Option<usize> {
        (oh * self.sh + i)
            .checked_sub(self.pt)
            .filter(|&ih| ih < self.h)
    }
}

/// Visits one tile's patch-matrix rows, output row by output row: `f(tap, r, ih, (lo, hi,
/// iw0))` for tap `tap` (`(c, i, j)` flattened, the patch matrix's row) and tile row `r`, with
/// the input row `ih` it reads (`None`: padding) and [`Geometry::columns`]' range. The shared
/// walk of [`pack`] and its transpose [`unpack_add`].
#[inline(always)]
fn for_each_tap_row(
    g: &Geometry,
    (oh0, oh1): (usize, usize),
    mut f: impl FnMut(usize, usize, Option<usize>, (usize, usize, usize)),
) {
    for c in 0..g.c {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let tap = (c * g.kh + i) * g.kw + j;
                let cols = g.columns(j);
                for (r, oh) in (oh0..oh1).enumerate() {
                    f(
                        tap,
                        r,
                        g.input_row(oh, i).map(|ih| c * g.h * g.w + ih * g.w),
                        cols,
                    );
                }
            }
        }
    }
}

/// Packs output rows `[oh0, oh1)` of one image's patch matrix into `col` (`[K, n]`, `n` the
/// tile's positions), zeros where a tap reads padding.
fn pack(g: &Geometry, image: &[f32], rows: (usize, usize), col: &mut [f32]) {
    let n = (rows.1 - rows.0) * g.wo;
    for_each_tap_row(g, rows, |tap, r, start, (lo, hi, iw0)| {
        let out = &mut col[tap * n + r * g.wo..][..g.wo];
        let Some(start) = start.filter(|_| lo < hi) else {
            out.fill(0.0);
            return;
        };
        out[..lo].fill(0.0);
        out[hi..].fill(0.0);
        let src = &image[start + iw0..];
        if g.sw == 1 {
            out[lo..hi].copy_from_slice(&src[..hi - lo]);
        } else {
            for (o, s) in out[lo..hi].iter_mut().zip(src.iter().step_by(g.sw)) {
                *o = *s;
            }
        }
    });
}

/// The transpose of [`pack`]: adds the tile's patch-matrix gradient `dcol` (`[K, n]`) onto
/// the image's input gradient.
fn unpack_add(g: &Geometry, dcol: &[f32], rows: (usize, usize), image: &mut [f32]) {
    let n = (rows.1 - rows.0) * g.wo;
    for_each_tap_row(g, rows, |tap, r, start, (lo, hi, iw0)| {
        let Some(start) = start.filter(|_| lo < hi) else {
            return;
        };
        let d = &dcol[tap * n + r * g.wo..][lo..g.wo];
        let dst = &mut image[start + iw0..];
        if g.sw == 1 {
            for (o, v) in dst[..hi - lo].iter_mut().zip(&d[..hi - lo]) {
                *o += v;
            }
        } else {
            for (o, v) in dst.iter_mut().step_by(g.sw).zip(&d[..hi - lo]) {
                *o += v;
            }
        }
    });
}

/// The patch matrix of one tile as a GEMM operand `[K, n]`: a view of the image when the
/// convolution is direct, else the tile packed into `col`.
fn patches<'a>(
    g: &Geometry,
    image: &'a [f32],
    rows: (usize, usize),
    col: &'a mut Vec<f32>,
) -> Mat<'a> {
    if g.direct() {
        return Mat(&image[rows.0 * g.wo..], g.p() as isize, 1);
    }
    let n = (rows.1 - rows.0) * g.wo;
    col.resize(g.k() * n, 0.0);
    pack(g, image, rows, col);
    Mat::rows(col, n)
}

/// `conv2d(x, weight)`: `[B, C, H, W]` by `[O, C, kh, kw]` into `[B, O, Ho, Wo]` (contiguous
/// f32 inputs; shapes checked by the caller).
pub(super) fn conv2d(x: &FlexTensor, weight: &FlexTensor, g: Geometry) -> FlexTensor {
    let (xs, ws) = (f32s(x), f32s(weight));
    let (k, p, tiles) = (g.k(), g.p(), g.tiles());
    let mut out = Unfilled::new(g.b * g.o * p);
    let base = out.ptr();
    (0..g.b * tiles)
        .into_par_iter()
        .for_each_init(Vec::new, |col, task| {
            let (img, t) = (task / tiles, task % tiles);
            let rows = g.tile(t);
            let n = (rows.1 - rows.0) * g.wo;
            let image = &xs[img * g.image()..][..g.image()];
            let cols = patches(&g, image, rows, col);
            // SAFETY: this task's output is columns [rows.0 wo, rows.1 wo) of image `img`'s
            // [O, P] block, rows of stride P: within the B O P buffer and disjoint from every
            // other task's.
            let dst = unsafe { base.at(img * g.o * p + rows.0 * g.wo) };
            gemm_one(
                MatMut(dst, p as isize, 1),
                Mat::rows(ws, k),
                cols,
                [g.o, k, n],
                1.0,
            );
        });
    // SAFETY: the tiles of every image cover all O x P outputs.
    let out = unsafe { out.assume_written() };
    tensor(out, Shape::new([g.b, g.o, g.ho, g.wo]))
}

/// The gradients of [`conv2d`] for `x` (when `input_grad`; else `None`) and for the weight,
/// from the output gradient `grad` `[B, O, Ho, Wo]` (contiguous f32).
pub(super) fn conv2d_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    g: Geometry,
    input_grad: bool,
) -> (Option<FlexTensor>, FlexTensor) {
    let (xs, ws, gs) = (f32s(x), f32s(weight), f32s(grad));
    let (k, p) = (g.k(), g.p());
    // Images split into one contiguous group per thread, each summing its own weight gradient;
    // the sums are added in group order, so the result does not depend on scheduling.
    let threads = rayon::current_num_threads().max(1);
    let per_group = g.b.div_ceil(threads).max(1);
    let mut dx = vec![0.0f32; if input_grad { g.b * g.image() } else { 0 }];
    let groups: Vec<(usize, &mut [f32])> = if input_grad {
        dx.chunks_mut(per_group * g.image()).enumerate().collect()
    } else {
        (0..g.b.div_ceil(per_group))
            .map(|i| (i, &mut [][..]))
            .collect()
    };
    let partial: Vec<Vec<f32>> = groups
        .into_par_iter()
        .map(|(group, dx)| {
            let mut dw = vec![0.0f32; g.o * k];
            let (mut col, mut dcol) = (Vec::new(), Vec::new());
            let first = group * per_group;
            for img in first..(first + per_group).min(g.b) {
                let image = &xs[img * g.image()..][..g.image()];
                let dy = &gs[img * g.o * p..][..g.o * p];
                let dx = input_grad.then(|| &mut dx[(img - first) * g.image()..][..g.image()]);
                backward_image(&g, [image, ws, dy], dx, &mut dw, [&mut col, &mut dcol]);
            }
            dw
        })
        .collect();
    let dw = partial
        .into_iter()
        .reduce(add_into)
        .unwrap_or_else(|| vec![0.0; g.o * k]);
    let dx = input_grad.then(|| tensor(dx, Shape::new([g.b, g.c, g.h, g.w])));
    (dx, tensor(dw, Shape::new([g.o, g.c, g.kh, g.kw])))
}

/// One image's share of [`conv2d_backward`]: its tiles' weight gradient added onto `dw`
/// (`[O, K]`) and, when asked, its input gradient written into `dx` (zeros on entry).
fn backward_image(
    g: &Geometry,
    [image, weight, dy]: [&[f32]; 3],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    [col, dcol]: [&mut Vec<f32>; 2],
) {
    let (k, p) = (g.k(), g.p());
    let wt = Mat::rows(weight, k).t();
    let mut dx = dx;
    for t in 0..g.tiles() {
        let rows = g.tile(t);
        let n = (rows.1 - rows.0) * g.wo;
        // dY's columns of this tile, [O, n] with rows of stride P.
        let dy_tile = Mat(&dy[rows.0 * g.wo..], p as isize, 1);
        let cols = patches(g, image, rows, col);
        gemm_acc(
            MatMut(dw.as_mut_ptr(), k as isize, 1),
            dy_tile,
            cols.t(),
            [g.o, n, k],
        );
        let Some(dx) = dx.as_deref_mut() else {
            continue;
        };
        if g.direct() {
            // The input gradient's columns of this tile, written in place.
            let dst = dx[rows.0 * g.wo..].as_mut_ptr();
            gemm_one(MatMut(dst, p as isize, 1), wt, dy_tile, [k, g.o, n], 1.0);
        } else {
            dcol.resize(k * n, 0.0);
            gemm_one(
                MatMut(dcol.as_mut_ptr(), n as isize, 1),
                wt,
                dy_tile,
                [k, g.o, n],
                1.0,
            );
            unpack_add(g, dcol, rows, dx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_output_rows() {
        // BiT's 3x3 at 56x56 over 64 channels, the 7x7 stem at 224, a 3x3 over 512 at 7x7.
        for (x, w, s, pad) in [
            ([2, 64, 56, 56], [64, 64, 3, 3], 1, 1),
            ([2, 3, 224, 224], [64, 3, 7, 7], 2, 3),
            ([2, 512, 7, 7], [512, 512, 3, 3], 1, 1),
        ] {
            let g = Geometry::new(&x, &w, [s, s], [(pad, pad); 2]);
            let rows: Vec<_> = (0..g.tiles()).map(|t| g.tile(t)).collect();
            assert_eq!(rows[0].0, 0);
            assert_eq!(rows.last().unwrap().1, g.ho);
            assert!(rows.windows(2).all(|r| r[0].1 == r[1].0 && r[0].0 < r[0].1));
            let n = (rows[0].1 - rows[0].0) * g.wo;
            assert!(n >= MIN_TILE_POSITIONS.min(g.p()), "{x:?}: {n} positions");
        }
    }

    #[test]
    fn columns_inside_the_image() {
        // 3x3, stride 2, padding 1 over 7 columns: out 4 columns; tap j=0 reads iw = 2 ow - 1.
        let g = Geometry::new(&[1, 1, 7, 7], &[1, 1, 3, 3], [2, 2], [(1, 1); 2]);
        assert_eq!(g.wo, 4);
        assert_eq!(g.columns(0), (1, 4, 1));
        assert_eq!(g.columns(1), (0, 4, 0));
        // j=2 reads iw = 2 ow + 1: 1, 3, 5, 7 -> the last is outside.
        assert_eq!(g.columns(2), (0, 3, 1));
    }
}
