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
            // The folder's lock holds the pid of the last process that took it, not the run.
            if p.file_name().is_some_and(|n| n == "run.lock") {
                continue;
            }
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

// ---- Long runs that stop cleanly: signals, one process per folder, a full disk, TensorBoard.

/// The uninterrupted SETS run, computed once for the tests below.
fn straight_losses() -> &'static Vec<(usize, f64)> {
    static STRAIGHT: std::sync::OnceLock<Vec<(usize, f64)>> = std::sync::OnceLock::new();
    STRAIGHT.get_or_init(|| straight_run("crash-straight-shared"))
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} failed");
}

/// Starts `args` (piped output) and returns once step `step` is logged in `run_dir`.
fn start_until_logged(args: &[String], run_dir: &Path, step: usize) -> Child {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !logged_step(run_dir, step) {
        if child.try_wait().unwrap().is_some() {
            panic!(
                "the run ended before step {step}: {}",
                text(&child.wait_with_output().unwrap())
            );
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no step {step}");
        std::thread::sleep(Duration::from_millis(1));
    }
    child
}

/// The `end` line of a run's metrics.jsonl: (step, how it ended).
fn ended(run: &Path) -> Option<(usize, String)> {
    let m = vit_train::report::read_metrics(run).unwrap();
    m.iter()
        .rev()
        .find(|l| l.split == "end")
        .map(|l| (l.step, l.ended.clone().unwrap_or_default()))
}

/// The run's TensorBoard event files as TensorBoard's own reader loads them (xtask's venv:
/// `tensorboard_fixtures.py read`) equal its metrics.jsonl: every scalar, by step. Skipped,
/// saying so, where that Python has no tensorboard, unless VIT_REQUIRE_TENSORBOARD=1 (CI).
fn tensorboard_equals_metrics(run: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let Some(python) = xtask_python_with("tensorboard", "VIT_REQUIRE_TENSORBOARD") else {
        return;
    };
    let out = Command::new(&python)
        .arg(root.join("xtask/python/tensorboard_fixtures.py"))
        .arg("read")
        .arg(run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: std::collections::BTreeMap<String, Vec<(usize, f64)>> =
        serde_json::from_slice(&out.stdout).unwrap();
    let mut want: std::collections::BTreeMap<String, Vec<(usize, f64)>> = Default::default();
    for line in vit_train::report::read_metrics(run).unwrap() {
        for (tag, v) in line.scalars() {
            want.entry(tag).or_default().push((line.step, v));
        }
    }
    assert_eq!(
        read.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (tag, points) in &want {
        let got = &read[tag];
        assert_eq!(got.len(), points.len(), "{tag}: points");
        for ((s, v), (gs, gv)) in points.iter().zip(got) {
            assert_eq!(s, gs, "{tag}");
            assert_eq!(*v as f32, *gv as f32, "{tag} at step {s}");
        }
    }
    assert!(want["train/loss"].len() == 40 && want.contains_key("val/top1"));
}

#[test]
fn sigint_and_sigterm_finish_the_step_write_last_and_resume_exactly() {
    let straight = straight_losses();
    for (name, code) in [("INT", 130), ("TERM", 143)] {
        let dir = temp_dir(&format!("crash-sig{name}"));
        // No periodic checkpoints: all the run keeps is what the signal made it write.
        let mut sets = SETS.to_vec();
        sets.extend(["train.checkpoint_every=0", "output.tensorboard=true"]);
        let (_, args) = recipe_file(&dir, &sets);
        let run_dir = dir.join("run");
        let child = start_until_logged(&args, &run_dir, 13);
        signal(&child, name);
        let out = wait_with_deadline(child, Duration::from_secs(120));
        assert_eq!(out.status.code(), Some(code), "SIG{name}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("interrupted by SIG{name} at step"))
                && stdout.contains(&format!("vit-train --resume {}", run_dir.display())),
            "{}",
            text(&out)
        );
        let last = run_dir.join("checkpoints/last");
        let at = step_of(&last).expect("the signal wrote `last`");
        assert!((13..40).contains(&at), "SIG{name}: checkpoint of step {at}");
        assert_eq!(
            losses(&run_dir).last().unwrap().0,
            at,
            "it stopped after that step"
        );
        assert_eq!(
            ended(&run_dir),
            Some((at, format!("interrupted (SIG{name})")))
        );
        assert!(!run_dir.join("checkpoints/last.tmp").exists());

        let out = resume(&run_dir);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(&losses(&run_dir), straight, "SIG{name}: resumed losses");
        assert_eq!(ended(&run_dir).unwrap().1, "finished");
        // Two event files (before and after the signal), read back by TensorBoard.
        let events = std::fs::read_dir(&run_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("events.out.tfevents.")
            })
            .count();
        assert_eq!(events, 2);
        tensorboard_equals_metrics(&run_dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_second_sigint_exits_at_once_with_the_previous_checkpoint_intact() {
    let straight = straight_losses();
    let dir = temp_dir("crash-sigint-twice");
    let (_, args) = recipe_file(&dir, SETS);
    let run_dir = dir.join("run");
    let child = start_until_logged(&args, &run_dir, 10);
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(2));
    signal(&child, "INT");
    let out = wait_with_deadline(child, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("interrupted by"),
        "it did not wait for the clean stop: {}",
        text(&out)
    );
    let out = resume(&run_dir);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_losses(straight, &losses(&run_dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_process_per_run_folder_and_a_dead_holder_is_no_obstacle() {
    let dir = temp_dir("crash-lock");
    // Long enough to be running still when the others try (it is killed).
    let mut sets = SETS.to_vec();
    sets.extend(["train.epochs=10000", "train.max_steps=1000000"]);
    let (recipe, args) = recipe_file(&dir, &sets);
    let run_dir = dir.join("run");
    // Step 4: the checkpoint of step 3 is there to --resume.
    let mut first = start_until_logged(&args, &run_dir, 4);
    // A second trainer on the folder, resumed or fresh, is refused, naming the holder.
    let holder = format!("pid {}", first.id());
    for second in [
        vec!["--resume".to_string(), run_dir.display().to_string()],
        vec!["--config".to_string(), recipe.display().to_string()],
    ] {
        let mut c = bin();
        c.args(&second);
        let out = run(c, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{second:?}: {}", text(&out));
        assert!(
            stderr.contains("is in use by another vit-train process")
                && stderr.contains(&holder)
                && stderr.contains(&run_dir.display().to_string()),
            "{second:?}: {stderr}"
        );
    }
    assert!(first.try_wait().unwrap().is_none(), "the first run went on");
    first.kill().unwrap();
    first.wait().unwrap();
    // Its lock died with it.
    let at = step_of(&vit_train::train::checkpoint::resolve(&run_dir).unwrap()).unwrap();
    let mut c = bin();
    c.arg("--resume")
        .arg(&run_dir)
        .arg("--stop-after")
        .arg((at + 1).to_string());
    let out = run(c, &[]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A checkpoint write that fails for want of space, on a real small filesystem: a tmpfs
/// mounted in a mount namespace of the test's own (`unshare`; as root, or as a user where
/// user namespaces are allowed), sized to hold one checkpoint of the run and not two.
#[test]
fn a_full_disk_stops_the_run_naming_the_file_with_last_intact() {
    let dir = temp_dir("crash-disk-full");
    let (recipe, _) = recipe_file(&dir, SETS);
    // The size of one checkpoint of this recipe.
    let probe = dir.join("probe");
    let mut c = bin();
    c.arg("--config")
        .arg(&recipe)
        .args(["--set", &format!("output.dir=\"{}\"", probe.display())])
        .args(["--set", "train.checkpoint_every=3", "--stop-after", "3"]);
    let out = run(c, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let ckpt: u64 = std::fs::read_dir(probe.join("checkpoints/last"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let size = (ckpt * 3 / 2 + 64 * 1024).div_ceil(4096) * 4096;
    let mnt = dir.join("mnt");
    let kept = dir.join("kept");
    std::fs::create_dir_all(&mnt).unwrap();
    let script = format!(
        "mount -t tmpfs -o size={size} vit-test '{mnt}' || exit 97; \
         '{bin}' --config '{recipe}' --set 'output.dir=\"{mnt}/run\"' \
             --set train.checkpoint_every=3 >'{dir}/stdout' 2>'{dir}/stderr'; \
         echo $? >'{dir}/rc'; cp -a '{mnt}/run' '{kept}'",
        mnt = mnt.display(),
        bin = env!("CARGO_BIN_EXE_vit-train"),
        recipe = recipe.display(),
        dir = dir.display(),
        kept = kept.display(),
    );
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    let mut c = Command::new("unshare");
    if !root {
        c.args(["--user", "--map-root-user"]);
    }
    c.args(["--mount", "sh", "-c", &script]);
    let out = run(c, &[]);
    if !dir.join("rc").exists() {
        eprintln!(
            "skipped: cannot mount a tmpfs here (unshare --mount: {}); the full-disk test needs \
             root or user namespaces",
            text(&out)
        );
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    }
    let rc = std::fs::read_to_string(dir.join("rc")).unwrap();
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert_eq!(rc.trim(), "1", "{stderr}");
    assert!(
        stderr.contains("No space left on device")
            && stderr.contains(&format!("{}/run/checkpoints/last.tmp/", mnt.display()))
            && !stderr.contains("panicked"),
        "{stderr}"
    );
    // No temporary files left, the previous `last` in place and loadable: the run goes on
    // from it (copied out of the full filesystem).
    let names: Vec<String> = std::fs::read_dir(kept.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["last"], "{stderr}");
    let at = step_of(&kept.join("checkpoints/last")).unwrap();
    assert!(at >= 3 && at.is_multiple_of(3), "last at step {at}");
    assert!(!kept.join("checkpoints/last/model.safetensors.tmp").exists());
    let mut c = bin();
    c.arg("--resume")
        .arg(&kept)
        .arg("--stop-after")
        .arg((at + 1).to_string());
    let out = run(c, &[]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}
