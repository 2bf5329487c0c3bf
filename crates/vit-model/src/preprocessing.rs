//! How images are prepared for a model at evaluation, as timm's `pretrained_cfg` says it
//! (`mean`, `std`, `crop_pct`, `crop_mode`, `interpolation`), and the defaults of the
//! presets' timm configs.

use serde::{Deserialize, Serialize};

/// The resampling filter of a resize, by timm's names (`str_to_interp_mode`); every one is
/// Pillow's antialiased filter of that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Triangle filter (Pillow `BILINEAR`): torchvision's default.
    Bilinear,
    /// Keys cubic with a = -0.5 (Pillow `BICUBIC`): the ViT configs' choice.
    #[default]
    Bicubic,
    /// Box filter (Pillow `BOX`).
    Box,
    /// Hamming-windowed (Pillow `HAMMING`).
    Hamming,
    /// Lanczos-3 (Pillow `LANCZOS`).
    Lanczos,
}

impl std::str::FromStr for Interpolation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bilinear" => Ok(Self::Bilinear),
            "bicubic" => Ok(Self::Bicubic),
            "box" => Ok(Self::Box),
            "hamming" => Ok(Self::Hamming),
            "lanczos" => Ok(Self::Lanczos),
            other => Err(format!(
                "interpolation `{other}`: expected bilinear, bicubic, box, hamming or lanczos"
            )),
        }
    }
}

/// How the evaluation transform fits an image to the input size (timm's `crop_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CropMode {
    /// Short side to `size / crop_pct` (aspect kept), then the centre crop.
    #[default]
    Center,
    /// Both sides to `size / crop_pct` (aspect lost), then the centre crop.
    Squash,
    /// Long side to `size / crop_pct` (aspect kept), padded with the mean colour, then the
    /// centre crop.
    Border,
}

impl std::str::FromStr for CropMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "center" => Ok(Self::Center),
            "squash" => Ok(Self::Squash),
            "border" => Ok(Self::Border),
            other => Err(format!(
                "crop mode `{other}`: expected center, squash or border"
            )),
        }
    }
}

/// timm's default `crop_pct` (`timm.data.DEFAULT_CROP_PCT`), where a model's config has none.
pub const DEFAULT_CROP_PCT: f64 = 0.875;

/// ImageNet's mean and std (`IMAGENET_DEFAULT_MEAN` / `_STD`), used by DINOv2.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The evaluation preprocessing of a model (timm's `pretrained_cfg` fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Per-channel mean of pixels scaled to [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of pixels scaled to [0, 1].
    pub std: Vec<f32>,
    /// Fraction of the resized image the centre crop keeps.
    pub crop_pct: f64,
    /// How the image is fitted before the crop.
    pub crop_mode: CropMode,
    /// The resize's filter.
    pub interpolation: Interpolation,
}

impl Preprocessing {
    /// timm's config of the BiT ResNets (`resnetv2.py`'s `_cfg`, that of the 224-px
    /// `goog_in21k` weights): mean and std 0.5 (Inception's), crop_pct 0.875, bilinear.
    pub fn bit() -> Self {
        Self {
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
            crop_pct: DEFAULT_CROP_PCT,
            crop_mode: CropMode::Center,
            interpolation: Interpolation::Bilinear,
        }
    }

    /// What timm's config of a preset's default weights says (`vision_transformer.py`'s and
    /// `vision_transformer_hybrid.py`'s `_cfg`): mean and std 0.5, bicubic, crop_pct 0.9 at
    /// 224 px; at 384 px crop_pct 1.0 with `squash` (the `augreg` 384 fine-tunes); the /14
    /// presets at 518 px are DINOv2's shape, whose config has ImageNet's mean and std and
    /// crop_pct 1.0. The BiT ResNets (`resnetv2_*_bit`, `bit_*`) have `resnetv2.py`'s `_cfg`,
    /// that of their 224-px `goog_in21k` weights: mean and std 0.5, bilinear, crop_pct 0.875.
    pub fn for_preset(name: &str) -> Self {
        if crate::resnet::bit_preset_names().contains(&name) {
            return Self::bit();
        }
        let res = name
            .rsplit('_')
            .next()
            .and_then(|r| r.parse::<usize>().ok());
        let half = vec![0.5; 3];
        match res {
            Some(518) => Self {
                mean: IMAGENET_MEAN.to_vec(),
                std: IMAGENET_STD.to_vec(),
                crop_pct: 1.0,
                crop_mode: CropMode::Center,
                interpolation: Interpolation::Bicubic,
            },
            Some(384) => Self {
                mean: half.clone(),
                std: half,
                crop_pct: 1.0,
                crop_mode: CropMode::Squash,
                interpolation: Interpolation::Bicubic,
            },
            _ => Self {
                mean: half.clone(),
                std: half,
                crop_pct: 0.9,
                crop_mode: CropMode::Center,
                interpolation: Interpolation::Bicubic,
            },
        }
    }
}
