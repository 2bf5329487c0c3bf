//! Pillow's antialiased resampling (`Image.resize`, `libImaging/Resample.c` of Pillow 13), to
//! the bit: the same filters, the same fixed-point weights (22 fractional bits, rounded as
//! Pillow rounds them), the same two separable passes through an 8-bit intermediate image, in
//! the order Pillow 13 picks (vertical first when the height shrinks more than twice as much
//! as the width; Pillow 12 and older always went horizontal first, which differs by one level
//! at a few pixels). Sums are integers, so the loops may be ordered for speed and stay exact.
//!
//! torchvision's `Resize` and `RandomResizedCrop` on PIL images, and so timm's transforms, are
//! this function (`img.crop(box).resize(size, filter)`): crop first, then resize the crop as an
//! image of its own, so the filter never reads outside the box.
//!
//! Speed: the horizontal pass transposes blocks of rows so that each weight multiplies a
//! contiguous run (the vertical pass has that already), and both are compiled for AVX-512 or
//! AVX2 where the CPU has them; integer sums in any order are the same sums.

use vit_model::Interpolation;

use super::pixmap::{Pixmap, Rect};

/// Fractional bits of the weights (Pillow's `PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's filters: their support (radius at scale 1) and kernel.
fn support(f: Interpolation) -> f64 {
    match f {
        Interpolation::Box => 0.5,
        Interpolation::Bilinear | Interpolation::Hamming => 1.0,
        Interpolation::Bicubic => 2.0,
        Interpolation::Lanczos => 3.0,
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn kernel(f: Interpolation, x: f64) -> f64 {
    match f {
        Interpolation::Box => f64::from(u8::from(x > -0.5 && x <= 0.5)),
        Interpolation::Bilinear => (1.0 - x.abs()).max(0.0),
        Interpolation::Hamming => {
            let x = x.abs();
            if x == 0.0 {
                1.0
            } else if x >= 1.0 {
                0.0
            } else {
                let x = x * std::f64::consts::PI;
                // Pillow writes the window's constants as C floats (0.54f, 0.46f).
                x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
            }
        }
        Interpolation::Bicubic => {
            let a = -0.5;
            let x = x.abs();
            if x < 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * a
            } else {
                0.0
            }
        }
        Interpolation::Lanczos => {
            if (-3.0..3.0).contains(&x) {
                sinc(x) * sinc(x / 3.0)
            } else {
                0.0
            }
        }
    }
}

/// The weights of one pass (Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`): output
/// sample `i` reads inputs `start[i] .. start[i] + len[i]` with weights `k[i * ksize ..]`.
struct Coeffs {
    start: Vec<usize>,
    len: Vec<usize>,
    ksize: usize,
    k: Vec<i32>,
}

fn coeffs(in_size: usize, out_size: usize, f: Interpolation) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support(f) * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv = 1.0 / filterscale;
    let mut c = Coeffs {
        start: Vec::with_capacity(out_size),
        len: Vec::with_capacity(out_size),
        ksize,
        k: vec![0; out_size * ksize],
    };
    let mut w = vec![0f64; ksize];
    let one = f64::from(1u32 << PRECISION_BITS);
    for i in 0..out_size {
        let center = (i as f64 + 0.5) * scale;
        // C's (int) casts truncate toward zero, as `as` does.
        let min = ((center - support + 0.5) as i64).max(0) as usize;
        let max = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = max - min;
        let mut sum = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            *wx = kernel(f, ((x + min) as f64 - center + 0.5) * inv);
            sum += *wx;
        }
        for (x, &wx) in w.iter().enumerate().take(n) {
            let v = if sum != 0.0 { wx / sum } else { wx };
            c.k[i * ksize + x] = if v < 0.0 {
                (-0.5 + v * one) as i32
            } else {
                (0.5 + v * one) as i32
            };
        }
        c.start.push(min);
        c.len.push(n);
    }
    c
}

#[inline(always)]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Rows resampled across together, as one block (their pixels laid column by column so that
/// each weight multiplies a contiguous run: the loop vectorizes).
const BLOCK: usize = 16;

/// Rows `rows` of `src` (HWC, `C` channels, `stride` bytes a row, `in_w` pixels) resampled
/// across. Blocks of [`BLOCK`] rows are transposed into a column-major buffer first.
#[inline(always)]
fn horizontal<const C: usize>(
    src: &[u8],
    stride: usize,
    in_w: usize,
    rows: std::ops::Range<usize>,
    co: &Coeffs,
    out_w: usize,
) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let n_rows = rows.len();
    let mut out = vec![0u8; n_rows * out_w * C];
    let lane = BLOCK * C;
    // col[x * lane + r * C + c] = row r's pixel x, channel c.
    let mut col = vec![0u8; in_w * lane];
    let mut acc = [0i32; BLOCK * 4];
    let mut first = 0;
    let mut clipped = [0u8; BLOCK * 4];
    while first < n_rows {
        let nb = BLOCK.min(n_rows - first);
        for r in 0..nb {
            let line = &src[(rows.start + first + r) * stride..][..in_w * C];
            for (cell, p) in col.chunks_exact_mut(lane).zip(line.chunks_exact(C)) {
                let d: &mut [u8; C] = (&mut cell[r * C..r * C + C]).try_into().expect("C bytes");
                *d = p.try_into().expect("C bytes");
            }
        }
        for x in 0..out_w {
            let (s, n) = (co.start[x], co.len[x]);
            let acc = &mut acc[..lane];
            acc.fill(half);
            for (t, &kv) in co.k[x * co.ksize..x * co.ksize + n].iter().enumerate() {
                let c = &col[(s + t) * lane..(s + t + 1) * lane];
                for (a, &p) in acc.iter_mut().zip(c) {
                    *a += i32::from(p) * kv;
                }
            }
            for (o, &a) in clipped.iter_mut().zip(acc.iter()) {
                *o = clip8(a);
            }
            for r in 0..nb {
                let o = ((first + r) * out_w + x) * C;
                let d: &mut [u8; C] = (&mut out[o..o + C]).try_into().expect("C bytes");
                *d = clipped[r * C..r * C + C].try_into().expect("C bytes");
            }
        }
        first += nb;
    }
    out
}

/// `src` (rows of `row_len` bytes, `stride` apart, the first being input row `row0`)
/// resampled down the columns to `out_h` rows.
#[inline(always)]
fn vertical(src: &[u8], stride: usize, row_len: usize, row0: usize, co: &Coeffs) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let out_h = co.start.len();
    let mut out = Vec::with_capacity(out_h * row_len);
    let mut acc = vec![0i32; row_len];
    for y in 0..out_h {
        let (s, n) = (co.start[y], co.len[y]);
        acc.fill(half);
        for (t, &kv) in co.k[y * co.ksize..y * co.ksize + n].iter().enumerate() {
            let at = (s + t - row0) * stride;
            for (a, &p) in acc.iter_mut().zip(&src[at..at + row_len]) {
                *a += i32::from(p) * kv;
            }
        }
        out.extend(acc.iter().map(|&a| clip8(a)));
    }
    out
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn horizontal_any(
    src: &[u8],
    stride: usize,
    in_w: usize,
    c: usize,
    rows: std::ops::Range<usize>,
    co: &Coeffs,
    out_w: usize,
) -> Vec<u8> {
    match c {
        1 => horizontal::<1>(src, stride, in_w, rows, co, out_w),
        3 => horizontal::<3>(src, stride, in_w, rows, co, out_w),
        _ => unreachable!("pixmaps have 1 or 3 channels"),
    }
}

/// Pillow's `img.crop(region).resize((out_w, out_h), filter)`: the region of `img` resized
/// to `out_w` x `out_h` with the antialiased `filter`.
pub fn resize_region(
    img: &Pixmap,
    region: Rect,
    out_w: usize,
    out_h: usize,
    filter: Interpolation,
) -> Pixmap {
    // The same integer arithmetic compiled for the widest vectors the CPU has.
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the CPU supports AVX-512F and AVX-512BW (checked above).
            return unsafe { resize_avx512(img, region, out_w, out_h, filter) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked above).
            return unsafe { resize_avx2(img, region, out_w, out_h, filter) };
        }
    }
    resize_any(img, region, out_w, out_h, filter)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn resize_avx512(
    img: &Pixmap,
    region: Rect,
    out_w: usize,
    out_h: usize,
    filter: Interpolation,
) -> Pixmap {
    resize_any(img, region, out_w, out_h, filter)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn resize_avx2(
    img: &Pixmap,
    region: Rect,
    out_w: usize,
    out_h: usize,
    filter: Interpolation,
) -> Pixmap {
    resize_any(img, region, out_w, out_h, filter)
}

/// [`resize_region`]'s body; `#[inline(always)]` down to the loops, so that each dispatch
/// target compiles them for its vectors.
#[inline(always)]
fn resize_any(
    img: &Pixmap,
    region: Rect,
    out_w: usize,
    out_h: usize,
    filter: Interpolation,
) -> Pixmap {
    assert!(
        region.x + region.w <= img.width && region.y + region.h <= img.height,
        "resize region {region:?} outside a {}x{} image",
        img.width,
        img.height
    );
    assert!(region.w > 0 && region.h > 0 && out_w > 0 && out_h > 0);
    let c = img.channels;
    let stride = img.stride();
    // The region as an image of its own: its first byte and the image's stride.
    let src = &img.px[region.y * stride + region.x * c..];
    let (w, h) = (region.w, region.h);
    let need_h = out_w != w;
    let need_v = out_h != h;
    let (dh, dw) = (h as i64 - out_h as i64, w as i64 - out_w as i64);
    let horizontal_first = !(dh > 0 && dh > dw * 2);
    let px = match (need_h, need_v) {
        (false, false) => return img.crop(region),
        (true, false) => horizontal_any(src, stride, w, c, 0..h, &coeffs(w, out_w, filter), out_w),
        (false, true) => vertical(src, stride, w * c, 0, &coeffs(h, out_h, filter)),
        (true, true) if horizontal_first => {
            // Only the rows the vertical pass reads are resampled across.
            let cv = coeffs(h, out_h, filter);
            let first = cv.start[0];
            let last = cv.start[out_h - 1] + cv.len[out_h - 1];
            let ch = coeffs(w, out_w, filter);
            let tmp = horizontal_any(src, stride, w, c, first..last, &ch, out_w);
            vertical(&tmp, out_w * c, out_w * c, first, &cv)
        }
        (true, true) => {
            let tmp = vertical(src, stride, w * c, 0, &coeffs(h, out_h, filter));
            let ch = coeffs(w, out_w, filter);
            horizontal_any(&tmp, w * c, w, c, 0..out_h, &ch, out_w)
        }
    };
    Pixmap {
        px,
        width: out_w,
        height: out_h,
        channels: c,
    }
}

/// Pillow's `img.resize((out_w, out_h), filter)`.
pub fn resize(img: &Pixmap, out_w: usize, out_h: usize, filter: Interpolation) -> Pixmap {
    resize_region(img, Rect::full(img.width, img.height), out_w, out_h, filter)
}
