//! The paper's variants as one table, addressed by timm's model names.

use crate::config::VitConfig;
use crate::error::VitError;

/// One row of the paper's Table 1 (plus timm's Tiny and the DINOv2 /14 shapes): `(timm stem, patch, D, depth, heads, MLP)`.
const VARIANTS: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("vit_tiny_patch16", 16, 192, 12, 3, 768),
    ("vit_small_patch16", 16, 384, 12, 6, 1536),
    ("vit_small_patch32", 32, 384, 12, 6, 1536),
    // The DINOv2 backbones' shapes (ViT-S/14, ViT-B/14).
    ("vit_small_patch14", 14, 384, 12, 6, 1536),
    ("vit_base_patch16", 16, 768, 12, 12, 3072),
    ("vit_base_patch32", 32, 768, 12, 12, 3072),
    ("vit_base_patch8", 8, 768, 12, 12, 3072),
    ("vit_base_patch14", 14, 768, 12, 12, 3072),
    ("vit_large_patch16", 16, 1024, 24, 16, 4096),
    ("vit_large_patch32", 32, 1024, 24, 16, 4096),
    ("vit_large_patch14", 14, 1024, 24, 16, 4096),
    ("vit_huge_patch14", 14, 1280, 32, 16, 5120),
];

/// Resolutions a variant is offered at: 224 (pretraining) and 384 (the paper's fine-tuning
/// resolution). 384 is not a multiple of 14, so /14 variants get 518 instead (a 37x37 grid,
/// the resolution of DINOv2's ViT/14 weights).
fn resolutions(patch: usize) -> [usize; 2] {
    if 384 % patch == 0 {
        [224, 384]
    } else {
        [224, 518]
    }
}

/// Every preset name, e.g. `vit_base_patch16_224`, in table order.
pub fn preset_names() -> Vec<String> {
    VARIANTS
        .iter()
        .flat_map(|&(stem, patch, ..)| resolutions(patch).map(move |r| format!("{stem}_{r}")))
        .collect()
}

impl VitConfig {
    /// The config of a paper variant by timm name (`vit_tiny_patch16_224`, ...,
    /// `vit_huge_patch14_224`, `vit_base_patch16_384`, `vit_large_patch14_518`, ...): 1000 classes, token pooling,
    /// no dropout, as timm builds it. Adjust further with the `with_*` methods.
    pub fn preset(name: &str) -> Result<Self, VitError> {
        let unknown = || VitError::UnknownPreset {
            name: name.to_string(),
            known: preset_names().join(", "),
        };
        let (stem, res) = name.rsplit_once('_').ok_or_else(unknown)?;
        let res: usize = res.parse().map_err(|_| unknown())?;
        let &(_, patch, dim, depth, heads, mlp) =
            VARIANTS.iter().find(|v| v.0 == stem).ok_or_else(unknown)?;
        if !resolutions(patch).contains(&res) {
            return Err(unknown());
        }
        Ok(VitConfig::new()
            .with_image_size([res, res])
            .with_patch_size([patch, patch])
            .with_embed_dim(dim)
            .with_depth(depth)
            .with_num_heads(heads)
            .with_mlp_dim(Some(mlp)))
    }
}
