//! `info`: what a recipe would train, without training.

use anyhow::Result;
use serde::Serialize;

use vit_model::ModelConfig;

use crate::config::Config;
use crate::train::schedule::lr_at;

/// A value as a recipe writes it (`"adamw"`, `[32, 32]`, `{ hflip = true, ... }`); an unset
/// option as `none`.
fn tv<T: Serialize>(value: &T) -> String {
    match toml::Value::try_from(value) {
        Ok(v) => v.to_string(),
        Err(_) => "none".into(),
    }
}

/// FLOPs in G, or in M below a billion (the small models' three digits).
fn flops(f: u64) -> String {
    match f {
        f if f >= 1_000_000_000 => format!("{:.3} G", f as f64 / 1e9),
        f => format!("{:.2} M", f as f64 / 1e6),
    }
}

/// The `model:` lines: the architecture, its parameters and FLOPs.
fn describe_model(config: &Config) -> String {
    let preset = config
        .model
        .preset
        .as_deref()
        .map_or("custom".into(), |p| format!("preset {p:?}"));
    let m = match &config.model.config {
        ModelConfig::Vit(m) => m,
        ModelConfig::Bit(b) => {
            return format!(
                "model: {preset}, BiT ResNetV2 (the paper's ResNet family)\n  image_size {}, \
                 in_channels {}, num_classes {}\n  layers {}, channels {}, width_factor {}, \
                 stem {} channels, features {}\n  parameters {}\n  FLOPs per image {} \
                 (forward)\n  drop_rate {}\n",
                tv(&b.image_size),
                b.in_channels,
                b.num_classes,
                tv(&b.layers),
                tv(&(0..b.layers.len())
                    .map(|i| b.stage_channels(i))
                    .collect::<Vec<_>>()),
                b.width_factor,
                b.stem_channels(),
                b.num_features(),
                group(b.num_params()),
                flops(b.flops_per_image(b.image_size)),
                tv(&b.drop_rate)
            );
        }
    };
    let mut s = format!(
        "model: {preset}\n  image_size {}, patch_size {}, in_channels {}, num_classes {}\n  \
         embed_dim {}, depth {}, num_heads {}, MLP {}, pool {}, class_token {}\n",
        tv(&m.image_size),
        tv(&m.patch_size),
        m.in_channels,
        m.num_classes,
        m.embed_dim,
        m.depth,
        m.num_heads,
        m.mlp_hidden(),
        tv(&m.pool),
        m.class_token
    );
    if let Some(b) = &m.backbone {
        let [fh, fw] = m.embed_input_size();
        s += &format!(
            "  backbone ResNet layers {}, stem_width {}, feature map {}x{}x{} (stride {}), \
             {} parameters\n",
            tv(&b.layers),
            b.stem_width,
            b.out_channels(),
            fh,
            fw,
            m.image_size[0] / fh.max(1),
            group(b.num_params(m.in_channels))
        );
    }
    s += &format!(
        "  parameters {}\n  tokens {} ({} patches + {} prefix)\n  FLOPs per image {} (forward)\n",
        group(m.num_params()),
        m.seq_len(),
        m.num_patches(),
        m.num_prefix_tokens(),
        flops(m.flops_per_image())
    );
    s += &format!(
        "  drop_rate {}, attn_drop_rate {}, drop_path_rate {}\n",
        tv(&m.drop_rate),
        tv(&m.attn_drop_rate),
        tv(&m.drop_path_rate)
    );
    s
}

/// The recipe's numbers as one JSON object: `family` (`vit`, `hybrid`, `resnet`), `params`,
/// `flops_per_image` (forward, exact), `images_per_step` (the batch, accumulation included) and
/// `max_steps` (null when the epochs decide).
pub fn summary(config: &Config) -> serde_json::Value {
    let (family, params, flops) = match &config.model.config {
        ModelConfig::Vit(m) => (
            if m.backbone.is_some() {
                "hybrid"
            } else {
                "vit"
            },
            m.num_params(),
            m.flops_per_image(),
        ),
        ModelConfig::Bit(b) => ("resnet", b.num_params(), b.flops_per_image(b.image_size)),
    };
    serde_json::json!({
        "family": family,
        "params": params,
        "flops_per_image": flops,
        "images_per_step": config.train.batch_size,
        "max_steps": config.train.max_steps,
    })
}

/// A description of the model, data and schedule of a recipe.
pub fn describe(config: &Config) -> Result<String> {
    let t = &config.train;
    let d = &config.data;
    let mut s = describe_model(config);
    s += &format!(
        "data: format {} in {} (train {}, test {}, validation {})\n  mean {:?} std {:?}\n  augment {}\n",
        tv(&d.format),
        tv(&d.root),
        tv(&d.train),
        tv(&d.test),
        d.val
            .as_ref()
            .map(tv)
            .unwrap_or_else(|| if d.val_fraction > 0.0 {
                format!("{:.0}% of train", 100.0 * d.val_fraction)
            } else {
                "the test split".into()
            }),
        // f32s: their Debug is the short decimal a recipe writes (`[0.286]`).
        d.mean,
        d.std,
        tv(&d.augment)
    );
    if d.format == crate::config::DataFormat::ImageFolder {
        s += &image_folder_counts(config);
    }
    if d.format == crate::config::DataFormat::WebDataset {
        s += &shard_counts(config);
    }
    s += &format!(
        "train: optimizer {}, lr {} (min_lr {}), schedule {}, warmup_steps {}, weight_decay {}, \
         batch_size {} (accum_steps {} x {} images)\n  epochs {}{}, clip_grad_norm {}, \
         label_smoothing {}, seed {}, device {}\n",
        tv(&t.optimizer),
        tv(&t.lr),
        tv(&t.min_lr),
        tv(&t.schedule),
        t.warmup_steps,
        tv(&t.weight_decay),
        t.batch_size,
        t.accum_steps,
        t.batch_size / t.accum_steps,
        t.epochs,
        t.max_steps
            .map(|m| format!(" (max_steps {m})"))
            .unwrap_or_default(),
        tv(&t.clip_grad_norm),
        tv(&t.label_smoothing),
        t.seed,
        tv(&t.device)
    );
    if t.warmup_steps > 0 {
        s += &format!("  lr at step 1: {:e}\n", lr_at(0, t.warmup_steps + 1, t));
    }
    if let Some(d) = t.layer_decay {
        s += &format!("  layer_decay {}\n", tv(&d));
    }
    if let Some(d) = t.ema_decay {
        s += &format!(
            "  ema_decay {}{}: validates, tests and delivers the weights' moving average\n",
            tv(&d),
            if t.ema_warmup { " (warmup)" } else { "" }
        );
    }
    if let Some(f) = &config.finetune {
        let resample = match &config.model.config {
            ModelConfig::Vit(_) => format!(
                ", position embeddings resampled with posemb_resample {}",
                tv(&f.posemb_resample)
            ),
            ModelConfig::Bit(_) => String::new(),
        };
        s += &format!(
            "finetune: from {} (weights_format {}), new zero head of {} classes{}{}\n",
            tv(&f.weights),
            f.weights_format.as_ref().map_or("detected".into(), tv),
            config.model.config.num_classes(),
            resample,
            if f.freeze_backbone {
                ", backbone frozen (linear probe)"
            } else {
                ""
            }
        );
    }
    s += &format!("output: dir {}\n", tv(&config.output.dir));
    Ok(s)
}

/// What the image folder's splits hold (listing only: nothing is decoded), and what an
/// epoch of the training split is in steps.
fn image_folder_counts(config: &Config) -> String {
    let d = &config.data;
    let p = d.preprocessing(config.model.preset.as_deref());
    let mut s = format!(
        "  evaluation transform: crop_pct {}, crop_mode {}, interpolation {}; decoder {}; cache {} \
         (at most {} px a side, {} MiB)\n",
        tv(&p.crop_pct),
        tv(&p.crop_mode),
        tv(&p.interpolation),
        d.decoder
            .resolve()
            .map_or_else(|e| format!("unavailable ({e})"), |r| tv(&r)),
        tv(&d.cache),
        d.cache_max_side,
        d.cache_mb
    );
    let mut splits = vec![("train", &d.train), ("test", &d.test)];
    if let Some(v) = &d.val {
        splits.insert(1, ("val", v));
    }
    for (what, split) in splits {
        let dir = d.root.join(split);
        match crate::data::image_folder::list(&dir) {
            Ok(l) => {
                s += &format!(
                    "  {what}: {} images in {} classes ({}){}\n",
                    group(l.items.len()),
                    l.classes.len(),
                    dir.display(),
                    if l.ignored > 0 {
                        format!(", {} other files left out", l.ignored)
                    } else {
                        String::new()
                    }
                );
                if what == "train" {
                    s += &epoch_line(config, l.items.len());
                }
            }
            Err(e) => s += &format!("  {what}: not readable here: {e:#}\n"),
        }
    }
    s
}

/// 86567656 -> "86,567,656".
pub fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// What a shard recipe's splits hold, from the index files beside the shards (no shard is
/// read), and what an epoch of the training split is in steps.
fn shard_counts(config: &Config) -> String {
    let d = &config.data;
    let mut s = format!(
        "  shards: shuffle buffer {} (first taken at {}), {} reader streams\n",
        d.shuffle_buffer, d.shuffle_initial, d.workers
    );
    let mut splits = vec![("train", &d.train), ("test", &d.test)];
    if let Some(v) = &d.val {
        splits.insert(1, ("val", v));
    }
    for (what, pattern) in splits {
        match crate::data::webdataset::count(&d.root, pattern) {
            Ok((shards, Some(n))) => {
                s += &format!(
                    "  {what}: {} samples in {shards} shards ({pattern})\n",
                    group(n)
                );
                if what == "train" {
                    s += &epoch_line(config, n);
                }
            }
            Ok((shards, None)) => {
                s += &format!(
                    "  {what}: {shards} shards ({pattern}); samples unknown without an index \
                     beside them (`vit-train shards` writes PREFIX.index.json)\n"
                )
            }
            Err(e) => s += &format!("  {what}: not readable here: {e:#}\n"),
        }
    }
    s
}

/// What an epoch of a training split of `n` images is in steps, and the run.
fn epoch_line(config: &Config, n: usize) -> String {
    let (d, t) = (&config.data, &config.train);
    let n = (n as f64 * (1.0 - d.val_fraction)).round() as usize;
    let n = d.train_limit.map_or(n, |m| m.min(n));
    let per_epoch = n / t.batch_size.max(1);
    let total = per_epoch * t.epochs;
    let total = t.max_steps.map_or(total, |m| m.min(total));
    format!(
        "  an epoch: {} steps of {} images ({} micro-batches of {}); the run: {} steps\n",
        group(per_epoch),
        t.batch_size,
        t.accum_steps,
        t.batch_size / t.accum_steps.max(1),
        group(total)
    )
}
