//! The pre-norm transformer encoder block (paper eqs. 2-3).

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::attention::Attention;
use crate::config::VitConfig;
use crate::drop_path::DropPath;
use crate::layer_scale::LayerScale;
use crate::mlp::Mlp;
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

impl Block {
    /// Builds a block of `config` with stochastic-depth rate `drop_path`.
    pub fn new(config: &VitConfig, drop_path: f64, device: &Device) -> Self {
        let d = config.embed_dim;
        let norm = || LayerNorm::new(d, config.norm_eps, device);
        let ls = || {
            config
                .layer_scale_init
                .map(|v| LayerScale::new(d, v, device))
        };
        Self {
            norm1: norm(),
            attn: Attention::new(
                d,
                config.num_heads,
                config.qkv_bias,
                config.attn_drop_rate,
                config.drop_rate,
                device,
            ),
            ls1: ls(),
            drop_path1: DropPath::new(drop_path),
            norm2: norm(),
            mlp: Mlp::new(d, config.mlp_hidden(), config.drop_rate, device),
            ls2: ls(),
            drop_path2: DropPath::new(drop_path),
        }
    }

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
