//! Models by id from a Hugging Face cache (tests/fixtures/hf-hub, laid out by
//! `xtask/python/hub_fixtures.py` and read back there by huggingface_hub's own
//! `try_to_load_from_cache` and `scan_cache_dir`): a timm repo (timm's `save_for_hf`) at two
//! revisions and an HF transformers ViT repo.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use serde_json::Value;
use vit_model::hub::{ModelId, resolve_in, snapshot};
use vit_model::weights::read_safetensors;
use vit_model::{CropMode, Interpolation, PretrainedOptions, WeightFormat, load_pretrained};

fn cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf-hub")
}

fn expected() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_hub_expected.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn model_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vit-model/tests/fixtures")
        .join(name)
}

/// The resolved model's logits on a fixture's input, against the reference's.
fn logits_diff(r: &vit_model::hub::Resolved, io: &str) -> f32 {
    let device = Device::flex();
    let model = load_pretrained(
        &r.config,
        &r.weights,
        &PretrainedOptions {
            format: Some(r.format),
            ..Default::default()
        },
        &device,
    )
    .unwrap();
    let io = read_safetensors(&model_fixture(io)).unwrap();
    let x = io["input"].clone();
    let shape: [usize; 4] = x.shape().to_vec().try_into().unwrap();
    let x = Tensor::<4>::from_data(
        TensorData::new(x.try_to_vec::<f32>().unwrap(), shape),
        &device,
    );
    let got = model
        .forward(x)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let want = io["logits"].try_to_vec::<f32>().unwrap();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_timm_repo_resolves_to_its_architecture_preprocessing_and_labels() {
    let want = &expected()["timm/vit_token32_test"];
    let r = resolve_in("hf-hub:timm/vit_token32_test", &cache()).unwrap();
    assert_eq!(r.commit, want["main"]["commit"].as_str().unwrap());
    assert_eq!(r.architecture, "vit_tiny_patch16_224");
    assert_eq!(r.format, WeightFormat::Timm);
    let c = &r.config;
    assert_eq!(
        (
            c.image_size,
            c.patch_size,
            c.embed_dim,
            c.depth,
            c.num_heads,
            c.num_classes
        ),
        ([32, 32], [8, 8], 48, 2, 3, 10)
    );
    // timm's resolve_data_config of the repo's pretrained_cfg.
    let d = &want["data_config"];
    let p = &r.preprocessing;
    assert_eq!(p.crop_pct, d["crop_pct"].as_f64().unwrap());
    assert_eq!(
        p.crop_mode,
        d["crop_mode"]
            .as_str()
            .unwrap()
            .parse::<CropMode>()
            .unwrap()
    );
    assert_eq!(
        p.interpolation,
        d["interpolation"]
            .as_str()
            .unwrap()
            .parse::<Interpolation>()
            .unwrap()
    );
    let f = |v: &Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    assert_eq!(
        (p.mean.clone(), p.std.clone()),
        (f(&d["mean"]), f(&d["std"]))
    );
    assert_eq!(r.labels, Some(strings(&want["main"]["labels"])));
    // The weights: the snapshot's file, where huggingface_hub finds it.
    let seen = &expected()["huggingface_hub"]["try_to_load_from_cache"];
    let link = cache().join(
        seen["timm/vit_token32_test@main/model.safetensors"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(r.weights, link);
    let diff = logits_diff(&r, "token_32.io.safetensors");
    assert!(diff < 1e-4, "logits differ from timm's by {diff}");
}

#[test]
fn revisions_commits_and_the_shorthand_resolve_as_huggingface_hub_does() {
    let want = expected();
    let t = &want["timm/vit_token32_test"];
    let seen = &want["huggingface_hub"]["try_to_load_from_cache"];
    // `@v0`: an older commit holding pytorch_model.bin only (huggingface_hub: no
    // model.safetensors there), and its own labels.
    let old = resolve_in("hf-hub:timm/vit_token32_test@v0", &cache()).unwrap();
    assert_eq!(old.commit, t["v0"]["commit"].as_str().unwrap());
    assert!(seen["timm/vit_token32_test@v0/model.safetensors"].is_null());
    let bin = cache().join(
        seen["timm/vit_token32_test@v0/pytorch_model.bin"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(old.weights, bin);
    assert_eq!(old.labels, Some(strings(&t["v0"]["labels"])));
    assert!(logits_diff(&old, "token_32.io.safetensors") < 1e-4);
    // A commit hash as the revision, and `timm/NAME` for `hf-hub:timm/NAME`.
    let commit = t["main"]["commit"].as_str().unwrap();
    let by_commit =
        resolve_in(&format!("hf-hub:timm/vit_token32_test@{commit}"), &cache()).unwrap();
    assert_eq!(by_commit.commit, commit);
    let short = resolve_in("timm/vit_token32_test", &cache()).unwrap();
    assert_eq!(short.weights, by_commit.weights);
    // Every repo and ref huggingface_hub's scan_cache_dir lists resolves.
    for repo in want["huggingface_hub"]["scan_cache_dir"]
        .as_array()
        .unwrap()
    {
        let name = repo[0].as_str().unwrap();
        for refs in repo[1].as_array().unwrap() {
            for r in refs.as_array().unwrap() {
                let id = ModelId::parse(&format!("hf-hub:{name}@{}", r.as_str().unwrap()))
                    .unwrap()
                    .unwrap();
                snapshot(&id, &cache()).unwrap();
            }
        }
    }
}

#[test]
fn an_hf_transformers_repo_resolves_to_its_layout_labels_and_processor() {
    let want = &expected()["google/vit-test"];
    let r = resolve_in("hf-hub:google/vit-test", &cache()).unwrap();
    assert_eq!(r.architecture, "hf:vit");
    assert_eq!(r.format, WeightFormat::HfVit);
    assert_eq!(r.labels, Some(strings(&want["main"]["labels"])));
    // ViTImageProcessor: both sides to 32 (squash), PIL's bicubic (resample 3), mean/std 0.5.
    let p = &r.preprocessing;
    assert_eq!(
        (p.crop_mode, p.crop_pct, p.interpolation),
        (CropMode::Squash, 1.0, Interpolation::Bicubic)
    );
    assert_eq!(r.config.image_size, [32, 32]);
    assert_eq!(r.config.num_classes, 5);
    let diff = logits_diff(&r, "hf_vit.io.safetensors");
    assert!(diff < 1e-4, "logits differ from transformers' by {diff}");
}

/// Copies the cache, links as links.
fn copy_cache(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        let kind = e.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &target).unwrap();
        } else if kind.is_dir() {
            copy_cache(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn missing_models_files_revisions_and_broken_links_name_the_path() {
    let dir = temp_dir("hub-broken");
    let c = dir.join("hub");
    copy_cache(&cache(), &c);
    let err = |id: &str| resolve_in(id, &c).unwrap_err().to_string();
    let e = err("hf-hub:timm/not_there");
    assert!(
        e.contains("models--timm--not_there") && e.contains("hf download timm/not_there"),
        "{e}"
    );
    let e = err("hf-hub:timm/vit_token32_test@nope");
    assert!(
        e.contains("refs/nope") && e.contains("--revision nope"),
        "{e}"
    );
    let e = err("hf-hub:timm");
    assert!(e.contains("not a model id"), "{e}");
    // A blob gone: the snapshot's link is broken.
    let repo = c.join("models--timm--vit_token32_test");
    let commit = std::fs::read_to_string(repo.join("refs/main")).unwrap();
    let link = repo
        .join("snapshots")
        .join(commit.trim())
        .join("model.safetensors");
    let blob = std::fs::canonicalize(&link).unwrap();
    std::fs::remove_file(&blob).unwrap();
    let e = err("hf-hub:timm/vit_token32_test");
    assert!(
        e.contains("broken link") && e.contains(&link.display().to_string()),
        "{e}"
    );
    // The weights gone from the snapshot: named, with the command that fetches them.
    std::fs::remove_file(&link).unwrap();
    let e = err("hf-hub:timm/vit_token32_test");
    assert!(
        e.contains("no weights") && e.contains("hf download timm/vit_token32_test"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn vit_train_in_cache(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vit-train"));
    cmd.args(args)
        .env("HF_HUB_CACHE", cache())
        .env_remove("HF_HUB_OFFLINE");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn predict_eval_and_models_take_model_ids() {
    let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/predict_32.png");
    let labels = strings(&expected()["timm/vit_token32_test"]["main"]["labels"]);
    for (id, offline) in [
        ("hf-hub:timm/vit_token32_test", "0"),
        ("timm/vit_token32_test", "1"),
    ] {
        let (ok, out, err) = vit_train_in_cache(
            &[
                "predict",
                "--weights",
                id,
                "--json",
                "--logits",
                png.to_str().unwrap(),
            ],
            &[("HF_HUB_OFFLINE", offline)],
        );
        assert!(ok, "{err}");
        let p: Value = serde_json::from_str(out.trim()).unwrap();
        let best = p["top_k"][0]["label"].as_str().unwrap();
        assert!(
            labels.iter().any(|l| l == best),
            "{best} not among {labels:?}"
        );
        // The same as the file with its architecture and timm config given by hand.
        let dir = temp_dir("hub-predict");
        let model = dir.join("model.toml");
        std::fs::write(
            &model,
            "[model]\nimage_size = [32, 32]\npatch_size = [8, 8]\nnum_classes = 10\n\
             embed_dim = 48\ndepth = 2\nnum_heads = 3\n",
        )
        .unwrap();
        let file = model_fixture("token_32.model.safetensors");
        let (ok, out2, err) = vit_train(&[
            "predict",
            "--weights",
            file.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--crop-pct",
            "0.95",
            "--json",
            "--logits",
            png.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        let q: Value = serde_json::from_str(out2.trim()).unwrap();
        assert_eq!(p["logits"], q["logits"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // Offline and not cached: the error says so and names the fetch command.
    let (ok, _, err) = vit_train_in_cache(
        &[
            "predict",
            "--weights",
            "hf-hub:timm/absent",
            png.to_str().unwrap(),
        ],
        &[("HF_HUB_OFFLINE", "1")],
    );
    assert!(
        !ok && err.contains("HF_HUB_OFFLINE") && err.contains("hf download timm/absent"),
        "{err}"
    );
    // eval on a folder of the model's classes reports them by the config's label names.
    let dir = temp_dir("hub-eval");
    for (i, name) in ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"]
        .iter()
        .enumerate()
    {
        let d = dir.join("val").join(name);
        std::fs::create_dir_all(&d).unwrap();
        if i < 3 {
            std::fs::copy(&png, d.join("a.png")).unwrap();
        }
    }
    let (ok, out, err) = vit_train_in_cache(
        &[
            "eval",
            "--weights",
            "hf-hub:timm/vit_token32_test",
            "--data",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("great white shark") && out.contains("images 3"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // inspect draws the figures of a model named by id.
    let dir = temp_dir("hub-inspect");
    let (ok, _, err) = vit_train_in_cache(
        &[
            "inspect",
            "--weights",
            "timm/vit_token32_test",
            "--out",
            dir.to_str().unwrap(),
            png.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(std::fs::read_dir(&dir).unwrap().count() > 0);
    std::fs::remove_dir_all(&dir).unwrap();
    // models: the presets and the cache's models.
    let (ok, out, err) = vit_train_in_cache(&["models"], &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("vit_base_patch16_224") && out.contains("86,567,656"),
        "{out}"
    );
    // The ResNet family's presets too, with timm's count.
    let r50 = out
        .lines()
        .find(|l| l.contains("resnetv2_50x1_bit"))
        .unwrap_or_default();
    assert!(
        r50.contains("25,549,352") && r50.contains("crop_pct 0.875") && r50.contains("ResNet"),
        "{out}"
    );
    assert!(
        out.contains("hf-hub:timm/vit_token32_test") && out.contains("hf-hub:google/vit-test"),
        "{out}"
    );
    let (_, out, _) = vit_train_in_cache(&["models", "google"], &[]);
    assert!(
        out.contains("google/vit-test") && !out.contains("vit_base_patch16_224"),
        "{out}"
    );
}

/// `[finetune] weights` (and `finetune --weights`) take a model id: the weights come from the
/// cache, and the run trains from them.
#[test]
fn finetune_takes_a_model_id() {
    let dir = temp_dir("hub-finetune");
    let recipe = dir.join("finetune.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"[model]
image_size = [40, 40]
patch_size = [8, 8]
num_classes = 10
embed_dim = 48
depth = 2
num_heads = 3
[finetune]
weights = "hf-hub:timm/vit_token32_test"
[data]
format = "idx"
root = "{root}"
train = "train"
test = "t10k"
train_limit = 64
val_limit = 32
resize = true
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]
workers = 1
[train]
epochs = 1
batch_size = 32
warmup_steps = 1
[output]
dir = "{out}"
"#,
            root = fixture_root().display(),
            out = dir.join("run").display()
        ),
    )
    .unwrap();
    let (ok, out, err) = vit_train_in_cache(
        &[
            "finetune",
            "--config",
            recipe.to_str().unwrap(),
            "--max-steps",
            "2",
        ],
        &[],
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("done: 2 steps"), "{out}");
    // Not in the cache: the run does not start, and says where it looked.
    let (ok, _, err) = vit_train_in_cache(
        &[
            "finetune",
            "--config",
            recipe.to_str().unwrap(),
            "--weights",
            "hf-hub:timm/absent",
            "--set",
            &format!("output.dir={:?}", dir.join("run2").display().to_string()),
        ],
        &[],
    );
    assert!(!ok && err.contains("models--timm--absent"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
