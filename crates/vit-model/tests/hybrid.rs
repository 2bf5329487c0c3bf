//! The hybrid (ResNet + ViT, paper section 3.1) against timm: logits and features, at a
//! resampled size, gradients, a stem-only backbone, the JAX `.npz` layout with the JAX
//! code's epsilons, and export under timm's names. Fixtures: `xtask/python/hybrid_fixtures.py`.

mod common;

use burn::tensor::{Device, TensorData};
use common::*;
use vit_model::resnet::{ResNetConfig, StdConvStyle};
use vit_model::weights::{read_safetensors, save_safetensors, state_dict};
use vit_model::{PretrainedOptions, ResampleMode, VitConfig, load_pretrained};

#[test]
fn hybrid_matches_timm() {
    let device = Device::flex();
    let config = hybrid_config();
    assert_eq!(config.grid_size(), [4, 4]);
    let worst = check_case("hybrid_64", &config, &device, 1e-4);
    assert!(worst > 0.0);
}

#[test]
fn stem_only_hybrid_matches_timm() {
    check_case("hybrid_stem", &stem_config(), &Device::flex(), 1e-4);
}

/// The same weights at 60x92: odd sizes inside the ResNet (symmetric and asymmetric SAME
/// padding), the 4x4 grid of position embeddings resampled to 4x6 as timm does.
#[test]
fn hybrid_at_another_size_matches_timm() {
    let device = Device::flex();
    let model = load_case("hybrid_64", &hybrid_config(), &device)
        .set_image_size([60, 92], ResampleMode::Timm)
        .unwrap();
    assert_eq!(model.config.grid_size(), [4, 6]);
    let io = read_safetensors(&fixture("hybrid_64.resample.io.safetensors")).unwrap();
    let logits = model.forward(tensor::<4>(&io["input"], &device)).unwrap();
    let d = max_abs_diff(logits.into_data(), &io["logits"]);
    assert!(d <= 1e-4, "logits at 60x92 differ from timm by {d}");
}

#[test]
fn hybrid_gradients_match_pytorch() {
    let (grads, refs) = gradients("hybrid_64", &hybrid_config());
    assert_eq!(
        grads.len(),
        refs.len() - 2,
        "every parameter of the reference"
    );
    let mut worst: f32 = 0.0;
    for (key, got) in &grads {
        let want = &refs[&format!("grad.{key}")];
        let scale = want.iter::<f32>().fold(0.0f32, |m, v| m.max(v.abs()));
        // Within 1e-5, relative to the gradient's size where it exceeds 1: the fixture's
        // kernels with a standard deviation near 1e-4 get gradients near 1 / std (up to 150).
        let d = max_abs_diff(got.clone(), want) / scale.max(1.0);
        assert!(
            d <= 1e-5,
            "gradient of {key} differs from PyTorch by {d} (of {scale})"
        );
        worst = worst.max(d);
    }
    eprintln!(
        "hybrid gradients: {} parameters, max |diff| / max(1, |grad|) to PyTorch {worst:e}",
        grads.len()
    );
}

/// The JAX layout (built from the timm weights, checked with timm's `_load_weights`) loads
/// into the JAX model: the JAX code's epsilons, not timm's, and its logits.
#[test]
fn jax_hybrid_checkpoint_loads_as_the_jax_model() {
    let device = Device::flex();
    let model = load_pretrained(
        &hybrid_config(),
        &fixture("hybrid_64.jax.npz"),
        &PretrainedOptions::default(),
        &device,
    )
    .unwrap();
    let b = model.config.backbone.as_ref().unwrap();
    assert_eq!(
        (b.std_conv, b.std_conv_eps, b.norm_eps),
        (StdConvStyle::Jax, 1e-5, 1e-6)
    );
    let io = read_safetensors(&fixture("hybrid_64.jax_io.safetensors")).unwrap();
    let logits = model.forward(tensor::<4>(&io["input"], &device)).unwrap();
    let d = max_abs_diff(logits.clone().into_data(), &io["logits"]);
    assert!(d <= 1e-4, "logits differ from the JAX model's by {d}");
    // And the epsilons matter here: timm's would be off by far more.
    let timm = io_logits("hybrid_64");
    assert!(max_abs_diff(logits.into_data(), &timm) > 1e-2);
}

fn io_logits(case: &str) -> TensorData {
    io(case)["logits"].clone()
}

/// `export` writes timm's names: the state dict of a loaded hybrid is the timm file's, key
/// for key and value for value (the stem-only one without `stem.`, as timm names it).
#[test]
fn hybrid_state_dict_is_timms() {
    let device = Device::flex();
    for (case, config) in [
        ("hybrid_64", hybrid_config()),
        ("hybrid_stem", stem_config()),
    ] {
        let model = load_case(case, &config, &device);
        let want = read_safetensors(&fixture(&format!("{case}.model.safetensors"))).unwrap();
        let got = state_dict(&model);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{case}"
        );
        for (k, v) in &got {
            assert_eq!(max_abs_diff(v.clone(), &want[k]), 0.0, "{case}: {k}");
        }
        let path =
            std::env::temp_dir().join(format!("vit-{case}-{}.safetensors", std::process::id()));
        save_safetensors(&model, &path).unwrap();
        let again = load_case_from(&path, &config, &device);
        assert_eq!(state_dict(&again).len(), got.len());
        std::fs::remove_file(&path).unwrap();
    }
}

fn load_case_from(
    path: &std::path::Path,
    config: &VitConfig,
    device: &Device,
) -> vit_model::VisionTransformer {
    vit_model::weights::load_safetensors(config.init(device), path).unwrap()
}

/// The feature grid and the SAME arithmetic: image / 16 for R50's three stages, / 32 for
/// four, / 4 for the stem, rounded up at every stride-2 layer.
#[test]
fn feature_grid_follows_the_backbone() {
    let r50 = VitConfig::preset("vit_base_r50_s16_384").unwrap();
    assert_eq!(r50.grid_size(), [24, 24]);
    assert_eq!(r50.seq_len(), 577);
    let r26 = VitConfig::preset("vit_small_r26_s32_224").unwrap();
    assert_eq!(r26.grid_size(), [7, 7]);
    let tiny = VitConfig::preset("vit_tiny_r_s16_p8_224").unwrap();
    assert_eq!(tiny.embed_input_size(), [56, 56]);
    assert_eq!(tiny.grid_size(), [7, 7]);
    let b = ResNetConfig::new().with_layers(vec![1, 1]);
    assert_eq!(b.feature_size([60, 92]), [8, 12]);
    // A patch that does not divide the feature map is named with both sizes.
    let err = hybrid_config()
        .with_patch_size([3, 3])
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("patch_size = [3, 3]") && err.contains("feature map [8, 8]"),
        "{err}"
    );
}

/// timm files in half precision: a hybrid saved as f16 and as bf16 safetensors loads with
/// every value equal to the f32 original rounded to that type.
#[test]
fn half_precision_hybrid_weights_load_exactly() {
    use safetensors::tensor::{Dtype, TensorView};
    let device = Device::flex();
    let want = read_safetensors(&fixture("hybrid_64.model.safetensors")).unwrap();
    type Round = fn(f32) -> (f32, [u8; 2]);
    let cases: [(Dtype, Round); 2] = [
        (Dtype::F16, |v| {
            let h = half::f16::from_f32(v);
            (h.to_f32(), h.to_le_bytes())
        }),
        (Dtype::BF16, |v| {
            let h = half::bf16::from_f32(v);
            (h.to_f32(), h.to_le_bytes())
        }),
    ];
    for (dtype, round) in cases {
        let mut bytes = Vec::new();
        let mut rounded = std::collections::BTreeMap::new();
        for (k, t) in &want {
            let (vals, raw): (Vec<f32>, Vec<[u8; 2]>) = t.iter::<f32>().map(round).unzip();
            rounded.insert(k.clone(), vals);
            bytes.push((k.clone(), t.shape().to_vec(), raw.concat()));
        }
        let views: Vec<(String, TensorView)> = bytes
            .iter()
            .map(|(k, shape, raw)| {
                (
                    k.clone(),
                    TensorView::new(dtype, shape.clone(), raw).unwrap(),
                )
            })
            .collect();
        let path = std::env::temp_dir().join(format!(
            "vit-hybrid-{dtype:?}-{}.safetensors",
            std::process::id()
        ));
        safetensors::serialize_to_file(views, None, &path).unwrap();
        let model =
            vit_model::weights::load_safetensors(hybrid_config().init(&device), &path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let got = state_dict(&model);
        for (k, vals) in rounded {
            let g: Vec<f32> = got[&k].try_to_vec().unwrap();
            assert_eq!(g, vals, "{dtype:?}: {k}");
        }
    }
}
