//! Settings read from the environment at startup (`PADTRIM_TRACE`, `PADTRIM_FILTER`,
//! `PADTRIM_ARGS`, `PADTRIM_OUT`, `PADTRIM_DEBUG`), parsed from raw `NAME=value` byte strings so no allocator is needed.

use crate::format::Mode;

/// Trace file written when `PADTRIM_OUT` is not set (relative to the working directory).
pub const DEFAULT_OUT: &[u8] = b"padtrim.trace";

/// The runtime's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config<'a> {
    /// `PADTRIM_TRACE`: off (default), entry or graph.
    pub mode: Mode,
    /// `PADTRIM_FILTER`, if set and not empty.
    pub filter: Option<&'a [u8]>,
    /// `PADTRIM_ARGS` (see `args`), if set and not empty.
    pub args: Option<&'a [u8]>,
    /// `PADTRIM_OUT`, or `DEFAULT_OUT`.
    pub out: &'a [u8],
    /// `PADTRIM_TRACE` had a value we do not understand (treated as off).
    pub bad_mode: bool,
    /// `PADTRIM_DEBUG` set to anything but empty or `0`: print how the slot table was found
    /// and how many slots were patched, on stderr at startup.
    pub debug: bool,
}

impl<'a> Config<'a> {
    /// Build the settings from `NAME=value` entries.
    pub fn from_env<I: IntoIterator<Item = &'a [u8]>>(env: I) -> Config<'a> {
        let mut cfg = Config {
            mode: Mode::Off,
            filter: None,
            args: None,
            out: DEFAULT_OUT,
            bad_mode: false,
            debug: false,
        };
        for entry in env {
            if let Some(v) = value_of(entry, b"PADTRIM_TRACE") {
                match parse_mode(v) {
                    Some(m) => {
                        cfg.mode = m;
                        cfg.bad_mode = false;
                    }
                    None => {
                        cfg.mode = Mode::Off;
                        cfg.bad_mode = true;
                    }
                }
            } else if let Some(v) = value_of(entry, b"PADTRIM_FILTER") {
                cfg.filter = if v.is_empty() { None } else { Some(v) };
            } else if let Some(v) = value_of(entry, b"PADTRIM_ARGS") {
                cfg.args = if v.is_empty() { None } else { Some(v) };
            } else if let Some(v) = value_of(entry, b"PADTRIM_DEBUG") {
                cfg.debug = !v.is_empty() && v != b"0";
            } else if let Some(v) = value_of(entry, b"PADTRIM_OUT") {
                if !v.is_empty() {
                    cfg.out = v;
                }
            }
        }
        cfg
    }
}

/// Parse a `PADTRIM_TRACE` value.
pub fn parse_mode(v: &[u8]) -> Option<Mode> {
    match v {
        b"" | b"off" | b"0" => Some(Mode::Off),
        b"entry" | b"1" => Some(Mode::Entry),
        b"graph" | b"2" => Some(Mode::Graph),
        _ => None,
    }
}

fn value_of<'a>(entry: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    if entry.len() > name.len() && entry.starts_with(name) && entry[name.len()] == b'=' {
        Some(&entry[name.len() + 1..])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_off() {
        let c = Config::from_env([&b"PATH=/bin"[..], b"PADTRIM_TRACEX=graph"]);
        assert_eq!(c.mode, Mode::Off);
        assert_eq!(c.out, DEFAULT_OUT);
        assert_eq!(c.filter, None);
        assert!(!c.debug);
    }

    #[test]
    fn reads_all_settings() {
        let c = Config::from_env([
            &b"PADTRIM_TRACE=graph"[..],
            b"PADTRIM_FILTER=fib*,!main",
            b"PADTRIM_OUT=/tmp/x.trace",
            b"PADTRIM_DEBUG=1",
        ]);
        assert!(c.debug);
        assert!(!Config::from_env([&b"PADTRIM_DEBUG=0"[..]]).debug);
        assert_eq!(c.mode, Mode::Graph);
        assert_eq!(c.filter, Some(&b"fib*,!main"[..]));
        assert_eq!(c.out, b"/tmp/x.trace");
        let bad = Config::from_env([&b"PADTRIM_TRACE=loud"[..], b"PADTRIM_FILTER="]);
        assert_eq!(bad.mode, Mode::Off);
        assert!(bad.bad_mode);
        assert_eq!(bad.filter, None);
    }
}
