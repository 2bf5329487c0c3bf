//! The training loop on real images: the loss falls, resume is exact, failures are clear.

mod common;

use std::sync::{Mutex, MutexGuard};

use common::*;
use vit_train::train::{RunOptions, checkpoint, train};

/// Burn's device RNG (init, dropout) is process-wide: runs in parallel test threads would
/// draw from each other's stream. One training run at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_few_steps_lower_the_loss() {
    let _serial = serial();
    let dir = temp_dir("learn");
    let (_, config) = recipe(&dir, &["train.epochs=3", "data.augment.mixup_alpha=0.0"]);
    let summary = train(config, RunOptions::default()).unwrap();
    assert_eq!(summary.steps, 3 * 25);
    let first: f64 = summary.losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = summary.losses[summary.losses.len() - 5..]
        .iter()
        .sum::<f64>()
        / 5.0;
    assert!(last < first - 0.3, "loss {first:.3} -> {last:.3}");
    // Ten classes: chance is 10%. This one-block ViT learns slowly: timm's own, trained the
    // same way in PyTorch, is at 52% after 4 epochs.
    let test = summary.test.unwrap();
    assert_eq!(test.images, 200);
    assert!(test.top1 > 0.25, "test top-1 {}", test.top1);
    let run = dir.join("run");
    for file in [
        "metrics.jsonl",
        "config.toml",
        "curves.png",
        "checkpoints/last/model.safetensors",
    ] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    let lines = vit_train::report::read_metrics(&run).unwrap();
    assert_eq!(lines.iter().filter(|l| l.split == "train").count(), 75);
    assert_eq!(lines.iter().filter(|l| l.split == "val").count(), 3);
    assert_eq!(lines.iter().filter(|l| l.split == "test").count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_continues_exactly() {
    let _serial = serial();
    // Dropout, DropPath, mixup and augmentation all on: every random draw must replay.
    let sets = ["train.epochs=2", "train.eval_every=10"];
    let straight_dir = temp_dir("straight");
    let (_, config) = recipe(&straight_dir, &sets);
    let straight = train(
        config,
        RunOptions {
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(straight.steps, 50);

    let split_dir = temp_dir("split");
    let (_, config) = recipe(&split_dir, &sets);
    let first = train(
        config,
        RunOptions {
            stop_after: Some(20),
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(first.steps, 20);
    let (_, config) = recipe(&split_dir, &sets);
    let second = train(
        config,
        RunOptions {
            resume: Some(split_dir.join("run")),
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(second.steps, 50);
    let resumed: Vec<f64> = first.losses.iter().chain(&second.losses).cloned().collect();
    assert_eq!(resumed.len(), straight.losses.len());
    for (i, (a, b)) in straight.losses.iter().zip(&resumed).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(1.0),
            "step {}: {a} vs {b}",
            i + 1
        );
    }
    std::fs::remove_dir_all(&straight_dir).unwrap();
    std::fs::remove_dir_all(&split_dir).unwrap();
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_good_checkpoint() {
    let _serial = serial();
    let dir = temp_dir("nan");
    let (_, config) = recipe(
        &dir,
        &[
            "train.lr=1e30",
            "train.warmup_steps=0",
            "train.eval_every=1",
            "train.clip_grad_norm=1e38",
        ],
    );
    let err = format!("{:#}", train(config, RunOptions::default()).err().unwrap());
    assert!(
        err.contains("the loss became") && err.contains("checkpoints/last"),
        "{err}"
    );
    let last = checkpoint::read_state(&dir.join("run/checkpoints/last")).unwrap();
    assert!(last.step >= 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_checkpoint_of_another_model_is_refused_by_key() {
    let _serial = serial();
    let dir = temp_dir("other");
    let (_, config) = recipe(&dir, &["train.max_steps=2"]);
    train(
        config,
        RunOptions {
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    let wider = recipe(&dir, &[]).1.model.config.with_embed_dim(48);
    let model = wider.init(&burn::tensor::Device::flex());
    let err = format!(
        "{:#}",
        checkpoint::load_model(&dir.join("run/checkpoints/last"), model)
            .err()
            .unwrap()
    );
    assert!(
        err.contains("cannot load the model of checkpoint")
            && err.contains("weights do not match the model"),
        "{err}"
    );
    assert!(
        err.contains("wrong shape for `cls_token`: file has [1, 1, 32], model expects [1, 1, 48]"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_existing_run_is_not_overwritten() {
    let _serial = serial();
    let dir = temp_dir("exists");
    let (_, config) = recipe(&dir, &["train.max_steps=1"]);
    train(
        config.clone(),
        RunOptions {
            skip_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    let err = format!("{:#}", train(config, RunOptions::default()).err().unwrap());
    assert!(err.contains("already holds a run"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
