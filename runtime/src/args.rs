//! `PADTRIM_ARGS` (`padtrim record --args`): which functions get their integer arguments and
//! return value recorded. A `;`-separated list of rules `GLOBS@FIELDS`: GLOBS is a
//! `PADTRIM_FILTER`-style list (`,`-separated globs, `!` excludes), FIELDS a `,`-separated list
//! of `arg1` ... `arg8` (the integer argument registers a0 ... a7 at entry), `args` (all
//! eight) and `retval` (a0 at return; graph mode only). A function gets the fields of every
//! rule that selects it, e.g. `fib@arg1,retval;str*,!strlen@arg1,arg2`.

use crate::glob::{trim, Filter};

/// `arg1` in a mask (bit `n - 1` is `argN`).
pub const ARG1: u16 = 1;
/// Every argument register.
pub const ALL_ARGS: u16 = 0xff;
/// `retval` in a mask.
pub const RETVAL: u16 = 1 << 8;

/// A parsed `PADTRIM_ARGS`; borrows the string.
#[derive(Clone, Copy, Debug)]
pub struct ArgSpec<'a> {
    spec: &'a [u8],
}

/// Why a `PADTRIM_ARGS` value is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgSpecError {
    /// A rule has no `@FIELDS`.
    NoFields,
    /// A rule has no function pattern before `@`.
    NoFunctions,
    /// A field is not `arg1` ... `arg8`, `args` or `retval`.
    BadField,
}

impl ArgSpecError {
    /// What is wrong, in words.
    pub fn message(self) -> &'static str {
        match self {
            ArgSpecError::NoFields => "a rule has no @FIELDS (e.g. fib@arg1,retval)",
            ArgSpecError::NoFunctions => "a rule names no function before @",
            ArgSpecError::BadField => {
                "unknown field (the fields are arg1 ... arg8, args and retval)"
            }
        }
    }
}

fn rules(spec: &[u8]) -> impl Iterator<Item = &[u8]> {
    spec.split(|&b| b == b';')
        .map(trim)
        .filter(|r| !r.is_empty())
}

fn split_rule(rule: &[u8]) -> Result<(&[u8], u16), ArgSpecError> {
    let at = rule
        .iter()
        .rposition(|&b| b == b'@')
        .ok_or(ArgSpecError::NoFields)?;
    let (globs, fields) = (trim(&rule[..at]), &rule[at + 1..]);
    if Filter::new(globs).is_everything() {
        return Err(ArgSpecError::NoFunctions);
    }
    let mut mask = 0u16;
    let mut any = false;
    for f in fields.split(|&b| b == b',').map(trim) {
        mask |= field_mask(f).ok_or(ArgSpecError::BadField)?;
        any = true;
    }
    if !any {
        return Err(ArgSpecError::NoFields);
    }
    Ok((globs, mask))
}

fn field_mask(f: &[u8]) -> Option<u16> {
    match f {
        b"args" => Some(ALL_ARGS),
        b"retval" => Some(RETVAL),
        [b'a', b'r', b'g', d @ b'1'..=b'8'] => Some(ARG1 << (d - b'1')),
        _ => None,
    }
}

impl<'a> ArgSpec<'a> {
    /// Parse `spec`; an empty spec selects nothing.
    pub fn parse(spec: &'a [u8]) -> Result<ArgSpec<'a>, ArgSpecError> {
        for r in rules(spec) {
            split_rule(r)?;
        }
        Ok(ArgSpec { spec })
    }

    /// Does any rule ask for `retval`?
    pub fn wants_retval(&self) -> bool {
        rules(self.spec).any(|r| split_rule(r).map_or(false, |(_, m)| m & RETVAL != 0))
    }

    /// No rule at all.
    pub fn is_empty(&self) -> bool {
        rules(self.spec).next().is_none()
    }

    /// The fields recorded for the function called `name` (0: none).
    pub fn mask(&self, name: &[u8]) -> u16 {
        let mut mask = 0;
        for r in rules(self.spec) {
            if let Ok((globs, m)) = split_rule(r) {
                if Filter::new(globs).selects(name) {
                    mask |= m;
                }
            }
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_select_fields_by_function() {
        let s = ArgSpec::parse(b"fib@arg1,retval; str*,!strlen@arg1,arg2 ;main@args").unwrap();
        assert_eq!(s.mask(b"fib"), ARG1 | RETVAL);
        assert_eq!(s.mask(b"strcmp"), ARG1 | ARG1 << 1);
        assert_eq!(s.mask(b"strlen"), 0);
        assert_eq!(s.mask(b"main"), ALL_ARGS);
        assert_eq!(s.mask(b"other"), 0);
        assert!(s.wants_retval());
        assert!(!ArgSpec::parse(b"f@arg8").unwrap().wants_retval());
        assert_eq!(ArgSpec::parse(b"f@arg8").unwrap().mask(b"f"), 1 << 7);
        assert!(ArgSpec::parse(b"").unwrap().is_empty());
    }

    #[test]
    fn bad_rules_are_refused() {
        assert_eq!(ArgSpec::parse(b"fib").unwrap_err(), ArgSpecError::NoFields);
        assert_eq!(ArgSpec::parse(b"fib@").unwrap_err(), ArgSpecError::BadField);
        assert_eq!(
            ArgSpec::parse(b"@arg1").unwrap_err(),
            ArgSpecError::NoFunctions
        );
        assert_eq!(
            ArgSpec::parse(b"fib@arg9").unwrap_err(),
            ArgSpecError::BadField
        );
        assert_eq!(
            ArgSpec::parse(b"fib@arg0").unwrap_err(),
            ArgSpecError::BadField
        );
        assert_eq!(
            ArgSpec::parse(b"fib@ret").unwrap_err(),
            ArgSpecError::BadField
        );
    }
}
