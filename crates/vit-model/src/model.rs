//! [`Model`] and [`ModelConfig`]: the paper's three families behind one type, so that the
//! trainer, evaluation, prediction and export take any of them. A plain ViT and a hybrid are
//! both a [`VisionTransformer`] (the hybrid has a `backbone`); the ResNet baseline is BiT's
//! [`BitResNet`].

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::VitConfig;
use crate::error::VitError;
use crate::preset::preset_names;
use crate::resnet::{BitConfig, BitResNet, bit_preset, bit_preset_names};
use crate::vit::VisionTransformer;
use crate::weights::{
    PretrainedOptions, StateDict, TimmNamed, WeightFormat, load_pretrained, load_state_dict,
    read_bit_weights,
};

/// The paper's families (section 4.1, Figure 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// BiT ResNets.
    ResNet,
    /// A ResNet stem under a ViT.
    Hybrid,
    /// The plain Vision Transformer.
    Vit,
}

impl Family {
    /// The paper's name: `ResNet`, `Hybrid`, `ViT`.
    pub fn name(self) -> &'static str {
        match self {
            Family::ResNet => "ResNet",
            Family::Hybrid => "Hybrid",
            Family::Vit => "ViT",
        }
    }
}

/// The architecture of a [`Model`].
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per run
pub enum ModelConfig {
    /// A plain ViT or a hybrid.
    Vit(VitConfig),
    /// A BiT ResNetV2.
    Bit(BitConfig),
}

impl From<VitConfig> for ModelConfig {
    fn from(c: VitConfig) -> Self {
        Self::Vit(c)
    }
}

impl From<BitConfig> for ModelConfig {
    fn from(c: BitConfig) -> Self {
        Self::Bit(c)
    }
}

/// Every preset of every family: the ViTs and hybrids, then the BiT ResNets.
pub fn all_preset_names() -> Vec<String> {
    let mut names = preset_names();
    names.extend(bit_preset_names().into_iter().map(String::from));
    names
}

impl ModelConfig {
    /// A preset of any family by name (`vit_base_patch16_224`, `resnetv2_50x1_bit`, ...).
    pub fn preset(name: &str) -> Result<Self, VitError> {
        if let Ok(c) = VitConfig::preset(name) {
            return Ok(Self::Vit(c));
        }
        bit_preset(name)
            .map(Self::Bit)
            .map_err(|_| VitError::UnknownPreset {
                name: name.to_string(),
                known: all_preset_names().join(", "),
            })
    }

    /// Which of the paper's families this is.
    pub fn family(&self) -> Family {
        match self {
            Self::Vit(c) if c.backbone.is_some() => Family::Hybrid,
            Self::Vit(_) => Family::Vit,
            Self::Bit(_) => Family::ResNet,
        }
    }

    /// The ViT's config, if this is one (plain or hybrid).
    pub fn as_vit(&self) -> Option<&VitConfig> {
        match self {
            Self::Vit(c) => Some(c),
            Self::Bit(_) => None,
        }
    }

    /// The input size the model is built (ViT) or trained and counted (BiT) at.
    pub fn image_size(&self) -> [usize; 2] {
        match self {
            Self::Vit(c) => c.image_size,
            Self::Bit(c) => c.image_size,
        }
    }

    /// Input image channels.
    pub fn in_channels(&self) -> usize {
        match self {
            Self::Vit(c) => c.in_channels,
            Self::Bit(c) => c.in_channels,
        }
    }

    /// Classes of the head (`0`: none).
    pub fn num_classes(&self) -> usize {
        match self {
            Self::Vit(c) => c.num_classes,
            Self::Bit(c) => c.num_classes,
        }
    }

    /// The same architecture at `size` (a ViT is built at it; a ResNet is trained and counted
    /// at it).
    pub fn with_image_size(self, size: [usize; 2]) -> Self {
        match self {
            Self::Vit(c) => Self::Vit(c.with_image_size(size)),
            Self::Bit(c) => Self::Bit(c.with_image_size(size)),
        }
    }

    /// The same architecture with `classes` outputs.
    pub fn with_num_classes(self, classes: usize) -> Self {
        match self {
            Self::Vit(c) => Self::Vit(c.with_num_classes(classes)),
            Self::Bit(c) => Self::Bit(c.with_num_classes(classes)),
        }
    }

    /// Trainable parameters, counted from the config (equal to timm's count).
    pub fn num_params(&self) -> usize {
        match self {
            Self::Vit(c) => c.num_params(),
            Self::Bit(c) => c.num_params(),
        }
    }

    /// Multiply-adds x 2 of one forward pass at [`Self::image_size`], every convolution
    /// and matrix product counted exactly.
    pub fn flops_per_image(&self) -> u64 {
        match self {
            Self::Vit(c) => c.flops_per_image(),
            Self::Bit(c) => c.flops_per_image(c.image_size),
        }
    }

    /// Checks the options; messages name the field.
    pub fn validate(&self) -> Result<(), VitError> {
        match self {
            Self::Vit(c) => c.validate(),
            Self::Bit(c) => c.validate().map_err(VitError::InvalidConfig),
        }
    }

    /// Builds the model on `device` (initial values from the device's RNG).
    pub fn try_init(&self, device: &Device) -> Result<Model, VitError> {
        Ok(match self {
            Self::Vit(c) => Model::Vit(c.try_init(device)?),
            Self::Bit(c) => Model::Bit(c.try_init(device)?),
        })
    }

    /// Builds the model with its initial values drawn from `seed` on the host: one seed, one
    /// initial model on every backend.
    pub fn init_seeded(&self, seed: u64, device: &Device) -> Result<Model, VitError> {
        Ok(match self {
            Self::Vit(c) => Model::Vit(c.init_seeded(seed, device)?),
            Self::Bit(c) => Model::Bit(c.init_seeded(seed, device)?),
        })
    }
}

/// A model of any family. Parameter paths are timm's keys (the variant is not a level).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per run
pub enum Model {
    /// A plain ViT or a hybrid.
    Vit(VisionTransformer),
    /// A BiT ResNetV2.
    Bit(BitResNet),
}

impl TimmNamed for Model {
    fn stem_only(&self) -> bool {
        match self {
            Model::Vit(m) => m.stem_only(),
            Model::Bit(m) => m.stem_only(),
        }
    }
}

impl From<VisionTransformer> for Model {
    fn from(m: VisionTransformer) -> Self {
        Model::Vit(m)
    }
}

impl From<BitResNet> for Model {
    fn from(m: BitResNet) -> Self {
        Model::Bit(m)
    }
}

impl Model {
    /// Logits.
    ///
    /// # Shapes
    /// - images: `[B, C, H, W]`; a ViT takes its `image_size` only, a ResNet any size
    /// - output: `[B, num_classes]`
    pub fn forward(&self, images: Tensor<4>) -> Result<Tensor<2>, VitError> {
        match self {
            Model::Vit(m) => m.forward(images),
            Model::Bit(m) => {
                let dims = images.dims();
                if dims[1] != m.config.in_channels {
                    return Err(VitError::InputShape {
                        got: dims.to_vec(),
                        expected: format!(
                            "[batch, {}, height, width] (channels, height, width)",
                            m.config.in_channels
                        ),
                    });
                }
                Ok(m.forward(images))
            }
        }
    }

    /// The architecture it was built from.
    pub fn config(&self) -> ModelConfig {
        match self {
            Model::Vit(m) => ModelConfig::Vit(m.config.clone()),
            Model::Bit(m) => ModelConfig::Bit(m.config.clone()),
        }
    }

    /// The ViT, if this is one (plain or hybrid).
    pub fn as_vit(&self) -> Option<&VisionTransformer> {
        match self {
            Model::Vit(m) => Some(m),
            Model::Bit(_) => None,
        }
    }

    /// The ViT, if this is one.
    pub fn into_vit(self) -> Option<VisionTransformer> {
        match self {
            Model::Vit(m) => Some(m),
            Model::Bit(_) => None,
        }
    }

    /// The first convolution's weight `[out, in, kh, kw]`: the ViT's patch embedding (or the
    /// hybrid's stem), the ResNet's root convolution.
    pub fn first_conv_weight(&self) -> Tensor<4> {
        match self {
            Model::Vit(m) => match &m.patch_embed.backbone {
                Some(b) => b.stem.conv.weight.val(),
                None => m.patch_embed.proj.weight.val(),
            },
            Model::Bit(m) => m.stem.conv.weight.val(),
        }
    }
}

/// Loads pretrained weights for `config`'s architecture, as [`load_pretrained`] does for a
/// ViT; a BiT ResNet reads timm's safetensors / `.pth` (f32, f16, bf16) or the original BiT
/// `.npz`. With `options.new_head`, the head is replaced by a zero-initialised one of that
/// many classes (BiT's fine-tuning rule, and timm's for ViTs).
pub fn load_pretrained_model(
    config: &ModelConfig,
    path: &Path,
    options: &PretrainedOptions,
    device: &Device,
) -> Result<Model, VitError> {
    match config {
        ModelConfig::Vit(c) => Ok(Model::Vit(load_pretrained(c, path, options, device)?)),
        ModelConfig::Bit(c) => Ok(Model::Bit(load_pretrained_bit(c, path, options, device)?)),
    }
}

fn load_pretrained_bit(
    config: &BitConfig,
    path: &Path,
    options: &PretrainedOptions,
    device: &Device,
) -> Result<BitResNet, VitError> {
    let in_file = |message: String| VitError::WeightsFile {
        path: path.to_path_buf(),
        message,
    };
    match options.format {
        None | Some(WeightFormat::Timm) | Some(WeightFormat::Jax) => {}
        Some(other) => {
            return Err(in_file(format!(
                "the {other} format holds a ViT, not a BiT ResNet; expected timm (safetensors \
                 or .pth) or jax (a BiT .npz)"
            )));
        }
    }
    let mut dict: StateDict = read_bit_weights(path)?;
    if !dict.contains_key("stem.conv.weight") {
        let sample: Vec<&str> = dict.keys().take(5).map(String::as_str).collect();
        return Err(in_file(format!(
            "not a BiT ResNet checkpoint: no `stem.conv.weight` (timm) nor \
             `resnet/root_block/standardized_conv2d/kernel` (BiT .npz); first keys: {}",
            sample.join(", ")
        )));
    }
    let mut source = config.clone();
    match options.new_head {
        Some(classes) => {
            dict.retain(|k, _| !k.starts_with("head."));
            let f = config.num_features();
            dict.insert(
                "head.fc.weight".into(),
                TensorData::new(vec![0f32; classes * f], [classes, f, 1, 1]),
            );
            dict.insert(
                "head.fc.bias".into(),
                TensorData::new(vec![0f32; classes], [classes]),
            );
            source.num_classes = classes;
        }
        None => {
            source.num_classes = dict
                .get("head.fc.weight")
                .map_or(0, |t| t.shape().first().copied().unwrap_or(0));
        }
    }
    let model = source.try_init(device)?;
    load_state_dict(model, dict).map_err(|e| in_file(e.to_string()))
}
