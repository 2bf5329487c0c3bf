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

/// `info --json`: the text's numbers, exact, and each recipe's family.
#[test]
fn info_json_has_the_exact_numbers_of_the_text() {
    let configs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/");
    for (recipe, family) in [
        ("b16.toml", "vit"),
        ("fashion-mnist-hybrid.toml", "hybrid"),
        ("fashion-mnist-bit.toml", "resnet"),
    ] {
        let path = format!("{configs}{recipe}");
        let (ok, text, err) = vit_train(&["info", "--config", &path]);
        assert!(ok, "{err}");
        let (ok, out, err) = vit_train(&["info", "--json", "--config", &path]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
        assert_eq!(v["family"], family, "{recipe}: {v}");
        let params = v["params"].as_u64().unwrap();
        let grouped = params
            .to_string()
            .as_bytes()
            .rchunks(3)
            .rev()
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            text.contains(&format!("parameters {grouped}\n")),
            "{recipe}: {text}"
        );
        let flops = v["flops_per_image"].as_f64().unwrap();
        let shown = if flops >= 1e9 {
            format!("FLOPs per image {:.3} G", flops / 1e9)
        } else {
            format!("FLOPs per image {:.2} M", flops / 1e6)
        };
        assert!(text.contains(&shown), "{recipe}: {shown} not in {text}");
        assert!(v["images_per_step"].as_u64().unwrap() > 0, "{v}");
    }
}

/// `devices` says what the binary has and what `auto` picks: here (CI) lavapipe is the only
/// Vulkan device, a software rasterizer, which `auto` must pass over (VIT_EXPECT_GPU=0).
#[test]
fn devices_lists_the_backends_and_what_auto_picks() {
    let (ok, out, err) = vit_train(&["devices", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let compiled: Vec<&str> = v["compiled"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(compiled.contains(&"flex"), "{compiled:?}");
    assert_eq!(
        compiled.contains(&"wgpu"),
        cfg!(feature = "wgpu"),
        "{compiled:?}"
    );
    let auto = v["auto"].as_str().unwrap();
    let card = v["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["card"].as_bool() == Some(true));
    // `auto` is a card exactly when one was listed.
    assert_eq!(auto != "cpu", card, "{v}");
    if std::env::var("VIT_EXPECT_GPU").as_deref() == Ok("0") {
        assert_eq!(auto, "cpu", "{v}");
    }
    let (ok, text, err) = vit_train(&["devices"]);
    assert!(ok, "{err}");
    assert!(
        text.contains(&format!("--device auto picks: {auto}")),
        "{text}"
    );
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
    // A known device this binary was built without: the error names the cargo feature.
    if !vit_model::available_devices().contains(&"cuda") {
        let (ok, _, err) = vit_train(&["--config", path.to_str().unwrap(), "--device", "cuda:1"]);
        assert!(
            !ok && err.contains("needs the cargo feature `cuda`") && !err.contains("panicked"),
            "{err}"
        );
    }
    // An unusable CPU GEMM choice is an error naming the variable, before any work.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vit-train"))
        .args(["--config", path.to_str().unwrap()])
        .env("VIT_CPU_GEMM", "blas9")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("VIT_CPU_GEMM=\"blas9\" is not a CPU GEMM")
            && !err.contains("panicked"),
        "{err}"
    );
    let (ok, _, err) = vit_train(&["--resume", dir.to_str().unwrap(), "--set", "train.lr=1"]);
    assert!(!ok && err.contains("leave out --config and --set"), "{err}");
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
    // The header names the CPU kernels' GEMM.
    assert!(
        out.contains("on cpu (GEMM: ") || err.contains("on cpu (GEMM: "),
        "{out}{err}"
    );
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

/// `export --checkpoint RUN --out OUT`, and the state dict it wrote.
fn export(run: &std::path::Path, out: &std::path::Path) -> vit_model::weights::StateDict {
    let (ok, _, err) = vit_train(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    vit_model::weights::read_safetensors(out).unwrap()
}

/// `finetune` of recipe `path` from `weights` for one step into `out_dir`, with `extra`
/// arguments; it must run to its test accuracy.
fn finetune_one_step(
    path: &std::path::Path,
    weights: &std::path::Path,
    out_dir: &std::path::Path,
    extra: &[&str],
) {
    let out_set = format!("output.dir={:?}", out_dir.display().to_string());
    let mut args = vec![
        "finetune",
        "--config",
        path.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--max-steps",
        "1",
        "--set",
        &out_set,
    ];
    args.extend(extra);
    let (ok, out, err) = vit_train(&args);
    assert!(ok && out.contains("test accuracy"), "{err}{out}");
}

/// A hybrid (ResNet stem + one stage, 1x1 patches of its 7x7 feature map) is a recipe away:
/// it trains, is evaluated from its checkpoint's recorded architecture, predicts from the
/// `[model]` table of a recipe with `--weights`, and exports under timm's names.
#[test]
fn a_hybrid_trains_evaluates_predicts_and_exports() {
    let dir = temp_dir("cli-hybrid");
    let (path, _) = recipe(&dir, &[]);
    let hybrid = [
        "--set",
        "model.backbone.layers=[1]",
        "--set",
        "model.backbone.stem_width=32",
        "--set",
        "model.patch_size=[1, 1]",
        "--set",
        "data.train_limit=128",
        "--set",
        "data.val_limit=64",
    ];
    let mut args = vec![
        "--config",
        path.to_str().unwrap(),
        "--set",
        "train.max_steps=2",
    ];
    args.extend(hybrid);
    let (ok, out, err) = vit_train(&args);
    assert!(ok, "{err}");
    assert!(out.contains("test accuracy: top-1"), "{out}");
    let run = dir.join("run");
    let recorded = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        recorded.contains("[model.backbone]") && recorded.contains("stem_width = 32"),
        "{recorded}"
    );

    // The checkpoint's state.json (JSON) rebuilds the same architecture.
    let (ok, out, err) = vit_train(&["eval", "--checkpoint", run.to_str().unwrap()]);
    assert!(ok && out.contains("images 200"), "{err}{out}");

    let exported = dir.join("hybrid.safetensors");
    let dict = export(&run, &exported);
    for key in [
        "patch_embed.backbone.stem.conv.weight",
        "patch_embed.backbone.stages.0.blocks.0.downsample.conv.weight",
        "patch_embed.proj.weight",
    ] {
        assert!(dict.contains_key(key), "{key} not in {:?}", dict.keys());
    }

    // Fine-tuning from the exported hybrid: a new zero head, one step.
    let mut extra = vec!["--num-classes", "10"];
    extra.extend(hybrid);
    finetune_one_step(&path, &exported, &dir.join("ft"), &extra);

    // `--model` as a recipe: its [model] table (with the backbone) describes the weights.
    let recipe_path = dir.join("hybrid.toml");
    std::fs::write(
        &recipe_path,
        "[model]\nimage_size = [28, 28]\npatch_size = [1, 1]\nin_channels = 1\n\
         num_classes = 10\nembed_dim = 32\ndepth = 1\nnum_heads = 2\nmlp_ratio = 2.0\n\
         [model.backbone]\nlayers = [1]\nstem_width = 32\n",
    )
    .unwrap();
    let img = dir.join("img.png");
    image::GrayImage::from_pixel(28, 28, image::Luma([128]))
        .save(&img)
        .unwrap();
    let (ok, out, err) = vit_train(&[
        "predict",
        "--weights",
        exported.to_str().unwrap(),
        "--model",
        recipe_path.to_str().unwrap(),
        "--mean",
        "0.286",
        "--std",
        "0.353",
        "--json",
        img.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["top_k"].as_array().unwrap().len(), 5);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A BiT ResNet (the paper's ResNet family) is a preset away, as a ViT is: `info` counts it,
/// it trains, is evaluated from its checkpoint, exports under timm's names, fine-tunes from
/// the export with a new zero head, predicts from a `[model]` table with `--weights`, and
/// `inspect` draws its root filters and says what does not apply.
#[test]
fn a_resnet_trains_evaluates_exports_finetunes_predicts_and_inspects() {
    let dir = temp_dir("cli-resnet");
    let (path, _) = recipe(&dir, &[]);
    let model =
        "model={ preset = \"bit_tiny\", in_channels = 1, image_size = [28, 28], num_classes = 10 }";
    let common = [
        "--set",
        model,
        "--set",
        "data.train_limit=64",
        "--set",
        "data.val_limit=32",
    ];
    let mut args = vec!["info", "--config", path.to_str().unwrap()];
    args.extend(common);
    let (ok, out, err) = vit_train(&args);
    assert!(ok, "{err}");
    // timm's ResNetV2 of bit_tiny's shape at 1 input channel and 10 classes (the 3-channel,
    // 1000-class count in bit_param_counts.json, less 2 x 7 x 7 x 32 stem weights and 990
    // rows of the 1024-wide head).
    let expected = 3_032_328 - 2 * 49 * 32 - 990 * 1025;
    let grouped = vit_train::info::group(expected);
    assert!(out.contains("BiT ResNetV2"), "{out}");
    assert!(out.contains(&format!("parameters {grouped}")), "{out}");

    let mut args = vec![
        "--config",
        path.to_str().unwrap(),
        "--set",
        "train.max_steps=2",
    ];
    args.extend(common);
    let (ok, out, err) = vit_train(&args);
    assert!(ok, "{err}");
    assert!(out.contains("test accuracy: top-1"), "{out}");
    let run = dir.join("run");
    let recorded = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        recorded.contains("preset = \"bit_tiny\"") && recorded.contains("family = \"resnet\""),
        "{recorded}"
    );

    let (ok, out, err) = vit_train(&["eval", "--checkpoint", run.to_str().unwrap()]);
    assert!(ok && out.contains("images 200"), "{err}{out}");

    let exported = dir.join("bit.safetensors");
    let dict = export(&run, &exported);
    for (key, shape) in [
        ("stem.conv.weight", vec![32, 1, 7, 7]),
        (
            "stages.0.blocks.0.downsample.conv.weight",
            vec![128, 32, 1, 1],
        ),
        ("stages.3.blocks.0.conv3.weight", vec![1024, 256, 1, 1]),
        ("norm.weight", vec![1024]),
        ("head.fc.weight", vec![10, 1024, 1, 1]),
    ] {
        let t = dict
            .get(key)
            .unwrap_or_else(|| panic!("{key} not in {:?}", dict.keys()));
        assert_eq!(t.shape().to_vec(), shape, "{key}");
    }

    // Fine-tuning from the export: a new zero head, one step.
    let ft = dir.join("ft");
    // A head of 4 classes on data of 10 labels is refused, naming the label.
    let ft_dir = format!("output.dir={:?}", ft.display().to_string());
    let mut args = vec![
        "finetune",
        "--config",
        path.to_str().unwrap(),
        "--weights",
        exported.to_str().unwrap(),
        "--max-steps",
        "1",
        "--set",
        &ft_dir,
    ];
    args.extend(common);
    args.extend(["--set", "data.classes=[\"a\", \"b\", \"c\", \"d\"]"]);
    args.extend(["--num-classes", "4"]);
    let (ok, out, err) = vit_train(&args);
    assert!(!ok, "{out}");
    assert!(
        err.contains("out of range") || err.contains("data.classes"),
        "{err}"
    );
    finetune_one_step(&path, &exported, &ft, &common);

    // `--model` as a recipe: its [model] table names the family and the shape.
    let recipe_path = dir.join("bit.toml");
    std::fs::write(
        &recipe_path,
        "[model]\npreset = \"bit_tiny\"\nimage_size = [28, 28]\nin_channels = 1\n\
         num_classes = 10\n",
    )
    .unwrap();
    let img = dir.join("img.png");
    image::GrayImage::from_fn(30, 34, |x, y| image::Luma([(x * 7 + y * 3) as u8]))
        .save(&img)
        .unwrap();
    let (ok, out, err) = vit_train(&[
        "predict",
        "--weights",
        exported.to_str().unwrap(),
        "--model",
        recipe_path.to_str().unwrap(),
        "--mean",
        "0.286",
        "--std",
        "0.353",
        "--json",
        img.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["top_k"].as_array().unwrap().len(), 5);

    let figures = dir.join("figures");
    let inspect = [
        "inspect",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        figures.to_str().unwrap(),
        img.to_str().unwrap(),
    ];
    let (ok, _, err) = vit_train(&inspect);
    assert!(ok, "{err}");
    assert!(err.contains("do not apply"), "{err}");
    let drawn = image::open(figures.join("root_filters.png")).unwrap();
    assert!(drawn.width() > 100 && drawn.height() > 100);
    assert!(!figures.join("posemb_similarity.png").exists());
    let (ok, _, err) = vit_train(&inspect);
    assert!(!ok && err.contains("--overwrite"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
