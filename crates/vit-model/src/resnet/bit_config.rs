//! [`BitConfig`]: BiT's ResNetV2 as numbers (depths, widths, norms, epsilons), what follows
//! from them (channels, parameters, FLOPs), the presets of timm's `resnetv2_*_bit` family,
//! and the layers it makes.

use burn::config::Config;
use burn::tensor::Device;

use super::group_norm::GroupNormAct;
use super::std_conv::{StdConv2d, StdConvStyle};
use crate::error::VitError;

/// Configuration of a BiT ResNetV2 (timm `ResNetV2(preact=True, stem_type="fixed")` with
/// `StdConv2d(eps=1e-8)`, as `_create_resnetv2_bit` builds it). Stage `i` outputs
/// `channels[i] * width_factor` channels through bottlenecks a quarter as wide; the first stage
/// keeps the stem's resolution (stride 4), each later one halves it. Defaults are
/// `resnetv2_50x1_bit`.
#[derive(Config, Debug, PartialEq)]
pub struct BitConfig {
    /// Pre-activation bottlenecks per stage (timm `layers`). Default: `[3, 4, 6, 3]` (R50).
    #[config(default = "vec![3, 4, 6, 3]")]
    pub layers: Vec<usize>,
    /// Output channels of each stage before the width factor (timm `channels`).
    /// Default: `[256, 512, 1024, 2048]`.
    #[config(default = "vec![256, 512, 1024, 2048]")]
    pub channels: Vec<usize>,
    /// Multiplies every width, the stem's too (the `x3` of `R50x3`; timm `width_factor`).
    /// Default: `1`.
    #[config(default = 1)]
    pub width_factor: usize,
    /// Stem channels before the width factor (timm `stem_chs`). Default: `64`.
    #[config(default = 64)]
    pub stem_width: usize,
    /// Input image channels. Default: `3`.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Classes of the head; `0` for none (the pooled features). Default: `1000`.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// The input size the model is trained and counted at (`info`'s FLOPs, the data
    /// pipeline); any size runs. Default: `[224, 224]`.
    #[config(default = "[224, 224]")]
    pub image_size: [usize; 2],
    /// GroupNorm groups. Default: `32`.
    #[config(default = 32)]
    pub norm_groups: usize,
    /// GroupNorm epsilon. Default: `1e-5` (timm's `GroupNormAct`).
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Weight standardisation epsilon, inside the square root (timm's `StdConv2d`).
    /// Default: `1e-8` (timm's BiT models).
    #[config(default = 1e-8)]
    pub std_conv_eps: f64,
    /// Dropout before the head (timm `drop_rate`). Default: `0`.
    #[config(default = 0.0)]
    pub drop_rate: f64,
    /// Start each block's last convolution at zero, so that a block starts as the identity
    /// (timm `zero_init_last`; off for BiT). Default: `false`.
    #[config(default = false)]
    pub zero_init_last: bool,
}

/// timm's `make_divisible(v, 8)`: rounded to a multiple of 8, never below 90% of `v`.
fn make_divisible(v: f64) -> usize {
    let d = 8.0;
    let mut n = (d as usize).max(((v + d / 2.0) / d) as usize * d as usize);
    if (n as f64) < 0.9 * v {
        n += d as usize;
    }
    n
}

/// timm's BiT models: (name, layers, width factor).
const PRESETS: &[(&str, [usize; 4], usize)] = &[
    ("resnetv2_50x1_bit", [3, 4, 6, 3], 1),
    ("resnetv2_50x3_bit", [3, 4, 6, 3], 3),
    ("resnetv2_101x1_bit", [3, 4, 23, 3], 1),
    ("resnetv2_101x3_bit", [3, 4, 23, 3], 3),
    ("resnetv2_152x2_bit", [3, 8, 36, 3], 2),
    ("resnetv2_152x4_bit", [3, 8, 36, 3], 4),
];

/// The small BiT-style ResNets for CPU work (not timm models; half R50's widths, the least
/// that GroupNorm's 32 groups allow, at depths 14, 26 and 50): (name, layers, channels, stem
/// width).
const SMALL: &[(&str, [usize; 4], [usize; 4], usize)] = &[
    ("bit_tiny", [1, 1, 1, 1], [128, 256, 512, 1024], 32),
    ("bit_small", [2, 2, 2, 2], [128, 256, 512, 1024], 32),
    ("bit_base", [3, 4, 6, 3], [128, 256, 512, 1024], 32),
];

/// The BiT preset names, timm's first.
pub fn bit_preset_names() -> Vec<&'static str> {
    PRESETS
        .iter()
        .map(|p| p.0)
        .chain(SMALL.iter().map(|p| p.0))
        .collect()
}

/// A BiT preset by name (timm's `resnetv2_50x1_bit` ... `resnetv2_152x4_bit`, or the small
/// `bit_tiny`, `bit_small`, `bit_base`).
pub fn bit_preset(name: &str) -> Result<BitConfig, VitError> {
    if let Some(&(_, layers, wf)) = PRESETS.iter().find(|p| p.0 == name) {
        return Ok(BitConfig::new()
            .with_layers(layers.to_vec())
            .with_width_factor(wf));
    }
    if let Some(&(_, layers, channels, stem)) = SMALL.iter().find(|p| p.0 == name) {
        return Ok(BitConfig::new()
            .with_layers(layers.to_vec())
            .with_channels(channels.to_vec())
            .with_stem_width(stem));
    }
    Err(VitError::UnknownPreset {
        name: name.to_string(),
        known: bit_preset_names().join(", "),
    })
}

impl BitConfig {
    /// Channels of the stem.
    pub fn stem_channels(&self) -> usize {
        make_divisible((self.stem_width * self.width_factor) as f64)
    }

    /// Output channels of stage `i`.
    pub fn stage_channels(&self, i: usize) -> usize {
        make_divisible((self.channels[i] * self.width_factor) as f64)
    }

    /// Channels of the pooled features (the head's input).
    pub fn num_features(&self) -> usize {
        match self.layers.len() {
            0 => self.stem_channels(),
            n => self.stage_channels(n - 1),
        }
    }

    /// Checks the options; messages name the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.layers.is_empty() || self.layers.contains(&0) {
            return Err(format!(
                "layers = {:?}: every stage needs at least one block",
                self.layers
            ));
        }
        if self.channels.len() < self.layers.len() {
            return Err(format!(
                "channels = {:?}: one per stage of layers = {:?}",
                self.channels, self.layers
            ));
        }
        if self.width_factor == 0 || self.in_channels == 0 || self.norm_groups == 0 {
            return Err("width_factor, in_channels and norm_groups must be positive".into());
        }
        let mut widths = vec![self.stem_channels()];
        for i in 0..self.layers.len() {
            widths.push(self.stage_channels(i));
            widths.push(self.bottleneck_channels(i));
        }
        if let Some(w) = widths.iter().find(|w| !w.is_multiple_of(self.norm_groups)) {
            // The caller puts `model.` before the message: it starts with the keys.
            return Err(format!(
                "channels = {:?} and stem_width = {}: a width of {w} channels (a stage's, its \
                 bottlenecks' quarter of it, or the stem's, times width_factor) is not a \
                 multiple of norm_groups = {}",
                self.channels, self.stem_width, self.norm_groups
            ));
        }
        if !(0.0..1.0).contains(&self.drop_rate) {
            return Err(format!("drop_rate = {}: must be in [0, 1)", self.drop_rate));
        }
        for (name, v) in [
            ("norm_eps", self.norm_eps),
            ("std_conv_eps", self.std_conv_eps),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} = {v}: must be positive"));
            }
        }
        Ok(())
    }

    /// Bottleneck (middle) channels of stage `i`'s blocks.
    pub fn bottleneck_channels(&self, i: usize) -> usize {
        make_divisible(self.stage_channels(i) as f64 * 0.25)
    }

    /// Every block of every stage: `(stage, [c_in, c_out], stride, first of its stage)`.
    pub(crate) fn blocks(&self) -> Vec<(usize, [usize; 2], usize, bool)> {
        let mut c_in = self.stem_channels();
        let mut out = Vec::new();
        for (i, &n) in self.layers.iter().enumerate() {
            let c_out = self.stage_channels(i);
            for j in 0..n {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                // timm's ResNetStage gives block 0 the projection, whatever the widths.
                out.push((i, [c_in, c_out], stride, j == 0));
                c_in = c_out;
            }
        }
        out
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let norm = |c: usize| 2 * c;
        let stem = self.in_channels * self.stem_channels() * 49;
        let blocks: usize = self
            .blocks()
            .into_iter()
            .map(|(i, [c_in, c_out], _, project)| {
                let mid = self.bottleneck_channels(i);
                norm(c_in)
                    + c_in * mid
                    + norm(mid)
                    + mid * mid * 9
                    + norm(mid)
                    + mid * c_out
                    + if project { c_in * c_out } else { 0 }
            })
            .sum();
        let f = self.num_features();
        let head = if self.num_classes > 0 {
            f * self.num_classes + self.num_classes
        } else {
            0
        };
        stem + blocks + norm(f) + head
    }

    /// Multiply-accumulates of the convolutions and the head for one image of `image_size`,
    /// times two (normalisation, activations and pooling left out, as for the ViT).
    pub fn flops_per_image(&self, image_size: [usize; 2]) -> u64 {
        // The stem: 7x7/2 with padding 3, then zero padding 1 and a 3x3/2 max-pool.
        let conv_out = |s: usize, k: usize, stride: usize| {
            let p = ((stride - 1) + (k - 1)) / 2;
            (s + 2 * p - k) / stride + 1
        };
        let [mut h, mut w] = image_size.map(|s| conv_out(s, 7, 2));
        let mut macs = (h * w * 49 * self.in_channels * self.stem_channels()) as u64;
        [h, w] = [h, w].map(|s| (s + 2 - 3) / 2 + 1);
        for (i, [c_in, c_out], stride, project) in self.blocks() {
            let mid = self.bottleneck_channels(i);
            let (ho, wo) = (conv_out(h, 3, stride), conv_out(w, 3, stride));
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
        macs += (self.num_features() * self.num_classes) as u64;
        2 * macs
    }

    /// A weight-standardised conv with BiT's padding and this config's epsilon.
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
            StdConvStyle::Timm,
            device,
        )
        .with_fixed_padding()
    }

    /// A GroupNorm + ReLU (pre-activation norms always have the ReLU).
    pub(crate) fn norm(&self, channels: usize, device: &Device) -> GroupNormAct {
        GroupNormAct::new(
            channels,
            self.norm_groups,
            self.norm_eps,
            true,
            false,
            device,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_is_timms() {
        // timm.layers.make_divisible(v, 8)
        assert_eq!(make_divisible(64.0), 64);
        assert_eq!(make_divisible(192.0), 192);
        assert_eq!(make_divisible(12.0), 16);
        assert_eq!(make_divisible(3.0), 8);
        assert_eq!(make_divisible(100.0), 104);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = BitConfig::new().with_layers(vec![]).validate().unwrap_err();
        assert!(e.starts_with("layers"), "{e}");
        let e = BitConfig::new()
            .with_layers(vec![1, 1, 1, 1, 1])
            .validate()
            .unwrap_err();
        assert!(e.starts_with("channels"), "{e}");
        let e = BitConfig::new().with_stem_width(40).validate().unwrap_err();
        assert!(e.contains("norm_groups"), "{e}");
        assert!(bit_preset("resnetv2_50x2_bit").is_err());
        for name in bit_preset_names() {
            bit_preset(name).unwrap().validate().unwrap();
        }
    }
}
