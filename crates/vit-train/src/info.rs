//! `info`: what a recipe would train, without training.

use anyhow::Result;

use crate::config::Config;
use crate::train::schedule::lr_at;

/// A description of the model, data and schedule of a recipe.
pub fn describe(config: &Config) -> Result<String> {
    let m = config.model.vit_config()?;
    let t = &config.train;
    let d = &config.data;
    let mut s = String::new();
    s += &format!(
        "model: {}\n  image {}x{}, patch {}x{}, {} channels, {} classes\n  D {} depth {} heads {} MLP {} pool {:?} class token {}\n",
        config.model.preset.as_deref().unwrap_or("custom"),
        m.image_size[0],
        m.image_size[1],
        m.patch_size[0],
        m.patch_size[1],
        m.in_channels,
        m.num_classes,
        m.embed_dim,
        m.depth,
        m.num_heads,
        m.mlp_hidden(),
        m.pool,
        m.class_token
    );
    s += &format!(
        "  parameters {}\n  tokens {} ({} patches + {} prefix)\n  FLOPs per image {:.3} G (forward)\n",
        group(m.num_params()),
        m.seq_len(),
        m.num_patches(),
        m.num_prefix_tokens(),
        m.flops_per_image() as f64 / 1e9
    );
    s += &format!(
        "  dropout {} attention dropout {} drop path {}\n",
        m.drop_rate, m.attn_drop_rate, m.drop_path_rate
    );
    s += &format!(
        "data: {:?} in {} (train `{}`, test `{}`, validation {})\n  mean {:?} std {:?}\n  augment {:?}\n",
        d.format,
        d.root.display(),
        d.train,
        d.test,
        d.val.clone().unwrap_or_else(|| if d.val_fraction > 0.0 {
            format!("{:.0}% of train", 100.0 * d.val_fraction)
        } else {
            "the test split".into()
        }),
        d.mean,
        d.std,
        d.augment
    );
    s += &format!(
        "train: {:?} lr {:e} (min {:e}) {:?} decay, warmup {} steps, weight decay {}, batch {} ({} x {} accumulated)\n  epochs {}{} clip {:?} label smoothing {} seed {} device {}\n",
        t.optimizer,
        t.lr,
        t.min_lr,
        t.schedule,
        t.warmup_steps,
        t.weight_decay,
        t.batch_size,
        t.accum_steps,
        t.batch_size / t.accum_steps,
        t.epochs,
        t.max_steps
            .map(|m| format!(" (at most {m} steps)"))
            .unwrap_or_default(),
        t.clip_grad_norm,
        t.label_smoothing,
        t.seed,
        t.device
    );
    if t.warmup_steps > 0 {
        s += &format!("  lr at step 1: {:e}\n", lr_at(0, t.warmup_steps + 1, t));
    }
    if let Some(d) = t.layer_decay {
        s += &format!("  layer-wise lr decay {d}\n");
    }
    if let Some(f) = &config.finetune {
        s += &format!(
            "finetune: from {} (format {}), new zero head of {} classes, position embeddings \
             resampled with `{}`{}\n",
            f.weights.display(),
            f.weights_format.as_deref().unwrap_or("detected"),
            config.model.vit_config()?.num_classes,
            f.posemb_resample,
            if f.freeze_backbone {
                ", backbone frozen (linear probe)"
            } else {
                ""
            }
        );
    }
    s += &format!("output: {}\n", config.output.dir.display());
    Ok(s)
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
