//! The optimiser: AdamW (PyTorch defaults) or SGD with momentum, with no weight decay on
//! biases, norms, LayerScale, the class token and the position embedding (timm's rule:
//! parameters of rank <= 1, plus `cls_token` and `pos_embed`).

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig};
use burn::tensor::Tensor;
use vit_model::VisionTransformer;

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
pub fn no_decay_ids(model: &VisionTransformer) -> Vec<ParamId> {
    let mut v = NoDecay::default();
    model.visit(&mut v);
    v.ids
}

/// Builds the optimiser for `model` (its parameter ids decide the groups).
pub fn build(t: &TrainSection, model: &VisionTransformer) -> ModuleOptimizer {
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
