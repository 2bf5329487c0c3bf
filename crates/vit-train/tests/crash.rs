//! The `vit-train` process under failure: killed between checkpoints or while writing one,
//! resumed from a corrupt checkpoint, and given the bad input of issue 12. Each case runs the
//! release binary as a user would.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use npyz::WriterBuilder;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vit-train"))
}

/// Runs to the end, within a deadline (a hang is a failure, not a stuck test run).
fn run(mut cmd: Command, env: &[(&str, &str)]) -> Output {
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_with_deadline(child, Duration::from_secs(300))
}

fn wait_with_deadline(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("vit-train did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The tiny recipe with `sets`, training into `dir/run`.
fn recipe_file(dir: &Path, sets: &[&str]) -> (PathBuf, Vec<String>) {
    let path = dir.join("recipe.toml");
    std::fs::write(&path, recipe_text(&dir.join("run"))).unwrap();
    let mut args = vec!["--config".to_string(), path.display().to_string()];
    for s in sets {
        args.push("--set".into());
        args.push(s.to_string());
    }
    (path, args)
}

/// 40 steps (of a 20-epoch schedule), a `last` checkpoint every 3 steps, validation only at
/// epoch ends; dropout, DropPath, mixup and augmentation on: every random draw must replay.
const SETS: &[&str] = &[
    "train.epochs=20",
    "train.max_steps=40",
    "train.checkpoint_every=3",
    "data.val_limit=64",
];

fn assert_same_losses(straight: &[(usize, f64)], resumed: &[(usize, f64)]) {
    let steps: Vec<usize> = resumed.iter().map(|s| s.0).collect();
    assert_eq!(steps, (1..=40).collect::<Vec<_>>(), "each step logged once");
    for ((step, a), (_, b)) in straight.iter().zip(resumed) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "step {step}: {a} straight vs {b} resumed"
        );
    }
}

/// The uninterrupted run all the interrupted ones are compared with (in a folder of the
/// caller's: tests run in parallel).
fn straight_run(name: &str) -> Vec<(usize, f64)> {
    let dir = temp_dir(name);
    let (_, args) = recipe_file(&dir, SETS);
    let out = run(
        {
            let mut c = bin();
            c.args(&args);
            c
        },
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let l = losses(&dir.join("run"));
    std::fs::remove_dir_all(&dir).unwrap();
    l
}

fn step_of(checkpoint: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(checkpoint.join("state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["step"].as_u64().map(|s| s as usize)
}

/// Whether `metrics.jsonl` has a train line of step `step` (a torn last line is ignored).
fn logged_step(run: &Path, step: usize) -> bool {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
    text.lines().any(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|v| v["split"] == "train" && v["step"] == step)
    })
}

fn resume(run_dir: &Path) -> Output {
    let mut c = bin();
    c.arg("--resume").arg(run_dir);
    run(c, &[])
}

/// Starts the SETS run in `dir/run` and kills it (SIGKILL) once step `step` is logged.
fn run_and_kill_after(dir: &Path, step: usize) -> PathBuf {
    let (_, args) = recipe_file(dir, SETS);
    let run_dir = dir.join("run");
    let mut child = bin()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !logged_step(&run_dir, step) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no step {step}");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    run_dir
}

#[test]
fn sigkill_between_checkpoints_then_resume_replays_the_same_losses() {
    let straight = straight_run("crash-straight-kill");
    let dir = temp_dir("crash-kill");
    // Between checkpoints: step 7 logged, the checkpoint of step 6 in place, the next one due
    // at step 9, so that the resume also drops logged steps.
    let run_dir = run_and_kill_after(&dir, 7);
    // The kill may have landed inside a checkpoint write: resolve finds what a resume uses.
    let killed_at = step_of(&vit_train::train::checkpoint::resolve(&run_dir).unwrap()).unwrap();
    assert!(
        killed_at < 40,
        "killed before the end (checkpoint {killed_at})"
    );
    let logged = losses(&run_dir).last().unwrap().0;
    eprintln!("killed with the checkpoint of step {killed_at} and step {logged} logged");

    let out = resume(&run_dir);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_losses(&straight, &losses(&run_dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_crash_while_writing_a_checkpoint_leaves_the_previous_one_loadable() {
    let straight = straight_run("crash-straight-write");
    // `written`: the new checkpoint complete beside the old; `swapping`: the old one moved
    // aside and the new one not yet in place (the one instant with no `last`).
    for stage in ["written", "swapping"] {
        let dir = temp_dir(&format!("crash-{stage}"));
        let run_dir = run_and_kill_after(&dir, 10);
        let before = step_of(&vit_train::train::checkpoint::resolve(&run_dir).unwrap()).unwrap();
        // Resume with the fault armed: it aborts in its first checkpoint write.
        let mut c = bin();
        c.arg("--resume").arg(&run_dir);
        let out = run(c, &[("VIT_TRAIN_FAULT", stage)]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("VIT_TRAIN_FAULT"),
            "{}",
            text(&out)
        );
        // The checkpoint before the crash is still found (moved aside to `last.old` in the
        // `swapping` case) and loads: the run completes with the same losses.
        let found = vit_train::train::checkpoint::resolve(&run_dir).unwrap();
        let want = if stage == "swapping" {
            "last.old"
        } else {
            "last"
        };
        assert_eq!(found.file_name().unwrap(), want, "{stage}");
        assert_eq!(step_of(&found), Some(before), "{stage}");
        let out = resume(&run_dir);
        assert!(out.status.success(), "{stage}: {}", text(&out));
        assert_same_losses(&straight, &losses(&run_dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_moved_run_folder_resumes_where_it_is() {
    let dir = temp_dir("crash-moved");
    let run_dir = run_and_kill_after(&dir, 7);
    let moved = dir.join("moved");
    std::fs::rename(&run_dir, &moved).unwrap();
    let out = resume(&moved);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        losses(&moved).len(),
        40,
        "the whole run is logged in the moved folder"
    );
    assert!(
        !run_dir.exists(),
        "nothing is written where the run used to be"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// All the bytes of a folder, by relative path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Keeps the first 1/`part` of a file.
fn truncate(path: &Path, part: usize) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / part]).unwrap();
}

#[test]
fn a_corrupt_checkpoint_is_named_and_the_run_left_as_it_was() {
    let dir = temp_dir("crash-corrupt");
    let (_, args) = recipe_file(&dir, &["train.epochs=1", "train.max_steps=4"]);
    let mut c = bin();
    c.args(&args);
    let out = run(c, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let run_dir = dir.join("run");
    let last = run_dir.join("checkpoints/last");
    let pristine = snapshot(&run_dir);

    type Corrupt = fn(&Path);
    let cases: [(&str, Corrupt, &str); 4] = [
        (
            "truncated model",
            |ckpt| truncate(&ckpt.join("model.safetensors"), 2),
            "model.safetensors",
        ),
        (
            "missing optimizer state",
            |ckpt| std::fs::remove_file(ckpt.join("optimizer.bpk")).unwrap(),
            "optimizer.bpk",
        ),
        (
            "truncated optimizer state",
            |ckpt| truncate(&ckpt.join("optimizer.bpk"), 3),
            "optimizer.bpk",
        ),
        (
            "state of another version",
            |ckpt| {
                let p = ckpt.join("state.json");
                let text = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, text.replace("\"version\": 1", "\"version\": 7")).unwrap();
            },
            "state.json",
        ),
    ];
    for (what, corrupt, file) in cases {
        corrupt(&last);
        let damaged = snapshot(&run_dir);
        let out = resume(&run_dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        assert!(
            stderr.contains(file) && !stderr.contains("panicked"),
            "{what}: {stderr}"
        );
        assert!(
            snapshot(&run_dir) == damaged,
            "{what}: --resume changed the run"
        );
        // Put the checkpoint back for the next case.
        for (rel, bytes) in &pristine {
            std::fs::write(run_dir.join(rel), bytes).unwrap();
        }
    }
    // Evaluating a truncated model names it too.
    truncate(&last.join("model.safetensors"), 50);
    let mut c = bin();
    c.arg("eval").arg("--checkpoint").arg(&run_dir);
    let out = run(c, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("model.safetensors"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The cases issue 12 opened with, as a user types them: each now ends at once with an error
/// naming the key or file (they used to loop forever, or panic with exit code 101).
#[test]
fn the_reported_bad_inputs_end_with_a_named_error() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/fashion-mnist.toml");
    for (set, want) in [
        (
            "data.augment.erase_prob=1.5",
            "data.augment.erase_prob = 1.5",
        ),
        (
            "data.augment.rrc_scale=[1.0, 0.08]",
            "data.augment.rrc_scale = [1.0, 0.08]",
        ),
    ] {
        let mut c = bin();
        c.arg("--config").arg(&configs).args(["--set", set]);
        let out = run(c, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            stderr.contains(want) && stderr.contains("fashion-mnist.toml"),
            "{stderr}"
        );
    }

    // predict with an .npz whose arrays have unexpected shapes.
    let dir = temp_dir("crash-npz");
    let npz = dir.join("bad.npz");
    {
        let mut w = npyz::npz::NpzWriter::create(&npz).unwrap();
        for (name, shape) in [
            (
                "Transformer/posembed_input/pos_embedding",
                vec![1u64, 197, 192],
            ),
            ("embedding/kernel", vec![16, 16]),
        ] {
            let n = shape.iter().product::<u64>() as usize;
            w.array::<f32>(name, Default::default())
                .unwrap()
                .default_dtype()
                .shape(&shape)
                .begin_nd()
                .unwrap()
                .extend(vec![0.0f32; n])
                .unwrap();
        }
    }
    let img = dir.join("img.png");
    image::RgbImage::from_pixel(224, 224, image::Rgb([90, 120, 200]))
        .save(&img)
        .unwrap();
    let mut c = bin();
    c.args(["predict", "--weights"])
        .arg(&npz)
        .args(["--model", "vit_tiny_patch16_224"])
        .arg(&img);
    let out = run(c, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr.contains("bad.npz") && stderr.contains("embedding/kernel"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
