//! A fixed-size line buffer for the runtime's own messages (`PADTRIM_DEBUG`), which cannot
//! use `core::fmt` without pulling its formatting machinery into every traced program.

/// Longest line kept; longer text is cut.
pub const LINE_MAX: usize = 256;

/// Text being built, cut at `LINE_MAX` bytes.
pub struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Default for Line {
    fn default() -> Line {
        Line::new()
    }
}

impl Line {
    /// An empty line.
    pub const fn new() -> Line {
        Line {
            buf: [0; LINE_MAX],
            len: 0,
        }
    }

    /// Append bytes.
    pub fn text(&mut self, s: &[u8]) -> &mut Line {
        for &b in s {
            if self.len == LINE_MAX {
                break;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        self
    }

    /// Append `v` in decimal.
    pub fn dec(&mut self, mut v: u64) -> &mut Line {
        let mut digits = [0u8; 20];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        digits[..n].reverse();
        self.text(&digits[..n])
    }

    /// Append `v` as `0x` and lower-case hex digits.
    pub fn hex(&mut self, v: u64) -> &mut Line {
        let mut digits = [0u8; 16];
        let mut n = 0;
        let mut v = v;
        loop {
            digits[n] = b"0123456789abcdef"[(v & 15) as usize];
            n += 1;
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        digits[..n].reverse();
        self.text(b"0x").text(&digits[..n])
    }

    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let mut l = Line::new();
        l.text(b"n=")
            .dec(0)
            .text(b" ")
            .dec(18_446_744_073_709_551_615)
            .text(b" ")
            .hex(0)
            .text(b" ")
            .hex(0x2a_f00d);
        assert_eq!(l.as_bytes(), &b"n=0 18446744073709551615 0x0 0x2af00d"[..]);
    }

    #[test]
    fn cuts_long_lines() {
        let mut l = Line::new();
        for _ in 0..100 {
            l.text(b"abcd").dec(12345);
        }
        assert_eq!(l.as_bytes().len(), LINE_MAX);
    }
}
