//! The original BiT checkpoints (`BiT-M-R50x1.npz`, google-research/big_transfer) in timm
//! names and layouts, as timm's `resnetv2._load_weights` reads them.
//!
//! Under `resnet/`: `root_block/standardized_conv2d/kernel` (the stem), `group_norm/gamma|beta`
//! (the final norm), `head/conv2d/kernel|bias`, and per unit
//! `block{i}/unit{j:02d}/{a,b,c}/standardized_conv2d/kernel` (conv1-3),
//! `{a,b,c}/group_norm/gamma|beta` (norm1-3) and `a/proj/standardized_conv2d/kernel` (the
//! projection), numbered from 1. Kernels are HWIO (`[kh, kw, in, out]` -> timm
//! `[out, in, kh, kw]`).

use super::StateDict;
use super::layout::{permute, reshape};

/// The key that marks a BiT checkpoint (after its prefix).
pub const MARKER: &str = "root_block/standardized_conv2d/kernel";

/// Translates a BiT checkpoint (keys under `prefix`, usually `resnet/`) into timm names and
/// layouts. Keys with no timm counterpart keep their names, so the load reports them.
pub fn bit_to_timm(dict: StateDict, prefix: &str) -> Result<StateDict, String> {
    let mut out = StateDict::new();
    for (key, t) in dict {
        let Some(name) = key.strip_prefix(prefix) else {
            out.insert(key, t);
            continue;
        };
        let Some(timm) = timm_name(name) else {
            out.insert(key, t);
            continue;
        };
        let shape = t.shape().to_vec();
        let t = if name.ends_with("kernel") {
            if shape.len() != 4 {
                return Err(format!(
                    "array `{key}` has shape {shape:?}; expected 4 axes (an HWIO kernel)"
                ));
            }
            permute(&t, &[3, 2, 0, 1]).map_err(|e| format!("array `{key}` {e}"))?
        } else {
            // gamma / beta / bias: one value per channel, whatever axes the file gave them.
            let n = shape.iter().product();
            reshape(t, vec![n]).map_err(|e| format!("array `{key}` {e}"))?
        };
        out.insert(timm, t);
    }
    Ok(out)
}

/// The timm key of a BiT array name (without the prefix).
fn timm_name(name: &str) -> Option<String> {
    let fixed = match name {
        "root_block/standardized_conv2d/kernel" => Some("stem.conv.weight"),
        "group_norm/gamma" => Some("norm.weight"),
        "group_norm/beta" => Some("norm.bias"),
        "head/conv2d/kernel" => Some("head.fc.weight"),
        "head/conv2d/bias" => Some("head.fc.bias"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    // block{i}/unit{j:02d}/{rest}
    let mut parts = name.splitn(3, '/');
    let i: usize = parts.next()?.strip_prefix("block")?.parse().ok()?;
    let j: usize = parts.next()?.strip_prefix("unit")?.parse().ok()?;
    let (i, j) = (i.checked_sub(1)?, j.checked_sub(1)?);
    let layer = match parts.next()? {
        "a/proj/standardized_conv2d/kernel" => "downsample.conv.weight",
        "a/standardized_conv2d/kernel" => "conv1.weight",
        "b/standardized_conv2d/kernel" => "conv2.weight",
        "c/standardized_conv2d/kernel" => "conv3.weight",
        "a/group_norm/gamma" => "norm1.weight",
        "a/group_norm/beta" => "norm1.bias",
        "b/group_norm/gamma" => "norm2.weight",
        "b/group_norm/beta" => "norm2.bias",
        "c/group_norm/gamma" => "norm3.weight",
        "c/group_norm/beta" => "norm3.bias",
        _ => return None,
    };
    Some(format!("stages.{i}.blocks.{j}.{layer}"))
}

/// A BiT model's weights from any file [`read_container`](super::read_container) reads (timm
/// safetensors or `.pth`, f32/f16/bf16, or a BiT `.npz`), in timm names.
pub fn read_bit_weights(path: &std::path::Path) -> Result<StateDict, crate::VitError> {
    let dict = super::read_container(path)?;
    match super::format::prefix_of(&dict, MARKER).map(str::to_string) {
        Some(prefix) => bit_to_timm(dict, &prefix).map_err(|e| crate::VitError::WeightsFile {
            path: path.to_path_buf(),
            message: e,
        }),
        // timm's names, perhaps under a wrapper (`model.`, `module.`).
        None => {
            let wrapper = super::format::prefix_of(&dict, "stem.conv.weight")
                .unwrap_or("")
                .to_string();
            Ok(super::format::strip_wrapper(dict, &wrapper))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_timms() {
        assert_eq!(
            timm_name("block2/unit01/a/proj/standardized_conv2d/kernel").unwrap(),
            "stages.1.blocks.0.downsample.conv.weight"
        );
        assert_eq!(
            timm_name("block4/unit03/c/group_norm/beta").unwrap(),
            "stages.3.blocks.2.norm3.bias"
        );
        assert_eq!(timm_name("block0/unit01/a/group_norm/beta"), None);
        assert_eq!(timm_name("pre_logits/kernel"), None);
    }
}
