//! Position-embedding resampling: a learned grid of embeddings moved to another grid size.
//!
//! Each mode reproduces a reference exactly. The resampling is separable, so it is built on the
//! host as one `[new_h * new_w, old_h * old_w]` matrix (the Kronecker product of the per-axis
//! matrices) and applied by a matmul: the same numbers on every backend, and differentiable.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::VitError;

/// Which reference behaviour to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResampleMode {
    /// timm `resample_abs_pos_embed`: `F.interpolate(bicubic, align_corners=False,
    /// antialias=True)` (Keys a = -0.5, taps renormalised, support widened when shrinking).
    Timm,
    /// The original JAX code: `scipy.ndimage.zoom(order=1)`, linear with aligned corners.
    Jax,
    /// HF transformers `interpolate_pos_encoding`: bicubic (a = -0.75), align_corners=False,
    /// no antialias, edge-clamped taps.
    Hf,
    /// PyTorch bilinear, align_corners=False, no antialias.
    Bilinear,
    /// PyTorch nearest (`mode="nearest"`): source index floor(dst * in / out).
    Nearest,
}

impl ResampleMode {
    /// Every mode, in declaration order.
    pub const ALL: [ResampleMode; 5] = [
        Self::Timm,
        Self::Jax,
        Self::Hf,
        Self::Bilinear,
        Self::Nearest,
    ];

    /// The mode's name as used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Timm => "timm",
            Self::Jax => "jax",
            Self::Hf => "hf",
            Self::Bilinear => "bilinear",
            Self::Nearest => "nearest",
        }
    }

    /// The `[new, old]` row-major matrix that resamples one axis of `old` points to `new`.
    pub fn matrix_1d(self, old: usize, new: usize) -> Vec<f64> {
        let mut m = vec![0.0; new * old];
        let scale = old as f64 / new as f64;
        let clamp = |i: i64| i.clamp(0, old as i64 - 1) as usize;
        for o in 0..new {
            let row = &mut m[o * old..(o + 1) * old];
            match self {
                Self::Timm => {
                    // ATen `_compute_indices_min_size_weights_aa` with the bicubic AA filter.
                    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
                    let inv = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
                    let center = scale * (o as f64 + 0.5);
                    // `as i64` truncates toward zero, as the C++ cast does.
                    let xmin = ((center - support + 0.5) as i64).max(0) as usize;
                    let xmax = ((center + support + 0.5) as i64).min(old as i64) as usize;
                    let w: Vec<f64> = (xmin..xmax)
                        .map(|j| cubic_aa((j as f64 - center + 0.5) * inv))
                        .collect();
                    let total: f64 = w.iter().sum();
                    for (j, w) in (xmin..xmax).zip(w) {
                        row[j] += if total != 0.0 { w / total } else { w };
                    }
                }
                Self::Jax => {
                    // scipy zoom, grid_mode=False: output o sits at o * (old-1)/(new-1).
                    let pos = if new > 1 {
                        o as f64 * ((old as f64 - 1.0) / (new as f64 - 1.0))
                    } else {
                        0.0
                    };
                    let i = pos.floor();
                    let f = pos - i;
                    let i = i as usize;
                    row[i.min(old - 1)] += 1.0 - f;
                    if i + 1 < old {
                        row[i + 1] += f;
                    }
                }
                Self::Hf => {
                    // ATen `upsample_bicubic2d`: A = -0.75, edge-clamped taps.
                    let src = scale * (o as f64 + 0.5) - 0.5;
                    let i = src.floor();
                    let t = src - i;
                    let a = -0.75;
                    let coeffs = [
                        cubic2(t + 1.0, a),
                        cubic1(t, a),
                        cubic1(1.0 - t, a),
                        cubic2(2.0 - t, a),
                    ];
                    for (k, c) in coeffs.into_iter().enumerate() {
                        row[clamp(i as i64 - 1 + k as i64)] += c;
                    }
                }
                Self::Bilinear => {
                    let src = (scale * (o as f64 + 0.5) - 0.5).max(0.0);
                    let i = src.floor() as usize;
                    let l = src - i as f64;
                    let i1 = (i + 1).min(old - 1);
                    row[i.min(old - 1)] += 1.0 - l;
                    row[i1] += l;
                }
                Self::Nearest => {
                    let src = ((o as f64 * scale).floor() as usize).min(old - 1);
                    row[src] = 1.0;
                }
            }
        }
        m
    }

    /// The `[new_h * new_w, old_h * old_w]` matrix resampling a row-major grid.
    pub fn matrix_2d(self, old: [usize; 2], new: [usize; 2]) -> Vec<f64> {
        let mh = self.matrix_1d(old[0], new[0]);
        let mw = self.matrix_1d(old[1], new[1]);
        let (n_old, n_new) = (old[0] * old[1], new[0] * new[1]);
        let mut m = vec![0.0; n_new * n_old];
        for (yo, xo) in (0..new[0]).flat_map(|y| (0..new[1]).map(move |x| (y, x))) {
            let row = &mut m[(yo * new[1] + xo) * n_old..][..n_old];
            for yi in 0..old[0] {
                let wy = mh[yo * old[0] + yi];
                if wy == 0.0 {
                    continue;
                }
                for xi in 0..old[1] {
                    row[yi * old[1] + xi] = wy * mw[xo * old[1] + xi];
                }
            }
        }
        m
    }
}

impl fmt::Display for ResampleMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ResampleMode {
    type Err = VitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Self::ALL.iter().map(|m| m.name()).collect();
                VitError::Resample(format!(
                    "unknown mode `{s}`; expected one of {}",
                    known.join(", ")
                ))
            })
    }
}

/// Keys cubic with a = -0.5, the filter of PyTorch's antialiased bicubic.
fn cubic_aa(x: f64) -> f64 {
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

/// ATen `cubic_convolution1`: the kernel on |x| <= 1.
fn cubic1(x: f64, a: f64) -> f64 {
    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
}

/// ATen `cubic_convolution2`: the kernel on 1 < |x| < 2.
fn cubic2(x: f64, a: f64) -> f64 {
    ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
}

/// Resamples position embeddings from grid `old_grid` to `new_grid`, keeping the first
/// `num_prefix_tokens` (class token) embeddings as they are.
///
/// # Shapes
/// - pos_embed: `[1, prefix + old_h * old_w, D]`, grid row-major
/// - output: `[1, prefix + new_h * new_w, D]`
pub fn resample_pos_embed(
    pos_embed: Tensor<3>,
    old_grid: [usize; 2],
    new_grid: [usize; 2],
    num_prefix_tokens: usize,
    mode: ResampleMode,
) -> Result<Tensor<3>, VitError> {
    let [one, len, d] = pos_embed.dims();
    let n_old = old_grid[0] * old_grid[1];
    if one != 1 || len != num_prefix_tokens + n_old {
        return Err(VitError::Resample(format!(
            "pos_embed has shape [{one}, {len}, {d}], expected [1, {}, D] for {num_prefix_tokens} \
             prefix tokens and a {}x{} grid",
            num_prefix_tokens + n_old,
            old_grid[0],
            old_grid[1]
        )));
    }
    if new_grid[0] == 0 || new_grid[1] == 0 || n_old == 0 {
        return Err(VitError::Resample(format!(
            "cannot resample a {old_grid:?} grid to {new_grid:?}"
        )));
    }
    if old_grid == new_grid {
        return Ok(pos_embed);
    }
    let device: Device = pos_embed.device();
    let n_new = new_grid[0] * new_grid[1];
    let m: Vec<f32> = mode
        .matrix_2d(old_grid, new_grid)
        .into_iter()
        .map(|w| w as f32)
        .collect();
    let m = Tensor::<2>::from_data(TensorData::new(m, [n_new, n_old]), &device);
    let grid = pos_embed
        .clone()
        .narrow(1, num_prefix_tokens, n_old)
        .reshape([n_old, d]);
    let resampled = m.matmul(grid).reshape([1, n_new, d]);
    Ok(if num_prefix_tokens > 0 {
        Tensor::cat(
            vec![pos_embed.narrow(1, 0, num_prefix_tokens), resampled],
            1,
        )
    } else {
        resampled
    })
}
