//! Shared by the parity tests: the fixture cases, loaded and checked against timm on a device.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use vit_model::resnet::ResNetConfig;
use vit_model::weights::{StateDict, load_safetensors, read_safetensors};
use vit_model::{Pool, VisionTransformer, VitConfig};

/// A fixture file: in `VIT_FIXTURES_DIR` where set (the GPU pack's test executables run away
/// from the source tree they were built in), else in this crate's tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    match std::env::var_os("VIT_FIXTURES_DIR") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    }
}

pub fn io(case: &str) -> StateDict {
    read_safetensors(&fixture(&format!("{case}.io.safetensors"))).unwrap()
}

/// Max |a - b| between a tensor and a reference, after checking the shapes agree.
pub fn max_abs_diff(got: TensorData, want: &TensorData) -> f32 {
    assert_eq!(
        got.shape(),
        want.shape(),
        "shape differs from the reference"
    );
    let got = got.convert::<f32>().try_to_vec::<f32>().unwrap();
    let want = want.try_to_vec::<f32>().unwrap();
    got.iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

pub fn tensor<const D: usize>(data: &TensorData, device: &Device) -> Tensor<D> {
    Tensor::from_data(data.clone(), device)
}

/// (a) 2 blocks at 32x32, patch 8, token pooling.
pub fn token_config() -> VitConfig {
    VitConfig::new()
        .with_image_size([32, 32])
        .with_patch_size([8, 8])
        .with_num_classes(10)
        .with_embed_dim(48)
        .with_depth(2)
        .with_num_heads(3)
}

/// (b) 48x64 image, patch (16, 8), mean pooling, no class token, LayerScale.
pub fn mean_config() -> VitConfig {
    VitConfig::new()
        .with_image_size([48, 64])
        .with_patch_size([16, 8])
        .with_num_classes(7)
        .with_embed_dim(32)
        .with_depth(2)
        .with_num_heads(4)
        .with_mlp_ratio(3.0)
        .with_pool(Pool::Mean)
        .with_class_token(false)
        .with_layer_scale_init(Some(1e-5))
}

/// (d) a pre-logits layer, one input channel, no qkv bias.
pub fn pre_logits_config() -> VitConfig {
    VitConfig::new()
        .with_image_size([32, 32])
        .with_patch_size([16, 16])
        .with_in_channels(1)
        .with_num_classes(5)
        .with_embed_dim(24)
        .with_depth(1)
        .with_num_heads(2)
        .with_mlp_ratio(2.0)
        .with_qkv_bias(false)
        .with_representation_size(Some(16))
}

/// hybrid_64: two stages (1 + 1 blocks, stem 32), 64x64, 2x2 patches of the 4x4 feature map.
pub fn hybrid_config() -> VitConfig {
    VitConfig::new()
        .with_image_size([64, 64])
        .with_patch_size([2, 2])
        .with_num_classes(10)
        .with_embed_dim(48)
        .with_depth(2)
        .with_num_heads(3)
        .with_backbone(Some(
            ResNetConfig::new()
                .with_layers(vec![1, 1])
                .with_stem_width(32),
        ))
}

/// hybrid_stem: the stem alone (as `vit_tiny_r_s16_p8`), 32x32, 4x4 patches.
pub fn stem_config() -> VitConfig {
    VitConfig::new()
        .with_image_size([32, 32])
        .with_patch_size([4, 4])
        .with_num_classes(5)
        .with_embed_dim(48)
        .with_depth(1)
        .with_num_heads(3)
        .with_backbone(Some(
            ResNetConfig::new().with_layers(vec![]).with_stem_width(32),
        ))
}

pub fn load_case(case: &str, config: &VitConfig, device: &Device) -> VisionTransformer {
    let model = config.init(device);
    load_safetensors(model, &fixture(&format!("{case}.model.safetensors"))).unwrap()
}

/// Loads a fixture model on `device` and checks logits, features and every attention map
/// against timm's within `tol`. Returns the largest difference seen.
pub fn check_case(case: &str, config: &VitConfig, device: &Device, tol: f32) -> f32 {
    let model = load_case(case, config, device);
    let io = io(case);
    let x = tensor::<4>(&io["input"], device);

    let logits = model.forward(x.clone()).unwrap();
    let mut worst = max_abs_diff(logits.into_data(), &io["logits"]);
    assert!(worst <= tol, "{case}: logits differ from timm by {worst}");

    if let Some(want) = io.get("features") {
        let out = model.forward_intermediates(x, true).unwrap();
        let d = max_abs_diff(out.features.into_data(), want);
        assert!(d <= tol, "{case}: features differ from timm by {d}");
        worst = worst.max(d);
        let d = max_abs_diff(out.logits.into_data(), &io["logits"]);
        assert!(
            d <= tol,
            "{case}: intermediates' logits differ from timm by {d}"
        );
        assert_eq!(out.attentions.len(), config.depth);
        for (i, attn) in out.attentions.into_iter().enumerate() {
            let d = max_abs_diff(attn.into_data(), &io[&format!("attn.{i}")]);
            assert!(
                d <= tol,
                "{case}: attention map {i} differs from timm by {d}"
            );
            worst = worst.max(d);
        }
    }
    eprintln!("{case}: max |diff| to the reference {worst:e}");
    worst
}

/// Collects each parameter's gradient in timm layout, by timm key.
struct GradCollector<'a> {
    keys: std::collections::HashMap<u64, String>,
    grads: &'a burn::tensor::Gradients,
    out: StateDict,
}

impl burn::module::ModuleVisitor for GradCollector<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let key = self.keys[&param.id.val()].clone();
        let grad = param
            .val()
            .grad(self.grads)
            .expect("every parameter gets a gradient");
        // Linear weights: Burn [in, out], timm [out, in].
        let grad = if D == 2 { grad.transpose() } else { grad };
        self.out.insert(key, grad.into_data());
    }
}

/// The fixture case's mean cross-entropy against PyTorch's labels (checked within 1e-5 of
/// PyTorch's loss), backpropagated on Flex with autodiff: every parameter's gradient by timm
/// key, and the reference file (`grad.{key}`, `labels`, `loss`).
pub fn gradients(case: &str, config: &VitConfig) -> (StateDict, StateDict) {
    use burn::module::Module;
    let device = Device::flex().autodiff();
    let model = load_case(case, config, &device);
    let refs = read_safetensors(&fixture(&format!("{case}.grads.safetensors"))).unwrap();
    let labels: Vec<f32> = refs["labels"].try_to_vec().unwrap();
    let logits = model
        .forward(tensor::<4>(&io(case)["input"], &device))
        .unwrap();
    let [b, k] = logits.dims();
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
    let keys = vit_model::weights::param_ids(&model)
        .into_iter()
        .map(|(k, id)| (id, k))
        .collect();
    let mut c = GradCollector {
        keys,
        grads: &grads,
        out: Default::default(),
    };
    model.visit(&mut c);
    (c.out, refs)
}
