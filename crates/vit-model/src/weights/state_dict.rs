//! The model as a timm state dict, and a state dict applied to the model by name.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

use crate::error::VitError;
use crate::vit::VisionTransformer;

/// Tensors by timm key, in PyTorch layouts, as f32.
pub type StateDict = BTreeMap<String, TensorData>;

/// How a Burn parameter maps onto a timm key.
struct KeyMap {
    /// The timm key.
    key: String,
    /// Burn stores Linear weights `[in, out]`; timm `[out, in]`.
    transpose: bool,
}

/// Tracks the module path during a traversal and names each parameter as timm does.
#[derive(Default)]
struct PathTracker {
    names: Vec<String>,
    containers: Vec<String>,
}

impl PathTracker {
    fn enter(&mut self, name: &str, container: &str) {
        self.names.push(name.to_string());
        self.containers.push(container.to_string());
    }

    fn exit(&mut self) {
        self.names.pop();
        self.containers.pop();
    }

    /// The timm key of the parameter at the current path.
    fn key_map(&self) -> KeyMap {
        let owner = self.containers.last().map(String::as_str).unwrap_or("");
        let mut names = self.names.clone();
        let last = names.last_mut().expect("a parameter has a name");
        let mut transpose = false;
        match (owner, last.as_str()) {
            // Burn's LayerNorm says gamma/beta; PyTorch weight/bias. LayerScale keeps `gamma`.
            ("Struct:LayerNorm", "gamma") => *last = "weight".into(),
            ("Struct:LayerNorm", "beta") => *last = "bias".into(),
            ("Struct:Linear", "weight") => transpose = true,
            _ => {}
        }
        KeyMap {
            key: names.join("."),
            transpose,
        }
    }
}

/// Converts a tensor between Burn's layout and timm's.
fn to_timm<const D: usize>(tensor: Tensor<D>, transpose: bool) -> TensorData {
    let tensor = if transpose {
        tensor.transpose()
    } else {
        tensor
    };
    tensor.into_data().convert::<f32>()
}

struct Collector {
    path: PathTracker,
    dict: StateDict,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let KeyMap { key, transpose } = self.path.key_map();
        self.dict.insert(key, to_timm(param.val(), transpose));
    }
}

/// The model's parameters as a timm state dict (timm names and layouts, f32).
pub fn state_dict(model: &VisionTransformer) -> StateDict {
    let mut collector = Collector {
        path: PathTracker::default(),
        dict: StateDict::new(),
    };
    model.visit(&mut collector);
    collector.dict
}

/// Lists every parameter's timm key and expected timm-layout shape.
struct Expected {
    path: PathTracker,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl ModuleVisitor for Expected {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let KeyMap { key, transpose } = self.path.key_map();
        let mut shape = param.shape().to_vec();
        if transpose {
            shape.reverse();
        }
        self.shapes.insert(key, shape);
    }
}

/// Replaces every parameter with its tensor from the (already checked) state dict.
struct Applier {
    path: PathTracker,
    dict: StateDict,
}

impl ModuleMapper for Applier {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let KeyMap { key, transpose } = self.path.key_map();
        let data = self
            .dict
            .remove(&key)
            .expect("keys were checked before applying");
        let device = param.val().device();
        let require_grad = param.is_require_grad();
        let tensor = Tensor::<D>::from_data(data, &device);
        let tensor = if transpose {
            tensor.transpose()
        } else {
            tensor
        };
        let (id, _, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.set_require_grad(require_grad), mapper)
    }
}

/// Applies a timm state dict to the model, all or nothing: every missing key, unknown key
/// and shape mismatch is reported by name (with both shapes) and the model is left as it was.
pub fn load_state_dict(
    model: VisionTransformer,
    dict: StateDict,
) -> Result<VisionTransformer, VitError> {
    let mut expected = Expected {
        path: PathTracker::default(),
        shapes: BTreeMap::new(),
    };
    model.visit(&mut expected);

    let mut problems = Vec::new();
    for (key, shape) in &expected.shapes {
        match dict.get(key) {
            None => problems.push(format!("missing key `{key}` (model expects {shape:?})")),
            Some(data) if data.shape().as_slice() != shape.as_slice() => problems.push(format!(
                "wrong shape for `{key}`: file has {:?}, model expects {shape:?}",
                data.shape().to_vec()
            )),
            Some(_) => {}
        }
    }
    for (key, data) in &dict {
        if !expected.shapes.contains_key(key) {
            problems.push(format!(
                "unknown key `{key}` (shape {:?}) not in the model",
                data.shape().to_vec()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(VitError::WeightsMismatch { problems });
    }

    let dict = dict
        .into_iter()
        .map(|(k, v)| (k, v.convert::<f32>()))
        .collect();
    let mut applier = Applier {
        path: PathTracker::default(),
        dict,
    };
    Ok(model.map(&mut applier))
}

struct IdCollector {
    path: PathTracker,
    ids: BTreeMap<String, u64>,
}

impl ModuleVisitor for IdCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.ids.insert(self.path.key_map().key, param.id.val());
    }
}

/// Each parameter's [`ParamId`](burn::module::ParamId) by timm key. Optimiser state is keyed
/// by these ids, so a resumed run restores them with [`set_param_ids`].
pub fn param_ids(model: &VisionTransformer) -> BTreeMap<String, u64> {
    let mut c = IdCollector {
        path: PathTracker::default(),
        ids: BTreeMap::new(),
    };
    model.visit(&mut c);
    c.ids
}

struct IdSetter {
    path: PathTracker,
    ids: BTreeMap<String, u64>,
}

impl ModuleMapper for IdSetter {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.ids.get(&self.path.key_map().key) {
            Some(&id) => {
                let (_, value, mapper) = param.consume();
                Param::from_mapped_value(burn::module::ParamId::from(id), value, mapper)
            }
            None => param,
        }
    }
}

/// Gives parameters the ids of `ids` (by timm key), as [`param_ids`] recorded them.
pub fn set_param_ids(model: VisionTransformer, ids: BTreeMap<String, u64>) -> VisionTransformer {
    model.map(&mut IdSetter {
        path: PathTracker::default(),
        ids,
    })
}
