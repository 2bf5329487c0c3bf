//! The original JAX ViT checkpoints (`ViT-B_16.npz`, google-research/vision_transformer)
//! translated into timm names and layouts, as timm's `_load_weights` does.
//!
//! Layouts: the conv kernel is HWIO (`[ph, pw, C, D]` -> timm `[D, C, ph, pw]`), Dense
//! kernels are `[in, out]` (-> `[out, in]`), and attention keeps per-head kernels:
//! `query/key/value` `[D, heads, head_dim]` (fused into timm's `qkv` rows `[q; k; v]`), `out`
//! `[heads, head_dim, D]`.

use super::StateDict;
use super::layout::{cat0, permute, reshape, transpose};

/// The key that marks a JAX checkpoint, and gives its prefix (none, or `opt/target/`).
pub const MARKER: &str = "Transformer/posembed_input/pos_embedding";

/// Translates a JAX ViT checkpoint (keys under `prefix`) into timm names and layouts. Keys
/// with no timm counterpart keep their JAX names, so the load reports them by name.
pub fn jax_to_timm(mut dict: StateDict, prefix: &str) -> StateDict {
    let mut out = StateDict::new();
    let mut take = |name: &str| dict.remove(&format!("{prefix}{name}"));

    if let Some(k) = take("embedding/kernel") {
        out.insert("patch_embed.proj.weight".into(), permute(&k, &[3, 2, 0, 1]));
    }
    let direct = [
        ("embedding/bias", "patch_embed.proj.bias"),
        ("cls", "cls_token"),
        ("Transformer/posembed_input/pos_embedding", "pos_embed"),
        ("Transformer/encoder_norm/scale", "norm.weight"),
        ("Transformer/encoder_norm/bias", "norm.bias"),
        ("head/bias", "head.bias"),
        ("pre_logits/bias", "pre_logits.fc.bias"),
    ];
    for (jax, timm) in direct {
        if let Some(t) = take(jax) {
            out.insert(timm.into(), t);
        }
    }
    for (jax, timm) in [
        ("head/kernel", "head.weight"),
        ("pre_logits/kernel", "pre_logits.fc.weight"),
    ] {
        if let Some(t) = take(jax) {
            out.insert(timm.into(), transpose(&t));
        }
    }

    for i in 0.. {
        let block = format!("Transformer/encoderblock_{i}/");
        let attn = format!("{block}MultiHeadDotProductAttention_1/");
        let Some(q) = take(&format!("{attn}query/kernel")) else {
            break;
        };
        let b = format!("blocks.{i}.");
        for (ln, norm) in [("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")] {
            for (jax, timm) in [("scale", "weight"), ("bias", "bias")] {
                if let Some(t) = take(&format!("{block}{ln}/{jax}")) {
                    out.insert(format!("{b}{norm}.{timm}"), t);
                }
            }
        }
        // [D, h, dh] kernels -> [h*dh, D] rows, fused q; k; v.
        let rows = |t: burn::tensor::TensorData| {
            let d = t.shape()[0];
            let n = t.num_elements() / d;
            transpose(&reshape(t, vec![d, n]))
        };
        let k = take(&format!("{attn}key/kernel"));
        let v = take(&format!("{attn}value/kernel"));
        if let (Some(k), Some(v)) = (k, v) {
            out.insert(
                format!("{b}attn.qkv.weight"),
                cat0(&[rows(q), rows(k), rows(v)]),
            );
        }
        let biases: Vec<_> = ["query", "key", "value"]
            .iter()
            .filter_map(|w| take(&format!("{attn}{w}/bias")))
            .map(|t| {
                let n = t.num_elements();
                reshape(t, vec![n])
            })
            .collect();
        if biases.len() == 3 {
            out.insert(format!("{b}attn.qkv.bias"), cat0(&biases));
        }
        if let Some(o) = take(&format!("{attn}out/kernel")) {
            // [h, dh, D] -> [h*dh, D] -> [D, h*dh]
            let d = o.shape()[2];
            let n = o.num_elements() / d;
            out.insert(
                format!("{b}attn.proj.weight"),
                transpose(&reshape(o, vec![n, d])),
            );
        }
        if let Some(t) = take(&format!("{attn}out/bias")) {
            out.insert(format!("{b}attn.proj.bias"), t);
        }
        for (dense, fc) in [("Dense_0", "fc1"), ("Dense_1", "fc2")] {
            if let Some(t) = take(&format!("{block}MlpBlock_3/{dense}/kernel")) {
                out.insert(format!("{b}mlp.{fc}.weight"), transpose(&t));
            }
            if let Some(t) = take(&format!("{block}MlpBlock_3/{dense}/bias")) {
                out.insert(format!("{b}mlp.{fc}.bias"), t);
            }
        }
    }
    // Whatever is left has no timm counterpart.
    out.extend(dict);
    out
}
