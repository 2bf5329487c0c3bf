//! Picks a Burn [`Device`] from a name, among the backends this binary was built with.

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
];

/// Names of the devices compiled into this binary (`cpu` is an alias of `flex`).
pub fn available_devices() -> Vec<&'static str> {
    BACKENDS
        .iter()
        .filter(|(name, _)| compiled(name))
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
        _ => false,
    }
}

/// Splits a device name into its backend and index (`cuda:1` -> (`cuda`, 1); `cpu` is
/// `flex`), checking that the backend is one this crate knows, whether or not this binary was
/// built with it. A recipe's device is checked with this when it is loaded.
pub fn parse_device_name(name: &str) -> Result<(&'static str, &'static str, usize), VitError> {
    let (base, index) = match name.split_once(':') {
        Some((b, i)) => {
            let i = i.parse::<usize>().map_err(|_| {
                VitError::Device(format!("device `{name}`: `{i}` is not a device index"))
            })?;
            (b, i)
        }
        None => (name, 0),
    };
    let base = if base == "cpu" { "flex" } else { base };
    let Some(&(base, feature)) = BACKENDS.iter().find(|(n, _)| *n == base) else {
        return Err(VitError::Device(format!(
            "unknown device `{name}`; expected one of cpu, {}",
            BACKENDS.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
        )));
    };
    Ok((base, feature, index))
}

/// The device for `name`: `cpu`/`flex`, `ndarray`, `wgpu`, `vulkan`, `metal`, `cuda`
/// (optionally `cuda:N` for the N-th GPU). The error names the features this binary was
/// built with when the backend is not among them.
pub fn device_from_name(name: &str) -> Result<Device, VitError> {
    let (base, feature, index) = parse_device_name(name)?;
    if !compiled(base) {
        return Err(VitError::Device(format!(
            "device `{name}` needs the cargo feature `{feature}`, but this binary was built with \
             [{}]; rebuild with `--features {feature}`",
            available_devices().join(", ")
        )));
    }
    Ok(make(base, index))
}

#[allow(unused_variables, unreachable_code)]
fn make(base: &str, index: usize) -> Device {
    match base {
        #[cfg(feature = "flex")]
        "flex" => Device::flex(),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Device::ndarray(),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "vulkan")]
        "vulkan" => Device::vulkan(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "metal")]
        "metal" => Device::metal(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        "cuda" => Device::cuda(index),
        _ => unreachable!("`{base}` was checked to be compiled in"),
    }
}
