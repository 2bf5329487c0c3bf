//! The paper's hybrid (section 3.1): the patches are cut from a ResNet's feature map
//! instead of the image. Built as timm's `vision_transformer_hybrid.py` builds it: a
//! ResNetV2 without pre-activation (`resnetv2.py`'s `Bottleneck`), weight-standardised
//! convolutions with TF "SAME" padding, GroupNorm. Parameter names are timm's, under
//! `patch_embed.backbone`.
//!
//! ```text
//! image -> stem (7x7/2 StdConv, GroupNorm, ReLU, 3x3/2 max-pool) -> stages of bottlenecks
//!       -> feature map [B, C, H/s, W/s] -> patch_embed.proj (P x P conv) -> tokens
//! ```

pub mod bottleneck;
pub mod config;
pub mod group_norm;
pub mod resnet;
pub mod same_pad;
pub mod std_conv;
pub mod stem;

pub use bottleneck::{Bottleneck, DownsampleConv};
pub use config::ResNetConfig;
pub use group_norm::GroupNormAct;
pub use resnet::{ResNetStage, ResNetV2};
pub use std_conv::{StdConv2d, StdConvStyle};
pub use stem::Stem;
