//! How items and numbers are shown: payloads as text when they are text, else hex; ages
//! and sizes for people; the same facts as JSON for scripts.

use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How `dump` writes items.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Text,
    Json,
    Raw,
}

impl Format {
    pub fn pick(raw: bool, json: bool) -> Format {
        match (raw, json) {
            (true, _) => Format::Raw,
            (_, true) => Format::Json,
            _ => Format::Text,
        }
    }
}

/// The text a payload holds, when it is text: a bincode string (a `String` item: its
/// length in 8 bytes, then UTF-8), or UTF-8 without control characters.
pub fn as_text(payload: &[u8]) -> Option<&str> {
    let printable = |s: &str| !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if payload.len() >= 8 {
        let len = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
        if len == (payload.len() - 8) as u64
            && let Ok(s) = std::str::from_utf8(&payload[8..])
            && printable(s)
        {
            return Some(s);
        }
    }
    std::str::from_utf8(payload).ok().filter(|s| printable(s))
}

pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 * b.len());
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// The payload for a person: quoted text, or hex.
pub fn payload(b: &[u8]) -> String {
    match as_text(b) {
        Some(t) => format!("{t:?}"),
        None => format!("hex:{}", hex(b)),
    }
}

/// A damaged range as JSON: `file`, `offset`, `len`, `detail`.
pub fn damage_json(d: &diskq::DamagedRange) -> Value {
    json!({"file": d.file.to_string_lossy(), "offset": d.offset, "len": d.len, "detail": d.detail})
}

/// The payload as JSON fields: `text` when it is text, and always `hex`.
pub fn payload_json(b: &[u8]) -> Value {
    json!({ "text": as_text(b), "hex": hex(b) })
}

pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit} ({n} bytes)")
}

/// Milliseconds since the Unix epoch as "N s ago" (a put time).
pub fn ago(ms: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    format!("{} ago", age(Duration::from_millis(now.saturating_sub(ms))))
}

/// "1 file", "2 files".
pub fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
