//! Transfer: fine-tuning from timm weights (new zero head, resampled position embeddings,
//! the paper's SGD defaults, layer-wise LR decay as timm computes it, a frozen backbone),
//! export back to timm names, and predict with pretrained weights against timm's logits.
//! References from `cargo xtask fixtures` (xtask/python/train_fixtures.py).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use common::*;
use vit_model::weights::{param_ids, read_safetensors, state_dict};
use vit_model::{Pool, PretrainedOptions, VitConfig, load_pretrained};
use vit_train::config::{Config, OptimizerKind};
use vit_train::train::optim::layer_scales;
use vit_train::train::{RunOptions, Start, checkpoint, run};

fn model_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vit-model/tests/fixtures")
        .join(name)
}

fn train_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// timm case (a)'s architecture (3 channels, patch 8, D 48, 2 blocks, 3 heads).
fn token_arch() -> VitConfig {
    VitConfig::new()
        .with_image_size([32, 32])
        .with_patch_size([8, 8])
        .with_num_classes(10)
        .with_embed_dim(48)
        .with_depth(2)
        .with_num_heads(3)
}

/// timm case (a)'s architecture as a recipe `[model]` section, at `size`.
fn model_toml(size: usize) -> String {
    format!(
        "[model]\nimage_size = [{size}, {size}]\npatch_size = [8, 8]\nin_channels = 3\n\
         num_classes = 10\nembed_dim = 48\ndepth = 2\nnum_heads = 3\n"
    )
}

/// Fine-tunes case (a)'s timm weights on the Fashion-MNIST fixture at 40 px (4x4 -> 5x5 grid).
fn finetune_recipe(dir: &Path, extra: &str) -> PathBuf {
    let text = format!(
        r#"{model}
[finetune]
weights = "{weights}"
{extra}

[data]
format = "idx"
root = "{root}"
train = "train"
test = "t10k"
train_limit = 96
val_limit = 64
resize = true
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]
workers = 1

[train]
epochs = 1
batch_size = 32
warmup_steps = 1
lr = 0.01
layer_decay = 0.75

[output]
dir = "{out}"
"#,
        model = model_toml(40),
        weights = model_fixture("token_32.model.safetensors").display(),
        root = fixture_root().display(),
        out = dir.join("run").display(),
    );
    let path = dir.join("finetune.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn layer_decay_matches_timm() {
    let want: BTreeMap<String, BTreeMap<String, f64>> =
        serde_json::from_str(&std::fs::read_to_string(train_fixture("layer_decay.json")).unwrap())
            .unwrap();
    let mean_arch = VitConfig::new()
        .with_image_size([48, 64])
        .with_patch_size([16, 8])
        .with_num_classes(7)
        .with_embed_dim(32)
        .with_depth(2)
        .with_num_heads(4)
        .with_mlp_ratio(3.0)
        .with_pool(Pool::Mean)
        .with_class_token(false)
        .with_layer_scale_init(Some(1e-5));
    let device = Device::flex();
    for (case, config) in [("token_32", token_arch()), ("mean_48x64", mean_arch)] {
        let model = config.init(&device);
        let names: BTreeMap<u64, String> = param_ids(&model)
            .into_iter()
            .map(|(k, id)| (id, k))
            .collect();
        let scales = layer_scales(&model, 0.75);
        assert_eq!(scales.len(), want[case].len(), "{case}: parameter count");
        for (path, id, scale) in scales {
            let key = &names[&id.val()];
            let expected = want[case][key];
            assert!(
                (scale - expected).abs() < 1e-12,
                "{case}: {key} ({path}) scale {scale}, timm {expected}"
            );
        }
    }
}

#[test]
fn finetune_uses_the_paper_recipe_and_exports_to_timm_names() {
    let _serial = serial();
    let dir = temp_dir("finetune");
    let recipe = finetune_recipe(&dir, "");
    let config = Config::load(&recipe, &[]).unwrap();
    // [finetune] switches the defaults to SGD momentum 0.9, no weight decay, clip 1.
    assert_eq!(config.train.optimizer, OptimizerKind::Sgd);
    assert_eq!(config.train.weight_decay, 0.0);
    assert_eq!(config.train.momentum, 0.9);
    assert_eq!(config.train.clip_grad_norm, Some(1.0));
    let summary = run(
        Start::New(config),
        RunOptions {
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(summary.steps, 3);
    assert!(summary.losses.iter().all(|l| l.is_finite()));
    // The zero head predicts uniformly at first: loss ln(10).
    assert!(
        (summary.losses[0] - 10f64.ln()).abs() < 1e-3,
        "{:?}",
        summary.losses
    );

    // export: timm names and layouts; values equal the checkpoint's model.
    let ckpt = checkpoint::resolve(&summary.dir).unwrap();
    let out = dir.join("exported.safetensors");
    let (ok, _, err) = vit_train(&[
        "export",
        "--checkpoint",
        summary.dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let exported = read_safetensors(&out).unwrap();
    let timm = read_safetensors(&model_fixture("token_32.model.safetensors")).unwrap();
    assert_eq!(
        exported.keys().collect::<Vec<_>>(),
        timm.keys().collect::<Vec<_>>(),
        "exported keys are timm's"
    );
    for (key, t) in &timm {
        let shape = exported[key].shape().to_vec();
        if key == "pos_embed" {
            assert_eq!(shape, vec![1, 26, 48], "5x5 grid + class token");
        } else {
            assert_eq!(&shape, &t.shape().to_vec(), "{key}");
        }
    }
    let state = checkpoint::read_state(&ckpt).unwrap();
    let device = Device::flex();
    let model = checkpoint::load_for_inference(&ckpt, &state, &device).unwrap();
    let ours = state_dict(&model);
    for (key, t) in &exported {
        assert_eq!(t, &ours[key], "{key} differs from the checkpoint");
    }
    // The exported file loads back as timm weights and computes the same logits.
    let back = load_pretrained(
        &token_arch().with_image_size([40, 40]),
        &out,
        &PretrainedOptions::default(),
        &device,
    )
    .unwrap();
    let x = Tensor::<4>::ones([1, 3, 40, 40], &device);
    let a = model.forward(x.clone()).unwrap().into_data();
    let b = back.forward(x).unwrap().into_data();
    assert_eq!(a, b);

    // Export never overwrites.
    let (ok, _, err) = vit_train(&[
        "export",
        "--checkpoint",
        summary.dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("already exists"), "{err}");
}

#[test]
fn finetune_resumes_with_the_architecture_it_loaded() {
    let _serial = serial();
    let dir = temp_dir("finetune-resume");
    let recipe = finetune_recipe(&dir, "");
    let config = Config::load(&recipe, &[]).unwrap();
    let straight = run(
        Start::New(config.clone()),
        RunOptions {
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    // Same recipe in another folder: stop after one step, then --resume.
    let config = Config::load(
        &recipe,
        &[format!("output.dir=\"{}\"", dir.join("run2").display())],
    )
    .unwrap();
    run(
        Start::New(config.clone()),
        RunOptions {
            stop_after: Some(1),
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    let saved = checkpoint::read_state(&checkpoint::resolve(&dir.join("run2")).unwrap()).unwrap();
    // The run recorded the architecture as loaded (the 5x5 grid), not the weights path alone.
    let vit = saved.config.model.config.as_vit().unwrap();
    assert_eq!(vit.image_size, [40, 40]);
    assert!(vit.qkv_bias);
    let resumed = run(
        Start::Resume(dir.join("run2")),
        RunOptions {
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(resumed.steps, 3);
    for (a, b) in resumed.losses.iter().zip(&straight.losses[1..]) {
        assert!((a - b).abs() < 1e-5, "resumed {a} vs straight {b}");
    }
}

#[test]
fn frozen_backbone_trains_only_the_head() {
    let dir = temp_dir("linear-probe");
    let recipe = finetune_recipe(&dir, "freeze_backbone = true");
    let (ok, _, err) = vit_train(&[
        "finetune",
        "--config",
        recipe.to_str().unwrap(),
        "--max-steps",
        "2",
    ]);
    assert!(ok, "{err}");
    let ckpt = checkpoint::resolve(&dir.join("run")).unwrap();
    let trained = read_safetensors(&ckpt.join("model.safetensors")).unwrap();
    let pretrained = read_safetensors(&model_fixture("token_32.model.safetensors")).unwrap();
    for key in [
        "blocks.0.attn.qkv.weight",
        "blocks.1.mlp.fc2.bias",
        "cls_token",
        "norm.weight",
    ] {
        assert_eq!(
            trained[key], pretrained[key],
            "{key} changed under a frozen backbone"
        );
    }
    let head = trained["head.weight"].try_to_vec::<f32>().unwrap();
    assert!(head.iter().any(|&v| v != 0.0), "the head did not train");
}

#[test]
fn finetune_without_weights_is_a_clear_error() {
    let dir = temp_dir("finetune-noweights");
    let (path, _) = recipe(&dir, &[]);
    let (ok, _, err) = vit_train(&["finetune", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("--weights FILE"), "{err}");
    // A missing weights file is named.
    let (ok, _, err) = vit_train(&[
        "finetune",
        "--config",
        path.to_str().unwrap(),
        "--weights",
        "no/such/weights.safetensors",
    ]);
    assert!(!ok && err.contains("no/such/weights.safetensors"), "{err}");
}

#[test]
fn predict_with_weights_matches_timm() {
    let dir = temp_dir("predict-weights");
    let model = dir.join("model.toml");
    std::fs::write(&model, model_toml(32)).unwrap();
    let (ok, out, err) = vit_train(&[
        "predict",
        "--weights",
        model_fixture("token_32.model.safetensors")
            .to_str()
            .unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--json",
        "--logits",
        "--top-k",
        "3",
        train_fixture("predict_32.png").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(train_fixture("predict_32.json")).unwrap())
            .unwrap();
    let got_logits = got["logits"].as_array().unwrap();
    let want_logits = want["logits"].as_array().unwrap();
    assert_eq!(got_logits.len(), 10);
    for (g, w) in got_logits.iter().zip(want_logits) {
        let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
        assert!((g - w).abs() < 1e-4, "logit {g} vs timm {w}");
    }
    assert_eq!(got["top_k"].as_array().unwrap().len(), 3);
    let best = got["top_k"][0]["index"].as_u64().unwrap() as usize;
    let argmax = want_logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
        .unwrap()
        .0;
    assert_eq!(best, argmax);

    // Another size goes through timm's resize + centre crop; --image-size resamples.
    let (ok, out, err) = vit_train(&[
        "predict",
        "--weights",
        model_fixture("token_32.model.pth").to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--image-size",
        "48x40",
        "--json",
        train_fixture("predict_32.png").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(got["top_k"].as_array().unwrap().len(), 5);
}

/// `predict --weights` with a timm BiT ResNet (bit_fixtures.py's bit_tiny_48) on a 61x50 RGB
/// PNG: BiT's evaluation transform (crop_pct 0.875, bilinear, mean and std 0.5) and the
/// network give timm's logits, from timm's safetensors and from the original BiT `.npz` layout.
#[test]
fn predict_with_bit_weights_matches_timm() {
    let dir = temp_dir("predict-bit");
    let model = dir.join("bit.toml");
    std::fs::write(
        &model,
        "[model]\nfamily = \"resnet\"\nlayers = [1, 1, 1, 1]\nchannels = [32, 64, 128, 256]\n\
         stem_width = 16\nnorm_groups = 8\nimage_size = [48, 48]\nnum_classes = 10\n",
    )
    .unwrap();
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(train_fixture("predict_bit_48.json")).unwrap(),
    )
    .unwrap();
    let want: Vec<f64> = want["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for weights in ["bit_tiny_48.model.safetensors", "bit_tiny_48.bit.npz"] {
        let (ok, out, err) = vit_train(&[
            "predict",
            "--weights",
            model_fixture(weights).to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--json",
            "--logits",
            train_fixture("predict_bit_48.png").to_str().unwrap(),
        ]);
        assert!(ok, "{weights}: {err}");
        let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let got = got["logits"].as_array().unwrap();
        assert_eq!(got.len(), 10);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g.as_f64().unwrap() - w).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-4, "{weights}: logits {worst:.2e} from timm's");
        eprintln!("{weights}: logits within {worst:.2e} of timm's");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shipped_finetune_recipes_parse() {
    for (name, expect) in [
        (
            "finetune-b16-384.toml",
            "new zero head of 1000 classes, position embeddings resampled with posemb_resample \"jax\"",
        ),
        // The hybrid R50+ViT-B/16 at 384: timm's parameter count, a 24x24 feature grid.
        ("finetune-r50-b16-384.toml", "parameters 98,950,952"),
        ("finetune-r50-b16-384.toml", "tokens 577"),
        (
            "finetune-fashion-mnist-dinov2.toml",
            "new zero head of 10 classes",
        ),
        ("scratch-fashion-mnist-vits14.toml", "tokens 37"),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../configs")
            .join(name);
        let (ok, out, err) = vit_train(&["info", "--config", path.to_str().unwrap()]);
        assert!(ok, "{name}: {err}");
        assert!(out.contains(expect), "{name}: {out}");
    }
    // The paper's fine-tuning recipe at 384: 24x24 patches + class token.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/finetune-b16-384.toml");
    let config = Config::load(&path, &[]).unwrap();
    assert_eq!(config.model.config.as_vit().unwrap().seq_len(), 577);
    assert_eq!(config.train.optimizer, OptimizerKind::Sgd);
}
