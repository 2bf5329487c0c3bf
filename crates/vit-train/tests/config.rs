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
    // Every shipped recipe passes the rules (fine-tuning ones included; their weights are
    // read only when a run starts).
    let mut n = 0;
    for entry in std::fs::read_dir(configs()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 9, "{n} recipes");
    let b16 = Config::load(&configs().join("b16.toml"), &[]).unwrap();
    let vit = b16.model.config.as_vit().unwrap().clone();
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
    assert_eq!(c.model.config.as_vit().unwrap().depth, 3);
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
        err.contains("model.num_heads = 3: must divide embed_dim 32"),
        "{err}"
    );
    let err = load_err(|t| t.replace("mean = [0.2860]", "mean = [0.2, 0.3]"), &[]);
    assert!(err.contains("data.mean"), "{err}");
}

/// `[model]` is the preset with the user's keys laid over it, deserialised into `VitConfig`
/// (the one place a model hyper-parameter is declared); a run's recorded recipe reads back as
/// the same architecture, through TOML and through JSON (a checkpoint's `state.json`).
#[test]
fn model_is_the_preset_under_the_users_keys() {
    let dir = temp_dir("cfg-model");
    let path = dir.join("m.toml");
    let text = recipe_text(&dir);
    let start = text.find("[model]").unwrap();
    let end = text[start..].find("\n[").unwrap() + start;
    let model = "[model]\npreset = \"vit_small_patch16_224\"\nimage_size = [32, 32]\n\
                 patch_size = [4, 4]\nnum_classes = 10\nin_channels = 1\nembed_dim = 96\n\
                 depth = 2\n";
    std::fs::write(&path, format!("{}{model}{}", &text[..start], &text[end..])).unwrap();
    let c = Config::load(&path, &[]).unwrap();
    let m = c.model.config.as_vit().unwrap();
    assert_eq!(c.model.preset.as_deref(), Some("vit_small_patch16_224"));
    // The preset's values where the recipe is silent (heads 6, MLP ratio 4 of the new width).
    assert_eq!((m.embed_dim, m.depth, m.num_heads), (96, 2, 6));
    assert_eq!(m.mlp_hidden(), 384);
    assert_eq!(m.backbone, None);

    // A backbone table completes its own defaults; a hybrid preset's backbone is kept.
    let c = Config::load(&path, &["model.backbone.layers=[1]".into()]).unwrap();
    let b = c.model.config.as_vit().unwrap().backbone.clone().unwrap();
    assert_eq!((b.layers, b.stem_width, b.norm_groups), (vec![1], 64, 32));
    let c = Config::load(
        &path,
        &[
            "model.preset=\"vit_base_r50_s16_224\"".into(),
            "model.patch_size=[1, 1]".into(),
            "model.backbone.stem_width=32".into(),
        ],
    )
    .unwrap();
    let b = c.model.config.as_vit().unwrap().backbone.clone().unwrap();
    assert_eq!((b.layers, b.stem_width), (vec![3, 4, 9], 32));

    // Recorded and read back: TOML (the run's config.toml) and JSON (state.json).
    let toml_text = toml::to_string_pretty(&c).unwrap();
    assert!(toml_text.contains("[model.backbone]"), "{toml_text}");
    let again: Config = toml::from_str(&toml_text).unwrap();
    assert_eq!(again.model, c.model);
    let json: Config = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(json.model, c.model);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A checkpoint written before `[model]` became `VitConfig` (state.json layout 1: every field
/// an option, `null` when unset) reads back as the same architecture.
#[test]
fn an_older_state_json_model_section_reads_back() {
    let old = r#"{"preset": null, "image_size": [28, 28], "patch_size": [7, 7],
        "in_channels": 1, "num_classes": 10, "embed_dim": 32, "depth": 1, "num_heads": 2,
        "mlp_ratio": null, "mlp_dim": 64, "qkv_bias": true, "pool": "token",
        "class_token": true, "fc_norm": false, "representation_size": null,
        "drop_rate": 0.1, "attn_drop_rate": 0.0, "drop_path_rate": 0.1,
        "layer_scale_init": null, "norm_eps": 1e-6}"#;
    let m: vit_train::config::ModelSection = serde_json::from_str(old).unwrap();
    assert_eq!(m.preset, None);
    let c = m.config.as_vit().unwrap();
    assert_eq!(
        (c.embed_dim, c.mlp_hidden(), c.patch_size),
        (32, 64, [7, 7])
    );
    assert_eq!(
        (c.fc_norm, c.layer_scale_init, c.backbone.clone()),
        (Some(false), None, None)
    );
}

/// A ResNet preset selects BiT's config (`family = "resnet"` does without one); its keys are
/// BiT's, it is recorded with its family and read back the same, and what only a transformer
/// has is an error naming the key.
#[test]
fn a_resnet_preset_is_a_bit_model() {
    use vit_model::{Family, ModelConfig};
    use vit_train::config::ModelSection;
    let table = |text: &str| -> toml::Table { toml::from_str(text).unwrap() };
    let m = ModelSection::from_table(table(
        "preset = \"resnetv2_50x1_bit\"\nnum_classes = 10\nimage_size = [64, 64]",
    ))
    .unwrap();
    let ModelConfig::Bit(b) = &m.config else {
        panic!("not a BiT config: {:?}", m.config)
    };
    assert_eq!((b.layers.clone(), b.width_factor), (vec![3, 4, 6, 3], 1));
    assert_eq!((b.num_classes, b.image_size), (10, [64, 64]));
    assert_eq!(m.config.family(), Family::ResNet);
    // timm's count for resnetv2_50x1_bit (bit_param_counts.json: 25,549,352 at 1000
    // classes) less 990 rows of its 2048-wide head.
    assert_eq!(m.config.num_params(), 25_549_352 - 990 * 2049);

    let text = toml::to_string(&m).unwrap();
    assert!(text.contains("family = \"resnet\""), "{text}");
    let back: ModelSection = toml::from_str(&text).unwrap();
    assert_eq!(back, m);
    let json: ModelSection = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(json, m);

    let custom = ModelSection::from_table(table(
        "family = \"resnet\"\nlayers = [1, 1]\nchannels = [128, 256]\nstem_width = 32",
    ))
    .unwrap();
    assert_eq!(custom.config.family(), Family::ResNet);
    for (text, expect) in [
        (
            "preset = \"bit_tiny\"\nembed_dim = 64",
            "key `model.embed_dim`: unknown field",
        ),
        (
            "preset = \"bit_tiny\"\nfamily = \"vit\"",
            "preset `bit_tiny` is a resnet",
        ),
        (
            "family = \"hybrid\"",
            "a hybrid needs a [model.backbone] table",
        ),
        (
            "family = \"cnn\"",
            "key `model.family`: expected `vit`, `hybrid` or `resnet`",
        ),
        ("family = \"resnet\"\nlayers = [2, 0]", ""),
    ] {
        match ModelSection::from_table(table(text)) {
            Err(e) => assert!(e.contains(expect), "{text}: {e}"),
            // A config that parses but is invalid is the rules' to reject.
            Ok(m) => assert!(expect.is_empty() && m.config.validate().is_err(), "{text}"),
        }
    }
}

/// The rules of a recipe know the family: layer-wise decay is the transformer's.
#[test]
fn layer_decay_on_a_resnet_is_named() {
    let dir = temp_dir("cfg-resnet-ld");
    let (path, _) = recipe(&dir, &[]);
    let err = format!(
        "{:#}",
        Config::load(
            &path,
            &[
                "model={ preset = \"bit_tiny\", num_classes = 10, in_channels = 1, image_size = [28, 28] }".into(),
                "train.layer_decay=0.75".into(),
            ]
        )
        .unwrap_err()
    );
    assert!(
        err.contains("train.layer_decay = 0.75: applies to ViTs and hybrids only"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resnet_widths_that_groupnorm_cannot_split_are_named() {
    let dir = temp_dir("cfg-resnet-groups");
    let (path, _) = recipe(&dir, &[]);
    let err = format!(
        "{:#}",
        Config::load(
            &path,
            &[
                "model={ preset = \"bit_tiny\", num_classes = 10, in_channels = 1, image_size = [28, 28] }".into(),
                "model.channels=[64, 128, 256, 512]".into(),
            ]
        )
        .unwrap_err()
    );
    // The first stage's bottleneck is 64 / 4 = 16 channels, under GroupNorm's 32 groups.
    assert!(
        err.contains("model.channels = [64, 128, 256, 512] and stem_width = 32: a width of 16")
            && err.contains("not a multiple of norm_groups = 32"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_config_file_is_named() {
    let err = format!(
        "{:#}",
        Config::load(Path::new("/nonexistent/x.toml"), &[]).unwrap_err()
    );
    assert!(err.contains("/nonexistent/x.toml"), "{err}");
}

/// Every recipe value out of its range, one at a time: each is rejected when the recipe is
/// loaded, and the error names the file, the key and the value.
#[test]
fn every_field_out_of_range_is_named() {
    let dir = temp_dir("cfg-walk");
    let path = dir.join("walk.toml");
    std::fs::write(&path, recipe_text(&dir)).unwrap();
    // (override, the key and value the error must show)
    let cases: &[(&str, &str)] = &[
        ("model.image_size=[0, 28]", "model.image_size = [0, 28]"),
        ("model.image_size=[30, 30]", "model.patch_size = [7, 7]"),
        ("model.patch_size=[0, 7]", "model.patch_size = [0, 7]"),
        ("model.in_channels=0", "model.in_channels = 0"),
        ("model.num_classes=0", "model.num_classes = 0"),
        ("model.embed_dim=0", "model.embed_dim = 0"),
        ("model.depth=0", "model.depth = 0"),
        ("model.num_heads=0", "model.num_heads = 0"),
        ("model.num_heads=5", "model.num_heads = 5"),
        ("model.mlp_ratio=-1.0", "model.mlp_ratio = -1"),
        ("model.mlp_ratio=nan", "model.mlp_ratio = NaN"),
        ("model.mlp_dim=0", "model.mlp_dim = 0"),
        ("model.class_token=false", "model.pool = \"token\""),
        (
            "model.representation_size=0",
            "model.representation_size = 0",
        ),
        ("model.drop_rate=1.0", "model.drop_rate = 1"),
        ("model.attn_drop_rate=-0.1", "model.attn_drop_rate = -0.1"),
        ("model.drop_path_rate=nan", "model.drop_path_rate = NaN"),
        ("model.layer_scale_init=inf", "model.layer_scale_init = inf"),
        ("model.norm_eps=0.0", "model.norm_eps = 0"),
        ("data.train=\"\"", "data.train = \"\""),
        ("data.test=\"\"", "data.test = \"\""),
        ("data.val=\"\"", "data.val = \"\""),
        ("data.val_fraction=1.0", "data.val_fraction = 1"),
        ("data.train_limit=0", "data.train_limit = 0"),
        ("data.train_per_class=0", "data.train_per_class = 0"),
        ("data.val_limit=0", "data.val_limit = 0"),
        ("data.classes=[\"a\"]", "data.classes = [1 names]"),
        ("data.mean=[nan]", "data.mean = [NaN]"),
        ("data.mean=[0.1, 0.2]", "data.mean = [0.1, 0.2]"),
        ("data.std=[0.0]", "data.std = [0.0]"),
        ("data.std=[0.3, 0.3]", "data.std = [0.3, 0.3]"),
        ("data.workers=0", "data.workers = 0"),
        ("data.crop_pct=0.0", "data.crop_pct = 0"),
        ("data.crop_pct=1.5", "data.crop_pct = 1.5"),
        ("data.cache_max_side=0", "data.cache_max_side = 0"),
        ("data.cache_mb=0", "data.cache_mb = 0"),
        ("data.crop_mode=\"fill\"", "data.crop_mode"),
        ("data.interpolation=\"cubic\"", "data.interpolation"),
        ("data.decoder=\"libjpeg\"", "data.decoder"),
        ("data.cache=\"maybe\"", "data.cache"),
        (
            "data.augment.rrc_interpolation=\"nearest\"",
            "data.augment.rrc_interpolation",
        ),
        (
            "data.augment.crop_padding=29",
            "data.augment.crop_padding = 29",
        ),
        (
            "data.augment.rrc_scale=[1.0, 0.08]",
            "data.augment.rrc_scale = [1.0, 0.08]",
        ),
        (
            "data.augment.rrc_scale=[0.0, 1.0]",
            "data.augment.rrc_scale = [0.0, 1.0]",
        ),
        (
            "data.augment.rrc_ratio=[-1.0, 2.0]",
            "data.augment.rrc_ratio = [-1.0, 2.0]",
        ),
        ("data.augment.rand_ops=17", "data.augment.rand_ops = 17"),
        (
            "data.augment.rand_magnitude=11.0",
            "data.augment.rand_magnitude = 11",
        ),
        (
            "data.augment.erase_prob=1.5",
            "data.augment.erase_prob = 1.5",
        ),
        (
            "data.augment.mixup_alpha=-0.2",
            "data.augment.mixup_alpha = -0.2",
        ),
        (
            "data.augment.cutmix_alpha=inf",
            "data.augment.cutmix_alpha = inf",
        ),
        ("train.epochs=0", "train.epochs = 0"),
        ("train.max_steps=0", "train.max_steps = 0"),
        ("train.batch_size=0", "train.batch_size = 0"),
        ("train.batch_size=33", "train.batch_size = 33"),
        ("train.accum_steps=0", "train.accum_steps = 0"),
        ("train.lr=0.0", "train.lr = 0"),
        ("train.lr=nan", "train.lr = NaN"),
        ("train.min_lr=-1e-5", "train.min_lr = -0.00001"),
        ("train.min_lr=1.0", "train.min_lr = 1"),
        ("train.weight_decay=-0.05", "train.weight_decay = -0.05"),
        ("train.beta1=1.0", "train.beta1 = 1"),
        ("train.beta2=-0.1", "train.beta2 = -0.1"),
        ("train.eps=0.0", "train.eps = 0"),
        ("train.momentum=1.5", "train.momentum = 1.5"),
        ("train.clip_grad_norm=0.0", "train.clip_grad_norm = 0"),
        ("train.layer_decay=1.5", "train.layer_decay = 1.5"),
        ("train.label_smoothing=1.0", "train.label_smoothing = 1"),
        ("train.ema_decay=1.0", "train.ema_decay = 1"),
        ("train.ema_decay=0.0", "train.ema_decay = 0"),
        ("train.ema_warmup=true", "train.ema_warmup = true"),
        ("train.device=\"gpu\"", "train.device = \"gpu\""),
        ("train.device=\"cuda:x\"", "train.device = \"cuda:x\""),
        ("output.dir=\"\"", "output.dir = \"\""),
        // Enums and types are serde's: the key is named all the same.
        ("train.optimizer=\"adam\"", "train.optimizer"),
        ("train.schedule=\"step\"", "train.schedule"),
        ("data.format=\"csv\"", "data.format"),
        ("data.on_bad_image=\"ignore\"", "data.on_bad_image"),
        ("model.pool=\"max\"", "model.pool"),
        ("model.preset=\"vit_giant\"", "model.preset"),
        (
            "model.backbone.layers=[3, 0]",
            "model.backbone.layers = [3, 0]",
        ),
        (
            "model.backbone.stem_width=48",
            "model.backbone.stem_width = 48",
        ),
        ("model.backbone.norm_eps=0.0", "model.backbone.norm_eps = 0"),
        ("model.backbone.std_conv=\"ws\"", "model.backbone.std_conv"),
        ("model.backbone.widths=[1]", "model.backbone.widths"),
        (
            "finetune.posemb_resample=\"cubic\"",
            "finetune.posemb_resample",
        ),
        (
            "finetune.weights_format=\"onnx\"",
            "finetune.weights_format",
        ),
        ("train.checkpoint_every=-1", "train.checkpoint_every"),
    ];
    for (set, want) in cases {
        let err = match Config::load(&path, &[set.to_string()]) {
            Ok(_) => panic!("--set {set} was accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains("walk.toml") && err.contains(want),
            "--set {set}: the error should name `{want}`: {err}"
        );
    }
    // Several problems are reported together.
    let err = format!(
        "{:#}",
        Config::load(
            &path,
            &["train.lr=-1.0".into(), "data.augment.erase_prob=2.0".into()]
        )
        .unwrap_err()
    );
    assert!(
        err.contains("2 invalid values") && err.contains("train.lr") && err.contains("erase_prob"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
