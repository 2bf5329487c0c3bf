//! Multi-head self-attention with one fused `qkv` projection.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

/// A Linear with xavier-uniform weights and zero bias (the JAX init of every dense layer).
pub(crate) fn xavier_linear(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device);
    if bias {
        linear.bias = Some(Initializer::Zeros.init([d_out], device));
    }
    linear
}

/// timm's `Attention`: `qkv` Linear(D -> 3D), per-head scaled dot-product attention, `proj`
/// Linear(D -> D).
#[derive(Module, Debug)]
pub struct Attention {
    /// Fused query/key/value projection; output channels ordered q, k, v, each head-major.
    pub qkv: Linear,
    /// Output projection.
    pub proj: Linear,
    attn_drop: Dropout,
    proj_drop: Dropout,
    /// Number of heads h.
    pub num_heads: usize,
}

/// Configuration of an [`Attention`] layer (timm `Attention`).
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Token width D.
    pub dim: usize,
    /// Number of heads h; must divide `dim`.
    pub num_heads: usize,
    /// Bias on the fused `qkv` Linear. Default: `true`.
    #[config(default = true)]
    pub qkv_bias: bool,
    /// Dropout on the attention weights. Default: `0.0`.
    #[config(default = 0.0)]
    pub attn_drop: f64,
    /// Dropout after the output projection. Default: `0.0`.
    #[config(default = 0.0)]
    pub proj_drop: f64,
}

impl AttentionConfig {
    /// Builds the layer with the JAX init (xavier-uniform weights, zero biases).
    pub fn init(&self, device: &Device) -> Attention {
        let dim = self.dim;
        Attention {
            qkv: xavier_linear(dim, 3 * dim, self.qkv_bias, device),
            proj: xavier_linear(dim, dim, true, device),
            attn_drop: DropoutConfig::new(self.attn_drop).init(),
            proj_drop: DropoutConfig::new(self.proj_drop).init(),
            num_heads: self.num_heads,
        }
    }
}

impl Attention {
    /// Self-attention over a token sequence; with `return_weights`, also the attention
    /// weights (after softmax, before attention dropout).
    ///
    /// [`vit_kernels::multi_head_attention`] unless the weights are asked for or attention dropout
    /// applies; then the explicit softmax(QK^T / sqrt(Dh)) V. Both give the same numbers (a test checks it).
    ///
    /// # Shapes
    /// - x: `[B, S, D]`
    /// - output: `[B, S, D]`, weights `[B, h, S, S]`
    pub fn forward(&self, x: Tensor<3>, return_weights: bool) -> (Tensor<3>, Option<Tensor<4>>) {
        let s = x.dims()[1];
        let qkv = vit_kernels::linear(&self.qkv, x);
        let dropout_active = self.attn_drop.prob > 0.0
            && self.attn_drop.training.is_enabled()
            && qkv.device().is_autodiff();
        let (out, weights) = if return_weights || dropout_active {
            let (out, weights) = self.explicit(qkv, s);
            (out, return_weights.then_some(weights))
        } else {
            (vit_kernels::multi_head_attention(qkv, self.num_heads), None)
        };
        (
            self.proj_drop.forward(vit_kernels::linear(&self.proj, out)),
            weights,
        )
    }

    /// Self-attention for the first `n` tokens only: their queries against every token's keys
    /// and values. Equal to the first `n` rows of [`Attention::forward`]'s output, for a
    /// fraction of the work when only those rows are used (the class token of the last block).
    ///
    /// # Shapes
    /// - x: `[B, S, D]`
    /// - output: `[B, n, D]`
    pub fn forward_queries(&self, x: Tensor<3>, n: usize) -> Tensor<3> {
        let (out, _) = self.explicit(vit_kernels::linear(&self.qkv, x), n);
        self.proj_drop.forward(vit_kernels::linear(&self.proj, out))
    }

    /// softmax(Q K^T / sqrt(Dh)) V for the first `n` queries, with Burn's matmuls, heads
    /// merged; and the weights (before attention dropout).
    ///
    /// # Shapes
    /// - qkv: `[B, S, 3D]`
    /// - output: `[B, n, D]`, weights `[B, h, n, S]`
    fn explicit(&self, qkv: Tensor<3>, n: usize) -> (Tensor<3>, Tensor<4>) {
        let h = self.num_heads;
        let scale = ((qkv.dims()[2] / 3 / h) as f64).powf(-0.5);
        let [q, k, v] = vit_kernels::split_heads(qkv, h);
        let weights =
            vit_kernels::scaled_softmax(q.narrow(2, 0, n).matmul(k.swap_dims(2, 3)), scale);
        let out = self.attn_drop.forward(weights.clone()).matmul(v);
        (vit_kernels::merge_heads(out), weights)
    }
}
