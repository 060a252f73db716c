//! `PADTRIM_FILTER`: a comma-separated list of globs (`*` any run, `?` one byte); a leading
//! `!` makes a pattern exclude. A name is selected when it matches no exclude pattern and,
//! if there is at least one include pattern, matches one of them.

/// Does `name` match the glob `pat` (`*` = any run of bytes, `?` = exactly one byte)?
pub fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// A parsed filter; borrows the environment string.
#[derive(Clone, Copy, Debug)]
pub struct Filter<'a> {
    spec: &'a [u8],
}

impl<'a> Filter<'a> {
    /// Parse a filter specification (never fails: empty items are ignored).
    pub fn new(spec: &'a [u8]) -> Filter<'a> {
        Filter { spec }
    }

    fn items(&self) -> impl Iterator<Item = &'a [u8]> {
        self.spec
            .split(|&b| b == b',')
            .map(trim)
            .filter(|s| !s.is_empty() && *s != b"!")
    }

    /// True if the filter selects every function (no patterns at all).
    pub fn is_everything(&self) -> bool {
        self.items().next().is_none()
    }

    /// Is the function called `name` selected?
    pub fn selects(&self, name: &[u8]) -> bool {
        let mut has_include = false;
        let mut included = false;
        for item in self.items() {
            if item[0] == b'!' {
                if glob_match(&item[1..], name) {
                    return false;
                }
            } else {
                has_include = true;
                if !included && glob_match(item, name) {
                    included = true;
                }
            }
        }
        included || !has_include
    }
}

/// `s` without its leading and trailing spaces.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && s[a] == b' ' {
        a += 1;
    }
    while b > a && s[b - 1] == b' ' {
        b -= 1;
    }
    &s[a..b]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"fib", b"fib"));
        assert!(!glob_match(b"fib", b"fibo"));
        assert!(glob_match(b"fib*", b"fibo"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"f?b", b"fab"));
        assert!(!glob_match(b"f?b", b"fb"));
        assert!(glob_match(b"*_cb", b"on_click_cb"));
        assert!(glob_match(b"a*b*c", b"aXXbYYbZc"));
        assert!(!glob_match(b"a*b*c", b"aXXbYYbZ"));
        assert!(glob_match(b"**x", b"x"));
    }

    #[test]
    fn filters() {
        let f = Filter::new(b"fib*, work_?,!fib_slow");
        assert!(f.selects(b"fib"));
        assert!(f.selects(b"work_1"));
        assert!(!f.selects(b"fib_slow"));
        assert!(!f.selects(b"main"));
        let only_excl = Filter::new(b"!main");
        assert!(only_excl.selects(b"fib"));
        assert!(!only_excl.selects(b"main"));
        let all = Filter::new(b" , ");
        assert!(all.is_everything());
        assert!(all.selects(b"anything"));
    }
}
