//! ResNetV2 in both of the paper's uses, over the layers they share (weight-standardised
//! convolutions, GroupNorm, TF "SAME" padding, the 7x7 stem):
//!
//! - **the hybrid's backbone** (section 3.1): the patches are cut from a ResNet's feature map
//!   instead of the image. Built as timm's `vision_transformer_hybrid.py` builds it: a
//!   ResNetV2 without pre-activation (`resnetv2.py`'s `Bottleneck`), convolutions with
//!   "SAME" padding. Parameter names are timm's, under `patch_embed.backbone`.
//! - **BiT** (Kolesnikov et al. 2020), the paper's ResNet baseline (section 4.1, Figure 5):
//!   timm's `resnetv2_*_bit` models, pre-activation bottlenecks and the "fixed" padding of
//!   the original BiT code; a classifier of its own ([`BitResNet`]).
//!
//! ```text
//! hybrid: image -> stem (7x7/2 StdConv, GroupNorm, ReLU, 3x3/2 max-pool, SAME)
//!               -> stages of Bottleneck -> feature map [B, C, H/s, W/s] -> patch_embed.proj
//! BiT:    image -> stem (7x7/2 StdConv, pad 1, 3x3/2 max-pool) -> stages of PreActBottleneck
//!               -> GroupNorm + ReLU -> global average pool -> head (1x1 conv) -> logits
//! ```

pub mod backbone;
pub mod bit;
pub mod bit_config;
pub mod bottleneck;
pub mod config;
pub mod group_norm;
pub mod preact_bottleneck;
pub mod same_pad;
pub mod std_conv;
pub mod stem;

pub use backbone::{ResNetStage, ResNetV2};
pub use bit::{BitResNet, BitStage};
pub use bit_config::{BitConfig, bit_preset, bit_preset_names};
pub use bottleneck::{Bottleneck, DownsampleConv};
pub use config::ResNetConfig;
pub use group_norm::GroupNormAct;
pub use preact_bottleneck::{PreActBottleneck, PreActDownsample};
pub use std_conv::{StdConv2d, StdConvStyle};
pub use stem::{FixedStem, Stem};
