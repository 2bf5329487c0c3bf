//! The original JAX ViT checkpoints (`ViT-B_16.npz`, google-research/vision_transformer)
//! translated into timm names and layouts, as timm's `_load_weights` does.
//!
//! Layouts: the conv kernel is HWIO (`[ph, pw, C, D]` -> timm `[D, C, ph, pw]`), Dense
//! kernels are `[in, out]` (-> `[out, in]`), and attention keeps per-head kernels:
//! `query/key/value` `[D, heads, head_dim]` (fused into timm's `qkv` rows `[q; k; v]`), `out`
//! `[heads, head_dim, D]`. A hybrid's ResNet (`R50+ViT-B_16.npz`) has `conv_root`,
//! `gn_root` and `block{i}/unit{j}/{conv,gn}{1,2,3}` (+ `conv_proj`, `gn_proj` on a stage's
//! first unit), numbered from 1.

use burn::tensor::TensorData;

use super::StateDict;
use super::layout::{cat0, permute, reshape, transpose};

/// The key that marks a JAX checkpoint, and gives its prefix (none, or `opt/target/`).
pub const MARKER: &str = "Transformer/posembed_input/pos_embedding";

/// Translates a JAX ViT checkpoint (keys under `prefix`) into timm names and layouts. Keys
/// with no timm counterpart keep their JAX names, so the load reports them by name. An array
/// whose shape the translation cannot take (a 2-D conv kernel, say) is an error naming it.
pub fn jax_to_timm(mut dict: StateDict, prefix: &str) -> Result<StateDict, String> {
    let mut out = StateDict::new();
    // (name in the file, tensor).
    let mut take = |name: &str| {
        let key = format!("{prefix}{name}");
        dict.remove(&key).map(|t| (key, t))
    };
    // The array's name on a layout error.
    fn named(key: &str) -> impl Fn(String) -> String + '_ {
        move |e| format!("array `{key}` {e}")
    }
    let rank = |key: &str, t: &TensorData, r: usize, what: &str| {
        if t.shape().len() == r {
            Ok(())
        } else {
            Err(format!(
                "array `{key}` has shape {:?}; expected {r} axes ({what})",
                t.shape().to_vec()
            ))
        }
    };

    if let Some((key, k)) = take("embedding/kernel") {
        rank(&key, &k, 4, "an HWIO conv kernel")?;
        out.insert(
            "patch_embed.proj.weight".into(),
            permute(&k, &[3, 2, 0, 1]).map_err(named(&key))?,
        );
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
        if let Some((_, t)) = take(jax) {
            out.insert(timm.into(), t);
        }
    }
    for (jax, timm) in [
        ("head/kernel", "head.weight"),
        ("pre_logits/kernel", "pre_logits.fc.weight"),
    ] {
        if let Some((key, t)) = take(jax) {
            rank(&key, &t, 2, "an [in, out] Dense kernel")?;
            out.insert(timm.into(), transpose(&t).map_err(named(&key))?);
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
                if let Some((_, t)) = take(&format!("{block}{ln}/{jax}")) {
                    out.insert(format!("{b}{norm}.{timm}"), t);
                }
            }
        }
        // [D, h, dh] kernels -> [h*dh, D] rows, fused q; k; v.
        let rows = |(key, t): (String, TensorData)| {
            rank(&key, &t, 3, "a [D, heads, head_dim] attention kernel")?;
            let d = t.shape()[0];
            let n = t.num_elements() / d.max(1);
            transpose(&reshape(t, vec![d, n]).map_err(named(&key))?).map_err(named(&key))
        };
        let k = take(&format!("{attn}key/kernel"));
        let v = take(&format!("{attn}value/kernel"));
        if let (Some(k), Some(v)) = (k, v) {
            let parts = [rows(q)?, rows(k)?, rows(v)?];
            out.insert(
                format!("{b}attn.qkv.weight"),
                cat0(&parts).map_err(|e| format!("block {i}'s query/key/value kernels: {e}"))?,
            );
        }
        let mut biases = Vec::new();
        for which in ["query", "key", "value"] {
            if let Some((key, t)) = take(&format!("{attn}{which}/bias")) {
                let n = t.num_elements();
                biases.push(reshape(t, vec![n]).map_err(named(&key))?);
            }
        }
        if biases.len() == 3 {
            out.insert(format!("{b}attn.qkv.bias"), cat0(&biases)?);
        }
        if let Some((key, o)) = take(&format!("{attn}out/kernel")) {
            rank(
                &key,
                &o,
                3,
                "a [heads, head_dim, D] attention output kernel",
            )?;
            // [h, dh, D] -> [h*dh, D] -> [D, h*dh]
            let d = o.shape()[2];
            let n = o.num_elements() / d.max(1);
            let flat = reshape(o, vec![n, d]).map_err(named(&key))?;
            out.insert(
                format!("{b}attn.proj.weight"),
                transpose(&flat).map_err(named(&key))?,
            );
        }
        if let Some((_, t)) = take(&format!("{attn}out/bias")) {
            out.insert(format!("{b}attn.proj.bias"), t);
        }
        for (dense, fc) in [("Dense_0", "fc1"), ("Dense_1", "fc2")] {
            if let Some((key, t)) = take(&format!("{block}MlpBlock_3/{dense}/kernel")) {
                rank(&key, &t, 2, "an [in, out] Dense kernel")?;
                out.insert(
                    format!("{b}mlp.{fc}.weight"),
                    transpose(&t).map_err(named(&key))?,
                );
            }
            if let Some((_, t)) = take(&format!("{block}MlpBlock_3/{dense}/bias")) {
                out.insert(format!("{b}mlp.{fc}.bias"), t);
            }
        }
    }
    hybrid_backbone(&mut take, &mut out)?;
    // Whatever is left has no timm counterpart.
    out.extend(dict);
    Ok(out)
}

/// The hybrid's ResNet (`models_vit.py` / `models_resnet.py` names), when the file has one.
fn hybrid_backbone(
    take: &mut impl FnMut(&str) -> Option<(String, TensorData)>,
    out: &mut StateDict,
) -> Result<(), String> {
    let Some(root) = take("conv_root/kernel") else {
        return Ok(());
    };
    // The first unit's kernel, taken now to tell a stem-only backbone, which timm names
    // without `stem.`.
    let mut first_unit = take("block1/unit1/conv1/kernel");
    let stem = if first_unit.is_none() {
        "patch_embed.backbone."
    } else {
        "patch_embed.backbone.stem."
    };
    out.insert(format!("{stem}conv.weight"), hwio(root)?);
    norm(take, "gn_root", &format!("{stem}norm"), out);
    for i in 1.. {
        let mut found = false;
        for j in 1.. {
            let unit = format!("block{i}/unit{j}/");
            let Some(conv1) = first_unit
                .take()
                .or_else(|| take(&format!("{unit}conv1/kernel")))
            else {
                break;
            };
            found = true;
            let b = format!("patch_embed.backbone.stages.{}.blocks.{}.", i - 1, j - 1);
            out.insert(format!("{b}conv1.weight"), hwio(conv1)?);
            for r in [2, 3] {
                if let Some(k) = take(&format!("{unit}conv{r}/kernel")) {
                    out.insert(format!("{b}conv{r}.weight"), hwio(k)?);
                }
            }
            for r in [1, 2, 3] {
                norm(take, &format!("{unit}gn{r}"), &format!("{b}norm{r}"), out);
            }
            if let Some(k) = take(&format!("{unit}conv_proj/kernel")) {
                out.insert(format!("{b}downsample.conv.weight"), hwio(k)?);
            }
            norm(
                take,
                &format!("{unit}gn_proj"),
                &format!("{b}downsample.norm"),
                out,
            );
        }
        if !found {
            break;
        }
    }
    Ok(())
}

/// An HWIO conv kernel as timm's `[out, in, kh, kw]`.
fn hwio((key, t): (String, TensorData)) -> Result<TensorData, String> {
    if t.shape().len() != 4 {
        return Err(format!(
            "array `{key}` has shape {:?}; expected 4 axes (an HWIO conv kernel)",
            t.shape().to_vec()
        ));
    }
    permute(&t, &[3, 2, 0, 1]).map_err(|e| format!("array `{key}` {e}"))
}

/// A flax GroupNorm's `scale` / `bias` as timm's `weight` / `bias`.
fn norm(
    take: &mut impl FnMut(&str) -> Option<(String, TensorData)>,
    jax: &str,
    timm: &str,
    out: &mut StateDict,
) {
    for (j, t) in [("scale", "weight"), ("bias", "bias")] {
        if let Some((_, v)) = take(&format!("{jax}/{j}")) {
            out.insert(format!("{timm}.{t}"), v);
        }
    }
}
