//! The Vision Transformer (paper eqs. 1-4).

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Tensor};

use crate::attention::xavier_linear;
use crate::block::Block;
use crate::config::{Pool, VitConfig};
use crate::error::VitError;
use crate::norm::LayerNorm;
use crate::patch_embed::PatchEmbed;
use crate::pos_embed::{ResampleMode, resample_pos_embed};

/// The pre-logits layer of pretraining (Linear + tanh), named as old timm / JAX checkpoints.
#[derive(Module, Debug)]
pub struct PreLogits {
    /// Linear(D -> representation_size).
    pub fc: Linear,
}

/// The Vision Transformer. Field names are timm's state-dict keys.
#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// Patch embedding (conv).
    pub patch_embed: PatchEmbed,
    /// Learned class token `[1, 1, D]`, when `class_token`.
    pub cls_token: Option<Param<Tensor<3>>>,
    /// Learned 1D position embedding `[1, S, D]`, class token first.
    pub pos_embed: Param<Tensor<3>>,
    pos_drop: Dropout,
    /// The transformer blocks.
    pub blocks: Vec<Block>,
    /// Final LayerNorm before pooling (absent when `fc_norm` is used).
    pub norm: Option<LayerNorm>,
    /// Final LayerNorm after pooling (timm's default for mean pooling).
    pub fc_norm: Option<LayerNorm>,
    /// Pre-logits Linear + tanh, when `representation_size` is set.
    pub pre_logits: Option<PreLogits>,
    /// Classifier Linear(D -> K); absent when `num_classes` is 0.
    pub head: Option<Linear>,
    /// The architecture this model was built with.
    #[module(skip)]
    pub config: VitConfig,
}

/// Reads every float parameter once, so that lazily initialised ones draw their values now,
/// in module order, on the device they were declared on.
pub(crate) struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Everything one forward pass can report, for visualisation, features and debugging.
#[derive(Debug, Clone)]
pub struct VitOutput {
    /// Tokens after patch + position embedding: `[B, S, D]`.
    pub embeddings: Tensor<3>,
    /// Output of every block: `L` tensors `[B, S, D]`.
    pub hidden_states: Vec<Tensor<3>>,
    /// Attention weights of every block, `L` tensors `[B, h, S, S]` (empty unless asked for).
    pub attentions: Vec<Tensor<4>>,
    /// Encoder output after the final norm (as `forward_features`): `[B, S, D]`.
    pub features: Tensor<3>,
    /// Pooled, normalised representation fed to the head (after pre-logits): `[B, D']`.
    pub pre_logits: Tensor<2>,
    /// Logits `[B, K]`; equal to `pre_logits` when the model has no head.
    pub logits: Tensor<2>,
}

impl VitConfig {
    /// Builds the model on `device`, initialised as the JAX code does.
    ///
    /// # Panics
    /// When the config is invalid; [`VitConfig::try_init`] returns the error instead.
    pub fn init(&self, device: &Device) -> VisionTransformer {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the model with its random initial values drawn from `seed` on the host CPU
    /// ([`host_device`](crate::device::host_device)), in the order of the model's parameters, then
    /// moves it to `device`. One seed gives one initial model on every backend: the GPU
    /// backends' own generators differ from the CPU's, and Burn initialises a parameter lazily
    /// on whichever device first reads it. Reseeds the host device's generator.
    pub fn init_seeded(&self, seed: u64, device: &Device) -> Result<VisionTransformer, VitError> {
        let Some(host) = crate::device::host_device() else {
            device.seed(seed);
            return self.try_init(device);
        };
        let host = if device.is_autodiff() {
            host.autodiff()
        } else {
            host
        };
        host.seed(seed);
        let model = self.try_init(&host)?;
        model.visit(&mut Materialize);
        if &host == device {
            return Ok(model);
        }
        // `fork`, not `to_device`: the copy keeps `require_grad` and has its own graph.
        Ok(model.fork(device))
    }

    /// Builds the model on `device`, or says why the config cannot describe one.
    pub fn try_init(&self, device: &Device) -> Result<VisionTransformer, VitError> {
        self.validate()?;
        let d = self.embed_dim;
        let norm = || LayerNorm::new(d, self.norm_eps, device);
        let blocks = (0..self.depth)
            .map(|i| self.block(i).init(device))
            .collect();
        let head_in = self.representation_size.unwrap_or(d);
        let head = (self.num_classes > 0).then(|| {
            let mut head = xavier_linear(head_in, self.num_classes, true, device);
            head.weight = Initializer::Zeros.init([head_in, self.num_classes], device);
            head
        });
        Ok(VisionTransformer {
            patch_embed: PatchEmbed::new(self, device),
            cls_token: self
                .class_token
                .then(|| Initializer::Zeros.init([1, 1, d], device)),
            pos_embed: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([1, self.seq_len(), d], device),
            pos_drop: DropoutConfig::new(self.drop_rate).init(),
            blocks,
            norm: (!self.use_fc_norm()).then(norm),
            fc_norm: self.use_fc_norm().then(norm),
            pre_logits: self.representation_size.map(|r| PreLogits {
                fc: xavier_linear(d, r, true, device),
            }),
            head,
            config: self.clone(),
        })
    }
}

impl VisionTransformer {
    /// Checks that `dims` is an image batch `[B, C, H, W]` this model accepts.
    pub fn check_input(&self, dims: &[usize]) -> Result<(), VitError> {
        let c = &self.config;
        let expected = [c.in_channels, c.image_size[0], c.image_size[1]];
        if dims.len() != 4 || dims[1..] != expected {
            return Err(VitError::InputShape {
                got: dims.to_vec(),
                expected: format!(
                    "[batch, {}, {}, {}] (channels, height, width); use set_image_size to run \
                     at another resolution",
                    expected[0], expected[1], expected[2]
                ),
            });
        }
        Ok(())
    }

    /// Class logits.
    ///
    /// A class-token model runs its last block for the class token only (its other outputs
    /// feed nothing): the same logits as `forward_head(forward_features(x))`, without the last
    /// block's MLP and attention output for the patch tokens.
    ///
    /// # Shapes
    /// - images: `[B, C, H, W]`, the configured channels and size
    /// - output: `[B, K]` (`[B, D]` pooled features when the model has no head)
    pub fn forward(&self, images: Tensor<4>) -> Result<Tensor<2>, VitError> {
        let features = match (self.config.pool, self.blocks.split_last()) {
            (Pool::Token, Some((last, blocks))) => {
                let mut x = self.embed(images)?;
                for block in blocks {
                    x = block.forward(x, false).0;
                }
                self.apply_norm(last.forward_queries(x, 1))
            }
            _ => self.forward_features(images)?,
        };
        Ok(self.forward_head(features, false))
    }

    /// Encoder output after the final norm (timm `forward_features`).
    ///
    /// # Shapes
    /// - images: `[B, C, H, W]`
    /// - output: `[B, S, D]`, prefix tokens first
    pub fn forward_features(&self, images: Tensor<4>) -> Result<Tensor<3>, VitError> {
        let mut x = self.embed(images)?;
        for block in &self.blocks {
            x = block.forward(x, false).0;
        }
        Ok(self.apply_norm(x))
    }

    /// Pools the features, normalises (`fc_norm`), applies pre-logits and, unless
    /// `pre_logits`, the head (timm `forward_head`).
    ///
    /// # Shapes
    /// - features: `[B, S, D]`
    /// - output: `[B, K]`, or `[B, D']` with `pre_logits`
    pub fn forward_head(&self, features: Tensor<3>, pre_logits: bool) -> Tensor<2> {
        let [b, s, d] = features.dims();
        let pooled = match self.config.pool {
            Pool::Token => features.narrow(1, 0, 1).reshape([b, d]),
            Pool::Mean => {
                let prefix = self.config.num_prefix_tokens();
                features
                    .narrow(1, prefix, s - prefix)
                    .mean_dim(1)
                    .reshape([b, d])
            }
        };
        let mut x = match &self.fc_norm {
            Some(norm) => norm.forward(pooled),
            None => pooled,
        };
        if let Some(pre) = &self.pre_logits {
            x = tanh(pre.fc.forward(x));
        }
        match (&self.head, pre_logits) {
            (Some(head), false) => head.forward(x),
            _ => x,
        }
    }

    /// The whole forward pass with every intermediate: embeddings, each block's output,
    /// optionally each block's attention weights, features, pre-logits and logits.
    ///
    /// # Shapes
    /// - images: `[B, C, H, W]`
    /// - see [`VitOutput`]
    pub fn forward_intermediates(
        &self,
        images: Tensor<4>,
        return_attention: bool,
    ) -> Result<VitOutput, VitError> {
        let embeddings = self.embed(images)?;
        let mut x = embeddings.clone();
        let mut hidden_states = Vec::with_capacity(self.blocks.len());
        let mut attentions = Vec::new();
        for block in &self.blocks {
            let (y, weights) = block.forward(x, return_attention);
            hidden_states.push(y.clone());
            attentions.extend(weights);
            x = y;
        }
        let features = self.apply_norm(x);
        let pre_logits = self.forward_head(features.clone(), true);
        let logits = match &self.head {
            Some(head) => head.forward(pre_logits.clone()),
            None => pre_logits.clone(),
        };
        Ok(VitOutput {
            embeddings,
            hidden_states,
            attentions,
            features,
            pre_logits,
            logits,
        })
    }

    /// Attention weights of every block, `L` tensors `[B, h, S, S]`, for visualisation.
    pub fn attention_maps(&self, images: Tensor<4>) -> Result<Vec<Tensor<4>>, VitError> {
        Ok(self.forward_intermediates(images, true)?.attentions)
    }

    /// Rebuilds the model for another input size with the same patch size, resampling the
    /// position embeddings from the old grid to the new one with `mode`. Prefix tokens keep
    /// their embeddings.
    pub fn set_image_size(
        mut self,
        image_size: [usize; 2],
        mode: ResampleMode,
    ) -> Result<Self, VitError> {
        let config = self.config.clone().with_image_size(image_size);
        config.validate()?;
        let old_grid = self.config.grid_size();
        let new_grid = config.grid_size();
        let prefix = config.num_prefix_tokens();
        let resampled = resample_pos_embed(self.pos_embed.val(), old_grid, new_grid, prefix, mode)?;
        // Keep the parameter's id and training state: it stays the same parameter, resized.
        let require_grad = self.pos_embed.is_require_grad();
        let (id, _, mapper) = self.pos_embed.consume();
        let value = resampled.detach().set_require_grad(require_grad);
        self.pos_embed = Param::from_mapped_value(id, value, mapper);
        self.config = config;
        Ok(self)
    }

    /// Patch embedding, class token and position embedding (then dropout).
    fn embed(&self, images: Tensor<4>) -> Result<Tensor<3>, VitError> {
        self.check_input(&images.dims())?;
        let x = self.patch_embed.forward(images);
        let [b, _, d] = x.dims();
        let x = match &self.cls_token {
            Some(cls) => Tensor::cat(vec![cls.val().expand([b, 1, d]), x], 1),
            None => x,
        };
        Ok(self.pos_drop.forward(x + self.pos_embed.val()))
    }

    fn apply_norm(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        }
    }
}
