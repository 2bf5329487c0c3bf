//! Shared by vit-train's tests: a tiny recipe on the 1,000-image Fashion-MNIST fixture.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use vit_train::config::Config;

/// Burn's device RNG (init, dropout, drop-path) is process-wide: a run in another test thread
/// would draw from this one's stream. Tests that train or initialise in-process and compare
/// runs hold this, one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fashion-mnist-1k")
}

/// A fresh temporary folder.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vit-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tiny ViT on the fixture: patch 7, D 32, one block.
pub fn recipe_text(out: &Path) -> String {
    format!(
        r#"
[model]
image_size = [28, 28]
patch_size = [7, 7]
in_channels = 1
num_classes = 10
embed_dim = 32
depth = 1
num_heads = 2
mlp_ratio = 2.0
drop_rate = 0.1
drop_path_rate = 0.1

[data]
format = "idx"
root = "{root}"
train = "train"
test = "t10k"
classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
mean = [0.2860]
std = [0.3530]
workers = 2

[data.augment]
crop_padding = 2
hflip = true
mixup_alpha = 0.2

[train]
epochs = 2
batch_size = 32
accum_steps = 2
lr = 3e-3
warmup_steps = 5
weight_decay = 0.05
clip_grad_norm = 1.0
label_smoothing = 0.1
seed = 7

[output]
dir = "{out}"
"#,
        root = fixture_root().display(),
        out = out.display()
    )
}

/// Writes the tiny recipe to `dir/recipe.toml` and loads it with `sets` applied.
pub fn recipe(dir: &Path, sets: &[&str]) -> (PathBuf, Config) {
    let path = dir.join("recipe.toml");
    std::fs::write(&path, recipe_text(&dir.join("run"))).unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let config = Config::load(&path, &sets).unwrap();
    (path, config)
}

/// Runs the `vit-train` binary: (success, stdout, stderr).
pub fn vit_train(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vit-train"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (step, loss) of the train lines of a run folder's metrics.jsonl.
pub fn losses(run: &Path) -> Vec<(usize, f64)> {
    vit_train::report::read_metrics(run)
        .unwrap()
        .into_iter()
        .filter(|m| m.split == "train")
        .map(|m| (m.step, m.loss))
        .collect()
}

/// xtask's venv Python when it can import `module`; otherwise `None`, after saying the test
/// part is skipped, unless `require_var=1` is set (CI), which makes it a failure.
pub fn xtask_python_with(module: &str, require_var: &str) -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../xtask/.venv/bin/python");
    let has = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if has {
        return Some(python);
    }
    assert!(
        std::env::var_os(require_var).is_none_or(|v| v != "1"),
        "{require_var}=1 but {} cannot import {module}",
        python.display()
    );
    eprintln!(
        "skipped: no {module} in {} (pip install {module})",
        python.display()
    );
    None
}
