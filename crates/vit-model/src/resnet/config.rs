//! [`ResNetConfig`]: the hybrid's ResNet as numbers (stages, widths, norms, epsilons), what
//! follows from them (strides, feature size, parameters, FLOPs), and the conv and norm layers
//! it makes. The blocks built from it ([`super::stem`], [`super::bottleneck`]) and the
//! backbone ([`super::backbone`]) import it; it imports only the layers below them.

use burn::config::Config;
use burn::tensor::Device;

use super::group_norm::GroupNormAct;
use super::same_pad::same_output;
use super::std_conv::{StdConv2d, StdConvStyle};

/// Configuration of a hybrid's ResNet. Stage `i` (from 0) has bottlenecks of width
/// `stem_width * 2^i` and outputs 4x that (256, 512, 1024, 2048 for a stem of 64); the first
/// stage keeps the stem's resolution, each later one halves it. Defaults are R50's first
/// three stages as timm's `vit_base_r50_s16_224` uses them.
#[derive(Config, Debug, PartialEq)]
pub struct ResNetConfig {
    /// Bottleneck blocks per stage (timm `layers`); empty: the stem alone (timm
    /// `create_resnetv2_stem`). Default: `[3, 4, 9]`.
    #[config(default = "vec![3, 4, 9]")]
    pub layers: Vec<usize>,
    /// Channels of the stem (timm `stem_chs`; the JAX code's `64 * width_factor`).
    /// Default: `64`.
    #[config(default = 64)]
    pub stem_width: usize,
    /// GroupNorm groups. Default: `32`.
    #[config(default = 32)]
    pub norm_groups: usize,
    /// GroupNorm epsilon. Default: `1e-5` (timm's `GroupNormAct`; the JAX code's flax
    /// `GroupNorm` uses `1e-6`).
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Where the weight standardisation's epsilon goes. Default: [`StdConvStyle::Timm`].
    #[config(default = "StdConvStyle::Timm")]
    pub std_conv: StdConvStyle,
    /// Weight standardisation epsilon. Default: `1e-8` (timm's hybrids; the JAX code adds
    /// `1e-5` to the standard deviation).
    #[config(default = 1e-8)]
    pub std_conv_eps: f64,
}

impl ResNetConfig {
    /// The JAX code's epsilons (`models_resnet.py`: `(w - mean) / (std + 1e-5)`; flax
    /// `GroupNorm` `1e-6`), for checkpoints trained there.
    pub fn with_jax_epsilons(self) -> Self {
        self.with_std_conv(StdConvStyle::Jax)
            .with_std_conv_eps(1e-5)
            .with_norm_eps(1e-6)
    }

    /// Bottleneck width of stage `i`.
    pub fn stage_width(&self, i: usize) -> usize {
        self.stem_width << i
    }

    /// Channels of the feature map.
    pub fn out_channels(&self) -> usize {
        match self.layers.len() {
            0 => self.stem_width,
            n => 4 * self.stage_width(n - 1),
        }
    }

    /// How many input pixels one feature-map cell spans (4 for the stem, x2 per later stage).
    pub fn stride(&self) -> usize {
        4 << self.layers.len().saturating_sub(1)
    }

    /// `[height, width]` of the feature map for an input of `image_size` (every stride-2
    /// layer rounds up, as "SAME" padding does).
    pub fn feature_size(&self, image_size: [usize; 2]) -> [usize; 2] {
        let halvings = 2 + self.layers.len().saturating_sub(1);
        image_size.map(|s| (0..halvings).fold(s, |s, _| same_output(s, 2)))
    }

    /// Checks the options; messages start with the field's name under `backbone.`.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(i) = self.layers.iter().position(|&n| n == 0) {
            return Err(format!(
                "backbone.layers = {:?}: stage {i} has no blocks (leave a stage out instead)",
                self.layers
            ));
        }
        if self.layers.len() > 4 {
            return Err(format!(
                "backbone.layers = {:?}: at most 4 stages",
                self.layers
            ));
        }
        if self.norm_groups == 0 {
            return Err("backbone.norm_groups = 0: must be positive".into());
        }
        if self.stem_width == 0 || !self.stem_width.is_multiple_of(self.norm_groups) {
            return Err(format!(
                "backbone.stem_width = {}: must be a positive multiple of norm_groups {}",
                self.stem_width, self.norm_groups
            ));
        }
        for (name, v) in [
            ("norm_eps", self.norm_eps),
            ("std_conv_eps", self.std_conv_eps),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("backbone.{name} = {v}: must be positive"));
            }
        }
        Ok(())
    }

    /// Every block of every stage: `(stage, [c_in, c_out], stride, first of its stage)`.
    pub(crate) fn blocks(&self) -> Vec<(usize, [usize; 2], usize, bool)> {
        let mut c_in = self.stem_width;
        let mut out = Vec::new();
        for (i, &n) in self.layers.iter().enumerate() {
            let c_out = 4 * self.stage_width(i);
            for j in 0..n {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                out.push((i, [c_in, c_out], stride, j == 0));
                c_in = c_out;
            }
        }
        out
    }

    /// Number of trainable parameters over `in_channels` input channels.
    pub fn num_params(&self, in_channels: usize) -> usize {
        let norm = |c: usize| 2 * c;
        let stem = in_channels * self.stem_width * 49 + norm(self.stem_width);
        let blocks: usize = self
            .blocks()
            .into_iter()
            .map(|(_, [c_in, c_out], _, project)| {
                let mid = c_out / 4;
                let shortcut = if project {
                    c_in * c_out + norm(c_out)
                } else {
                    0
                };
                c_in * mid + mid * mid * 9 + mid * c_out + 2 * norm(mid) + norm(c_out) + shortcut
            })
            .sum();
        stem + blocks
    }

    /// Multiply-accumulates of the convolutions for one image of `image_size`, times two.
    pub fn flops_per_image(&self, in_channels: usize, image_size: [usize; 2]) -> u64 {
        let [mut h, mut w] = image_size.map(|s| same_output(s, 2));
        let mut macs = (h * w * 49 * in_channels * self.stem_width) as u64;
        [h, w] = [h, w].map(|s| same_output(s, 2));
        for (_, [c_in, c_out], stride, project) in self.blocks() {
            let mid = c_out / 4;
            let (ho, wo) = (same_output(h, stride), same_output(w, stride));
            let (px_in, px_out) = ((h * w) as u64, (ho * wo) as u64);
            macs += px_in * (c_in * mid) as u64
                + px_out * (9 * mid * mid + mid * c_out) as u64
                + if project {
                    px_out * (c_in * c_out) as u64
                } else {
                    0
                };
            (h, w) = (ho, wo);
        }
        2 * macs
    }

    /// A weight-standardised conv with this config's epsilon and style.
    pub(crate) fn conv(
        &self,
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        device: &Device,
    ) -> StdConv2d {
        StdConv2d::new(
            channels,
            kernel,
            stride,
            self.std_conv_eps,
            self.std_conv,
            device,
        )
    }

    /// A GroupNorm (+ ReLU when `act`) with this config's groups and epsilon.
    pub(crate) fn norm(
        &self,
        channels: usize,
        act: bool,
        zero_scale: bool,
        device: &Device,
    ) -> GroupNormAct {
        GroupNormAct::new(
            channels,
            self.norm_groups,
            self.norm_eps,
            act,
            zero_scale,
            device,
        )
    }
}
