//! Device names, in one place: every command, recipe and test picks its Burn [`Device`] here.
//!
//! | name | backend | cargo feature |
//! |---|---|---|
//! | `cpu` (or `flex`) | Flex, the pure-Rust CPU backend | `flex` (default) |
//! | `ndarray` | Burn's older CPU backend | `ndarray` |
//! | `wgpu`, `wgpu:N` | wgpu on its default adapter (a GPU before a CPU rasterizer), or the N-th discrete GPU | `wgpu` |
//! | `vulkan[:N]`, `metal[:N]` | wgpu pinned to one graphics API | `vulkan`, `metal` |
//! | `cuda`, `cuda:N` | CUDA, GPU N (default 0) | `cuda` |
//! | `auto` | the first CUDA GPU, else a wgpu GPU (no software rasterizer), else `cpu` | - |

use burn::tensor::Device;

use crate::error::VitError;

/// `(name, cargo feature)` of every backend this crate can be built with.
const BACKENDS: &[(&str, &str)] = &[
    ("flex", "flex"),
    ("ndarray", "ndarray"),
    ("wgpu", "wgpu"),
    ("vulkan", "vulkan"),
    ("metal", "metal"),
    ("cuda", "cuda"),
    ("auto", ""),
];

/// The names a device can be given, for messages and `--help`.
pub const DEVICE_NAMES: &str = "cpu, ndarray, wgpu, wgpu:N, vulkan[:N], metal[:N], cuda[:N], auto";

/// A parsed device name: the backend, the cargo feature it needs, and the index, if one was
/// given (`cuda:1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceName {
    /// `flex`, `ndarray`, `wgpu`, `vulkan`, `metal`, `cuda` or `auto`.
    pub backend: &'static str,
    /// The cargo feature of vit-model (and vit-train) that compiles the backend in; empty for
    /// `auto`.
    pub feature: &'static str,
    /// The `N` of `backend:N`.
    pub index: Option<usize>,
}

/// Names of the backends compiled into this binary (`cpu` is an alias of `flex`).
pub fn available_devices() -> Vec<&'static str> {
    BACKENDS
        .iter()
        .filter(|(name, _)| *name != "auto" && compiled(name))
        .map(|(name, _)| *name)
        .collect()
}

fn compiled(name: &str) -> bool {
    match name {
        "flex" => cfg!(feature = "flex"),
        "ndarray" => cfg!(feature = "ndarray"),
        "wgpu" => cfg!(feature = "wgpu"),
        "vulkan" => cfg!(feature = "vulkan"),
        "metal" => cfg!(feature = "metal"),
        "cuda" => cfg!(feature = "cuda"),
        "auto" => true,
        _ => false,
    }
}

/// Parses a device name (`cuda:1` -> `cuda`, index 1; `cpu` -> `flex`), checking that the
/// backend is one this crate knows, whether or not this binary was built with it: a recipe's
/// device is checked with this when it is loaded.
pub fn parse_device_name(name: &str) -> Result<DeviceName, VitError> {
    let (base, index) = match name.split_once(':') {
        Some((b, i)) => {
            let i = i.parse::<usize>().map_err(|_| {
                VitError::Device(format!(
                    "device `{name}`: `{i}` is not a device index (a number, as in `cuda:1`)"
                ))
            })?;
            (b, Some(i))
        }
        None => (name, None),
    };
    let base = if base == "cpu" { "flex" } else { base };
    let Some(&(backend, feature)) = BACKENDS.iter().find(|(n, _)| *n == base) else {
        return Err(VitError::Device(format!(
            "unknown device `{name}`; expected one of {DEVICE_NAMES}"
        )));
    };
    if index.is_some() && matches!(backend, "flex" | "ndarray" | "auto") {
        return Err(VitError::Device(format!(
            "device `{name}`: `{base}` takes no index; expected one of {DEVICE_NAMES}"
        )));
    }
    Ok(DeviceName {
        backend,
        feature,
        index,
    })
}

/// The device for `name` (see the module's table). The error names the cargo feature to
/// build with when the backend is not compiled into this binary.
pub fn device_from_name(name: &str) -> Result<Device, VitError> {
    let parsed = parse_device_name(name)?;
    if !compiled(parsed.backend) {
        return Err(VitError::Device(format!(
            "device `{name}` needs the cargo feature `{feature}`, but this binary was built with \
             [{}]; rebuild with `--features {feature}` (vit-train: `cargo build --release -p \
             vit-train --features {feature}`)",
            available_devices().join(", "),
            feature = parsed.feature,
        )));
    }
    if parsed.backend == "auto" {
        return device_from_name(auto_device_name());
    }
    Ok(make(parsed.backend, parsed.index))
}

/// What `auto` stands for on this machine: `cuda` when a CUDA GPU answers, else the first
/// compiled wgpu API with an adapter that is a real card (Mesa's lavapipe and other software
/// rasterizers do not count: Flex is faster than them), else `cpu`. Opens the devices it asks.
pub fn auto_device_name() -> &'static str {
    #[cfg(feature = "cuda")]
    if !Device::enumerate(burn::tensor::DeviceType::Cuda)
        .into_vec()
        .is_empty()
    {
        return "cuda";
    }
    #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "metal"))]
    {
        use burn::tensor::DeviceType;
        let apis: &[(&str, DeviceType)] = &[
            #[cfg(feature = "metal")]
            ("metal", DeviceType::Metal),
            #[cfg(feature = "vulkan")]
            ("vulkan", DeviceType::Vulkan),
            ("wgpu", DeviceType::Wgpu),
        ];
        for (name, kind) in apis {
            let real = Device::enumerate(kind.clone())
                .into_vec()
                .iter()
                .any(|d| d.identity().is_some_and(|id| id.physical.is_some()));
            if real {
                return name;
            }
        }
    }
    "cpu"
}

/// One device that a compiled GPU backend reaches, for `vit-train devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuAdapter {
    /// The device name that selects this API (`wgpu`, `vulkan`, `metal`, `cuda`).
    pub backend: &'static str,
    /// The part as the driver names it (`NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// What its kernels are compiled for (CubeCL's fingerprint).
    pub fingerprint: String,
    /// A card on a bus; `false` for a software rasterizer (Mesa's lavapipe), which `auto`
    /// passes over.
    pub card: bool,
}

/// Every device the compiled GPU backends reach, in the order `auto` asks them (empty in a
/// CPU-only build). Opens each device.
pub fn gpu_adapters() -> Vec<GpuAdapter> {
    #[allow(unused_mut)]
    let mut found = Vec::new();
    #[cfg(any(
        feature = "cuda",
        feature = "wgpu",
        feature = "vulkan",
        feature = "metal"
    ))]
    {
        use burn::tensor::DeviceType;
        let apis: &[(&'static str, DeviceType)] = &[
            #[cfg(feature = "cuda")]
            ("cuda", DeviceType::Cuda),
            #[cfg(feature = "metal")]
            ("metal", DeviceType::Metal),
            #[cfg(feature = "vulkan")]
            ("vulkan", DeviceType::Vulkan),
            #[cfg(feature = "wgpu")]
            ("wgpu", DeviceType::Wgpu),
        ];
        for (backend, kind) in apis {
            for device in Device::enumerate(kind.clone()).into_vec() {
                if let Some(id) = device.identity() {
                    found.push(GpuAdapter {
                        backend,
                        name: id.name,
                        fingerprint: id.fingerprint,
                        card: id.physical.is_some(),
                    });
                }
            }
        }
    }
    found
}

/// The CPU device on which random initial weights are drawn (Flex, else ndarray), so that a
/// seed gives the same initial model whatever device trains it; `None` in a build with
/// neither CPU backend.
pub fn host_device() -> Option<Device> {
    ["flex", "ndarray"]
        .into_iter()
        .find(|b| compiled(b))
        .map(|b| make(b, None))
}

#[allow(unused_variables, unreachable_code)]
fn make(base: &str, index: Option<usize>) -> Device {
    #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "metal"))]
    let kind = match index {
        Some(i) => burn::tensor::DeviceKind::DiscreteGpu(i),
        None => burn::tensor::DeviceKind::DefaultDevice,
    };
    match base {
        #[cfg(feature = "flex")]
        "flex" => Device::flex(),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Device::ndarray(),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(kind),
        #[cfg(feature = "vulkan")]
        "vulkan" => Device::vulkan(kind),
        #[cfg(feature = "metal")]
        "metal" => Device::metal(kind),
        #[cfg(feature = "cuda")]
        "cuda" => Device::cuda(index.unwrap_or(0)),
        _ => unreachable!("`{base}` was checked to be compiled in"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_to_backend_feature_and_index() {
        let p = |n| parse_device_name(n).unwrap();
        assert_eq!((p("cpu").backend, p("cpu").index), ("flex", None));
        assert_eq!(p("flex").feature, "flex");
        assert_eq!((p("wgpu:1").backend, p("wgpu:1").index), ("wgpu", Some(1)));
        assert_eq!((p("cuda").backend, p("cuda:3").index), ("cuda", Some(3)));
        assert_eq!(p("ndarray").feature, "ndarray");
        assert_eq!(p("auto").backend, "auto");
    }

    #[test]
    fn bad_names_say_what_is_expected() {
        let e = |n| parse_device_name(n).unwrap_err().to_string();
        assert!(e("gpu").contains("unknown device `gpu`"), "{}", e("gpu"));
        assert!(e("gpu").contains("cuda[:N]"));
        assert!(e("cuda:x").contains("`x` is not a device index"));
        assert!(e("cpu:1").contains("takes no index"));
        assert!(e("auto:0").contains("takes no index"));
    }

    #[test]
    fn a_backend_not_compiled_in_names_its_feature() {
        for (name, feature) in [("cuda:1", "cuda"), ("metal", "metal")] {
            if compiled(feature) {
                continue;
            }
            let e = device_from_name(name).unwrap_err().to_string();
            assert!(
                e.contains(&format!("needs the cargo feature `{feature}`")),
                "{e}"
            );
            assert!(e.contains("flex"), "{e}");
        }
    }

    #[test]
    fn cpu_and_auto_resolve_here() {
        assert!(device_from_name("cpu").is_ok());
        assert!(device_from_name("auto").is_ok());
        assert!(host_device().is_some());
        // CI sets VIT_EXPECT_GPU=0 (lavapipe is installed there and must not count as a GPU),
        // `cargo xtask gpu-check` sets 1.
        match std::env::var("VIT_EXPECT_GPU").as_deref() {
            Ok("0") => assert_eq!(auto_device_name(), "cpu"),
            Ok(_) => assert_ne!(auto_device_name(), "cpu"),
            Err(_) => {}
        }
    }
}
