//! Checkpoints in foreign formats load and give the reference's own outputs: timm `.pth`,
//! the JAX `.npz` layout (checked by timm's `_load_weights` when generated), HF `ViT` and
//! `Dinov2Model`. Fixtures from `cargo xtask fixtures` (xtask/python/foreign_fixtures.py).

mod common;

use burn::tensor::Device;
use common::{fixture, io, max_abs_diff, tensor, token_config};
use vit_model::weights::{read_safetensors, read_weights};
use vit_model::{PretrainedOptions, ResampleMode, VitConfig, WeightFormat, load_pretrained};

const TOL: f32 = 1e-4;

fn device() -> Device {
    Device::flex()
}

fn token_logits(file: &str, expect: WeightFormat) -> f32 {
    let device = device();
    let (_, format) = read_weights(&fixture(file), None).unwrap();
    assert_eq!(format, expect, "{file}: detected format");
    let model = load_pretrained(
        &token_config(),
        &fixture(file),
        &PretrainedOptions::default(),
        &device,
    )
    .unwrap();
    let io = io("token_32");
    let logits = model.forward(tensor(&io["input"], &device)).unwrap();
    max_abs_diff(logits.into_data(), &io["logits"])
}

#[test]
fn timm_pth_with_model_wrapper() {
    let d = token_logits("token_32.model.pth", WeightFormat::Timm);
    assert!(d <= TOL, "pth logits differ from timm by {d}");
}

#[test]
fn jax_npz() {
    let d = token_logits("token_32.jax.npz", WeightFormat::Jax);
    assert!(d <= TOL, "npz logits differ from timm by {d}");
}

fn hf_vit_config() -> VitConfig {
    VitConfig::new()
        .with_image_size([32, 32])
        .with_patch_size([8, 8])
        .with_embed_dim(48)
        .with_depth(2)
        .with_num_heads(3)
        .with_mlp_dim(Some(96))
}

#[test]
fn hf_vit_for_image_classification() {
    let device = device();
    let path = fixture("hf_vit.model.safetensors");
    assert_eq!(read_weights(&path, None).unwrap().1, WeightFormat::HfVit);
    let model = load_pretrained(
        &hf_vit_config(),
        &path,
        &PretrainedOptions::default(),
        &device,
    )
    .unwrap();
    assert_eq!(
        model.config.num_classes, 5,
        "classes from the checkpoint's head"
    );
    let io = io("hf_vit");
    let logits = model.forward(tensor(&io["input"], &device)).unwrap();
    let d = max_abs_diff(logits.into_data(), &io["logits"]);
    assert!(d <= TOL, "HF ViT logits differ by {d}");
}

#[test]
fn hf_vit_model_bin_with_pooler() {
    let device = device();
    let path = fixture("hf_vit_base.pytorch_model.bin");
    let model = load_pretrained(
        &hf_vit_config(),
        &path,
        &PretrainedOptions::default(),
        &device,
    )
    .unwrap();
    assert_eq!(model.config.num_classes, 0);
    assert_eq!(
        model.config.representation_size,
        Some(48),
        "pooler -> pre-logits"
    );
    let io = io("hf_vit");
    let x = tensor::<4>(&io["input"], &device);
    let features = model.forward_features(x.clone()).unwrap();
    let d = max_abs_diff(features.into_data(), &io["last_hidden_state"]);
    assert!(d <= TOL, "HF ViTModel last_hidden_state differs by {d}");
    let pooled = model.forward(x).unwrap();
    let d = max_abs_diff(pooled.into_data(), &io["pooler_output"]);
    assert!(d <= TOL, "HF ViTModel pooler_output differs by {d}");
}

fn dinov2_config(size: [usize; 2]) -> VitConfig {
    VitConfig::new()
        .with_image_size(size)
        .with_patch_size([7, 7])
        .with_embed_dim(48)
        .with_depth(2)
        .with_num_heads(3)
        .with_mlp_dim(Some(96))
}

#[test]
fn hf_dinov2_native_and_interpolated() {
    let device = device();
    let path = fixture("hf_dinov2.model.safetensors");
    assert_eq!(read_weights(&path, None).unwrap().1, WeightFormat::HfDinov2);
    let io = io("hf_dinov2");

    let model = load_pretrained(
        &dinov2_config([28, 28]),
        &path,
        &PretrainedOptions::default(),
        &device,
    )
    .unwrap();
    assert!(
        model.config.layer_scale_init.is_some(),
        "LayerScale from the checkpoint"
    );
    let features = model
        .forward_features(tensor(&io["input"], &device))
        .unwrap();
    let d = max_abs_diff(features.into_data(), &io["last_hidden_state"]);
    assert!(d <= TOL, "DINOv2 last_hidden_state differs by {d}");

    // At 42x35 HF interpolates the 4x4 grid to 6x5 (bicubic, a = -0.75): our `hf` mode.
    let options = PretrainedOptions {
        resample: ResampleMode::Hf,
        ..Default::default()
    };
    let model = load_pretrained(&dinov2_config([42, 35]), &path, &options, &device).unwrap();
    let features = model
        .forward_features(tensor(&io["input_42x35"], &device))
        .unwrap();
    let d = max_abs_diff(features.into_data(), &io["last_hidden_state_42x35"]);
    assert!(d <= TOL, "DINOv2 at 42x35 differs by {d}");
}

#[test]
fn fine_tune_head_and_non_square_resample() {
    let device = device();
    let options = PretrainedOptions {
        new_head: Some(4),
        ..Default::default()
    };
    let config = token_config().with_image_size([48, 64]);
    let model = load_pretrained(
        &config,
        &fixture("token_32.model.safetensors"),
        &options,
        &device,
    )
    .unwrap();
    assert_eq!(model.config.num_classes, 4);
    let head = model.head.as_ref().unwrap();
    assert_eq!(head.weight.val().dims(), [48, 4]);
    assert_eq!(
        head.weight.val().abs().max().into_scalar::<f32>(),
        0.0,
        "zero head"
    );
    let want = read_safetensors(&fixture("token_32.resample.safetensors")).unwrap();
    let d = max_abs_diff(model.pos_embed.val().into_data(), &want["pos_embed.6x8"]);
    assert!(d <= 1e-5, "pos_embed 4x4 -> 6x8 differs from timm by {d}");
}

#[test]
fn wrong_format_is_reported_by_key() {
    let device = device();
    // A JAX file forced to be read as HF: nothing maps, every key is named.
    let options = PretrainedOptions {
        format: Some(WeightFormat::HfVit),
        ..Default::default()
    };
    let err = load_pretrained(
        &token_config(),
        &fixture("token_32.jax.npz"),
        &options,
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("token_32.jax.npz"), "{err}");
    assert!(
        err.contains("missing key `blocks.0.attn.qkv.weight`"),
        "{err}"
    );
    assert!(
        err.contains("unknown key `Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel`"),
        "{err}"
    );

    // A preset that does not fit the checkpoint: shapes are reported with both sides.
    let err = load_pretrained(
        &token_config().with_embed_dim(60),
        &fixture("token_32.model.pth"),
        &PretrainedOptions::default(),
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("wrong shape for `patch_embed.proj.weight`"),
        "{err}"
    );

    let err = read_weights(std::path::Path::new("weights.onnx"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("weights.onnx") && err.contains(".safetensors"),
        "{err}"
    );
}
