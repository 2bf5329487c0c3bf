//! [`BitResNet`]: BiT's ResNetV2 classifier (timm `ResNetV2` as `resnetv2_50x1_bit` builds
//! it), the paper's convolutional baseline. Parameter names are timm's.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer};
use burn::tensor::{Device, Tensor};

use super::bit_config::BitConfig;
use super::group_norm::GroupNormAct;
use super::preact_bottleneck::PreActBottleneck;
use super::stem::FixedStem;
use crate::error::VitError;

/// One stage: `blocks.0` carries the stride and the projection shortcut.
#[derive(Module, Debug)]
pub struct BitStage {
    /// The pre-activation bottlenecks.
    pub blocks: Vec<PreActBottleneck>,
}

/// timm's `ClassifierHead(use_conv=True)`'s layer: a 1x1 convolution over the pooled
/// features, kept in its `[classes, C, 1, 1]` layout (`head.fc.weight`).
#[derive(Module, Debug)]
pub struct HeadConv {
    /// `[classes, C, 1, 1]`.
    pub weight: Param<Tensor<4>>,
    /// `[classes]`.
    pub bias: Param<Tensor<1>>,
}

/// The head: global average pool, dropout, `fc`.
#[derive(Module, Debug)]
pub struct BitHead {
    /// The classifier (timm `head.fc`).
    pub fc: HeadConv,
    drop: Dropout,
}

/// BiT ResNetV2: fixed-padding stem, stages of pre-activation bottlenecks, a final
/// GroupNorm + ReLU (the last block's output is not yet activated), the head.
#[derive(Module, Debug)]
pub struct BitResNet {
    /// 7x7/2 conv, zero pad, 3x3/2 max-pool.
    pub stem: FixedStem,
    /// `stages.{i}.blocks.{j}`.
    pub stages: Vec<BitStage>,
    /// GroupNorm + ReLU of the features (timm `norm`).
    pub norm: GroupNormAct,
    /// Absent with `num_classes = 0`.
    pub head: Option<BitHead>,
    /// The architecture it was built from.
    #[module(skip)]
    pub config: BitConfig,
}

impl BitConfig {
    /// Builds the model on `device`, or says why the config cannot describe one.
    pub fn try_init(&self, device: &Device) -> Result<BitResNet, VitError> {
        self.validate().map_err(VitError::InvalidConfig)?;
        let mut stages: Vec<BitStage> = Vec::new();
        for (i, channels, stride, first) in self.blocks() {
            if first {
                stages.push(BitStage { blocks: Vec::new() });
            }
            stages[i].blocks.push(PreActBottleneck::new(
                self, i, channels, stride, first, device,
            ));
        }
        let f = self.num_features();
        let head = (self.num_classes > 0).then(|| BitHead {
            // timm's _init_weights: head.fc normal(0, 0.01), bias zero.
            fc: HeadConv {
                weight: Initializer::Normal {
                    mean: 0.0,
                    std: 0.01,
                }
                .init([self.num_classes, f, 1, 1], device),
                bias: Initializer::Zeros.init([self.num_classes], device),
            },
            drop: DropoutConfig::new(self.drop_rate).init(),
        });
        Ok(BitResNet {
            stem: FixedStem::new(self, device),
            stages,
            config: self.clone(),
            norm: self.norm(f, device),
            head,
        })
    }

    /// Builds the model with its random initial values drawn from `seed` on the host CPU,
    /// then moved to `device`, as [`VitConfig::init_seeded`](crate::VitConfig::init_seeded)
    /// does: one seed, one initial model on every backend.
    pub fn init_seeded(&self, seed: u64, device: &Device) -> Result<BitResNet, VitError> {
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
        model.visit(&mut crate::vit::Materialize);
        if &host == device {
            return Ok(model);
        }
        Ok(model.fork(device))
    }
}

impl BitResNet {
    /// The activated feature map before pooling.
    ///
    /// # Shapes
    /// - images: `[B, C, H, W]`
    /// - output: `[B, num_features, H / 32, W / 32]` (about; each stride-2 layer rounds up)
    pub fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = self.stem.forward(images);
        for stage in &self.stages {
            for block in &stage.blocks {
                x = block.forward(x);
            }
        }
        self.norm.forward(x)
    }

    /// Logits (the pooled features with `num_classes = 0`).
    ///
    /// # Shapes
    /// - images: `[B, C, H, W]`, any `H, W` the stem and strides leave at least one cell of
    /// - output: `[B, num_classes]` (`[B, num_features]` without a head)
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.forward_features(images);
        let [b, c, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([b, c]);
        match &self.head {
            None => pooled,
            Some(head) => {
                let [k, _, _, _] = head.fc.weight.dims();
                let w = head.fc.weight.val().reshape([k, c]);
                head.drop.forward(pooled).matmul(w.transpose()) + head.fc.bias.val().reshape([1, k])
            }
        }
    }
}
