//! Decoded pixels as the image pipeline handles them: rows of interleaved u8 samples (HWC),
//! one channel (luma) or three (RGB), as Pillow holds an `L` or `RGB` image.

/// An 8-bit image, HWC: `px[(y * width + x) * channels + c]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixmap {
    pub px: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// 1 (luma) or 3 (RGB).
    pub channels: usize,
}

/// A rectangle of an image: left, top, width, height (torchvision's `(j, i, w, h)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

impl Rect {
    /// The whole of a `w` x `h` image.
    pub fn full(w: usize, h: usize) -> Self {
        Self { x: 0, y: 0, w, h }
    }
}

impl Pixmap {
    /// A black image.
    pub fn zeros(width: usize, height: usize, channels: usize) -> Self {
        Self {
            px: vec![0; width * height * channels],
            width,
            height,
            channels,
        }
    }

    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.width * self.channels
    }

    /// The pixels of `r`, copied (Pillow's `crop` of a box inside the image).
    pub fn crop(&self, r: Rect) -> Self {
        let c = self.channels;
        let mut px = Vec::with_capacity(r.w * r.h * c);
        for y in r.y..r.y + r.h {
            let s = (y * self.width + r.x) * c;
            px.extend_from_slice(&self.px[s..s + r.w * c]);
        }
        Self {
            px,
            width: r.w,
            height: r.h,
            channels: c,
        }
    }

    /// Mirrored left-right, in place.
    pub fn hflip(&mut self) {
        let c = self.channels;
        let stride = self.stride();
        for row in self.px.chunks_exact_mut(stride) {
            for x in 0..self.width / 2 {
                let (a, b) = (x * c, (self.width - 1 - x) * c);
                for ch in 0..c {
                    row.swap(a + ch, b + ch);
                }
            }
        }
    }

    /// As `channels` channels: luma repeated to RGB, or RGB to luma with Pillow's `L`
    /// conversion (ITU-R 601-2: `(R * 299 + G * 587 + B * 114) / 1000`, rounded).
    pub fn with_channels(self, channels: usize) -> Self {
        match (self.channels, channels) {
            (a, b) if a == b => self,
            (1, 3) => Self {
                px: self.px.iter().flat_map(|&v| [v, v, v]).collect(),
                channels: 3,
                ..self
            },
            (3, 1) => Self {
                px: self
                    .px
                    .chunks_exact(3)
                    .map(|p| {
                        // Pillow's rgb2l: L24 fixed point, (r*19595 + g*38470 + b*7471 + 0x8000) >> 16.
                        ((u32::from(p[0]) * 19595
                            + u32::from(p[1]) * 38470
                            + u32::from(p[2]) * 7471
                            + 0x8000)
                            >> 16) as u8
                    })
                    .collect(),
                channels: 1,
                ..self
            },
            (a, b) => unreachable!("pixmaps have 1 or 3 channels, not {a} -> {b}"),
        }
    }

    /// CHW u8 planes (the fixed-size sets' layout).
    pub fn to_chw(&self) -> Vec<u8> {
        let (c, n) = (self.channels, self.width * self.height);
        let mut out = vec![0u8; c * n];
        for (p, px) in self.px.chunks_exact(c).enumerate() {
            for ch in 0..c {
                out[ch * n + p] = px[ch];
            }
        }
        out
    }

    /// From CHW u8 planes.
    pub fn from_chw(chw: &[u8], shape: [usize; 3]) -> Self {
        let [c, h, w] = shape;
        let n = h * w;
        let mut px = vec![0u8; c * n];
        for ch in 0..c {
            for p in 0..n {
                px[p * c + ch] = chw[ch * n + p];
            }
        }
        Self {
            px,
            width: w,
            height: h,
            channels: c,
        }
    }

    /// CHW f32 in [0, 1] (torchvision's `ToTensor`: `x / 255` in f32).
    pub fn to_unit_chw(&self) -> Vec<f32> {
        let (c, n) = (self.channels, self.width * self.height);
        let mut out = vec![0f32; c * n];
        for (p, px) in self.px.chunks_exact(c).enumerate() {
            for ch in 0..c {
                out[ch * n + p] = f32::from(px[ch]) / 255.0;
            }
        }
        out
    }

    /// CHW f32, `ToTensor` then `Normalize`: `(x / 255 - mean) / std` per channel in f32, the
    /// same operations in the same order as torchvision, by a table per channel.
    pub fn to_normalized_chw(&self, mean: &[f32], std: &[f32]) -> Vec<f32> {
        self.to_normalized_chw_flipped(mean, std, false)
    }

    /// [`Self::to_normalized_chw`] of the image mirrored left-right when `flip` (the flip read
    /// off in the same pass).
    pub fn to_normalized_chw_flipped(&self, mean: &[f32], std: &[f32], flip: bool) -> Vec<f32> {
        let (c, w, n) = (self.channels, self.width, self.width * self.height);
        let lut: Vec<[f32; 256]> = (0..c)
            .map(|ch| std::array::from_fn(|v| (v as f32 / 255.0 - mean[ch]) / std[ch]))
            .collect();
        let mut out = vec![0f32; c * n];
        let rows = self.px.chunks_exact(w * c);
        if c == 3 {
            let (r, rest) = out.split_at_mut(n);
            let (g, b) = rest.split_at_mut(n);
            let planes = r
                .chunks_exact_mut(w)
                .zip(g.chunks_exact_mut(w))
                .zip(b.chunks_exact_mut(w));
            for (((r, g), b), row) in planes.zip(rows) {
                for (x, px) in row.chunks_exact(3).enumerate() {
                    let x = if flip { w - 1 - x } else { x };
                    r[x] = lut[0][px[0] as usize];
                    g[x] = lut[1][px[1] as usize];
                    b[x] = lut[2][px[2] as usize];
                }
            }
        } else {
            for (o, row) in out.chunks_exact_mut(w).zip(rows) {
                for (x, &v) in row.iter().enumerate() {
                    o[if flip { w - 1 - x } else { x }] = lut[0][v as usize];
                }
            }
        }
        out
    }
}
