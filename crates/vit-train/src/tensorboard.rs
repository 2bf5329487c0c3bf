//! TensorBoard event files (`events.out.tfevents.*`), written without TensorFlow: a file is a
//! sequence of records (`u64` length, masked CRC-32C of the length, the data, masked CRC-32C of
//! the data; TFRecord's framing), each an `Event` protobuf. Only what scalars need is encoded:
//! `Event { wall_time = 1; step = 2; file_version = 3; summary = 5; session_log = 7;
//! source_metadata = 10 }`, `Summary { repeated Value value = 1 }`, `Value { tag = 1; oneof
//! { simple_value = 2 } }`, `SessionLog { status = 1 }`, `SourceMetadata { writer = 1 }`;
//! fields at their default value are left out, as protobuf does (a oneof member is not).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The version string every event file starts with.
pub const FILE_VERSION: &str = "brain.Event:2";

/// TFRecord's CRC mask: rotate right by 15 and add a constant.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One record of an event file around `data`.
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (`wire type 2`).
fn bytes_field(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// An `Event` with its wall time and step, and `body` (its other fields, encoded).
fn event(wall_time: f64, step: i64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if wall_time != 0.0 {
        out.push(0x09); // field 1, 64-bit
        out.extend_from_slice(&wall_time.to_le_bytes());
    }
    if step != 0 {
        out.push(0x10); // field 2, varint (int64: two's complement)
        varint(&mut out, step as u64);
    }
    out.extend_from_slice(body);
    out
}

/// The first event of a file: `file_version`, and the writer's name (`source_metadata`).
pub fn file_version_event(wall_time: f64, writer: &str) -> Vec<u8> {
    let mut body = Vec::new();
    bytes_field(&mut body, 3, FILE_VERSION.as_bytes());
    let mut source = Vec::new();
    bytes_field(&mut source, 1, writer.as_bytes());
    bytes_field(&mut body, 10, &source);
    event(wall_time, 0, &body)
}

/// A scalar: `summary { value { tag, simple_value } }`.
pub fn scalar_event(wall_time: f64, step: i64, tag: &str, value: f32) -> Vec<u8> {
    let mut v = Vec::new();
    bytes_field(&mut v, 1, tag.as_bytes());
    v.push(0x15); // field 2, 32-bit
    v.extend_from_slice(&value.to_le_bytes());
    let mut summary = Vec::new();
    bytes_field(&mut summary, 1, &v);
    let mut body = Vec::new();
    bytes_field(&mut body, 5, &summary);
    event(wall_time, step, &body)
}

/// `session_log { status: START }` at `step`: TensorBoard then drops what earlier files logged
/// at this step and after (a resumed run's steps, logged again, appear once); a run resumed
/// from the checkpoint of step N starts its session at N + 1, its first step.
pub fn session_start_event(wall_time: f64, step: i64) -> Vec<u8> {
    let mut body = Vec::new();
    bytes_field(&mut body, 7, &[0x08, 0x01]);
    event(wall_time, step, &body)
}

/// Seconds since the Unix epoch, as event files record time.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An event file in a run folder.
pub struct EventWriter {
    file: File,
    pub path: PathBuf,
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.{seconds}.{host}.{pid}` (TensorFlow's naming), starting
    /// with the file-version event; `resumed_at` adds the session-start event of a resumed run.
    pub fn create(dir: &Path, resumed_at: Option<usize>) -> Result<Self> {
        let wall = now();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .unwrap_or_else(|| "localhost".into());
        let mut name = format!(
            "events.out.tfevents.{}.{host}.{}",
            wall as u64,
            std::process::id()
        );
        // Never another file's name (a second run of this process in one second).
        let mut n = 1;
        while dir.join(&name).exists() {
            name = format!(
                "events.out.tfevents.{}.{host}.{}.{n}",
                wall as u64,
                std::process::id()
            );
            n += 1;
        }
        let path = dir.join(name);
        let file =
            File::create_new(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut writer = Self { file, path };
        writer.write(&file_version_event(wall, "vit-train"))?;
        if let Some(step) = resumed_at {
            writer.write(&session_start_event(wall, step as i64 + 1))?;
        }
        Ok(writer)
    }

    fn write(&mut self, event: &[u8]) -> Result<()> {
        self.file
            .write_all(&record(event))
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Appends a scalar (written through at once, as `metrics.jsonl` is).
    pub fn scalar(&mut self, tag: &str, value: f64, step: usize) -> Result<()> {
        self.write(&scalar_event(now(), step as i64, tag, value as f32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes tensorboard's own `EventFileWriter` wrote for these events
    /// (`xtask/python/tensorboard_fixtures.py write`).
    #[test]
    fn events_are_byte_for_byte_what_tensorboard_writes() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tensorboard_events.json");
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut ours = Vec::new();
        for e in fixture["events"].as_array().unwrap() {
            let bits = e["wall_time_bits"].as_str().unwrap();
            let bytes: Vec<u8> = (0..8)
                .map(|i| u8::from_str_radix(&bits[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let wall = f64::from_le_bytes(bytes.try_into().unwrap());
            let step = e["step"].as_i64().unwrap_or(0);
            let event = match e["kind"].as_str().unwrap() {
                "file_version" => file_version_event(wall, e["writer"].as_str().unwrap()),
                "session_start" => session_start_event(wall, step),
                _ => scalar_event(
                    wall,
                    step,
                    e["tag"].as_str().unwrap(),
                    e["value"].as_f64().unwrap() as f32,
                ),
            };
            ours.extend(record(&event));
        }
        let hex: String = ours.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, fixture["file_hex"].as_str().unwrap());
    }
}
