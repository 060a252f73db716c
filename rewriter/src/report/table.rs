//! How a report is shown: summary lines, histogram, the function table's columns, sort keys,
//! name globs, CSV/TSV fields.

use super::model::counted;

/// One field of a delimited table: for CSV (`sep` `,`) quoted as RFC 4180 says when it
/// holds a comma, a quote or a line break; for TSV, tabs, line breaks and backslashes
/// written `\t`, `\n`, `\r`, `\\`.
pub fn delimited_field(text: &str, sep: char) -> String {
    if sep == '\t' {
        text.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    } else if text.contains([sep, '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The one-line legend of the `align` column.
pub const ALIGN_LEGEND: &str =
    "align = largest power of two dividing the pad address (up to 64); 2 = not 4-byte aligned";

/// The columns of `report --csv` / `--tsv`, in order, with what each holds.
pub const FUNCTION_COLUMNS: [(&str, &str); 10] = [
    (
        "function",
        "function symbol name (? when no symbol covers the pad)",
    ),
    ("section", "section holding the pad"),
    (
        "address",
        "address of the function symbol (section offset in an object), hex",
    ),
    (
        "pad_address",
        "address of the first pad byte (the table entry), hex",
    ),
    ("pad_bytes", "pad size in bytes"),
    ("pad_insns", "pad size in instructions"),
    ("pre_bytes", "pad bytes before the function symbol"),
    ("nop_kind", "c.nop, nop, mixed or none"),
    (
        "align",
        "largest power of two (up to 64) dividing pad_address (2: not 4-byte aligned)",
    ),
    (
        "state",
        "nops, or patched when the pad already holds a call",
    ),
];

/// Order of the function table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Largest pads first (then by pad address).
    #[default]
    Size,
    /// By function name.
    Name,
    /// By section, then pad address (the report's own order).
    Address,
}

impl SortKey {
    /// The order in words, for the table's header.
    pub fn describe(self) -> &'static str {
        match self {
            SortKey::Size => "largest pads first",
            SortKey::Name => "by name",
            SortKey::Address => "by address",
        }
    }
}

/// Which rows of the function table to show, in what order.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// At most this many rows (`None`: all).
    pub top: Option<usize>,
    /// Row order.
    pub sort: SortKey,
    /// Shell-style globs: a function is listed when its name matches one (all when empty).
    pub patterns: Vec<String>,
}

/// A shell-style glob: `*` any run of characters, `?` any one, `[abc]`, `[a-z]` and `[!a-z]`
/// (or `[^a-z]`) one of a set or not, `\` takes the next character literally. A `[`
/// without its `]` is a literal `[`.
#[derive(Debug, Clone)]
pub struct Glob {
    items: Vec<GlobItem>,
}

#[derive(Debug, Clone)]
enum GlobItem {
    Char(char),
    Any,
    Star,
    /// Ranges (inclusive), negated or not.
    Class(Vec<(char, char)>, bool),
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Glob {
        let chars: Vec<char> = pattern.chars().collect();
        let mut items = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => items.push(GlobItem::Star),
                '?' => items.push(GlobItem::Any),
                '\\' if i + 1 < chars.len() => {
                    i += 1;
                    items.push(GlobItem::Char(chars[i]));
                }
                '[' => match Self::class(&chars[i + 1..]) {
                    Some((class, used)) => {
                        items.push(class);
                        i += used;
                    }
                    None => items.push(GlobItem::Char('[')),
                },
                c => items.push(GlobItem::Char(c)),
            }
            i += 1;
        }
        Glob { items }
    }

    /// A class after its `[`: the item and how many characters it took, `]` included.
    fn class(chars: &[char]) -> Option<(GlobItem, usize)> {
        let mut i = 0;
        let negated = matches!(chars.first(), Some('!' | '^'));
        if negated {
            i += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        while i < chars.len() {
            let c = chars[i];
            if c == ']' && !first {
                return Some((GlobItem::Class(ranges, negated), i + 1));
            }
            first = false;
            if i + 2 < chars.len() && chars[i + 1] == '-' && chars[i + 2] != ']' {
                ranges.push((c, chars[i + 2]));
                i += 3;
            } else {
                ranges.push((c, c));
                i += 1;
            }
        }
        None
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let one = |item: &GlobItem, c: char| match item {
            GlobItem::Char(x) => *x == c,
            GlobItem::Any => true,
            GlobItem::Class(ranges, negated) => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
            GlobItem::Star => false,
        };
        // Classic two-pointer matching: on a mismatch, let the last `*` take one more
        // character. Linear in practice, never exponential.
        let (mut p, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.items.get(p) {
                Some(GlobItem::Star) => {
                    star = Some((p, n));
                    p += 1;
                }
                Some(item) if one(item, name[n]) => {
                    p += 1;
                    n += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        p = sp + 1;
                        n = sn + 1;
                        star = Some((sp, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        self.items[p..].iter().all(|i| matches!(i, GlobItem::Star))
    }
}

/// The numbers of a report's summary lines: one file's, or a total's.
pub(super) struct Summary {
    /// Patch sites.
    pub sites: usize,
    /// Bytes of all pads.
    pub pad_bytes_total: u64,
    /// Bytes of executable code.
    pub text_bytes: u64,
    /// Pads' share of the code.
    pub pad_share_of_text: f64,
    /// The slot size the projection assumes.
    pub slot_bytes: u32,
    /// Bytes the slots would save (negative: cost).
    pub projected_saving_bytes: i64,
    /// Bytes of slot alignment in that projection.
    pub projected_alignment_bytes: u64,
}

/// The summary lines a report and a total share: sites, pad bytes, code, and what slots of
/// the projected size would save or cost.
pub(super) fn write_summary(out: &mut String, s: &Summary) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "sites: {}   pad bytes: {}   text: {} bytes   pads are {:.2}% of text",
        s.sites,
        s.pad_bytes_total,
        s.text_bytes,
        100.0 * s.pad_share_of_text
    );
    let share = |bytes: i64| {
        if s.text_bytes == 0 {
            0.0
        } else {
            100.0 * bytes as f64 / s.text_bytes as f64
        }
    };
    let alignment = counted(s.projected_alignment_bytes, "byte", "bytes");
    if s.projected_saving_bytes < 0 {
        // Aligning the slots costs more than the pads give back: the text grows.
        let _ = writeln!(
            out,
            "projected cost of {}-byte slots: text {} larger ({:.2}% of text; {alignment} of slot alignment)",
            s.slot_bytes,
            counted(s.projected_saving_bytes.unsigned_abs(), "byte", "bytes"),
            share(s.projected_saving_bytes.saturating_neg()),
        );
    } else {
        let _ = writeln!(
            out,
            "projected saving with {}-byte slots: {} ({:.2}% of text; {alignment} of slot alignment)",
            s.slot_bytes,
            counted(s.projected_saving_bytes.unsigned_abs(), "byte", "bytes"),
            share(s.projected_saving_bytes),
        );
    }
}

/// The pad histogram: one line per pad size.
pub(super) fn write_histogram(
    out: &mut String,
    histogram: &std::collections::BTreeMap<u32, usize>,
) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "pad histogram:");
    for (&size, &count) in histogram {
        let _ = writeln!(
            out,
            "  {:>4} {:<5}  {:>8} {}",
            size,
            if size == 1 { "byte" } else { "bytes" },
            count,
            if count == 1 { "pad" } else { "pads" }
        );
    }
}
