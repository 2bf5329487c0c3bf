//! JPEG decoding with libjpeg-turbo (the TurboJPEG 3 API, built from the source that
//! `turbojpeg-sys` vendors): the library Pillow's wheels decode with, called with Pillow's
//! settings (accurate integer IDCT, "fancy" chroma upsampling), so the pixels are Pillow's
//! to the bit. Adds what Pillow's path lacks: decoding only the rows and columns a crop needs.

use std::cell::RefCell;
use std::ffi::CStr;

use anyhow::{Result, bail};
use turbojpeg_sys as tj;

use super::pixmap::{Pixmap, Rect};

/// One TurboJPEG decompressor (handles are not thread-safe: one per thread).
struct Handle(tj::tjhandle);

impl Handle {
    fn new() -> Result<Self> {
        // SAFETY: tj3Init has no preconditions; a null return is checked.
        let h = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as i32) };
        if h.is_null() {
            bail!("libjpeg-turbo: cannot create a decompressor");
        }
        Ok(Self(h))
    }

    fn error(&self) -> String {
        // SAFETY: the handle is valid; tj3GetErrorStr returns a NUL-terminated string owned
        // by the handle (or a static one), copied here before any other call.
        unsafe {
            let s = tj::tj3GetErrorStr(self.0);
            if s.is_null() {
                "unknown libjpeg-turbo error".into()
            } else {
                CStr::from_ptr(s).to_string_lossy().into_owned()
            }
        }
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: the handle is valid; tj3Get only reads the handle's parameters.
        unsafe { tj::tj3Get(self.0, param as i32) }
    }

    fn set(&self, param: tj::TJPARAM, value: i32) -> Result<()> {
        // SAFETY: the handle is valid; tj3Set validates the parameter and value.
        if unsafe { tj::tj3Set(self.0, param as i32, value) } != 0 {
            bail!("libjpeg-turbo: {}", self.error());
        }
        Ok(())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once, here.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

thread_local! {
    static HANDLE: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's decompressor. After an error the handle is replaced: a failed
/// call can leave libjpeg's state behind (the next header read then parses the old buffer).
fn with_handle<T>(f: impl FnOnce(&Handle) -> Result<T>) -> Result<T> {
    HANDLE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Handle::new()?);
        }
        let out = f(slot.as_ref().expect("just created"));
        if out.is_err() {
            *slot = None;
        }
        out
    })
}

/// What a JPEG's header says.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub width: usize,
    pub height: usize,
    /// Chroma subsampling (an index into libjpeg-turbo's MCU tables; -1 unknown).
    subsamp: i32,
    colorspace: u32,
}

fn read_header(h: &Handle, data: &[u8]) -> Result<Header> {
    // SAFETY: `data` is a valid buffer of `data.len()` bytes for the duration of the call.
    if unsafe { tj::tj3DecompressHeader(h.0, data.as_ptr(), data.len() as _) } != 0 {
        bail!("{}", h.error());
    }
    Ok(Header {
        width: h.get(tj::TJPARAM_TJPARAM_JPEGWIDTH).max(0) as usize,
        height: h.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT).max(0) as usize,
        subsamp: h.get(tj::TJPARAM_TJPARAM_SUBSAMP),
        colorspace: h.get(tj::TJPARAM_TJPARAM_COLORSPACE) as u32,
    })
}

/// The header of a JPEG.
pub fn header(data: &[u8]) -> Result<Header> {
    with_handle(|h| read_header(h, data))
}

/// The MCU's width and height in pixels (the alignment of a partial decode), by TurboJPEG's
/// subsampling index (`tjMCUWidth` / `tjMCUHeight`, static in its header); an unknown one
/// gets the largest.
fn mcu(subsamp: i32) -> (usize, usize) {
    match subsamp {
        0 | 3 => (8, 8), // 4:4:4, gray
        1 => (16, 8),    // 4:2:2
        2 => (16, 16),   // 4:2:0
        4 => (8, 16),    // 4:4:0
        5 => (32, 8),    // 4:1:1
        6 => (8, 32),    // 4:4:1
        _ => (32, 32),
    }
}

/// Decodes a JPEG of at most `max_pixels` pixels as Pillow would, to RGB (or luma for a
/// grayscale JPEG); CMYK JPEGs as Pillow reads them (inverted, Adobe's convention) then
/// Pillow's `cmyk2rgb`. With `region`, only the MCU rows and columns around it are decoded
/// (one MCU of margin, so that chroma upsampling at the region's edges sees the same
/// neighbours as a full decode): the result covers the region and says where it lies in the
/// image. Truncated data is an error, as Pillow's "image file is truncated"; libjpeg's other
/// warnings are not (Pillow decodes such files).
pub fn decode(data: &[u8], region: Option<Rect>, max_pixels: u64) -> Result<(Pixmap, Rect)> {
    with_handle(|h| {
        h.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 0)?;
        let head = read_header(h, data)?;
        let (w, h_px) = (head.width, head.height);
        if w == 0 || h_px == 0 {
            bail!("the JPEG header gives a size of {w}x{h_px}");
        }
        let pixels = (w as u64) * (h_px as u64);
        if pixels > max_pixels {
            bail!(
                "{w}x{h_px} = {pixels} pixels is more than the limit of {max_pixels} (a \
                 decompression bomb?)"
            );
        }
        let lossless = h.get(tj::TJPARAM_TJPARAM_LOSSLESS) == 1;
        let (mw, mh) = mcu(head.subsamp);
        let area = match region {
            // libjpeg-turbo crops only images of a known subsampling (not e.g. 4:2:0 CMYK).
            Some(r) if !lossless && head.subsamp >= 0 && (r.w < w || r.h < h_px) => {
                let x0 = (r.x.saturating_sub(mw) / mw) * mw;
                let x1 = (r.x + r.w + mw).min(w);
                let y0 = r.y.saturating_sub(mh);
                let y1 = (r.y + r.h + mh).min(h_px);
                Rect {
                    x: x0,
                    y: y0,
                    w: x1 - x0,
                    h: y1 - y0,
                }
            }
            _ => Rect::full(w, h_px),
        };
        let cropped = area != Rect::full(w, h_px);
        let crop = if cropped {
            tj::tjregion {
                x: area.x as i32,
                y: area.y as i32,
                w: area.w as i32,
                h: area.h as i32,
            }
        } else {
            tj::tjregion {
                x: 0,
                y: 0,
                w: 0,
                h: 0,
            }
        };
        // SAFETY: the handle is valid and its header was read just above.
        if unsafe { tj::tj3SetCroppingRegion(h.0, crop) } != 0 {
            bail!("{}", h.error());
        }
        let (format, bpp) = match head.colorspace {
            tj::TJCS_TJCS_GRAY => (tj::TJPF_TJPF_GRAY, 1),
            tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK => (tj::TJPF_TJPF_CMYK, 4),
            _ => (tj::TJPF_TJPF_RGB, 3),
        };
        let len = area.w * area.h * bpp;
        // Not zeroed first: libjpeg-turbo writes every byte (or fails, and it is dropped).
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        // SAFETY: `buf` has room for `area.h` rows of `area.w * bpp` bytes, the size of the
        // (cropped) output in `format`; `data` is valid for its length.
        let rc = unsafe {
            tj::tj3Decompress8(
                h.0,
                data.as_ptr(),
                data.len() as _,
                buf.as_mut_ptr(),
                (area.w * bpp) as i32,
                format,
            )
        };
        // SAFETY: the handle is valid.
        let code = unsafe { tj::tj3GetErrorCode(h.0) };
        let warning = code == tj::TJERR_TJERR_WARNING as i32;
        if rc == 0 || warning {
            // SAFETY: tj3Decompress8 returned with the image decoded (0, or a warning after a
            // complete decode, STOPONWARNING being off): every one of the `len` bytes was
            // written.
            unsafe { buf.set_len(len) };
        }
        if rc != 0 {
            // libjpeg's warnings (extraneous bytes, a corrupt segment) leave a decoded image,
            // which Pillow keeps; a premature end is Pillow's "image file is truncated".
            let msg = h.error();
            if !warning || msg.contains("Premature end") {
                bail!("{msg}");
            }
        }
        let px = if bpp == 4 {
            super::decode::cmyk_to_rgb(&buf)
        } else {
            buf
        };
        let channels = if bpp == 1 { 1 } else { 3 };
        Ok((
            Pixmap {
                px,
                width: area.w,
                height: area.h,
                channels,
            },
            area,
        ))
    })
}
