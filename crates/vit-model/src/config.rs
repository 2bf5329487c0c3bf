//! [`VitConfig`]: every architectural option of the Vision Transformer, with timm's defaults.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::error::VitError;
use crate::resnet::ResNetConfig;

/// How the encoder output is reduced to one vector per image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// The class token's output (the paper's default; timm `global_pool="token"`).
    Token,
    /// The mean of the patch tokens, prefix tokens excluded (timm `global_pool="avg"`).
    Mean,
}

/// Configuration of a [`VisionTransformer`](crate::VisionTransformer).
///
/// Field names follow the paper and timm's `VisionTransformer` arguments; where they differ the
/// timm name is given. Defaults are ViT-B/16 at 224 px with 1000 classes.
#[derive(Config, Debug, PartialEq)]
pub struct VitConfig {
    /// Input image size `[height, width]` in pixels (timm `img_size`). Default: `[224, 224]`.
    #[config(default = "[224, 224]")]
    pub image_size: [usize; 2],
    /// Patch size `[height, width]` in pixels; must divide `image_size`. Default: `[16, 16]`.
    #[config(default = "[16, 16]")]
    pub patch_size: [usize; 2],
    /// Number of input channels (timm `in_chans`). Default: `3`.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Number of classes of the head; `0` builds no head (features only). Default: `1000`.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Token width D (timm `embed_dim`). Default: `768`.
    #[config(default = 768)]
    pub embed_dim: usize,
    /// Number of transformer blocks L. Default: `12`.
    #[config(default = 12)]
    pub depth: usize,
    /// Number of attention heads; must divide `embed_dim`. Default: `12`.
    #[config(default = 12)]
    pub num_heads: usize,
    /// MLP hidden width as a multiple of `embed_dim`. Default: `4.0`.
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// MLP hidden width; when set it overrides `mlp_ratio`. Default: `None`.
    #[config(default = "None")]
    pub mlp_dim: Option<usize>,
    /// Bias on the fused `qkv` Linear. Default: `true`.
    #[config(default = true)]
    pub qkv_bias: bool,
    /// Output pooling (timm `global_pool`: `token` or `avg`). Default: [`Pool::Token`].
    #[config(default = "Pool::Token")]
    pub pool: Pool,
    /// Prepend a learned class token. Default: `true`.
    #[config(default = true)]
    pub class_token: bool,
    /// Normalise after pooling (`fc_norm`) instead of before it (`norm`); `None` follows timm:
    /// on for mean pooling, off for token pooling. Default: `None`.
    #[config(default = "None")]
    pub fc_norm: Option<bool>,
    /// Width of the pre-logits layer (Linear + tanh) used in pretraining; `None` for none.
    /// Default: `None`.
    #[config(default = "None")]
    pub representation_size: Option<usize>,
    /// Dropout rate, applied where the paper applies it: after adding the position embedding,
    /// after the attention projection and after each MLP Linear. Default: `0.0`.
    #[config(default = 0.0)]
    pub drop_rate: f64,
    /// Dropout rate on the attention weights. Default: `0.0`.
    #[config(default = 0.0)]
    pub attn_drop_rate: f64,
    /// Stochastic depth: the rate of the last block; it rises linearly from 0 over the blocks.
    /// Default: `0.0`.
    #[config(default = 0.0)]
    pub drop_path_rate: f64,
    /// LayerScale initial value (timm `init_values`; DINOv2 uses 1e-5); `None` for none.
    /// Default: `None`.
    #[config(default = "None")]
    pub layer_scale_init: Option<f64>,
    /// LayerNorm epsilon. Default: `1e-6` (the paper's; Burn's own default is 1e-5).
    #[config(default = 1e-6)]
    pub norm_eps: f64,
    /// The hybrid's ResNet (paper section 3.1; `[model.backbone]` in a recipe): when set,
    /// patches are cut from its feature map, and `patch_size` counts feature-map cells (1 for
    /// the R50 hybrids). Default: `None` (patches of the image).
    #[config(default = "None")]
    pub backbone: Option<ResNetConfig>,
}

impl VitConfig {
    /// What the patches are cut from: the image, or the hybrid backbone's feature map,
    /// `[height, width]`.
    pub fn embed_input_size(&self) -> [usize; 2] {
        match &self.backbone {
            Some(b) => b.feature_size(self.image_size),
            None => self.image_size,
        }
    }

    /// Channels of what the patches are cut from (`in_channels`, or the backbone's output).
    pub fn embed_in_channels(&self) -> usize {
        match &self.backbone {
            Some(b) => b.out_channels(),
            None => self.in_channels,
        }
    }

    /// Input pixels per patch `[height, width]`: the patch size, times the backbone's
    /// stride for a hybrid.
    pub fn pixels_per_patch(&self) -> [usize; 2] {
        let s = self.backbone.as_ref().map_or(1, ResNetConfig::stride);
        [self.patch_size[0] * s, self.patch_size[1] * s]
    }

    /// Patch grid `[rows, cols]` (of the feature map, for a hybrid).
    pub fn grid_size(&self) -> [usize; 2] {
        let [h, w] = self.embed_input_size();
        [h / self.patch_size[0], w / self.patch_size[1]]
    }

    /// Number of patch tokens N.
    pub fn num_patches(&self) -> usize {
        let [h, w] = self.grid_size();
        h * w
    }

    /// Number of tokens before the patches (1 with a class token, else 0).
    pub fn num_prefix_tokens(&self) -> usize {
        usize::from(self.class_token)
    }

    /// Sequence length S = prefix tokens + patches.
    pub fn seq_len(&self) -> usize {
        self.num_prefix_tokens() + self.num_patches()
    }

    /// MLP hidden width M.
    pub fn mlp_hidden(&self) -> usize {
        self.mlp_dim
            .unwrap_or((self.embed_dim as f64 * self.mlp_ratio) as usize)
    }

    /// Whether the final LayerNorm comes after pooling (`fc_norm`) rather than before (`norm`).
    pub fn use_fc_norm(&self) -> bool {
        self.fc_norm.unwrap_or(self.pool == Pool::Mean)
    }

    /// Number of trainable parameters the model has, from the architecture alone.
    pub fn num_params(&self) -> usize {
        let d = self.embed_dim;
        let m = self.mlp_hidden();
        let [ph, pw] = self.patch_size;
        let backbone = self
            .backbone
            .as_ref()
            .map_or(0, |b| b.num_params(self.in_channels));
        let patch = backbone + ph * pw * self.embed_in_channels() * d + d;
        let cls = if self.class_token { d } else { 0 };
        let pos = self.seq_len() * d;
        let qkv = d * 3 * d + if self.qkv_bias { 3 * d } else { 0 };
        let ls = if self.layer_scale_init.is_some() {
            2 * d
        } else {
            0
        };
        let block = 2 * (2 * d) + qkv + (d * d + d) + (d * m + m) + (m * d + d) + ls;
        let norm = 2 * d;
        let head_in = self.representation_size.unwrap_or(d);
        let pre_logits = self.representation_size.map_or(0, |r| d * r + r);
        let head = if self.num_classes > 0 {
            head_in * self.num_classes + self.num_classes
        } else {
            0
        };
        patch + cls + pos + self.depth * block + norm + pre_logits + head
    }

    /// Multiply-accumulate count of one forward pass per image, times two (FLOPs).
    pub fn flops_per_image(&self) -> u64 {
        let (d, m, s, n) = (
            self.embed_dim as u64,
            self.mlp_hidden() as u64,
            self.seq_len() as u64,
            self.num_patches() as u64,
        );
        let [ph, pw] = self.patch_size;
        let backbone = self.backbone.as_ref().map_or(0, |b| {
            b.flops_per_image(self.in_channels, self.image_size) / 2
        });
        let patch = backbone + n * (ph * pw * self.embed_in_channels()) as u64 * d;
        let attn = s * d * 3 * d + 2 * s * s * d + s * d * d;
        let mlp = 2 * s * d * m;
        let head = d * self.num_classes as u64;
        2 * (patch + self.depth as u64 * (attn + mlp) + head)
    }

    /// Checks that the options describe a buildable model. Each message starts with the
    /// field's name as written in a config (`drop_rate = 1.5: ...`), so a caller can prefix
    /// its section (`model.drop_rate`).
    pub fn validate(&self) -> Result<(), VitError> {
        let bad = |msg: String| Err(VitError::InvalidConfig(msg));
        let [h, w] = self.image_size;
        let [ph, pw] = self.patch_size;
        if h == 0 || w == 0 {
            return bad(format!(
                "image_size = {:?}: must be positive",
                self.image_size
            ));
        }
        if ph == 0 || pw == 0 {
            return bad(format!(
                "patch_size = {:?}: must be positive",
                self.patch_size
            ));
        }
        if let Some(b) = &self.backbone {
            b.validate().or_else(bad)?;
        }
        let [fh, fw] = self.embed_input_size();
        if !fh.is_multiple_of(ph) || !fw.is_multiple_of(pw) {
            return bad(match &self.backbone {
                None => format!(
                    "patch_size = {:?}: must divide image_size {:?}",
                    self.patch_size, self.image_size
                ),
                Some(_) => format!(
                    "patch_size = {:?}: must divide the backbone's feature map {:?} (image_size \
                     {:?})",
                    self.patch_size,
                    [fh, fw],
                    self.image_size
                ),
            });
        }
        for (name, v) in [
            ("in_channels", self.in_channels),
            ("embed_dim", self.embed_dim),
            ("num_heads", self.num_heads),
        ] {
            if v == 0 {
                return bad(format!("{name} = 0: must be positive"));
            }
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return bad(format!(
                "num_heads = {}: must divide embed_dim {}",
                self.num_heads, self.embed_dim
            ));
        }
        match self.mlp_dim {
            Some(0) => return bad("mlp_dim = 0: must be positive".into()),
            Some(_) => {}
            None if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) => {
                return bad(format!(
                    "mlp_ratio = {}: must be a positive number",
                    self.mlp_ratio
                ));
            }
            None if self.mlp_hidden() == 0 => {
                return bad(format!(
                    "mlp_ratio = {}: the MLP hidden width (mlp_ratio * embed_dim) is 0",
                    self.mlp_ratio
                ));
            }
            None => {}
        }
        if self.pool == Pool::Token && !self.class_token {
            return bad("pool = \"token\": needs class_token = true; use pool = \"mean\"".into());
        }
        if self.representation_size == Some(0) {
            return bad("representation_size = 0: must be positive (or left out)".into());
        }
        for (name, p) in [
            ("drop_rate", self.drop_rate),
            ("attn_drop_rate", self.attn_drop_rate),
            ("drop_path_rate", self.drop_path_rate),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} = {p}: must be in [0, 1)"));
            }
        }
        if let Some(v) = self.layer_scale_init
            && !v.is_finite()
        {
            return bad(format!("layer_scale_init = {v}: must be a finite number"));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return bad(format!("norm_eps = {}: must be positive", self.norm_eps));
        }
        Ok(())
    }
}
