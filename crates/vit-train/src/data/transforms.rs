//! Per-image transforms, normalisation, and batch mixing.
//!
//! Augmentations follow torchvision/timm: random-resized crop (on u8 pixels, Pillow's
//! resampling), zero-padded random crop, horizontal flip, a RandAugment-style op set (on CHW
//! f32 pixels in [0, 1]), random erasing, mixup and CutMix.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rand::Rng;
use rand_distr::{Beta, Distribution};
use vit_model::{CropMode, Interpolation, Preprocessing};

use super::Source;
use super::crop::{eval_geometry, rrc_box};
use super::decode::{Decoder, decode, dimensions};
use super::pixmap::{Pixmap, Rect};
use super::resize::{resize, resize_region};
use crate::config::{AugmentSection, DataSection, OnBadImage, RrcInterpolation};

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

/// torchvision `RandomResizedCrop` of a u8 image: the box of [`rrc_box`] (drawn from
/// `rng`), cut and resized to `size` (`[h, w]`) with Pillow's antialiased `filter`.
pub fn random_resized_crop(
    img: &Pixmap,
    size: [usize; 2],
    scale: [f64; 2],
    ratio: [f64; 2],
    filter: Interpolation,
    rng: &mut impl Rng,
) -> Pixmap {
    let r = rrc_draw(img.width, img.height, scale, ratio, rng);
    resize_region(img, r, size[1], size[0], filter)
}

/// The random-resized crop's box for a `w` x `h` image, from `rng` (uniform draws in
/// `[lo, hi)`, integers uniform in `0..=n`).
pub fn rrc_draw(w: usize, h: usize, scale: [f64; 2], ratio: [f64; 2], rng: &mut impl Rng) -> Rect {
    // Drawn through one closure pair so the order of draws is get_params' order.
    let cell = std::cell::RefCell::new(rng);
    rrc_box(
        w,
        h,
        scale,
        ratio,
        &mut |lo, hi| lo + (hi - lo) * cell.borrow_mut().random::<f64>(),
        &mut |n| cell.borrow_mut().random_range(0..=n),
    )
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
///
/// Fixed-size images (IDX, CIFAR) are normalised as they are at evaluation. Image files go
/// through timm's pipeline: at evaluation the resize and centre crop of [`eval_geometry`]
/// (`transforms_imagenet_eval`); in training the random-resized crop of the decoded original
/// (`RandomResizedCropAndInterpolation`; without one, the evaluation geometry), then the
/// other augmentations at the input size. Then `ToTensor` + `Normalize` (and random erasing).
#[derive(Debug, Clone)]
pub struct Transform {
    pub augment: AugmentSection,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Image files: the evaluation geometry (crop_pct, crop_mode, interpolation).
    pub eval: Preprocessing,
    /// Image files: the JPEG decoder.
    pub decoder: Decoder,
    /// Image files that cannot be read: an error, or left out of their batch (counted).
    pub on_bad_image: OnBadImage,
}

impl Transform {
    /// The recipe's training pipeline: its augmentations and normalisation.
    pub fn training(data: &DataSection) -> Self {
        Self {
            augment: data.augment.clone(),
            mean: data.mean.clone(),
            std: data.std.clone(),
            eval: data.preprocessing(None),
            decoder: data.decoder,
            on_bad_image: data.on_bad_image,
        }
    }

    /// The recipe's evaluation pipeline: no augmentation.
    pub fn evaluation(data: &DataSection) -> Self {
        Self {
            augment: AugmentSection::default(),
            ..Self::training(data)
        }
    }

    /// An evaluation pipeline for pretrained weights (`predict`, `eval --weights`).
    pub fn from_preprocessing(p: &Preprocessing, decoder: Decoder, on_bad: OnBadImage) -> Self {
        Self {
            augment: AugmentSection::default(),
            mean: p.mean.clone(),
            std: p.std.clone(),
            eval: p.clone(),
            decoder,
            on_bad_image: on_bad,
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

    /// Reads and decodes an image file to `channels`, only around `region` where the decoder
    /// can; errors name the file.
    pub fn load_file(
        &self,
        path: &Path,
        channels: usize,
        region: Option<Rect>,
    ) -> Result<(Pixmap, Rect)> {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        decode(&data, channels, region, self.decoder)
            .with_context(|| format!("cannot decode image {}", path.display()))
    }

    /// Reads and decodes an image inside a tar shard.
    pub fn load_member(&self, m: &crate::data::Member, channels: usize) -> Result<Pixmap> {
        let data = m.read()?;
        Ok(decode(&data, channels, None, self.decoder)
            .with_context(|| format!("cannot decode image {}", m.path().display()))?
            .0)
    }

    /// timm's evaluation geometry of an image: resized (Pillow's antialiased filter) and
    /// centre-cropped to `size` (`[h, w]`); `border` pads with the mean colour.
    pub fn eval_pixmap(&self, img: &Pixmap, size: [usize; 2]) -> Pixmap {
        let p = &self.eval;
        let g = eval_geometry(img.width, img.height, size, p.crop_pct, p.crop_mode);
        let [rh, rw] = g.resize;
        let resized = resize(img, rw, rh, p.interpolation);
        let [th, tw] = size;
        if g.top >= 0 && g.left >= 0 && g.top as usize + th <= rh && g.left as usize + tw <= rw {
            return resized.crop(Rect {
                x: g.left as usize,
                y: g.top as usize,
                w: tw,
                h: th,
            });
        }
        // Padded: torchvision pads with 0, timm's border mode with round(255 * mean).
        let c = img.channels;
        let fill: Vec<u8> = (0..c)
            .map(|ch| {
                if p.crop_mode == CropMode::Border {
                    (255.0 * self.mean[ch]).round_ties_even().clamp(0.0, 255.0) as u8
                } else {
                    0
                }
            })
            .collect();
        let mut out = Pixmap::zeros(tw, th, c);
        for (i, px) in out.px.chunks_exact_mut(c).enumerate() {
            let (y, x) = ((i / tw) as i64 + g.top, (i % tw) as i64 + g.left);
            if y >= 0 && x >= 0 && (y as usize) < rh && (x as usize) < rw {
                let s = (y as usize * rw + x as usize) * c;
                px.copy_from_slice(&resized.px[s..s + c]);
            } else {
                px.copy_from_slice(&fill);
            }
        }
        out
    }

    /// Evaluation: fixed-size images normalised as they are; image files through timm's
    /// evaluation geometry, then normalised.
    pub fn eval(&self, src: Source<'_>, shape: [usize; 3]) -> Result<Vec<f32>> {
        let [c, h, w] = shape;
        let img = match src {
            Source::Fixed(px) => {
                let mut img = Image::from_u8(px, shape);
                self.normalize(&mut img);
                return Ok(img.px);
            }
            Source::Decoded(img, _) => self.eval_pixmap(img, [h, w]),
            Source::File(path) => self.eval_pixmap(&self.load_file(path, c, None)?.0, [h, w]),
            Source::Member(m) => self.eval_pixmap(&self.load_member(m, c)?, [h, w]),
        };
        Ok(img.to_normalized_chw(&self.mean, &self.std))
    }

    /// The u8 stage of training for image files: the random-resized crop of the original
    /// (decoded only around the crop where the decoder can) or the evaluation geometry.
    fn train_geometry(
        &self,
        src: Source<'_>,
        shape: [usize; 3],
        rng: &mut impl Rng,
    ) -> Result<Pixmap> {
        let [c, h, w] = shape;
        let a = &self.augment;
        let Some(scale) = a.rrc_scale else {
            return Ok(match src {
                Source::Decoded(img, _) => self.eval_pixmap(img, [h, w]),
                Source::File(path) => self.eval_pixmap(&self.load_file(path, c, None)?.0, [h, w]),
                Source::Member(m) => self.eval_pixmap(&self.load_member(m, c)?, [h, w]),
                Source::Fixed(px) => Pixmap::from_chw(px, shape),
            });
        };
        let ratio = a.rrc_ratio.unwrap_or([3.0 / 4.0, 4.0 / 3.0]);
        let (iw, ih) = match src {
            Source::Decoded(img, _) => (img.width, img.height),
            Source::File(path) => {
                let data = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let dims = dimensions(&data)
                    .with_context(|| format!("cannot decode image {}", path.display()))?;
                return self.rrc_file(path, &data, dims, shape, scale, ratio, rng);
            }
            Source::Member(m) => {
                let (data, path) = (m.read()?, m.path());
                let dims = dimensions(&data)
                    .with_context(|| format!("cannot decode image {}", path.display()))?;
                return self.rrc_file(&path, &data, dims, shape, scale, ratio, rng);
            }
            Source::Fixed(_) => (w, h),
        };
        let r = rrc_draw(iw, ih, scale, ratio, rng);
        let filter = self.rrc_filter(rng);
        Ok(match src {
            Source::Decoded(img, _) => resize_region(img, r, w, h, filter),
            Source::Fixed(px) => resize_region(&Pixmap::from_chw(px, shape), r, w, h, filter),
            Source::File(_) | Source::Member(_) => unreachable!("handled above"),
        })
    }

    /// The random-resized crop of a file: the box from the header's size, then a decode of
    /// the part around it.
    #[allow(clippy::too_many_arguments)]
    fn rrc_file(
        &self,
        path: &Path,
        data: &[u8],
        (iw, ih): (usize, usize),
        shape: [usize; 3],
        scale: [f64; 2],
        ratio: [f64; 2],
        rng: &mut impl Rng,
    ) -> Result<Pixmap> {
        let [c, h, w] = shape;
        let r = rrc_draw(iw, ih, scale, ratio, rng);
        let filter = self.rrc_filter(rng);
        let (img, at) = decode(data, c, Some(r), self.decoder)
            .with_context(|| format!("cannot decode image {}", path.display()))?;
        if img.width < r.x + r.w - at.x || img.height < r.y + r.h - at.y {
            bail!(
                "cannot decode image {}: its header says {iw}x{ih} but it decodes to {}x{}",
                path.display(),
                img.width,
                img.height
            );
        }
        let local = Rect {
            x: r.x - at.x,
            y: r.y - at.y,
            ..r
        };
        Ok(resize_region(&img, local, w, h, filter))
    }

    fn rrc_filter(&self, rng: &mut impl Rng) -> Interpolation {
        match self.augment.rrc_interpolation {
            RrcInterpolation::Bilinear => Interpolation::Bilinear,
            RrcInterpolation::Bicubic => Interpolation::Bicubic,
            RrcInterpolation::Random => {
                if rng.random_bool(0.5) {
                    Interpolation::Bilinear
                } else {
                    Interpolation::Bicubic
                }
            }
        }
    }

    /// Training: the geometry (random-resized crop), then the configured augmentations,
    /// normalisation and random erasing.
    pub fn train(
        &self,
        src: Source<'_>,
        shape: [usize; 3],
        rng: &mut impl Rng,
    ) -> Result<Vec<f32>> {
        let a = &self.augment;
        let fixed_as_is = matches!(src, Source::Fixed(_)) && a.rrc_scale.is_none();
        let mut img = if fixed_as_is {
            let Source::Fixed(px) = src else {
                unreachable!()
            };
            Image::from_u8(px, shape)
        } else {
            let px = self.train_geometry(src, shape, rng)?;
            if a.crop_padding == 0 && a.rand_ops == 0 {
                // Flip in u8 and normalise through a table: the same values and draws as
                // the f32 path below, without it.
                let flip = a.hflip && rng.random_bool(0.5);
                let mut img = Image {
                    px: px.to_normalized_chw_flipped(&self.mean, &self.std, flip),
                    c: shape[0],
                    h: shape[1],
                    w: shape[2],
                };
                if a.erase_prob > 0.0 && rng.random_bool(a.erase_prob) {
                    random_erase(&mut img, rng);
                }
                return Ok(img.px);
            }
            Image {
                px: px.to_unit_chw(),
                c: shape[0],
                h: shape[1],
                w: shape[2],
            }
        };
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
        Ok(img.px)
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
