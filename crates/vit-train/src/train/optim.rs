//! The optimiser: AdamW (PyTorch defaults) or SGD with momentum, with no weight decay on
//! biases, norms, LayerScale, the class token and the position embedding (timm's rule:
//! parameters of rank <= 1, plus `cls_token` and `pos_embed`); optional layer-wise learning-rate
//! decay (timm's `param_groups_layer_decay`) and a frozen backbone (linear probe).

use burn::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig};
use burn::tensor::Tensor;
use vit_model::{Model, VisionTransformer};

use crate::config::{OptimizerKind, TrainSection};

#[derive(Default)]
struct NoDecay {
    path: Vec<String>,
    ids: Vec<ParamId>,
}

impl ModuleVisitor for NoDecay {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = self.path.last().map(String::as_str).unwrap_or("");
        if D <= 1 || name == "cls_token" || name == "pos_embed" {
            self.ids.push(param.id);
        }
    }
}

/// Ids of the parameters that get no weight decay.
pub fn no_decay_ids(model: &Model) -> Vec<ParamId> {
    let mut v = NoDecay::default();
    model.visit(&mut v);
    v.ids
}

/// Builds the optimiser for `model` (its parameter ids decide the groups).
pub fn build(t: &TrainSection, model: &Model) -> ModuleOptimizer {
    let no_decay = ParamGroup::from_ids(no_decay_ids(model));
    match t.optimizer {
        OptimizerKind::Adamw => {
            let adamw = |wd: f64| {
                AdamWConfig::new()
                    .with_beta_1(t.beta1 as f32)
                    .with_beta_2(t.beta2 as f32)
                    .with_epsilon(t.eps as f32)
                    .with_weight_decay(wd as f32)
            };
            adamw(t.weight_decay)
                .init()
                .with_group(no_decay, adamw(0.0).build(), None)
        }
        OptimizerKind::Sgd => {
            let sgd = |wd: f64| {
                SgdConfig::new()
                    .with_momentum(Some(MomentumConfig {
                        momentum: t.momentum,
                        dampening: 0.0,
                        nesterov: false,
                    }))
                    .with_weight_decay(
                        (wd > 0.0).then_some(WeightDecayConfig { penalty: wd as f32 }),
                    )
            };
            sgd(t.weight_decay)
                .init()
                .with_group(no_decay, sgd(0.0).build(), None)
        }
    }
}

/// Finds each parameter's layer as timm's ViT `group_matcher` + `param_groups_layer_decay`
/// do (checked against timm): the stem (`cls_token`, `pos_embed`, `patch_embed`) is layer 0,
/// block `i` layer `i + 1`, the final `norm` joins the last block; everything else (head,
/// `fc_norm`, pre-logits) is layer `depth + 1`.
struct Layers {
    path: Vec<String>,
    depth: usize,
    found: Vec<(String, ParamId, usize)>,
}

impl ModuleVisitor for Layers {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let top = self.path.first().map(String::as_str).unwrap_or("");
        let layer = match top {
            "cls_token" | "pos_embed" | "patch_embed" => 0,
            "blocks" => self
                .path
                .get(1)
                .and_then(|i| i.parse::<usize>().ok())
                .map_or(self.depth + 1, |i| i + 1),
            "norm" => self.depth,
            _ => self.depth + 1,
        };
        self.found.push((self.path.join("."), param.id, layer));
    }
}

/// Each parameter's learning-rate scale under layer-wise decay `decay`, by parameter path
/// (Burn's module path): `decay^(depth + 1 - layer)`, so the head trains at the full rate.
pub fn layer_scales(model: &VisionTransformer, decay: f64) -> Vec<(String, ParamId, f64)> {
    let depth = model.blocks.len();
    let mut v = Layers {
        path: Vec::new(),
        depth,
        found: Vec::new(),
    };
    model.visit(&mut v);
    v.found
        .into_iter()
        .map(|(path, id, layer)| (path, id, decay.powi((depth + 1 - layer) as i32)))
        .collect()
}

/// Per-parameter learning rates: the schedule's `lr` scaled per layer group.
#[derive(Clone)]
pub struct LayerDecay {
    /// (scale, parameters with that scale).
    groups: Vec<(f64, ParamGroup)>,
}

impl LayerDecay {
    pub fn new(model: &VisionTransformer, decay: f64) -> Self {
        let mut groups: Vec<(f64, Vec<ParamId>)> = Vec::new();
        for (_, id, scale) in layer_scales(model, decay) {
            match groups.iter_mut().find(|(s, _)| *s == scale) {
                Some((_, ids)) => ids.push(id),
                None => groups.push((scale, vec![id])),
            }
        }
        Self {
            groups: groups
                .into_iter()
                .map(|(s, ids)| (s, ParamGroup::from_ids(ids)))
                .collect(),
        }
    }

    /// The learning rate of every parameter at schedule value `lr`.
    pub fn at(&self, lr: f64) -> ModuleLearningRate {
        let mut policy = ModuleLrScheduler::new(lr);
        for (scale, group) in &self.groups {
            policy = policy.with_group(group.clone(), lr * scale);
        }
        policy.step()
    }
}

/// A linear probe: every parameter but the head's (a ViT's `head`, a ResNet's `head.fc`)
/// stops requiring gradients, so backward runs through the head only and the optimiser never
/// sees the backbone.
pub fn freeze_backbone(model: Model) -> Model {
    match model.no_grad() {
        Model::Vit(mut m) => {
            if let Some(head) = m.head.as_mut() {
                head.weight = head.weight.clone().set_require_grad(true);
                head.bias = head.bias.clone().map(|b| b.set_require_grad(true));
            }
            Model::Vit(m)
        }
        Model::Bit(mut m) => {
            if let Some(head) = m.head.as_mut() {
                head.fc.weight = head.fc.weight.clone().set_require_grad(true);
                head.fc.bias = head.fc.bias.clone().set_require_grad(true);
            }
            Model::Bit(m)
        }
    }
}
