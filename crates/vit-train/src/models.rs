//! `models [PATTERN]`: the presets of every family, and the models of the local Hugging Face
//! cache that resolve to them.

use vit_model::hub::{cache_dir, cached_models};
use vit_model::{ModelConfig, all_preset_names};

use crate::info::group;

/// The listing, as printed.
pub fn list(pattern: Option<&str>) -> String {
    let want = |name: &str| {
        pattern.is_none_or(|p| name.to_ascii_lowercase().contains(&p.to_ascii_lowercase()))
    };
    let mut s = String::from(
        "presets (the timm model of the same name where timm has one; parameters at 1000 classes):\n",
    );
    for name in all_preset_names().into_iter().filter(|n| want(n)) {
        if let Ok(c) = ModelConfig::preset(&name) {
            let p = vit_model::Preprocessing::for_preset(&name);
            let [h, w] = c.image_size();
            s += &format!(
                "  {name:<28} {:>13} parameters, {h}x{w} px, crop_pct {}, {}\n",
                group(c.num_params()),
                p.crop_pct,
                c.family().name()
            );
        }
    }
    let cache = cache_dir();
    let models: Vec<_> = cached_models(&cache)
        .into_iter()
        .filter(|(id, _)| want(id))
        .collect();
    s += &format!("\nin the Hugging Face cache ({}):\n", cache.display());
    if models.is_empty() {
        s += "  none\n";
    }
    for (id, r) in models {
        match r {
            Ok(r) => {
                s += &format!(
                    "  {id:<50} {} ({} classes{}, {}x{} px, {} parameters)\n",
                    r.architecture,
                    r.config.num_classes,
                    if r.labels.is_some() { ", labelled" } else { "" },
                    r.config.image_size[0],
                    r.config.image_size[1],
                    group(r.config.num_params())
                )
            }
            Err(e) => s += &format!("  {id:<50} does not resolve: {e}\n"),
        }
    }
    s
}
