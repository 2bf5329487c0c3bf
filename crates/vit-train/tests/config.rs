//! Recipes: the shipped configs, overrides and errors that name the key.

mod common;

use std::path::Path;

use common::*;
use vit_train::config::Config;

fn configs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

#[test]
fn shipped_recipes_load_and_b16_is_timm_sized() {
    for name in ["b16", "ti16", "s16", "l16", "fashion-mnist", "mnist"] {
        Config::load(&configs().join(format!("{name}.toml")), &[])
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    let b16 = Config::load(&configs().join("b16.toml"), &[]).unwrap();
    let vit = b16.model.vit_config().unwrap();
    assert_eq!(vit.num_params(), 86_567_656);
    assert_eq!(b16.train.batch_size, 4096);
    assert_eq!(b16.train.clip_grad_norm, Some(1.0));
    assert_eq!(vit.drop_rate, 0.1);
}

#[test]
fn set_overrides_any_key() {
    let dir = temp_dir("cfg-set");
    let (_, c) = recipe(
        &dir,
        &[
            "train.lr=3e-4",
            "model.depth=3",
            "data.augment.hflip=false",
            "train.device=wgpu",
        ],
    );
    assert_eq!(c.train.lr, 3e-4);
    assert_eq!(c.model.depth, Some(3));
    assert!(!c.data.augment.hflip);
    assert_eq!(c.train.device, "wgpu");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn load_err(text_edit: impl Fn(String) -> String, sets: &[&str]) -> String {
    let dir = temp_dir("cfg-err");
    let path = dir.join("bad.toml");
    std::fs::write(&path, text_edit(recipe_text(&dir))).unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let err = format!("{:#}", Config::load(&path, &sets).unwrap_err());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.contains("bad.toml"), "the error names the file: {err}");
    err
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    let err = load_err(
        |t| t.replace("epochs = 2", "epochs = 2\nepoch_count = 3"),
        &[],
    );
    assert!(
        err.contains("train") && err.contains("unknown field `epoch_count`"),
        "{err}"
    );
    let err = load_err(|t| t.replace("embed_dim = 32", "embed_dim = \"wide\""), &[]);
    assert!(
        err.contains("model.embed_dim") && err.contains("invalid type"),
        "{err}"
    );
    let err = load_err(|t| t, &["train.lr=fast"]);
    assert!(err.contains("train.lr"), "{err}");
    let err = load_err(|t| t.replace("num_heads = 2", "num_heads = 3"), &[]);
    assert!(
        err.contains("num_heads 3 must divide embed_dim 32"),
        "{err}"
    );
    let err = load_err(|t| t.replace("mean = [0.2860]", "mean = [0.2, 0.3]"), &[]);
    assert!(err.contains("data.mean"), "{err}");
}

#[test]
fn missing_config_file_is_named() {
    let err = format!(
        "{:#}",
        Config::load(Path::new("/nonexistent/x.toml"), &[]).unwrap_err()
    );
    assert!(err.contains("/nonexistent/x.toml"), "{err}");
}
