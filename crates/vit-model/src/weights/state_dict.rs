//! The model as a timm state dict, and a state dict applied to the model by name.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};

use crate::error::VitError;
use crate::vit::VisionTransformer;

/// A module whose parameter paths are timm's state-dict keys: every model of this crate
/// ([`VisionTransformer`], [`BitResNet`](crate::resnet::BitResNet), [`Model`](crate::Model)).
pub trait TimmNamed: Module {
    /// timm builds a stem-only hybrid backbone as the stem itself
    /// (`patch_embed.backbone.conv`), not as a ResNet with a `stem`.
    fn stem_only(&self) -> bool {
        false
    }
}

impl TimmNamed for VisionTransformer {
    fn stem_only(&self) -> bool {
        self.config
            .backbone
            .as_ref()
            .is_some_and(|b| b.layers.is_empty())
    }
}

impl TimmNamed for crate::resnet::BitResNet {}

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
#[derive(Default, Clone)]
struct PathTracker {
    names: Vec<String>,
    containers: Vec<String>,
    /// timm builds a stem-only backbone as the stem itself (`patch_embed.backbone.conv`),
    /// not as a ResNet with a `stem` (`patch_embed.backbone.stem.conv`).
    stem_only: bool,
}

impl PathTracker {
    fn of<M: TimmNamed>(model: &M) -> Self {
        Self {
            stem_only: model.stem_only(),
            ..Self::default()
        }
    }

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
        // An enum of models (`Model::Vit`, ...) is not a level of timm's names.
        let mut names: Vec<String> = self
            .names
            .iter()
            .zip(&self.containers)
            .filter(|(_, c)| !c.starts_with("Enum:"))
            .map(|(n, _)| n.clone())
            .collect();
        let last = names.last_mut().expect("a parameter has a name");
        let mut transpose = false;
        match (owner, last.as_str()) {
            // Burn's LayerNorm says gamma/beta; PyTorch weight/bias. LayerScale keeps `gamma`.
            ("Struct:LayerNorm", "gamma") => *last = "weight".into(),
            ("Struct:LayerNorm", "beta") => *last = "bias".into(),
            ("Struct:Linear", "weight") => transpose = true,
            _ => {}
        }
        if self.stem_only && names.starts_with(&["patch_embed".into(), "backbone".into()]) {
            names.retain_mut(|n| n != "stem");
        }
        KeyMap {
            key: names.join("."),
            transpose,
        }
    }
}

/// One parameter as timm sees it.
struct Entry {
    id: ParamId,
    /// Shape in timm's layout.
    shape: Vec<usize>,
    /// Values in timm's layout, when asked for.
    data: Option<TensorData>,
}

/// Lists every parameter by timm key (with its values when `with_data`).
struct Walk {
    path: PathTracker,
    with_data: bool,
    entries: BTreeMap<String, Entry>,
}

impl ModuleVisitor for Walk {
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
        let data = self.with_data.then(|| {
            let t = param.val();
            let t = if transpose { t.transpose() } else { t };
            // An owned copy: on wgpu, `into_data` hands out a mapped staging buffer of a
            // memory pool, and cubecl 0.11 was measured to reuse that buffer for a later read
            // while the data still pointed at it (a state dict taken before three training
            // steps read back the trained values).
            let data = t.into_data().convert::<f32>();
            let shape = data.shape().clone();
            let values = data.try_to_vec::<f32>().expect("converted to f32");
            TensorData::new(values, shape)
        });
        self.entries.insert(
            key,
            Entry {
                id: param.id,
                shape,
                data,
            },
        );
    }
}

fn walk<M: TimmNamed>(model: &M, with_data: bool) -> BTreeMap<String, Entry> {
    walk_with(model, PathTracker::of(model), with_data)
}

fn walk_with<M: Module>(model: &M, path: PathTracker, with_data: bool) -> BTreeMap<String, Entry> {
    let mut w = Walk {
        path,
        with_data,
        entries: BTreeMap::new(),
    };
    model.visit(&mut w);
    w.entries
}

/// Rewrites parameters by timm key: new values (timm layout) and/or new ids.
#[derive(Default)]
struct Rewrite {
    path: PathTracker,
    values: StateDict,
    ids: BTreeMap<String, u64>,
}

impl ModuleMapper for Rewrite {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let KeyMap { key, transpose } = self.path.key_map();
        let value = self.values.remove(&key);
        let id = self.ids.get(&key).copied();
        if value.is_none() && id.is_none() {
            return param;
        }
        let require_grad = param.is_require_grad();
        let device = param.val().device();
        let (old_id, old_value, mapper) = param.consume();
        let value = match value {
            Some(data) => {
                // Transposed on the host into a dense [in, out] weight, as a new model holds
                // it: a transposed view would send the GEMMs down other paths that round
                // differently, and a resumed run would drift from the run it continues.
                let data = data.convert::<f32>();
                let data = if transpose {
                    super::layout::transpose(&data).expect("load_state_dict checked the shape")
                } else {
                    data
                };
                Tensor::<D>::from_data(data, &device).set_require_grad(require_grad)
            }
            None => old_value,
        };
        let id = id.map(ParamId::from).unwrap_or(old_id);
        Param::from_mapped_value(id, value, mapper)
    }
}

/// The model's parameters as a timm state dict (timm names and layouts, f32).
pub fn state_dict<M: TimmNamed>(model: &M) -> StateDict {
    walk(model, true)
        .into_iter()
        .map(|(k, e)| (k, e.data.expect("walked with data")))
        .collect()
}

/// Applies a timm state dict to the model, all or nothing: every missing key, unknown key
/// and shape mismatch is reported by name (with both shapes) and the model is left as it was.
pub fn load_state_dict<M: TimmNamed>(model: M, dict: StateDict) -> Result<M, VitError> {
    let path = PathTracker::of(&model);
    let expected = walk_with(&model, path.clone(), false);
    let mut problems = Vec::new();
    for (key, Entry { shape, .. }) in &expected {
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
        if !expected.contains_key(key) {
            problems.push(format!(
                "unknown key `{key}` (shape {:?}) not in the model",
                data.shape().to_vec()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(VitError::WeightsMismatch { problems });
    }
    Ok(model.map(&mut Rewrite {
        path,
        values: dict,
        ..Default::default()
    }))
}

/// Each parameter's [`ParamId`] by timm key. Optimiser state is keyed by these ids, so a
/// resumed run restores them with [`set_param_ids`].
pub fn param_ids<M: TimmNamed>(model: &M) -> BTreeMap<String, u64> {
    walk(model, false)
        .into_iter()
        .map(|(k, e)| (k, e.id.val()))
        .collect()
}

/// Gives parameters the ids of `ids` (by timm key), as [`param_ids`] recorded them.
pub fn set_param_ids<M: TimmNamed>(model: M, ids: BTreeMap<String, u64>) -> M {
    let path = PathTracker::of(&model);
    model.map(&mut Rewrite {
        path,
        ids,
        ..Default::default()
    })
}
