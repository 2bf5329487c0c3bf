//! `devices`: which backends this binary has, what the GPU ones reach, and what `auto` picks,
//! so that a run on a new machine can be checked before it starts (`.gpu/run.sh` asks it).

use vit_model::{auto_device_name, available_devices, gpu_adapters};

/// The listing (or one JSON object), as printed.
pub fn describe(json: bool) -> String {
    let adapters = gpu_adapters();
    let auto = auto_device_name();
    if json {
        let list: Vec<_> = adapters
            .iter()
            .map(|a| {
                serde_json::json!({
                    "backend": a.backend,
                    "name": a.name,
                    "fingerprint": a.fingerprint,
                    "card": a.card,
                })
            })
            .collect();
        let v = serde_json::json!({
            "compiled": available_devices(),
            "adapters": list,
            "auto": auto,
        });
        return format!("{v}\n");
    }
    let mut s = format!("compiled in: {}\n", available_devices().join(", "));
    if adapters.is_empty() {
        s += "GPU devices: none reached\n";
    }
    for a in &adapters {
        let what = if a.card {
            "a card"
        } else {
            "software: `auto` passes it over"
        };
        s += &format!(
            "  {:<7} {} ({what}; kernels for {})\n",
            a.backend, a.name, a.fingerprint
        );
    }
    s += &format!("--device auto picks: {auto}\n");
    s
}
