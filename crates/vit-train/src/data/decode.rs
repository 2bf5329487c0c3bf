//! Image files to pixels, as Pillow's `Image.open(f).convert("RGB")` (or `"L"`) gives them,
//! which is what torchvision's `ImageFolder` and timm feed their transforms.
//!
//! JPEGs go through libjpeg-turbo where vit-train is built with the `turbojpeg` feature
//! ([`super::turbo`]: Pillow's decoder, bit for bit, and it decodes only what a crop needs),
//! else through the `image` crate (pure Rust: zune-jpeg, within a few levels of Pillow's
//! pixels: it upsamples chroma its own way). Other formats (PNG, WebP, BMP, GIF) go through
//! the `image` crate. Conversions follow Pillow's `convert`: alpha dropped, palettes
//! expanded, luma repeated to RGB, RGB to luma by ITU-R 601-2; 16-bit samples keep their
//! high byte (Pillow's `RGB;16B`; Pillow clips 16-bit *grayscale* to 255 instead, which
//! turns most such photos white: not copied).
//!
//! A header that declares more than [`MAX_PIXELS`] pixels is refused before anything is
//! allocated (Pillow's `DecompressionBombError` threshold), as are empty and truncated files.

use std::io::Cursor;

use anyhow::{Context, Result, bail};
use image::{DynamicImage, ImageReader, Limits};
use serde::{Deserialize, Serialize};

use super::pixmap::{Pixmap, Rect};

/// Pillow's decompression-bomb error threshold: `2 * MAX_IMAGE_PIXELS` = 178,956,970 pixels.
pub const MAX_PIXELS: u64 = 2 * (1024 * 1024 * 1024 / 4 / 3);

/// Which library decodes JPEGs (`data.decoder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decoder {
    /// libjpeg-turbo when built in (the `turbojpeg` feature), else the `image` crate.
    #[default]
    Auto,
    /// The `image` crate (zune-jpeg): pure Rust, always built.
    Image,
    /// libjpeg-turbo: Pillow's pixels; needs the `turbojpeg` feature.
    Turbojpeg,
}

impl Decoder {
    /// Whether libjpeg-turbo is compiled in.
    pub const TURBOJPEG_BUILT: bool = cfg!(feature = "turbojpeg");

    /// The decoder `Auto` stands for in this build.
    pub fn resolve(self) -> Result<Self> {
        match self {
            Decoder::Auto if Self::TURBOJPEG_BUILT => Ok(Decoder::Turbojpeg),
            Decoder::Auto => Ok(Decoder::Image),
            Decoder::Turbojpeg if !Self::TURBOJPEG_BUILT => bail!(
                "data.decoder = \"turbojpeg\", but this vit-train was built without libjpeg-turbo: \
                 build with `--features turbojpeg` (needs cmake and nasm), or use \"image\""
            ),
            d => Ok(d),
        }
    }
}

fn is_jpeg(data: &[u8]) -> bool {
    data.starts_with(&[0xff, 0xd8, 0xff])
}

/// Width and height from the file's header, without decoding.
pub fn dimensions(data: &[u8]) -> Result<(usize, usize)> {
    if data.is_empty() {
        bail!("empty file");
    }
    #[cfg(feature = "turbojpeg")]
    if is_jpeg(data)
        && let Ok(h) = super::turbo::header(data)
    {
        return Ok((h.width, h.height));
    }
    let (w, h) = ImageReader::new(Cursor::new(data))
        .with_guessed_format()?
        .into_dimensions()
        .context("not an image this build reads (JPEG, PNG, WebP, BMP, GIF)")?;
    Ok((w as usize, h as usize))
}

/// Decodes an image file's bytes to `channels` (1: luma, 3: RGB), as Pillow's
/// `convert("L" | "RGB")`. With `region`, the decoder may decode only the part of the image
/// around it (libjpeg-turbo's partial decode; the pixels inside the region are the full
/// decode's): returns the pixels and where they lie in the image.
pub fn decode(
    data: &[u8],
    channels: usize,
    region: Option<Rect>,
    decoder: Decoder,
) -> Result<(Pixmap, Rect)> {
    if data.is_empty() {
        bail!("empty file");
    }
    let decoder = decoder.resolve()?;
    #[cfg(feature = "turbojpeg")]
    if decoder == Decoder::Turbojpeg && is_jpeg(data) {
        let (px, at) = super::turbo::decode(data, region, MAX_PIXELS)?;
        return Ok((px.with_channels(channels), at));
    }
    let _ = (region, decoder);
    let img = decode_image_crate(data)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok((to_pixmap(img).with_channels(channels), Rect::full(w, h)))
}

/// Pillow's reading of a CMYK JPEG's samples (as stored: Adobe's inverted convention):
/// inverted (`CMYK;I`), then `cmyk2rgb`, `255 - k - c * (255 - k) / 255` per channel in its
/// fixed point.
pub fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let mut out = Vec::with_capacity(cmyk.len() / 4 * 3);
    for p in cmyk.chunks_exact(4) {
        let nk = i32::from(p[3]); // 255 - (255 - k): the inverted K
        for &v in &p[..3] {
            let c = 255 - i32::from(v);
            out.push((nk - muldiv255(c, nk)).clamp(0, 255) as u8);
        }
    }
    out
}

/// A CMYK (or YCCK) JPEG through jpeg-decoder's CMYK output (Adobe's inversion undone) and
/// Pillow's conversion; `None` for other JPEGs.
fn decode_cmyk_jpeg(data: &[u8]) -> Result<Option<DynamicImage>> {
    let mut d = jpeg_decoder::Decoder::new(data);
    if d.read_info().is_err() {
        return Ok(None);
    }
    let Some(info) = d.info() else {
        return Ok(None);
    };
    if info.pixel_format != jpeg_decoder::PixelFormat::CMYK32 {
        return Ok(None);
    }
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        bail!("{w}x{h} pixels is more than the limit of {MAX_PIXELS} (a decompression bomb?)");
    }
    let cmyk = d.decode().context("cannot decode the CMYK JPEG")?;
    // jpeg-decoder gives true CMYK; Pillow's samples are the stored (inverted) ones.
    let stored: Vec<u8> = cmyk.iter().map(|v| 255 - v).collect();
    let img = image::RgbImage::from_raw(w, h, cmyk_to_rgb(&stored))
        .context("the CMYK JPEG decoded to the wrong size")?;
    Ok(Some(DynamicImage::ImageRgb8(img)))
}

/// A JPEG through zune-jpeg (the image crate's decoder) called directly: strict, so that a
/// truncated file is an error as in Pillow (through the image crate it decodes, grey where
/// the data ran out); files strict mode refuses for lesser faults (extraneous bytes, ...) are
/// decoded leniently, as Pillow decodes them.
fn decode_jpeg_rust(data: &[u8]) -> Result<DynamicImage> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    use zune_jpeg::errors::DecodeErrors;
    if let Some(img) = decode_cmyk_jpeg(data)? {
        return Ok(img);
    }
    // zune's own size limit (16,384 px a side) would refuse panoramas Pillow reads; the
    // pixel count is checked below instead.
    let unlimited = DecoderOptions::default()
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    let mut head = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(data), unlimited);
    head.decode_headers()
        .map_err(|e| anyhow::anyhow!("not a readable JPEG: {e:?}"))?;
    let (w, h) = head.dimensions().context("no JPEG dimensions")?;
    let pixels = (w as u64) * (h as u64);
    if pixels > MAX_PIXELS {
        bail!(
            "{w}x{h} = {pixels} pixels is more than the limit of {MAX_PIXELS} (a decompression \
             bomb?)"
        );
    }
    let gray = head.input_colorspace() == Some(ColorSpace::Luma);
    let out = if gray {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    let options = |strict| {
        DecoderOptions::default()
            .jpeg_set_out_colorspace(out)
            .set_strict_mode(strict)
            .set_max_width(usize::MAX)
            .set_max_height(usize::MAX)
    };
    let decode = |strict| {
        zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(data), options(strict)).decode()
    };
    let px = match decode(true) {
        Ok(px) => px,
        Err(DecodeErrors::ExhaustedData) => {
            bail!("the JPEG data ends early (a truncated file)")
        }
        Err(_) => decode(false).map_err(|e| anyhow::anyhow!("cannot decode the JPEG: {e:?}"))?,
    };
    let (w, h) = (w as u32, h as u32);
    let img = if gray {
        image::GrayImage::from_raw(w, h, px).map(DynamicImage::ImageLuma8)
    } else {
        image::RgbImage::from_raw(w, h, px).map(DynamicImage::ImageRgb8)
    };
    img.context("the JPEG decoded to the wrong size")
}

/// The `image` crate's decode (zune-jpeg for JPEGs, called directly), refusing bombs from
/// the header, and by its `Limits`, before it allocates.
fn decode_image_crate(data: &[u8]) -> Result<DynamicImage> {
    if is_jpeg(data) {
        return decode_jpeg_rust(data);
    }
    let reader = || {
        ImageReader::new(Cursor::new(data))
            .with_guessed_format()
            .context("cannot read the file")
    };
    let (w, h) = reader()?
        .into_dimensions()
        .context("not an image this build reads (JPEG, PNG, WebP, BMP, GIF)")?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_PIXELS {
        bail!(
            "{w}x{h} = {pixels} pixels is more than the limit of {MAX_PIXELS} (a decompression \
             bomb?)"
        );
    }
    let mut limits = Limits::default();
    // 16-bit RGBA is the widest layout decoded here: 8 bytes a pixel.
    limits.max_alloc = Some(MAX_PIXELS * 8);
    let mut r = reader()?;
    r.limits(limits);
    r.decode().context("cannot decode")
}

/// A decoded image as Pillow's `convert("RGB")` (or `"L"` for one-channel sources) leaves it.
fn to_pixmap(img: DynamicImage) -> Pixmap {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let high_byte = |v: &[u16]| v.iter().map(|&s| (s >> 8) as u8).collect::<Vec<u8>>();
    let (px, channels) = match img {
        DynamicImage::ImageLuma8(b) => (b.into_raw(), 1),
        DynamicImage::ImageLumaA8(b) => (b.into_raw().chunks_exact(2).map(|p| p[0]).collect(), 1),
        DynamicImage::ImageRgb8(b) => (b.into_raw(), 3),
        DynamicImage::ImageLuma16(b) => (high_byte(b.as_raw()), 1),
        DynamicImage::ImageLumaA16(b) => {
            let v: Vec<u16> = b.as_raw().chunks_exact(2).map(|p| p[0]).collect();
            (high_byte(&v), 1)
        }
        DynamicImage::ImageRgb16(b) => (high_byte(b.as_raw()), 3),
        DynamicImage::ImageRgba16(b) => {
            let v: Vec<u16> = b
                .as_raw()
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect();
            (high_byte(&v), 3)
        }
        other => (other.to_rgb8().into_raw(), 3),
    };
    Pixmap {
        px,
        width,
        height,
        channels,
    }
}
