//! The pre-norm transformer encoder block (paper eqs. 2-3).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::attention::{Attention, AttentionConfig};
use crate::config::VitConfig;
use crate::drop_path::DropPath;
use crate::layer_scale::LayerScale;
use crate::mlp::{Mlp, MlpConfig};
use crate::norm::LayerNorm;

/// timm's `Block`: `x = x + drop_path(ls1(attn(norm1(x))))`, then the same with the MLP.
#[derive(Module, Debug)]
pub struct Block {
    /// LayerNorm before attention.
    pub norm1: LayerNorm,
    /// Multi-head self-attention.
    pub attn: Attention,
    /// LayerScale on the attention branch, when configured.
    pub ls1: Option<LayerScale>,
    drop_path1: DropPath,
    /// LayerNorm before the MLP.
    pub norm2: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
    /// LayerScale on the MLP branch, when configured.
    pub ls2: Option<LayerScale>,
    drop_path2: DropPath,
}

/// Configuration of a [`Block`]; [`VitConfig::block`] gives the one of block `i`.
#[derive(Config, Debug)]
pub struct BlockConfig {
    /// Token width D.
    pub dim: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// MLP hidden width M.
    pub mlp_hidden: usize,
    /// Bias on `qkv`. Default: `true`.
    #[config(default = true)]
    pub qkv_bias: bool,
    /// Dropout after the attention projection and each MLP Linear. Default: `0.0`.
    #[config(default = 0.0)]
    pub drop: f64,
    /// Dropout on the attention weights. Default: `0.0`.
    #[config(default = 0.0)]
    pub attn_drop: f64,
    /// Stochastic-depth rate of this block. Default: `0.0`.
    #[config(default = 0.0)]
    pub drop_path: f64,
    /// LayerScale initial value; `None` for none. Default: `None`.
    #[config(default = "None")]
    pub layer_scale_init: Option<f64>,
    /// LayerNorm epsilon. Default: `1e-6`.
    #[config(default = 1e-6)]
    pub norm_eps: f64,
}

impl BlockConfig {
    /// Builds the block with the JAX init.
    pub fn init(&self, device: &Device) -> Block {
        let d = self.dim;
        let norm = || LayerNorm::new(d, self.norm_eps, device);
        let ls = || self.layer_scale_init.map(|v| LayerScale::new(d, v, device));
        Block {
            norm1: norm(),
            attn: AttentionConfig::new(d, self.num_heads)
                .with_qkv_bias(self.qkv_bias)
                .with_attn_drop(self.attn_drop)
                .with_proj_drop(self.drop)
                .init(device),
            ls1: ls(),
            drop_path1: DropPath::new(self.drop_path),
            norm2: norm(),
            mlp: MlpConfig::new(d, self.mlp_hidden)
                .with_drop(self.drop)
                .init(device),
            ls2: ls(),
            drop_path2: DropPath::new(self.drop_path),
        }
    }
}

impl VitConfig {
    /// The config of block `i` (from 0): stochastic depth rises linearly from 0 at the first
    /// block to `drop_path_rate` at the last.
    pub fn block(&self, i: usize) -> BlockConfig {
        let drop_path = if self.depth > 1 {
            self.drop_path_rate * i as f64 / (self.depth - 1) as f64
        } else {
            0.0
        };
        BlockConfig::new(self.embed_dim, self.num_heads, self.mlp_hidden())
            .with_qkv_bias(self.qkv_bias)
            .with_drop(self.drop_rate)
            .with_attn_drop(self.attn_drop_rate)
            .with_drop_path(drop_path)
            .with_layer_scale_init(self.layer_scale_init)
            .with_norm_eps(self.norm_eps)
    }
}

impl Block {
    /// # Shapes
    /// - x: `[B, S, D]`
    /// - output: `[B, S, D]`, attention weights `[B, h, S, S]` when asked for
    pub fn forward(&self, x: Tensor<3>, return_weights: bool) -> (Tensor<3>, Option<Tensor<4>>) {
        let (y, weights) = self
            .attn
            .forward(self.norm1.forward(x.clone()), return_weights);
        (self.residuals(x, y), weights)
    }

    /// The block's output for the first `n` tokens only (every token still attended to):
    /// equal to the first `n` rows of [`Block::forward`]'s. The last block of a class-token
    /// model needs no more, and skips the MLP and attention outputs of the other tokens.
    ///
    /// # Shapes
    /// - x: `[B, S, D]`
    /// - output: `[B, n, D]`
    pub fn forward_queries(&self, x: Tensor<3>, n: usize) -> Tensor<3> {
        let y = self.attn.forward_queries(self.norm1.forward(x.clone()), n);
        self.residuals(x.narrow(1, 0, n), y)
    }

    /// `x + drop_path(ls1(y))` for the attention output `y`, then the MLP branch on the sum.
    fn residuals(&self, x: Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        let x = x + self.drop_path1.forward(scale(&self.ls1, y));
        let y = scale(&self.ls2, self.mlp.forward(self.norm2.forward(x.clone())));
        x + self.drop_path2.forward(y)
    }
}

fn scale(ls: &Option<LayerScale>, x: Tensor<3>) -> Tensor<3> {
    match ls {
        Some(ls) => ls.forward(x),
        None => x,
    }
}
