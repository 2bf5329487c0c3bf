//! The model against timm's outputs for the same weights and input (fixtures written by
//! `cargo xtask fixtures`), on the default CPU backend.

mod common;

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Distribution, Tensor};
use common::*;
use vit_model::VitError;
use vit_model::weights::{load_state_dict, read_safetensors, save_safetensors, state_dict};

const TOL: f32 = 1e-4;

#[test]
fn token_pool_model_matches_timm() {
    check_case("token_32", &token_config(), &Device::flex(), TOL);
}

#[test]
fn non_square_mean_pool_layer_scale_model_matches_timm() {
    check_case("mean_48x64", &mean_config(), &Device::flex(), TOL);
}

#[test]
fn pre_logits_model_matches_torch() {
    check_case("pre_logits", &pre_logits_config(), &Device::flex(), TOL);
}

#[test]
fn fused_attention_equals_explicit_attention() {
    let device = Device::flex();
    let shape = [2, 3, 17, 16];
    let q = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let k = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let v = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let fused = attention(
        q.clone(),
        k.clone(),
        v.clone(),
        None,
        None,
        AttentionModuleOptions::default(),
    );
    let weights = burn::tensor::activation::softmax(q.matmul(k.swap_dims(2, 3)) * 0.25, 3);
    let explicit = weights.matmul(v);
    let d = max_abs_diff(fused.into_data(), &explicit.into_data());
    assert!(d <= 1e-5, "fused and explicit attention differ by {d}");

    // And through the model: forward (fused) equals the intermediates' path (explicit).
    let model = load_case("token_32", &token_config(), &device);
    let x = tensor::<4>(&io("token_32")["input"], &device);
    let fused = model.forward(x.clone()).unwrap();
    let explicit = model.forward_intermediates(x, true).unwrap().logits;
    let d = max_abs_diff(fused.into_data(), &explicit.into_data());
    assert!(
        d <= 1e-5,
        "model logits differ between attention paths by {d}"
    );
}

#[test]
fn saved_state_dict_equals_timm_file() {
    let device = Device::flex();
    let model = load_case("mean_48x64", &mean_config(), &device);
    let timm = read_safetensors(&fixture("mean_48x64.model.safetensors")).unwrap();
    let ours = state_dict(&model);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        timm.keys().collect::<Vec<_>>()
    );
    for (key, want) in &timm {
        assert_eq!(ours[key].shape(), want.shape(), "{key}");
        assert_eq!(max_abs_diff(ours[key].clone(), want), 0.0, "{key}");
    }

    // Save, then load into a fresh model: the same logits.
    let dir = std::env::temp_dir().join(format!("vit-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let _ = std::fs::remove_file(&path);
    save_safetensors(&model, &path).unwrap();
    let err = save_safetensors(&model, &path).unwrap_err();
    assert!(err.to_string().contains("not overwriting"), "{err}");
    let reloaded =
        vit_model::weights::load_safetensors(mean_config().init(&device), &path).unwrap();
    let x = tensor::<4>(&io("mean_48x64")["input"], &device);
    let d = max_abs_diff(
        reloaded.forward(x.clone()).unwrap().into_data(),
        &model.forward(x).unwrap().into_data(),
    );
    assert_eq!(d, 0.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mismatched_weights_are_reported_by_key_and_nothing_loads() {
    let device = Device::flex();
    let mut dict = read_safetensors(&fixture("token_32.model.safetensors")).unwrap();
    dict.remove("blocks.1.mlp.fc2.bias");
    let pos = dict.remove("pos_embed").unwrap();
    dict.insert(
        "pos_embed".into(),
        burn::tensor::TensorData::new(vec![0.0f32; 48 * 5], [1, 5, 48]),
    );
    dict.insert("blocks.9.attn.qkv.weight".into(), pos);
    let err = load_state_dict(token_config().init(&device), dict).unwrap_err();
    let VitError::WeightsMismatch { problems } = &err else {
        panic!("expected a mismatch report, got {err}");
    };
    let text = problems.join("\n");
    assert_eq!(problems.len(), 3, "{text}");
    assert!(
        text.contains("missing key `blocks.1.mlp.fc2.bias` (model expects [48])"),
        "{text}"
    );
    assert!(
        text.contains(
            "wrong shape for `pos_embed`: file has [1, 5, 48], model expects [1, 17, 48]"
        ),
        "{text}"
    );
    assert!(
        text.contains("unknown key `blocks.9.attn.qkv.weight`"),
        "{text}"
    );
}

#[test]
fn wrong_input_is_an_error_naming_the_expected_shape() {
    let device = Device::flex();
    let model = token_config().init(&device);
    let x = Tensor::<4>::zeros([1, 1, 32, 32], &device);
    let err = model.forward(x).unwrap_err().to_string();
    assert!(err.contains("[1, 1, 32, 32]"), "{err}");
    assert!(err.contains("[batch, 3, 32, 32]"), "{err}");
    let x = Tensor::<4>::zeros([1, 3, 64, 32], &device);
    assert!(model.forward(x).is_err());
}

#[test]
fn fresh_model_follows_the_jax_init() {
    let device = Device::flex();
    let model = token_config().init(&device);
    let head = model.head.as_ref().unwrap();
    let zeros = |t: Tensor<2>| t.abs().max().into_scalar::<f32>() == 0.0;
    assert!(zeros(head.weight.val()), "head weight must start at zero");
    assert!(
        zeros(head.bias.as_ref().unwrap().val().unsqueeze()),
        "head bias must start at zero"
    );
    assert!(zeros(
        model.cls_token.as_ref().unwrap().val().reshape([1, 48])
    ));
    let qkv_bias = model.blocks[0].attn.qkv.bias.as_ref().unwrap().val();
    assert!(zeros(qkv_bias.unsqueeze()));
    // pos_embed ~ N(0, 0.02): the sample std is close to 0.02.
    let pos = model.pos_embed.val();
    let std = pos.clone().var(2).mean().sqrt().into_scalar::<f32>();
    assert!((std - 0.02).abs() < 0.004, "pos_embed std {std}");
    let d = model.config.embed_dim as f32;
    let fc1 = model.blocks[0].mlp.fc1.weight.val();
    // xavier-uniform bound sqrt(6 / (fan_in + fan_out)).
    let bound = (6.0 / (d + 4.0 * d)).sqrt();
    let max = fc1.abs().max().into_scalar::<f32>();
    assert!(
        max <= bound && max > 0.8 * bound,
        "fc1 max {max}, bound {bound}"
    );
}

#[test]
fn gradients_match_pytorch() {
    let (grads, refs) = gradients("token_32", &token_config());
    assert_eq!(grads.len(), refs.len() - 2);
    let mut worst: f32 = 0.0;
    for (key, got) in grads {
        let want = &refs[&format!("grad.{key}")];
        let d = max_abs_diff(got, want);
        assert!(d <= 1e-5, "gradient of {key} differs from PyTorch by {d}");
        worst = worst.max(d);
    }
    eprintln!("gradients: max |diff| to PyTorch {worst:e}");
}
