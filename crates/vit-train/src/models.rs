//! `models [PATTERN]`: the presets, and the models of the local Hugging Face cache that
//! resolve to them.

use vit_model::VitConfig;
use vit_model::hub::{cache_dir, cached_models};
use vit_model::preset::preset_names;

use crate::info::group;

/// The listing, as printed.
pub fn list(pattern: Option<&str>) -> String {
    let want = |name: &str| {
        pattern.is_none_or(|p| name.to_ascii_lowercase().contains(&p.to_ascii_lowercase()))
    };
    let mut s =
        String::from("presets (the timm model of the same name; parameters at 1000 classes):\n");
    for name in preset_names().into_iter().filter(|n| want(n)) {
        if let Ok(c) = VitConfig::preset(&name) {
            let p = vit_model::Preprocessing::for_preset(&name);
            s += &format!(
                "  {name:<28} {:>13} parameters, {}x{} px, crop_pct {}\n",
                group(c.num_params()),
                c.image_size[0],
                c.image_size[1],
                p.crop_pct
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
