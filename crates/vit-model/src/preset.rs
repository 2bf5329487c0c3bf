//! The paper's variants as one table, addressed by timm's model names.

use crate::config::VitConfig;
use crate::error::VitError;
use crate::resnet::ResNetConfig;

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

/// `(name, ResNet stages, patch, D, depth, heads)`.
type Hybrid = (&'static str, &'static [usize], usize, usize, usize, usize);

/// The paper's hybrids (section 3.1, Table 5) as timm names them: `(name, ResNet stages,
/// patch on the feature map, D, depth, heads)`; MLP 4D, offered at 224 and 384. An empty
/// stage list is timm's stem-only "R" of ViT-Ti (`vit_tiny_r_s16_p8`).
const HYBRIDS: &[Hybrid] = &[
    ("vit_tiny_r_s16_p8", &[], 8, 192, 12, 3),
    ("vit_small_r26_s32", &[2, 2, 2, 2], 1, 384, 12, 6),
    ("vit_base_r26_s32", &[2, 2, 2, 2], 1, 768, 12, 12),
    ("vit_base_r50_s16", &[3, 4, 9], 1, 768, 12, 12),
    ("vit_large_r50_s32", &[3, 4, 6, 3], 1, 1024, 24, 16),
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

/// Every preset name, e.g. `vit_base_patch16_224`, in table order, the hybrids last.
pub fn preset_names() -> Vec<String> {
    let plain = VARIANTS
        .iter()
        .flat_map(|&(stem, patch, ..)| resolutions(patch).map(move |r| format!("{stem}_{r}")));
    let hybrid = HYBRIDS
        .iter()
        .flat_map(|&(stem, ..)| [224, 384].map(move |r| format!("{stem}_{r}")));
    plain.chain(hybrid).collect()
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
        if let Some(&(_, layers, patch, dim, depth, heads)) = HYBRIDS.iter().find(|v| v.0 == stem) {
            if ![224, 384].contains(&res) {
                return Err(unknown());
            }
            return Ok(VitConfig::new()
                .with_image_size([res, res])
                .with_patch_size([patch, patch])
                .with_embed_dim(dim)
                .with_depth(depth)
                .with_num_heads(heads)
                .with_backbone(Some(ResNetConfig::new().with_layers(layers.to_vec()))));
        }
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
            // Table 1 widths are 4D: a ratio, so a recipe that changes D keeps the shape.
            .with_mlp_ratio(mlp as f64 / dim as f64))
    }
}
