//! The binary: info, train, eval and predict as a user runs them.

mod common;

use common::*;

#[test]
fn info_shows_timm_param_count_for_b16() {
    let b16 = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/b16.toml");
    let (ok, out, err) = vit_train(&["info", "--config", b16]);
    assert!(ok, "{err}");
    assert!(out.contains("parameters 86,567,656"), "{out}");
    assert!(out.contains("tokens 197"), "{out}");
}

#[test]
fn bad_recipes_fail_without_a_backtrace() {
    let dir = temp_dir("cli-bad");
    let (path, _) = recipe(&dir, &[]);
    let (ok, _, err) = vit_train(&[
        "info",
        "--config",
        path.to_str().unwrap(),
        "--set",
        "model.depht=2",
    ]);
    assert!(!ok);
    assert!(
        err.starts_with("error: ") && err.contains("unknown field `depht`"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    let (ok, _, err) = vit_train(&["--config", path.to_str().unwrap(), "--device", "quantum"]);
    assert!(!ok && err.contains("unknown device `quantum`"), "{err}");
    let (ok, _, err) = vit_train(&["--resume", dir.to_str().unwrap(), "--set", "train.lr=1"]);
    assert!(
        !ok && err.contains("leave out --config, --set and --device"),
        "{err}"
    );
    let (ok, _, err) = vit_train(&["finetune", "--resume", dir.to_str().unwrap(), "--lr", "0.1"]);
    assert!(
        !ok && err.contains("leave out the fine-tuning flags"),
        "{err}"
    );
    let (ok, _, err) = vit_train(&["--resume", dir.to_str().unwrap()]);
    assert!(!ok && err.contains("is not a checkpoint"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_then_eval_and_predict() {
    let dir = temp_dir("cli");
    let (path, _) = recipe(&dir, &[]);
    let (ok, out, err) = vit_train(&[
        "--config",
        path.to_str().unwrap(),
        "--set",
        "train.epochs=1",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("test accuracy: top-1"), "{out}");
    let ckpt = dir.join("run");

    let (ok, out, err) = vit_train(&["eval", "--checkpoint", ckpt.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("images 200")
            && out.contains("confusion matrix")
            && out.contains("Ankle boot"),
        "{out}"
    );
    let (ok, out, _) = vit_train(&["eval", "--checkpoint", ckpt.to_str().unwrap(), "--json"]);
    assert!(ok);
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["confusion"].as_array().unwrap().len(), 10);

    // Two real test images written as PNG.
    let set = vit_train::data::idx::load(
        &fixture_root(),
        "t10k",
        (0..10).map(|i| i.to_string()).collect(),
    )
    .unwrap();
    let mut paths = Vec::new();
    for i in 0..2 {
        let p = dir.join(format!("img{i}.png"));
        image::GrayImage::from_raw(28, 28, set.image(i).unwrap().to_vec())
            .unwrap()
            .save(&p)
            .unwrap();
        paths.push(p.to_str().unwrap().to_string());
    }
    let mut args = vec![
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--top-k",
        "3",
        "--json",
    ];
    args.extend(paths.iter().map(String::as_str));
    let (ok, out, err) = vit_train(&args);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let top = lines[0]["top_k"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    let p0 = top[0]["prob"].as_f64().unwrap();
    assert!(p0 >= top[1]["prob"].as_f64().unwrap() && p0 <= 1.0);
    assert!(top[0]["label"].is_string());

    let (ok, _, err) = vit_train(&[
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "/nonexistent.png",
    ]);
    assert!(!ok && err.contains("/nonexistent.png"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
