//! BiT, the paper's ResNet baseline, against timm's `resnetv2.py`: every preset's parameter
//! count, logits and features of two small models at two resolutions each (one with odd sizes
//! inside the net), every parameter's and the input's gradient, the original BiT `.npz`
//! layout, and export under timm's names. Fixtures: `xtask/python/bit_fixtures.py`.

mod common;

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use vit_model::resnet::{BitConfig, BitResNet, bit_preset, bit_preset_names};
use vit_model::weights::{
    StateDict, load_state_dict, read_bit_weights, read_safetensors, state_dict,
};

/// The fixtures' two models (see bit_fixtures.py).
fn config(case: &str) -> BitConfig {
    let c = BitConfig::new()
        .with_num_classes(10)
        .with_stem_width(16)
        .with_norm_groups(8);
    match case {
        "bit_tiny_48" => c
            .with_layers(vec![1, 1, 1, 1])
            .with_channels(vec![32, 64, 128, 256]),
        "bit_small_40" => c
            .with_layers(vec![2, 2, 1, 1])
            .with_channels(vec![32, 64, 64, 128]),
        other => panic!("no case {other}"),
    }
}

fn load(case: &str, device: &Device) -> BitResNet {
    let model = config(case).try_init(device).unwrap();
    let dict = read_safetensors(&fixture(&format!("{case}.model.safetensors"))).unwrap();
    load_state_dict(model, dict).unwrap()
}

#[test]
fn every_preset_has_timms_parameter_count() {
    let text = std::fs::read_to_string(fixture("bit_param_counts.json")).unwrap();
    let counts: HashMap<String, usize> = serde_json::from_str(&text).unwrap();
    for name in bit_preset_names() {
        let c = bit_preset(name).unwrap();
        assert_eq!(c.num_params(), counts[name], "{name}");
    }
    assert_eq!(counts.len(), bit_preset_names().len());
    // The count is that of the built model, not only of the formula.
    let device = Device::flex();
    let model = bit_preset("bit_tiny").unwrap().try_init(&device).unwrap();
    assert_eq!(model.num_params(), counts["bit_tiny"]);
}

#[test]
fn small_bits_match_timm_at_two_sizes() {
    let device = Device::flex();
    for (case, sizes) in [
        ("bit_tiny_48", ["48x48", "37x53"]),
        ("bit_small_40", ["40x40", "33x47"]),
    ] {
        let model = load(case, &device);
        let io = read_safetensors(&fixture(&format!("{case}.io.safetensors"))).unwrap();
        for size in sizes {
            let x = tensor::<4>(&io[&format!("input.{size}")], &device);
            let feats = model.forward_features(x.clone());
            let d = max_abs_diff(feats.into_data(), &io[&format!("features.{size}")]);
            assert!(
                d <= 1e-4,
                "{case} at {size}: features differ from timm by {d}"
            );
            let logits = model.forward(x);
            let d = max_abs_diff(logits.into_data(), &io[&format!("logits.{size}")]);
            assert!(
                d <= 1e-4,
                "{case} at {size}: logits differ from timm by {d}"
            );
            assert!(d > 0.0 || size == "never", "compared something");
            eprintln!("{case} at {size}: logits within {d:e} of timm");
        }
    }
}

/// Each parameter's gradient by module path (timm's key).
struct Grads<'a> {
    keys: HashMap<u64, String>,
    grads: &'a burn::tensor::Gradients,
    out: StateDict,
}

impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let g = param.val().grad(self.grads).expect("a gradient");
        self.out
            .insert(self.keys[&param.id.val()].clone(), g.into_data());
    }
}

#[test]
fn small_bits_gradients_match_pytorch() {
    let device = Device::flex().autodiff();
    for (case, size) in [("bit_tiny_48", "48x48"), ("bit_small_40", "40x40")] {
        let model = load(case, &device);
        let refs = read_safetensors(&fixture(&format!("{case}.grads.safetensors"))).unwrap();
        let io = read_safetensors(&fixture(&format!("{case}.io.safetensors"))).unwrap();
        let x = tensor::<4>(&io[&format!("input.{size}")], &device).require_grad();
        let logits = model.forward(x.clone());
        let [b, k] = logits.dims();
        let labels: Vec<f32> = refs["labels"].try_to_vec().unwrap();
        let mut onehot = vec![0.0f32; b * k];
        for (i, l) in labels.iter().enumerate() {
            onehot[i * k + *l as usize] = 1.0;
        }
        let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [b, k]), &device);
        let loss = (burn::tensor::activation::log_softmax(logits, 1) * onehot)
            .sum_dim(1)
            .mean()
            .neg();
        let d = max_abs_diff(loss.clone().into_data(), &refs["loss"]);
        assert!(d <= 1e-5, "{case}: loss differs from PyTorch by {d}");
        let grads = loss.backward();
        // Parameter ids to timm keys, through the state dict's walk order.
        let mut ids = Vec::new();
        struct Ids<'a>(&'a mut Vec<u64>);
        impl ModuleVisitor for Ids<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push(param.id.val());
            }
        }
        model.visit(&mut Ids(&mut ids));
        let names = state_dict(&model);
        let keys_in_order = model_keys_in_order(&model);
        assert_eq!(keys_in_order.len(), names.len());
        let keys = ids.into_iter().zip(keys_in_order).collect();
        let mut collect = Grads {
            keys,
            grads: &grads,
            out: StateDict::new(),
        };
        model.visit(&mut collect);
        assert_eq!(collect.out.len(), refs.len() - 3, "{case}: every parameter");
        let mut worst: f32 = 0.0;
        for (key, got) in collect.out.iter().chain([(
            &"input".to_string(),
            &x.grad(&grads).expect("the input's gradient").into_data(),
        )]) {
            let want = &refs[&format!("grad.{key}")];
            let scale = want.iter::<f32>().fold(0.0f32, |m, v| m.max(v.abs()));
            // Within 1e-5, relative where the gradient exceeds 1 (the kernels scaled to a
            // standard deviation near 1e-4 get gradients near 1 / std).
            let d = max_abs_diff(got.clone(), want) / scale.max(1.0);
            assert!(
                d <= 1e-5,
                "{case}: gradient of {key} differs by {d} (of {scale})"
            );
            worst = worst.max(d);
        }
        eprintln!("{case}: gradients within {worst:e} of PyTorch");
    }
}

/// The module paths in visiting order (the state dict is sorted; the walk is not).
fn model_keys_in_order(model: &BitResNet) -> Vec<String> {
    struct Paths {
        names: Vec<String>,
        out: Vec<String>,
    }
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.names.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.names.pop();
        }
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
            self.out.push(self.names.join("."));
        }
    }
    let mut p = Paths {
        names: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut p);
    p.out
}

/// The original BiT layout (HWIO kernels, `resnet/block{i}/unit{j:02d}/...`), which timm's
/// own `_load_weights` read back in the fixture script, gives timm's logits.
#[test]
fn the_bit_npz_layout_loads_to_timms_logits() {
    let device = Device::flex();
    let dict = read_bit_weights(&fixture("bit_tiny_48.bit.npz")).unwrap();
    let model = load_state_dict(config("bit_tiny_48").try_init(&device).unwrap(), dict).unwrap();
    let io = read_safetensors(&fixture("bit_tiny_48.io.safetensors")).unwrap();
    let logits = model.forward(tensor::<4>(&io["input.48x48"], &device));
    let d = max_abs_diff(logits.into_data(), &io["logits.48x48"]);
    assert!(d <= 1e-4, "logits from the .npz differ from timm by {d}");
}

/// Export writes timm's names and layouts: the state dict equals the file it was loaded from,
/// key for key and value for value.
#[test]
fn the_state_dict_is_timms() {
    let device = Device::flex();
    let model = load("bit_small_40", &device);
    let want = read_safetensors(&fixture("bit_small_40.model.safetensors")).unwrap();
    let got = state_dict(&model);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, v) in &want {
        assert_eq!(max_abs_diff(got[k].clone(), v), 0.0, "{k}");
    }
    // A wrong file is refused by name, and the model is not half-loaded.
    let mut bad = want.clone();
    bad.remove("stages.0.blocks.0.conv2.weight");
    let e = load_state_dict(config("bit_small_40").try_init(&device).unwrap(), bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing key `stages.0.blocks.0.conv2.weight`"),
        "{e}"
    );
}
