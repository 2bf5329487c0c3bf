//! Hugging Face `transformers` checkpoints translated into timm names: `ViTModel` /
//! `ViTForImageClassification` and `Dinov2Model` (as their `safetensors` or
//! `pytorch_model.bin`).
//!
//! Both generations of HF names are read: transformers 4's (`encoder.layer.{i}.attention.
//! attention.query`, what Hub checkpoints hold) and transformers 5's (`layers.{i}.attention.
//! q_proj` for ViT, `encoder.layer.{i}.attention.q_proj` for DINOv2). The differences from
//! timm are names, plus separate `query` / `key` / `value` Linears that timm
//! fuses into one `qkv` (rows `[q; k; v]`). HF ViT's pooler (Linear + tanh on the class
//! token) is timm's pre-logits layer; DINOv2's `layer_scale{1,2}.lambda1` are LayerScale
//! `gamma`s; DINOv2's `mask_token` (only used in masked pretraining) is dropped.

use std::collections::BTreeMap;

use burn::tensor::TensorData;

use super::StateDict;
use super::layout::cat0;

/// The key that marks an HF ViT / DINOv2 checkpoint, and gives its prefix (`vit.`,
/// `dinov2.`, or none).
pub const MARKER: &str = "embeddings.patch_embeddings.projection.weight";

/// HF name (after the prefix) -> timm name, for the tensors that map one to one.
fn rename(rest: &str) -> Option<String> {
    let direct = match rest {
        "embeddings.cls_token" => Some("cls_token"),
        "embeddings.position_embeddings" => Some("pos_embed"),
        "embeddings.patch_embeddings.projection.weight" => Some("patch_embed.proj.weight"),
        "embeddings.patch_embeddings.projection.bias" => Some("patch_embed.proj.bias"),
        "layernorm.weight" => Some("norm.weight"),
        "layernorm.bias" => Some("norm.bias"),
        "pooler.dense.weight" => Some("pre_logits.fc.weight"),
        "pooler.dense.bias" => Some("pre_logits.fc.bias"),
        _ => None,
    };
    if let Some(name) = direct {
        return Some(name.to_string());
    }
    let rest = rest.strip_prefix("encoder.layer.")?;
    let (index, param) = rest.split_once('.')?;
    let index: usize = index.parse().ok()?;
    let timm = match param {
        // ViT
        "layernorm_before.weight" => "norm1.weight",
        "layernorm_before.bias" => "norm1.bias",
        "layernorm_after.weight" => "norm2.weight",
        "layernorm_after.bias" => "norm2.bias",
        "intermediate.dense.weight" => "mlp.fc1.weight",
        "intermediate.dense.bias" => "mlp.fc1.bias",
        "output.dense.weight" => "mlp.fc2.weight",
        "output.dense.bias" => "mlp.fc2.bias",
        // DINOv2
        "norm1.weight" | "norm1.bias" | "norm2.weight" | "norm2.bias" | "mlp.fc1.weight"
        | "mlp.fc1.bias" | "mlp.fc2.weight" | "mlp.fc2.bias" => param,
        "layer_scale1.lambda1" => "ls1.gamma",
        "layer_scale2.lambda1" => "ls2.gamma",
        // Both
        "attention.output.dense.weight" => "attn.proj.weight",
        "attention.output.dense.bias" => "attn.proj.bias",
        _ => return None,
    };
    Some(format!("blocks.{index}.{timm}"))
}

/// Translates an HF ViT or DINOv2 state dict (keys under `prefix`) into timm names. Keys
/// that have no timm counterpart keep their HF names, so the load reports them by name.
pub fn hf_to_timm(dict: StateDict, prefix: &str) -> Result<StateDict, String> {
    let mut out = StateDict::new();
    // blocks.i.attn.{weight,bias} -> [query, key, value] parts, fused below.
    let mut qkv: BTreeMap<(usize, &'static str), [Option<TensorData>; 3]> = BTreeMap::new();
    for (key, value) in dict {
        let Some(rest) = key.strip_prefix(prefix).map(legacy_name) else {
            match key.as_str() {
                // ViTForImageClassification's head sits outside the `vit.` prefix.
                "classifier.weight" => out.insert("head.weight".into(), value),
                "classifier.bias" => out.insert("head.bias".into(), value),
                _ => out.insert(key, value),
            };
            continue;
        };
        let rest = rest.as_str();
        if rest == "embeddings.mask_token" {
            continue;
        }
        if let Some(part) = qkv_part(rest) {
            let (index, which, kind) = part;
            qkv.entry((index, kind)).or_default()[which] = Some(value);
            continue;
        }
        match rename(rest) {
            Some(name) => out.insert(name, value),
            None => out.insert(key, value),
        };
    }
    for ((index, kind), parts) in qkv {
        let name = format!("blocks.{index}.attn.qkv.{kind}");
        match parts {
            [Some(q), Some(k), Some(v)] => {
                let fused = cat0(&[q, k, v]).map_err(|e| {
                    format!("layer {index}'s attention query/key/value {kind}s: {e}")
                })?;
                out.insert(name, fused);
            }
            // An incomplete triple: keep what is there under HF names for the report.
            parts => {
                for (part, which) in parts.into_iter().zip(["query", "key", "value"]) {
                    if let Some(t) = part {
                        out.insert(
                            format!(
                                "{prefix}encoder.layer.{index}.attention.attention.{which}.{kind}"
                            ),
                            t,
                        );
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A transformers 5 name in transformers 4's spelling (the inverse of transformers 5's
/// `ViTModel` / `Dinov2Model` conversion rules); other names unchanged.
fn legacy_name(rest: &str) -> String {
    let mut name = match rest.strip_prefix("layers.") {
        Some(r) => format!("encoder.layer.{r}"),
        None => rest.to_string(),
    };
    for (new, old) in [
        ("attention.q_proj.", "attention.attention.query."),
        ("attention.k_proj.", "attention.attention.key."),
        ("attention.v_proj.", "attention.attention.value."),
        ("attention.o_proj.", "attention.output.dense."),
    ] {
        name = name.replace(new, old);
    }
    name
}

/// `encoder.layer.{i}.attention.attention.{query,key,value}.{weight,bias}` ->
/// (i, 0/1/2, "weight"/"bias").
fn qkv_part(rest: &str) -> Option<(usize, usize, &'static str)> {
    let rest = rest.strip_prefix("encoder.layer.")?;
    let (index, param) = rest.split_once('.')?;
    let param = param.strip_prefix("attention.attention.")?;
    let (which, kind) = param.split_once('.')?;
    let which = ["query", "key", "value"].iter().position(|w| *w == which)?;
    let kind = match kind {
        "weight" => "weight",
        "bias" => "bias",
        _ => return None,
    };
    Some((index.parse().ok()?, which, kind))
}
