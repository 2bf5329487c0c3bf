//! Vision Transformer (Dosovitskiy et al., ICLR 2021) as Burn modules, numerically equal to timm.
//!
//! The module tree and parameter names follow timm's `VisionTransformer`, so a timm state dict
//! maps onto it by name (see [`weights`]). Every architectural option is a field of
//! [`VitConfig`]; the paper's variants are presets ([`VitConfig::preset`]).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use vit_model::VitConfig;
//!
//! let device = Device::flex();
//! // ViT-B/16 at 224 px, 1000 classes: 86,567,656 parameters, as timm.
//! let config = VitConfig::preset("vit_base_patch16_224").unwrap();
//! assert_eq!(config.num_params(), 86_567_656);
//!
//! // A smaller model for the example: 2 blocks at 32 px.
//! let model = VitConfig::preset("vit_tiny_patch16_224")
//!     .unwrap()
//!     .with_image_size([32, 32])
//!     .with_depth(2)
//!     .with_num_classes(10)
//!     .init(&device);
//! let images = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
//! let logits = model.forward(images).unwrap();
//! assert_eq!(logits.dims(), [2, 10]);
//! ```

pub mod attention;
pub mod block;
pub mod config;
pub mod device;
pub mod drop_path;
pub mod error;
pub mod hub;
pub mod layer_scale;
pub mod mlp;
pub mod model;
pub mod norm;
pub mod patch_embed;
pub mod pos_embed;
pub mod preprocessing;
pub mod preset;
pub mod resnet;
pub mod vit;
pub mod weights;

pub use config::{Pool, VitConfig};
pub use device::{
    DEVICE_NAMES, DeviceName, GpuAdapter, auto_device_name, available_devices, device_from_name,
    gpu_adapters, host_device, parse_device_name,
};
pub use error::VitError;
pub use model::{Family, Model, ModelConfig, all_preset_names, load_pretrained_model};
pub use pos_embed::{ResampleMode, resample_pos_embed};
pub use preprocessing::{CropMode, Interpolation, Preprocessing};
pub use vit::{VisionTransformer, VitOutput};
pub use weights::{PretrainedOptions, WeightFormat, load_pretrained};
