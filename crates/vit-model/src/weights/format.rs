//! Which checkpoint format a file holds, and reading any of them into timm names.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::StateDict;
use super::{hf, jax, npz, pytorch, safetensors};
use crate::error::VitError;

/// The naming scheme (and layout) of a checkpoint. Containers (safetensors, PyTorch zip,
/// npz) are told apart by the file's extension; the scheme by the keys inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightFormat {
    /// timm's `VisionTransformer` state dict (also what vit writes), optionally wrapped
    /// (`{"model": ...}`, `{"state_dict": ...}`, `module.` prefixes).
    Timm,
    /// HF transformers `ViTModel` / `ViTForImageClassification`.
    HfVit,
    /// HF transformers `Dinov2Model`.
    HfDinov2,
    /// The original JAX `.npz` checkpoints (`ViT-B_16.npz`).
    Jax,
}

impl WeightFormat {
    /// Every format, in the order `--weights-format` lists them.
    pub const ALL: [WeightFormat; 4] = [Self::Timm, Self::HfVit, Self::HfDinov2, Self::Jax];

    /// The name used on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Timm => "timm",
            Self::HfVit => "hf-vit",
            Self::HfDinov2 => "hf-dinov2",
            Self::Jax => "jax",
        }
    }

    /// The key whose presence identifies the format (its prefix is the checkpoint's wrapper).
    fn marker(self) -> &'static str {
        match self {
            Self::Timm => "patch_embed.proj.weight",
            Self::HfVit | Self::HfDinov2 => hf::MARKER,
            Self::Jax => jax::MARKER,
        }
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WeightFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!("unknown weights format `{s}`; expected timm, hf-vit, hf-dinov2 or jax")
            })
    }
}

/// The prefix in front of `marker` in some key (`""`, `"model."`, `"vit."`, `"opt/target/"`).
pub(super) fn prefix_of<'a>(dict: &'a StateDict, marker: &str) -> Option<&'a str> {
    dict.keys()
        .filter_map(|k| k.strip_suffix(marker))
        .min_by_key(|p| p.len())
}

/// The format the keys say the checkpoint is in, with the prefix its weights sit under.
fn detect(dict: &StateDict) -> Option<(WeightFormat, String)> {
    if let Some(p) = prefix_of(dict, jax::MARKER) {
        return Some((WeightFormat::Jax, p.to_string()));
    }
    if let Some(p) = prefix_of(dict, hf::MARKER) {
        let dinov2 = dict
            .keys()
            .any(|k| k.contains("layer_scale1.lambda1") || k.ends_with("embeddings.mask_token"));
        let format = if dinov2 {
            WeightFormat::HfDinov2
        } else {
            WeightFormat::HfVit
        };
        return Some((format, p.to_string()));
    }
    prefix_of(dict, WeightFormat::Timm.marker()).map(|p| (WeightFormat::Timm, p.to_string()))
}

/// Reads the tensors of a checkpoint file as they are named there (safetensors, PyTorch
/// `.pth`/`.pt`/`.bin`, or `.npz`, by extension).
pub fn read_container(path: &Path) -> Result<StateDict, VitError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => safetensors::read_safetensors(path),
        "pth" | "pt" | "bin" | "ckpt" => pytorch::read_pytorch(path),
        "npz" => npz::read_npz(path),
        _ => Err(VitError::WeightsFile {
            path: path.to_path_buf(),
            message: "unknown checkpoint type; expected a .safetensors, .pth / .pt / .bin \
                      (PyTorch) or .npz (JAX) file"
                .into(),
        }),
    }
}

/// Reads a checkpoint in any supported format and translates it into timm names and
/// layouts. The format is detected from the keys unless `format` forces one. Returns the
/// state dict and the format it was read as.
pub fn read_weights(
    path: &Path,
    format: Option<WeightFormat>,
) -> Result<(StateDict, WeightFormat), VitError> {
    let dict = read_container(path)?;
    let (format, prefix) = match format {
        Some(forced) => {
            let prefix = prefix_of(&dict, forced.marker()).unwrap_or("").to_string();
            (forced, prefix)
        }
        None => detect(&dict).ok_or_else(|| {
            let sample: Vec<&str> = dict.keys().take(5).map(String::as_str).collect();
            VitError::WeightsFile {
                path: path.to_path_buf(),
                message: format!(
                    "cannot tell the checkpoint's format: no key ends with `{}` (timm), `{}` \
                     (HF ViT / DINOv2) or `{}` (JAX); first keys: {}",
                    WeightFormat::Timm.marker(),
                    hf::MARKER,
                    jax::MARKER,
                    sample.join(", ")
                ),
            }
        })?,
    };
    let dict = match format {
        WeightFormat::Timm => Ok(strip_wrapper(dict, &prefix)),
        WeightFormat::HfVit | WeightFormat::HfDinov2 => hf::hf_to_timm(dict, &prefix),
        WeightFormat::Jax => jax::jax_to_timm(dict, &prefix),
    }
    .map_err(|message| VitError::WeightsFile {
        path: path.to_path_buf(),
        message,
    })?;
    Ok((dict, format))
}

/// Keeps the tensors under `prefix` (a `{"model": state_dict, "optimizer": ...}` wrapper
/// holds more than the model), without the prefix.
pub(super) fn strip_wrapper(dict: StateDict, prefix: &str) -> StateDict {
    if prefix.is_empty() {
        return dict;
    }
    dict.into_iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v)))
        .collect()
}
