//! An exponential moving average of the weights (timm's `ModelEmaV3`, `--model-ema`): after
//! every optimiser step `ema = d * ema + (1 - d) * w`. With `train.ema_decay` set, the run
//! validates, checkpoints (`ema.safetensors`) and delivers the averaged weights.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use vit_model::Model;

/// The averaged copy of a model, on the model's device without autodiff.
pub struct ModelEma {
    /// The averaged weights (parameter ids as the trained model's).
    pub model: Model,
    /// The decay `d` once warmed up.
    pub decay: f64,
    /// timm's `use_warmup` (see [`ModelEma::decay_at`]).
    pub warmup: bool,
}

impl ModelEma {
    /// Starts the average at `model`'s current weights.
    pub fn new(model: &Model, decay: f64, warmup: bool) -> Self {
        Self {
            model: model.valid(),
            decay,
            warmup,
        }
    }

    /// The decay of update number `step` (from 1: after the first optimiser step), as timm's
    /// `ModelEmaV3.get_decay(step)` with its defaults: the first update copies the weights
    /// (decay 0); with warmup, update `n + 1` uses `min(decay, 1 - (1 + n)^(-2/3))`.
    pub fn decay_at(&self, step: usize) -> f64 {
        let n = step.saturating_sub(1);
        if n == 0 {
            return 0.0;
        }
        if self.warmup {
            let warm = 1.0 - (1.0 + n as f64).powf(-2.0 / 3.0);
            warm.min(self.decay).max(0.0)
        } else {
            self.decay
        }
    }

    /// Folds in the weights of `model` after optimiser step `step` (from 1).
    pub fn update(&mut self, model: &Model, step: usize) {
        let mut current = Collect::default();
        model.valid().visit(&mut current);
        let decay = self.decay_at(step);
        let mut mix = Mix {
            current: current.tensors.into_iter(),
            decay,
        };
        self.model = self.model.clone().map(&mut mix);
    }
}

/// Every float parameter, flattened, in visiting order.
#[derive(Default)]
struct Collect {
    tensors: Vec<Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.tensors.push(param.val().flatten::<1>(0, D - 1));
    }
}

/// `ema = d * ema + (1 - d) * w`, parameter by parameter in the same visiting order.
struct Mix<I: Iterator<Item = Tensor<1>>> {
    current: I,
    decay: f64,
}

impl<I: Iterator<Item = Tensor<1>>> ModuleMapper for Mix<I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let w = self
            .current
            .next()
            .expect("the average and the model have the same parameters");
        let d = self.decay;
        param.map(|ema| {
            let shape = ema.shape();
            ema * d + w.reshape(shape) * (1.0 - d)
        })
    }
}
