//! The geometry of torchvision's and timm's image transforms: where `RandomResizedCrop` cuts
//! (`get_params`), and the evaluation transform's resize and centre crop
//! (`transforms_imagenet_eval`: `Resize` + `CenterCrop`). Python's `round` rounds halves to
//! even, which `f64::round_ties_even` is; its `int()` truncates, which `as` is.

use vit_model::CropMode;

use super::pixmap::Rect;

/// Python's `int(round(x))` of a non-negative value.
fn py_round(x: f64) -> usize {
    x.round_ties_even() as usize
}

/// torchvision `RandomResizedCrop.get_params` for an image of `w` x `h`: up to 10 tries of a
/// crop of area `uniform(scale) * w * h` and aspect `exp(uniform(log(ratio)))` (width over
/// height) that fits, at an offset `randint(0, h - ch)`, `randint(0, w - cw)`; else the
/// central crop with the aspect clamped into `ratio`. `uniform(lo, hi)` and `randint(n)`
/// (uniform in `0..=n`) are the caller's draws. As torchvision, the log-ratio bounds are
/// computed in f32 (`torch.log(torch.tensor(ratio))`).
pub fn rrc_box(
    w: usize,
    h: usize,
    scale: [f64; 2],
    ratio: [f64; 2],
    uniform: &mut impl FnMut(f64, f64) -> f64,
    randint: &mut impl FnMut(usize) -> usize,
) -> Rect {
    let area = (w * h) as f64;
    let log_ratio = [
        f64::from((ratio[0] as f32).ln()),
        f64::from((ratio[1] as f32).ln()),
    ];
    for _ in 0..10 {
        let target_area = area * uniform(scale[0], scale[1]);
        let aspect = uniform(log_ratio[0], log_ratio[1]).exp();
        let cw = py_round((target_area * aspect).sqrt());
        let ch = py_round((target_area / aspect).sqrt());
        if 0 < cw && cw <= w && 0 < ch && ch <= h {
            let y = randint(h - ch);
            let x = randint(w - cw);
            return Rect { x, y, w: cw, h: ch };
        }
    }
    // Fallback: the central crop, its aspect clamped into `ratio`.
    let in_ratio = w as f64 / h as f64;
    let (lo, hi) = (ratio[0].min(ratio[1]), ratio[0].max(ratio[1]));
    let (cw, ch) = if in_ratio < lo {
        (w, py_round(w as f64 / lo))
    } else if in_ratio > hi {
        (py_round(h as f64 * hi), h)
    } else {
        (w, h)
    };
    Rect {
        x: (w - cw) / 2,
        y: (h - ch) / 2,
        w: cw,
        h: ch,
    }
}

/// The evaluation transform of an image of `w` x `h` for an input of `size` (`[h, w]`): the
/// size to resize it to (`[h, w]`), then the centre crop of that (which may reach outside it
/// for `border`: padded with the mean colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalGeometry {
    pub resize: [usize; 2],
    /// Top-left corner of the crop in the resized image (negative: padding).
    pub top: i64,
    pub left: i64,
}

/// timm's `transforms_imagenet_eval` for an image of `w` x `h`: the scale size is
/// `floor(size / crop_pct)` per side; `center` resizes the short side to it (torchvision
/// `Resize(int)`: the long side `int(scale * long / short)`) when the input is square, else
/// both sides by the smaller ratio, rounded (timm `ResizeKeepRatio`); `squash` resizes to the
/// scale size; `border` fits the long side (`ResizeKeepRatio(longest=1)`). Then torchvision's
/// `CenterCrop`: offsets `int(round((H - h) / 2))`.
pub fn eval_geometry(
    w: usize,
    h: usize,
    size: [usize; 2],
    crop_pct: f64,
    mode: CropMode,
) -> EvalGeometry {
    let [th, tw] = size;
    let scale = [
        (th as f64 / crop_pct).floor() as usize,
        (tw as f64 / crop_pct).floor() as usize,
    ];
    // timm ResizeKeepRatio: [round(h / ratio), round(w / ratio)] with ratio the min (or max,
    // `longest`) of img / target per side.
    let keep_ratio = |longest: bool| {
        let (rh, rw) = (h as f64 / scale[0] as f64, w as f64 / scale[1] as f64);
        let ratio = if longest { rh.max(rw) } else { rh.min(rw) };
        [py_round(h as f64 / ratio), py_round(w as f64 / ratio)]
    };
    let resize = match mode {
        CropMode::Squash => scale,
        CropMode::Border => keep_ratio(true),
        CropMode::Center if scale[0] == scale[1] => {
            // torchvision _compute_resized_output_size with one size: the short side.
            let s = scale[0];
            let (short, long) = if w <= h { (w, h) } else { (h, w) };
            let new_long = (s as f64 * long as f64 / short as f64) as usize;
            if w <= h { [new_long, s] } else { [s, new_long] }
        }
        CropMode::Center => keep_ratio(false),
    };
    // torchvision CenterCrop: pads (zeros; timm's CenterCropOrPad: the fill) when the image
    // is smaller, then offsets int(round((H - h) / 2.0)).
    let offset = |have: usize, want: usize| -> i64 {
        if want > have {
            -(((want - have) / 2) as i64)
        } else {
            ((have - want) as f64 / 2.0).round_ties_even() as i64
        }
    };
    EvalGeometry {
        resize,
        top: offset(resize[0], th),
        left: offset(resize[1], tw),
    }
}
