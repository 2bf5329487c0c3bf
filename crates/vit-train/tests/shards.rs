//! WebDataset shards: written here from an image folder and read back by the `webdataset`
//! package, written by `webdataset.ShardWriter` and read here (xtask/python/webdataset_check.py),
//! evaluation on shards equal to evaluation on the folder, and training on shards resumed
//! mid-epoch exactly.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use sha2::{Digest, Sha256};
use vit_train::data::webdataset::{self, scan};

fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imagenet/val")
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// (key, class, sha256 of the image) of each sample of `pattern`'s shards, read here.
fn ours(pattern: &str) -> Vec<(String, u32, String)> {
    let mut out = Vec::new();
    for path in scan::shard_paths(Path::new(""), pattern).unwrap() {
        for f in scan::scan(&path).unwrap() {
            out.push((f.key, f.label, sha(&f.image.read().unwrap())));
        }
    }
    out
}

/// The xtask venv's Python with `webdataset` (CI: required).
fn webdataset_python() -> Option<PathBuf> {
    xtask_python_with("webdataset", "VIT_REQUIRE_WEBDATASET")
}

fn python_check(python: &Path, args: &[&str]) -> Vec<(String, u32, String)> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../xtask/python/webdataset_check.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The folder's images: sha256 -> class.
fn folder_images() -> BTreeMap<String, u32> {
    let listing = vit_train::data::image_folder::list(&folder()).unwrap();
    listing
        .items
        .iter()
        .map(|(p, l)| (sha(&std::fs::read(p).unwrap()), *l))
        .collect()
}

fn write_shards(out: &Path, extra: &[&str]) -> (bool, String, String) {
    let from = folder();
    let mut args = vec![
        "shards",
        "--from",
        from.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--shard-size",
        "300KB",
    ];
    args.extend(extra);
    let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
    vit_train(&refs)
}

#[test]
fn shards_written_here_hold_the_folder_and_webdataset_reads_them_alike() {
    let dir = temp_dir("shards-write");
    let out = dir.join("shards");
    let (ok, stdout, err) = write_shards(&out, &[]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("17 samples (0 re-encoded) in 4 shards"),
        "{stdout}"
    );
    let pattern = format!("{}/val-{{000000..000003}}.tar", out.display());
    let here = ours(&pattern);
    // Every image of the folder, byte for byte, with its class; keys unique.
    let got: BTreeMap<String, u32> = here.iter().map(|(_, l, s)| (s.clone(), *l)).collect();
    assert_eq!(got, folder_images());
    assert_eq!(
        here.iter()
            .map(|s| &s.0)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        17
    );
    // The index counts them without reading a shard; info says so.
    assert_eq!(
        webdataset::count(Path::new(""), &pattern).unwrap(),
        (4, Some(17))
    );
    // A second write into the same folder is refused, leaving it as it is.
    let before = std::fs::read(out.join("val-000000.tar")).unwrap();
    let (ok, _, err) = write_shards(&out, &[]);
    assert!(!ok && err.contains("does not overwrite"), "{err}");
    assert_eq!(std::fs::read(out.join("val-000000.tar")).unwrap(), before);
    // `--max-side`: the large ones re-encoded, smaller than the limit.
    let small = dir.join("small");
    let (ok, stdout, err) = write_shards(&small, &["--max-side", "200"]);
    assert!(ok, "{err}");
    assert!(!stdout.contains("(0 re-encoded)"), "{stdout}");
    for path in scan::shard_paths(
        Path::new(""),
        &format!("{}/val-{{000000..000000}}.tar", small.display()),
    )
    .unwrap()
    {
        for f in scan::scan(&path).unwrap() {
            let (w, h) = vit_train::data::decode::dimensions(&f.image.read().unwrap()).unwrap();
            assert!(w.max(h) <= 200, "{}: {w}x{h}", f.key);
        }
    }
    if let Some(python) = webdataset_python() {
        assert_eq!(python_check(&python, &["read", &pattern]), here);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shards_written_by_webdataset_load_here() {
    let Some(python) = webdataset_python() else {
        return;
    };
    let dir = temp_dir("shards-wds");
    let written = python_check(
        &python,
        &[
            "write",
            "--from",
            folder().to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    let pattern = format!("{}/wds-{{000000..000002}}.tar", dir.display());
    assert_eq!(ours(&pattern), written);
    let set = webdataset::load(Path::new(""), &pattern, [3, 32, 32], None).unwrap();
    assert_eq!(set.len(), 17);
    assert_eq!(set.classes, ["cat", "coffee", "rocket"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `eval --weights --data 'DIR/val-{...}.tar'`: the report of the folder itself.
#[test]
fn eval_on_shards_equals_eval_on_the_folder() {
    let dir = temp_dir("shards-eval");
    let out = dir.join("shards");
    let (ok, _, err) = write_shards(&out, &[]);
    assert!(ok, "{err}");
    let fixtures = folder().parent().unwrap().to_path_buf();
    let weights = fixtures.join("eval_model.safetensors");
    let model = fixtures.join("eval_model.toml");
    let eval = |data: &str| -> serde_json::Value {
        let (ok, out, err) = vit_train(&[
            "eval",
            "--weights",
            weights.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--data",
            data,
            "--batch-size",
            "5",
            "--decoder",
            "image",
            "--json",
        ]);
        assert!(ok, "{err}");
        serde_json::from_str(out.trim()).unwrap()
    };
    let on_folder = eval(fixtures.to_str().unwrap());
    let on_shards = eval(&format!("{}/val-{{000000..000003}}.tar", out.display()));
    assert_eq!(on_shards["images"], 17);
    for k in ["images", "top1", "top5", "per_class", "confusion"] {
        assert_eq!(on_shards[k], on_folder[k], "{k}");
    }
    let (a, b) = (
        on_shards["loss"].as_f64().unwrap(),
        on_folder["loss"].as_f64().unwrap(),
    );
    assert!(
        (a - b).abs() <= 1e-6 * b,
        "loss {a} on shards vs {b} on the folder"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The b16 recipe (a tiny model laid over it) on shards: `info` counts them from the index,
/// and a run stopped in the middle of an epoch resumes to the straight run's losses.
#[test]
fn training_on_shards_resumes_exactly_mid_epoch() {
    let dir = temp_dir("shards-train");
    let shards = dir.join("shards");
    let (ok, _, err) = write_shards(&shards, &[]);
    assert!(ok, "{err}");
    let b16 = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/b16.toml");
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let sets = [
            "data.format=\"webdataset\"".to_string(),
            format!("data.root={:?}", shards.display().to_string()),
            "data.train=\"val-{000000..000003}.tar\"".into(),
            "data.test=\"val-{000000..000003}.tar\"".into(),
            "data.workers=2".into(),
            "data.shuffle_buffer=8".into(),
            "data.shuffle_initial=2".into(),
            "model.num_classes=3".into(),
            "model.embed_dim=32".into(),
            "model.depth=1".into(),
            "model.num_heads=2".into(),
            "model.patch_size=[32, 32]".into(),
            "train.batch_size=4".into(),
            "train.accum_steps=1".into(),
            "train.warmup_steps=2".into(),
            "train.epochs=3".into(),
            format!("output.dir={:?}", out.display().to_string()),
        ];
        let mut a = vec!["--config".to_string(), b16.to_string()];
        for s in sets {
            a.push("--set".into());
            a.push(s);
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        vit_train(&a)
    };
    let mut info = vec!["info".to_string()];
    info.extend(args(&dir.join("info"), &[]));
    let (ok, out, err) = run(info);
    assert!(ok, "{err}");
    assert!(
        out.contains("train: 17 samples in 4 shards") && out.contains("an epoch: 4 steps of 4"),
        "{out}"
    );
    let straight = dir.join("straight");
    let (ok, out, err) = run(args(&straight, &[]));
    assert!(ok, "{err}");
    assert!(out.contains("done: 12 steps"), "{out}");
    // Stopped at step 6: batch 2 of the second epoch.
    let split = dir.join("split");
    let (ok, _, err) = run(args(&split, &["--stop-after", "6"]));
    assert!(ok, "{err}");
    let (ok, out, err) = vit_train(&["--resume", split.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("done: 12 steps"), "{out}");
    assert_eq!(losses(&split), losses(&straight));
    // Killed (SIGKILL) in the middle of the second epoch, a checkpoint every step: resumed from
    // whatever checkpoint it left, the same losses.
    let killed = dir.join("killed");
    let a = args(&killed, &["--set", "train.checkpoint_every=1"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vit-train"))
        .args(&a)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !losses_so_far(&killed).iter().any(|&(s, _)| s == 6) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before step 6"
        );
        assert!(start.elapsed().as_secs() < 120, "no step 6");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at = vit_train::train::checkpoint::read_state(
        &vit_train::train::checkpoint::resolve(&killed).unwrap(),
    )
    .unwrap()
    .step;
    assert!(at < 12, "killed before the end (checkpoint of step {at})");
    let (ok, _, err) = vit_train(&["--resume", killed.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(losses(&killed), losses(&straight));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// (step, loss) of the train lines logged so far (a torn last line ignored).
fn losses_so_far(run: &Path) -> Vec<(usize, f64)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["split"] == "train")
        .map(|v| {
            (
                v["step"].as_u64().unwrap() as usize,
                v["loss"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Bad shards: errors naming the shard (and the sample), never a panic.
#[test]
fn bad_shards_are_named() {
    let dir = temp_dir("shards-bad");
    let jpg = std::fs::read(folder().join("cat/cat_00000.jpg")).unwrap();
    let tar_of = |name: &str, members: &[(&str, &[u8])]| -> PathBuf {
        let path = dir.join(name);
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        for (n, data) in members {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o444);
            b.append_data(&mut h, n, *data).unwrap();
        }
        b.finish().unwrap();
        path
    };
    let classes = Some(vec!["a".to_string(), "b".to_string()]);
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            tar_of("nocls.tar", &[("k1.jpg", &jpg)]),
            "sample `k1` has no .cls",
        ),
        (
            tar_of("noimage.tar", &[("k1.cls", b"0")]),
            "sample `k1` has no image",
        ),
        (
            tar_of("badcls.tar", &[("k1.jpg", &jpg), ("k1.cls", b"cat")]),
            "holds `cat`, not a class index",
        ),
        (
            tar_of("range.tar", &[("k1.jpg", &jpg), ("k1.cls", b"7")]),
            "has class 7 but there are 2 classes",
        ),
    ];
    for (path, want) in &cases {
        let e = format!(
            "{:#}",
            webdataset::load(
                Path::new(""),
                path.to_str().unwrap(),
                [3, 32, 32],
                classes.clone()
            )
            .unwrap_err()
        );
        assert!(
            e.contains(want) && e.contains(path.to_str().unwrap()),
            "{e}"
        );
    }
    // A shard cut short in a member's header, and a missing one.
    let good = tar_of(
        "good.tar",
        &[
            ("k1.jpg", &jpg),
            ("k1.cls", b"1"),
            ("k2.jpg", &jpg),
            ("k2.cls", b"0"),
        ],
    );
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("cut.tar");
    std::fs::write(&cut, &bytes[..512 + jpg.len().div_ceil(512) * 512 + 100]).unwrap();
    let e = format!(
        "{:#}",
        webdataset::load(
            Path::new(""),
            cut.to_str().unwrap(),
            [3, 32, 32],
            classes.clone()
        )
        .unwrap_err()
    );
    assert!(e.contains(cut.to_str().unwrap()), "{e}");
    let missing = format!("{}/none-{{0..1}}.tar", dir.display());
    let e = format!(
        "{:#}",
        webdataset::load(Path::new(""), &missing, [3, 32, 32], classes.clone()).unwrap_err()
    );
    assert!(
        e.contains("none-0.tar") && e.contains("does not exist"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
