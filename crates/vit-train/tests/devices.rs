//! `vit-train --device wgpu` end to end, as a user runs it: train and checkpoint on wgpu,
//! `--resume` there, move a wgpu run to the CPU and a CPU run to wgpu, evaluate a wgpu
//! checkpoint on the CPU. Dropout is off, so the devices must agree step for step: one seed
//! gives one initial model on both (drawn on the host), and the arithmetic agrees (see
//! backends.rs for the tolerances).
//!
//! Built with `--features vit-train/wgpu`; runs on whatever adapter wgpu finds (Mesa's
//! lavapipe in CI). Each wgpu process compiles its kernels once; they are cached in
//! `target/environment`, so the later processes start warm.
#![cfg(feature = "wgpu")]

mod common;

use std::path::Path;

use common::*;
use vit_train::report::read_metrics;

const TOL: f64 = 1e-4;

fn ok(args: &[&str]) -> String {
    let (success, out, err) = vit_train(args);
    assert!(success, "vit-train {args:?} failed:\n{out}\n{err}");
    out
}

fn assert_close(what: &str, a: &[(usize, f64)], b: &[(usize, f64)]) {
    assert_eq!(
        a.iter().map(|x| x.0).collect::<Vec<_>>(),
        b.iter().map(|x| x.0).collect::<Vec<_>>(),
        "{what}: different steps"
    );
    for ((step, x), (_, y)) in a.iter().zip(b) {
        assert!(
            (x - y).abs() <= TOL * x.abs().max(1.0),
            "{what}: loss of step {step}: {x} vs {y}"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn train_resume_and_move_runs_between_wgpu_and_the_cpu() {
    let dir = temp_dir("devices");
    let recipe = dir.join("recipe.toml");
    std::fs::write(&recipe, recipe_text(&dir.join("unused"))).unwrap();
    let recipe = recipe.to_str().unwrap();
    let run = |name: &str| dir.join(name);
    let path = |name: &str| run(name).to_str().unwrap().to_string();
    let train = |name: &str, device: &str| {
        let out = format!("output.dir=\"{}\"", path(name));
        ok(&[
            "--config",
            recipe,
            "--device",
            device,
            "--set",
            &out,
            "--set",
            "model.drop_rate=0.0",
            "--set",
            "model.drop_path_rate=0.0",
            "--set",
            "train.max_steps=6",
            // Validation on the test split, so that `eval --split test` repeats it.
            "--set",
            "data.val_fraction=0.0",
            "--stop-after",
            "3",
        ])
    };

    // The same recipe and seed on both devices: the same first three steps.
    train("cpu", "cpu");
    let out = train("wgpu", "wgpu");
    assert!(out.contains("done: 3 steps"), "{out}");
    assert_close(
        "cpu vs wgpu, steps 1-3",
        &losses(&run("cpu")),
        &losses(&run("wgpu")),
    );
    let state = std::fs::read_to_string(run("wgpu").join("checkpoints/last/state.json")).unwrap();
    assert!(state.contains("\"device\": \"wgpu\""), "{state}");

    // Steps 4-6 four ways: wgpu -> wgpu (the run's own device), wgpu -> cpu, cpu -> wgpu.
    copy_dir(&run("wgpu"), &run("wgpu-to-cpu"));
    copy_dir(&run("cpu"), &run("cpu-to-wgpu"));
    ok(&["--resume", &path("wgpu")]);
    ok(&["--resume", &path("wgpu-to-cpu"), "--device", "cpu"]);
    ok(&["--resume", &path("cpu-to-wgpu"), "--device", "wgpu"]);
    let tail = |name: &str| {
        let l = losses(&run(name));
        assert_eq!(l.len(), 6, "{name}: {l:?}");
        l[3..].to_vec()
    };
    let reference = tail("wgpu");
    assert_close(
        "wgpu resumed on wgpu vs on the cpu",
        &reference,
        &tail("wgpu-to-cpu"),
    );
    assert_close(
        "wgpu vs cpu resumed on wgpu",
        &reference,
        &tail("cpu-to-wgpu"),
    );
    // The recipe saved from the move on names the device the run moved to.
    let moved = std::fs::read_to_string(run("wgpu-to-cpu").join("config.toml")).unwrap();
    assert!(moved.contains("device = \"cpu\""), "{moved}");

    // The wgpu run's final checkpoint, evaluated on the CPU: its validation (the test split
    // here) as wgpu saw it.
    let val = read_metrics(&run("wgpu"))
        .unwrap()
        .into_iter()
        .rfind(|l| l.split == "val")
        .unwrap();
    let out = ok(&[
        "eval",
        "--checkpoint",
        &path("wgpu"),
        "--split",
        "test",
        "--device",
        "cpu",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let loss = report["loss"].as_f64().unwrap();
    assert!(
        (loss - val.loss).abs() <= TOL * loss.max(1.0),
        "val loss on the cpu {loss} vs on wgpu {}",
        val.loss
    );
    // Top-1 the same, or one image of the 200 on the other side of a near tie.
    let (a, b) = (report["top1"].as_f64().unwrap(), val.top1.unwrap());
    assert!(
        (a - b).abs() <= 1.0 / 200.0 + 1e-9,
        "top-1 on the cpu {a} vs on wgpu {b}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
