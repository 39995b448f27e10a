//! TensorBoard event files (`log.tensorboard: true`): scalars per epoch, readable by
//! TensorBoard itself (and by W&B's TensorBoard import).
//!
//! The format (TensorFlow's TFRecord of `Event` protobufs): each record is
//! `u64 length | u32 masked CRC32C(length) | data | u32 masked CRC32C(data)`, little-endian,
//! with masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. The first event carries
//! `file_version = "brain.Event:2"`; each later one `wall_time`, `step` and a `Summary` of
//! `Value { tag, simple_value }`. The three messages are small enough to encode by hand
//! (protobuf wire format: a varint key `field << 3 | type`, then the payload).
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A length-delimited field (wire type 2).
fn bytes_field(field: u64, data: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// Event { wall_time = 1 (double), step = 2 (int64), file_version = 3 | summary = 5 }.
fn event(wall_time: f64, step: i64, body: EventBody) -> Vec<u8> {
    let mut e = Vec::new();
    varint(1 << 3 | 1, &mut e);
    e.extend_from_slice(&wall_time.to_le_bytes());
    varint(2 << 3, &mut e);
    varint(step as u64, &mut e);
    match body {
        EventBody::FileVersion => bytes_field(3, b"brain.Event:2", &mut e),
        EventBody::Scalars(values) => {
            // Summary { repeated Value value = 1 }, Value { tag = 1, simple_value = 2 (float) }
            let mut summary = Vec::new();
            for (tag, v) in values {
                let mut value = Vec::new();
                bytes_field(1, tag.as_bytes(), &mut value);
                varint(2 << 3 | 5, &mut value);
                value.extend_from_slice(&(*v as f32).to_le_bytes());
                bytes_field(1, &value, &mut summary);
            }
            bytes_field(5, &summary, &mut e);
        }
    }
    e
}

enum EventBody<'a> {
    FileVersion,
    Scalars(&'a [(String, f64)]),
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One TFRecord.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut r = Vec::with_capacity(data.len() + 16);
    r.extend_from_slice(&len);
    r.extend_from_slice(&masked_crc(&len).to_le_bytes());
    r.extend_from_slice(data);
    r.extend_from_slice(&masked_crc(data).to_le_bytes());
    r
}

/// An event file in a run directory, appended to and fsynced after every epoch.
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.<seconds>.deepres` with its file-version event. A
    /// resumed run opens a new file; TensorBoard reads all files of the directory, and a step
    /// written twice (an epoch redone after a kill) is shown once, from the newest file.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut name = format!("events.out.tfevents.{}.deepres", now.as_secs());
        let mut k = 1;
        while dir.join(&name).exists() {
            k += 1;
            name = format!("events.out.tfevents.{}.deepres.{k}", now.as_secs());
        }
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        let mut w = EventWriter { path, file };
        w.write(&record(&event(
            now.as_secs_f64(),
            0,
            EventBody::FileVersion,
        )))?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }

    /// The scalars of one step (epoch), as one event.
    pub fn scalars(&mut self, step: i64, values: &[(String, f64)]) -> Result<()> {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.write(&record(&event(wall, step, EventBody::Scalars(values))))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The TensorBoard scalars of one epoch: metrics.csv's numeric columns (`metrics/<column>`)
/// and blocks.csv's values per block (`blocks/<value>/<block>`, `<block>` as blocks.csv numbers it,
/// from 0).
pub(crate) fn epoch_scalars(
    row: Option<&crate::train::metrics::EpochRow>,
    blocks: &[crate::train::diagnostics::BlockRow],
) -> Vec<(String, f64)> {
    let mut v = Vec::new();
    if let Some(r) = row {
        let cols = [
            ("lr", r.lr),
            ("train_loss", r.train_loss),
            ("train_acc", r.train_acc),
            ("test_loss", r.test_loss),
            ("test_acc", r.test_acc),
            ("grad_norm", r.grad_norm),
            ("tau", r.tau),
            ("epoch_seconds", r.epoch_seconds),
            ("images_per_second", r.images_per_second),
        ];
        v.extend(cols.iter().map(|(k, x)| (format!("metrics/{k}"), *x)));
    }
    for b in blocks {
        let k = b.block;
        v.push((format!("blocks/tau/{k}"), b.tau));
        v.push((format!("blocks/branch_to_skip/{k}"), b.branch_to_skip));
        v.push((format!("blocks/h_norm/{k}"), b.h_norm));
        v.push((format!("blocks/weight_norm/{k}"), b.weight_norm));
        v.push((format!("blocks/grad_norm/{k}"), b.grad_norm));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C of "123456789" is 0xe3069283 (its check value); varints as in the protobuf
    /// documentation (300 → ac 02).
    #[test]
    fn crc_and_varint_known_values() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let mut v = Vec::new();
        varint(300, &mut v);
        assert_eq!(v, [0xac, 0x02]);
    }
}
