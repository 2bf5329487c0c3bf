//! Per-image transforms on CHW f32 pixels in [0, 1], normalisation, and batch mixing.
//!
//! Augmentations follow torchvision/timm: zero-padded random crop, random-resized crop,
//! horizontal flip, a RandAugment-style op set, random erasing, mixup and CutMix.

use rand::Rng;
use rand_distr::{Beta, Distribution};

use crate::config::{AugmentSection, DataSection};

/// An image being transformed: `c` planes of `h` x `w`.
#[derive(Clone, Debug)]
pub struct Image {
    pub px: Vec<f32>,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Image {
    /// u8 CHW pixels to [0, 1].
    pub fn from_u8(px: &[u8], shape: [usize; 3]) -> Self {
        let [c, h, w] = shape;
        Self {
            px: px.iter().map(|&v| f32::from(v) / 255.0).collect(),
            c,
            h,
            w,
        }
    }

    fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.px[(c * self.h + y) * self.w + x]
    }

    /// Bilinear sample at (y, x) in pixel-centre coordinates; 0 outside the image.
    fn sample(&self, c: usize, y: f32, x: f32) -> f32 {
        let (y0, x0) = (y.floor(), x.floor());
        let (fy, fx) = (y - y0, x - x0);
        let get = |yy: f32, xx: f32| {
            if yy < 0.0 || xx < 0.0 || yy >= self.h as f32 || xx >= self.w as f32 {
                0.0
            } else {
                self.at(c, yy as usize, xx as usize)
            }
        };
        get(y0, x0) * (1.0 - fy) * (1.0 - fx)
            + get(y0, x0 + 1.0) * (1.0 - fy) * fx
            + get(y0 + 1.0, x0) * fy * (1.0 - fx)
            + get(y0 + 1.0, x0 + 1.0) * fy * fx
    }

    /// Maps each output pixel through `src(y, x) -> (y', x')` with bilinear sampling.
    fn warp(&self, src: impl Fn(f32, f32) -> (f32, f32)) -> Self {
        let mut out = vec![0.0; self.px.len()];
        for y in 0..self.h {
            for x in 0..self.w {
                let (sy, sx) = src(y as f32, x as f32);
                for c in 0..self.c {
                    out[(c * self.h + y) * self.w + x] = self.sample(c, sy, sx);
                }
            }
        }
        Self { px: out, ..*self }
    }
}

/// Zero-pads by `pad` and crops back to the original size at a random offset.
pub fn random_crop(img: &Image, pad: usize, rng: &mut impl Rng) -> Image {
    let dy = rng.random_range(0..=2 * pad) as isize - pad as isize;
    let dx = rng.random_range(0..=2 * pad) as isize - pad as isize;
    let mut out = vec![0.0; img.px.len()];
    for c in 0..img.c {
        for y in 0..img.h {
            let sy = y as isize + dy;
            if sy < 0 || sy >= img.h as isize {
                continue;
            }
            for x in 0..img.w {
                let sx = x as isize + dx;
                if sx >= 0 && sx < img.w as isize {
                    out[(c * img.h + y) * img.w + x] = img.at(c, sy as usize, sx as usize);
                }
            }
        }
    }
    Image { px: out, ..*img }
}

/// Mirrors left-right.
pub fn hflip(img: &Image) -> Image {
    let mut out = img.px.clone();
    for row in out.chunks_exact_mut(img.w) {
        row.reverse();
    }
    Image { px: out, ..*img }
}

/// torchvision `RandomResizedCrop`: a crop of random area fraction in `scale` and aspect
/// ratio (log-uniform) in `ratio`, resized back to the image size (bilinear).
pub fn random_resized_crop(
    img: &Image,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut impl Rng,
) -> Image {
    let area = (img.h * img.w) as f64;
    let (lr0, lr1) = (ratio[0].ln(), ratio[1].ln());
    let mut crop = None;
    for _ in 0..10 {
        let target = area * rng.random_range(scale[0]..=scale[1]);
        let r = rng.random_range(lr0..=lr1).exp();
        let cw = (target * r).sqrt().round() as usize;
        let ch = (target / r).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= img.w && ch <= img.h {
            let y = rng.random_range(0..=img.h - ch);
            let x = rng.random_range(0..=img.w - cw);
            crop = Some((y, x, ch, cw));
            break;
        }
    }
    // Fallback as torchvision: the whole image.
    let (y0, x0, ch, cw) = crop.unwrap_or((0, 0, img.h, img.w));
    let (sy, sx) = (ch as f32 / img.h as f32, cw as f32 / img.w as f32);
    img.warp(|y, x| {
        (
            (y0 as f32 + (y + 0.5) * sy - 0.5).clamp(0.0, (img.h - 1) as f32),
            (x0 as f32 + (x + 0.5) * sx - 0.5).clamp(0.0, (img.w - 1) as f32),
        )
    })
}

/// One RandAugment op at `magnitude` (0-10), with a random sign where it has one.
fn rand_op(img: &Image, op: usize, magnitude: f64, rng: &mut impl Rng) -> Image {
    let m = (magnitude / 10.0) as f32;
    let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    let (cy, cx) = ((img.h as f32 - 1.0) / 2.0, (img.w as f32 - 1.0) / 2.0);
    let map_px = |f: &dyn Fn(f32) -> f32| Image {
        px: img.px.iter().map(|&v| f(v).clamp(0.0, 1.0)).collect(),
        ..*img
    };
    match op {
        0 => img.clone(),
        1 => {
            let a = (30.0 * m * sign).to_radians();
            let (s, c) = a.sin_cos();
            img.warp(|y, x| {
                let (dy, dx) = (y - cy, x - cx);
                (cy + c * dy - s * dx, cx + s * dy + c * dx)
            })
        }
        2 => img.warp(|y, x| (y, x + 0.3 * m * sign * (y - cy))),
        3 => img.warp(|y, x| (y + 0.3 * m * sign * (x - cx), x)),
        4 => img.warp(|y, x| (y, x - 0.45 * m * sign * img.w as f32)),
        5 => img.warp(|y, x| (y - 0.45 * m * sign * img.h as f32, x)),
        6 => {
            let f = 1.0 + 0.9 * m * sign;
            map_px(&|v| v * f)
        }
        7 => {
            let mean = img.px.iter().sum::<f32>() / img.px.len() as f32;
            let f = 1.0 + 0.9 * m * sign;
            map_px(&|v| mean + (v - mean) * f)
        }
        8 => {
            let t = 1.0 - m;
            map_px(&|v| if v >= t { 1.0 - v } else { v })
        }
        9 => {
            let levels = 2f32.powi(8 - (4.0 * m) as i32);
            map_px(&|v| ((v * 255.0 / (256.0 / levels)).floor() * (256.0 / levels)) / 255.0)
        }
        _ => {
            // Autocontrast per channel.
            let mut out = img.clone();
            let n = img.h * img.w;
            for plane in out.px.chunks_exact_mut(n) {
                let lo = plane.iter().cloned().fold(f32::MAX, f32::min);
                let hi = plane.iter().cloned().fold(f32::MIN, f32::max);
                if hi > lo {
                    plane.iter_mut().for_each(|v| *v = (*v - lo) / (hi - lo));
                }
            }
            out
        }
    }
}

/// Number of RandAugment ops (identity, rotate, shear x/y, translate x/y, brightness,
/// contrast, solarize, posterize, autocontrast).
const RAND_OPS: usize = 11;

/// The configured per-image pipeline and normalisation.
#[derive(Debug, Clone)]
pub struct Transform {
    pub augment: AugmentSection,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Transform {
    /// The recipe's training pipeline: its augmentations and normalisation.
    pub fn training(data: &DataSection) -> Self {
        Self {
            augment: data.augment.clone(),
            mean: data.mean.clone(),
            std: data.std.clone(),
        }
    }

    /// The recipe's evaluation pipeline: normalisation only.
    pub fn evaluation(data: &DataSection) -> Self {
        Self {
            augment: AugmentSection::default(),
            ..Self::training(data)
        }
    }

    /// Normalises in place: (x - mean) / std per channel.
    pub fn normalize(&self, img: &mut Image) {
        let n = img.h * img.w;
        for (c, plane) in img.px.chunks_exact_mut(n).enumerate() {
            let (m, s) = (self.mean[c], self.std[c]);
            plane.iter_mut().for_each(|v| *v = (*v - m) / s);
        }
    }

    /// Evaluation: normalisation only.
    pub fn eval(&self, px: &[u8], shape: [usize; 3]) -> Vec<f32> {
        let mut img = Image::from_u8(px, shape);
        self.normalize(&mut img);
        img.px
    }

    /// Training: the configured augmentations, then normalisation and random erasing.
    pub fn train(&self, px: &[u8], shape: [usize; 3], rng: &mut impl Rng) -> Vec<f32> {
        let a = &self.augment;
        let mut img = Image::from_u8(px, shape);
        if let Some(scale) = a.rrc_scale {
            let ratio = a.rrc_ratio.unwrap_or([3.0 / 4.0, 4.0 / 3.0]);
            img = random_resized_crop(&img, scale, ratio, rng);
        }
        if a.crop_padding > 0 {
            img = random_crop(&img, a.crop_padding, rng);
        }
        if a.hflip && rng.random_bool(0.5) {
            img = hflip(&img);
        }
        for _ in 0..a.rand_ops {
            let op = rng.random_range(0..RAND_OPS);
            img = rand_op(&img, op, a.rand_magnitude, rng);
        }
        self.normalize(&mut img);
        if a.erase_prob > 0.0 && rng.random_bool(a.erase_prob) {
            random_erase(&mut img, rng);
        }
        img.px
    }
}

/// timm `RandomErasing` (mode "pixel"): a box of 2-33% of the area, aspect ratio log-uniform
/// in [0.3, 3.3], filled with N(0, 1) noise (the image being normalised).
pub fn random_erase(img: &mut Image, rng: &mut impl Rng) {
    let area = (img.h * img.w) as f64;
    for _ in 0..10 {
        let target = area * rng.random_range(0.02..1.0 / 3.0);
        let r = rng.random_range(0.3f64.ln()..3.3f64.ln()).exp();
        let eh = (target * r).sqrt().round() as usize;
        let ew = (target / r).sqrt().round() as usize;
        if eh > 0 && ew > 0 && eh < img.h && ew < img.w {
            let y0 = rng.random_range(0..=img.h - eh);
            let x0 = rng.random_range(0..=img.w - ew);
            let normal = rand_distr::StandardNormal;
            for c in 0..img.c {
                for y in y0..y0 + eh {
                    for x in x0..x0 + ew {
                        img.px[(c * img.h + y) * img.w + x] = normal.sample(rng);
                    }
                }
            }
            return;
        }
    }
}

/// One-hot targets with label smoothing (timm: `1 - s + s/K` on the class, `s/K` elsewhere).
pub fn soft_targets(labels: &[u32], classes: usize, smoothing: f64) -> Vec<f32> {
    let off = (smoothing / classes as f64) as f32;
    let on = (1.0 - smoothing) as f32 + off;
    let mut t = vec![off; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        t[i * classes + l as usize] = on;
    }
    t
}

/// timm `Mixup` in batch mode: mixes each image with the batch's reverse, by mixup
/// (`lambda ~ Beta(a, a)`) or CutMix (a box of area `1 - lambda`, lambda then corrected to
/// the box's true area); with both enabled, one of the two at random per batch.
pub fn mix_batch(
    images: &mut [f32],
    targets: &mut [f32],
    shape: [usize; 3],
    classes: usize,
    mixup_alpha: f64,
    cutmix_alpha: f64,
    rng: &mut impl Rng,
) {
    let per = shape.iter().product::<usize>();
    let b = images.len() / per;
    if b < 2 || (mixup_alpha <= 0.0 && cutmix_alpha <= 0.0) {
        return;
    }
    let use_cutmix = if mixup_alpha > 0.0 && cutmix_alpha > 0.0 {
        rng.random_bool(0.5)
    } else {
        cutmix_alpha > 0.0
    };
    let alpha = if use_cutmix {
        cutmix_alpha
    } else {
        mixup_alpha
    };
    let mut lam = Beta::new(alpha, alpha).expect("alpha > 0").sample(rng);
    let orig = images.to_vec();
    let orig_t = targets.to_vec();
    let [c, h, w] = shape;
    if use_cutmix {
        let ratio = (1.0 - lam).sqrt();
        let (ch, cw) = ((h as f64 * ratio) as usize, (w as f64 * ratio) as usize);
        let cy = rng.random_range(0..h);
        let cx = rng.random_range(0..w);
        let (y0, y1) = (cy.saturating_sub(ch / 2), (cy + ch / 2).min(h));
        let (x0, x1) = (cx.saturating_sub(cw / 2), (cx + cw / 2).min(w));
        lam = 1.0 - ((y1 - y0) * (x1 - x0)) as f64 / (h * w) as f64;
        for i in 0..b {
            let j = b - 1 - i;
            for ci in 0..c {
                for y in y0..y1 {
                    for x in x0..x1 {
                        let o = (ci * h + y) * w + x;
                        images[i * per + o] = orig[j * per + o];
                    }
                }
            }
        }
    } else {
        let l = lam as f32;
        for i in 0..b {
            let j = b - 1 - i;
            for o in 0..per {
                images[i * per + o] = l * orig[i * per + o] + (1.0 - l) * orig[j * per + o];
            }
        }
    }
    let l = lam as f32;
    for i in 0..b {
        let j = b - 1 - i;
        for k in 0..classes {
            targets[i * classes + k] =
                l * orig_t[i * classes + k] + (1.0 - l) * orig_t[j * classes + k];
        }
    }
}
