//! A pretrained checkpoint loaded into a model built for it: head and grid taken from the
//! file, then the model resized to the requested resolution (timm's `pretrained=True` path).

use std::path::Path;

use burn::tensor::{Device, TensorData};

use super::{StateDict, WeightFormat, load_state_dict, read_weights};
use crate::config::VitConfig;
use crate::error::VitError;
use crate::pos_embed::ResampleMode;
use crate::vit::VisionTransformer;

/// How [`load_pretrained`] treats a checkpoint.
#[derive(Debug, Clone)]
pub struct PretrainedOptions {
    /// Force a format instead of detecting it from the keys. Default: detect.
    pub format: Option<WeightFormat>,
    /// How position embeddings are resampled when the requested image size gives another
    /// patch grid than the checkpoint's. Default: [`ResampleMode::Timm`].
    pub resample: ResampleMode,
    /// Fine-tuning: drop the checkpoint's head and pre-logits layer and attach a
    /// zero-initialised `Linear(D, K)` for `K` classes (the paper's section 3.2). Default:
    /// keep the checkpoint's head (as many classes as it has; none for a backbone).
    pub new_head: Option<usize>,
}

impl Default for PretrainedOptions {
    fn default() -> Self {
        Self {
            format: None,
            resample: ResampleMode::Timm,
            new_head: None,
        }
    }
}

/// Loads a checkpoint in any supported format into the architecture `config` describes.
/// `path` may be a model id (`hf-hub:ORG/NAME[@REV]`, `timm/NAME`): its weights file in the
/// local Hugging Face cache ([`crate::hub`]; [`crate::hub::resolve`] gives its architecture,
/// preprocessing and labels too).
///
/// From the file come the parts a preset cannot know: the head (classes, pre-logits layer),
/// whether blocks have LayerScale and qkv biases, and the position-embedding
/// grid (square grids are inferred from the token count). HF ViT checkpoints get HF's
/// LayerNorm epsilon (1e-12). The model is then resized to `config.image_size`, resampling
/// the position embeddings with `options.resample`. Every missing, unknown or wrong-shape
/// key is reported by name.
pub fn load_pretrained(
    config: &VitConfig,
    path: &Path,
    options: &PretrainedOptions,
    device: &Device,
) -> Result<VisionTransformer, VitError> {
    let (file, hub) = crate::hub::weights_path(path)?;
    let path = file.as_path();
    let (mut dict, format) = read_weights(path, options.format.or(hub.map(|r| r.format)))?;
    let in_file = |e: VitError| VitError::WeightsFile {
        path: path.to_path_buf(),
        message: format!("({format} format) {e}"),
    };
    let source = adapt(config, &mut dict, format, options.new_head).map_err(in_file)?;
    let model = source.try_init(device)?;
    let model = load_state_dict(model, dict).map_err(in_file)?;
    if source.image_size == config.image_size {
        Ok(model)
    } else {
        model
            .set_image_size(config.image_size, options.resample)
            .map_err(in_file)
    }
}

fn dims(dict: &StateDict, key: &str) -> Option<Vec<usize>> {
    dict.get(key).map(|t| t.shape().to_vec())
}

/// The config the checkpoint was saved from: `config` with the head, LayerScale, qkv bias
/// and grid of the file (and a zero head swapped in when fine-tuning).
fn adapt(
    config: &VitConfig,
    dict: &mut StateDict,
    format: WeightFormat,
    new_head: Option<usize>,
) -> Result<VitConfig, VitError> {
    let mut source = config.clone();
    if format == WeightFormat::HfVit {
        source.norm_eps = 1e-12;
    }
    if format == WeightFormat::Jax {
        // The ResNet as the JAX code computes it (timm's epsilons differ slightly).
        source.backbone = source.backbone.map(|b| b.with_jax_epsilons());
    }
    // Only where the file has the blocks; a file in the wrong format is then reported key by key.
    if dict.contains_key("blocks.0.attn.qkv.weight") {
        source.qkv_bias = dict.contains_key("blocks.0.attn.qkv.bias");
        source.layer_scale_init = if dict.contains_key("blocks.0.ls1.gamma") {
            // The value only matters for initialisation; the file overwrites it.
            source.layer_scale_init.or(Some(1.0))
        } else {
            None
        };
    }
    match new_head {
        Some(classes) => {
            dict.retain(|k, _| !k.starts_with("head.") && !k.starts_with("pre_logits."));
            let d = config.embed_dim;
            dict.insert(
                "head.weight".into(),
                TensorData::new(vec![0f32; classes * d], [classes, d]),
            );
            dict.insert(
                "head.bias".into(),
                TensorData::new(vec![0f32; classes], [classes]),
            );
            source.num_classes = classes;
            source.representation_size = None;
        }
        None => {
            // A head of the wrong rank is reported by the load, key by key.
            source.num_classes = dims(dict, "head.weight")
                .and_then(|s| s.first().copied())
                .unwrap_or(0);
            source.representation_size =
                dims(dict, "pre_logits.fc.weight").and_then(|s| s.first().copied());
        }
    }
    if let Some(shape) = dims(dict, "pos_embed") {
        let tokens = shape.get(1).copied().unwrap_or(0);
        let patches = tokens.saturating_sub(source.num_prefix_tokens());
        if patches != source.num_patches() {
            let side = (patches as f64).sqrt().round() as usize;
            if side * side != patches {
                return Err(VitError::Resample(format!(
                    "pos_embed has {patches} patch positions, which is not the {}x{} grid of \
                     the model nor a square grid",
                    source.grid_size()[0],
                    source.grid_size()[1]
                )));
            }
            let [ph, pw] = config.pixels_per_patch();
            source.image_size = [side * ph, side * pw];
        }
    }
    source.validate()?;
    Ok(source)
}
