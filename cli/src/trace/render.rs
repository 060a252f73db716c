//! Output formats of `padtrim replay`. Each reads the trace's threads back from the file
//! one after the other (`Trace::events`, `Spans`) and writes as it goes: memory holds the
//! names, one thread's open calls and, for folded stacks and the summary, one total per
//! stack or function.

use std::collections::BTreeMap;
use std::io::Write;

use padtrim_runtime::format::Mode;
use serde::Serialize;

use super::model::{show_value, ArgVals, EventKind, IntMap, Pairing, Span, SpanEnd, Spans, Trace};

/// "1 thread", "2 threads".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn us(ns: f64) -> String {
    format!("{:.3} us", ns / 1000.0)
}

/// `format!("{:.3} us", ns / 1000.0)` appended to `buf`, without the formatting machinery
/// for the common case (a text trace prints one per call).
fn push_us(buf: &mut Vec<u8>, ns: f64) {
    let v = ns / 1000.0;
    let x = v * 1000.0;
    // `x` is within half a unit in the last place (< 1e-4 below 1e12) of the exact value
    // whose rounding to an integer gives the three decimals: away from a tie, rounding `x`
    // gives the same digits. Ties, negative and huge values take the slow path.
    if v.is_sign_positive() && x < 1e12 {
        let whole = x.floor();
        let frac = x - whole;
        if (frac - 0.5).abs() > 1e-3 {
            let k = whole as u64 + u64::from(frac > 0.5);
            push_u64(buf, k / 1000);
            let m = k % 1000;
            buf.extend_from_slice(&[
                b'.',
                b'0' + (m / 100) as u8,
                b'0' + (m / 10 % 10) as u8,
                b'0' + (m % 10) as u8,
            ]);
            buf.extend_from_slice(b" us");
            return;
        }
    }
    use std::io::Write as _;
    let _ = write!(buf, "{:.3} us", v);
}

fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// `s` right-aligned in `width` columns (ASCII).
fn push_right(buf: &mut Vec<u8>, s: &[u8], width: usize) {
    buf.resize(buf.len() + width.saturating_sub(s.len()), b' ');
    buf.extend_from_slice(s);
}

fn push_indent(buf: &mut Vec<u8>, level: usize) {
    buf.resize(buf.len() + 2 * level, b' ');
}

/// One line of the text format: `{tid:>8} {time:>14} |  {indent}` then what `rest` adds.
struct Lines {
    tid: Vec<u8>,
    line: Vec<u8>,
    time: Vec<u8>,
}

impl Lines {
    fn new(tid: u32) -> Lines {
        let mut t = Vec::new();
        push_right(&mut t, tid.to_string().as_bytes(), 8);
        Lines {
            tid: t,
            line: Vec::with_capacity(256),
            time: Vec::with_capacity(32),
        }
    }

    /// Start a line with `time` (ns, or none) and `level` of indentation.
    fn start(&mut self, time: Option<f64>, level: usize) -> &mut Vec<u8> {
        self.line.clear();
        self.line.extend_from_slice(&self.tid);
        self.line.push(b' ');
        self.time.clear();
        if let Some(ns) = time {
            push_us(&mut self.time, ns);
        }
        push_right(&mut self.line, &self.time, 14);
        self.line.extend_from_slice(b" |  ");
        push_indent(&mut self.line, level);
        &mut self.line
    }

    fn finish(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        self.line.push(b'\n');
        out.write_all(&self.line)
    }
}

/// `(5, 0x10)`: a call's recorded arguments, or `()`.
fn push_args(line: &mut Vec<u8>, args: Option<&ArgVals>) {
    line.push(b'(');
    if let Some(a) = args {
        line.extend_from_slice(a.list().as_bytes());
    }
    line.push(b')');
}

/// ` = 5`: a call's recorded return value, if any.
fn push_ret(line: &mut Vec<u8>, ret: Option<u64>) {
    if let Some(v) = ret {
        line.extend_from_slice(b" = ");
        line.extend_from_slice(show_value(v).as_bytes());
    }
}

/// ftrace function_graph style: one block per thread, indentation by depth, durations in us;
/// recorded arguments in the parentheses, a recorded return value after ` = `.
pub fn text(t: &Trace, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "# padtrim trace of {} (pid {}), mode {}",
        t.exe,
        t.pid,
        t.mode.name()
    )?;
    for (ti, th) in t.threads.iter().enumerate() {
        match th.forked_from {
            Some(parent) => writeln!(out, "# thread {} (a process forked from {parent})", th.tid)?,
            None => writeln!(out, "# thread {}", th.tid)?,
        }
        let mut lines = Lines::new(th.tid);
        if t.mode != Mode::Graph {
            writeln!(out, "#{:>7} {:>14} |  FUNCTION CALLS", "TID", "TIME")?;
            let mut events = t.events(ti)?;
            while let Some(e) = events.next_event()? {
                if e.kind != EventKind::Entry {
                    continue;
                }
                let line = lines.start(Some(e.ns), e.depth as usize);
                line.extend_from_slice(t.names[e.func].as_bytes());
                push_args(line, e.args.as_ref());
                lines.finish(out)?;
            }
            continue;
        }
        writeln!(out, "#{:>7} {:>14} |  FUNCTION CALLS", "TID", "DURATION")?;
        let mut open: Vec<Span> = Vec::new();
        let close = |lines: &mut Lines, out: &mut dyn Write, s: &Span| -> std::io::Result<()> {
            let note: &[u8] = match s.end_kind {
                SpanEnd::Returned => b"",
                SpanEnd::Unwound => b" (unwound)",
                SpanEnd::Open => b" (did not return)",
            };
            let line = lines.start(Some(s.end - s.start), s.level);
            line.extend_from_slice(b"}");
            if s.ret.is_some() {
                push_ret(line, s.ret);
                line.push(b';');
            }
            line.extend_from_slice(b" /* ");
            line.extend_from_slice(t.names[s.func].as_bytes());
            line.extend_from_slice(b" */");
            line.extend_from_slice(note);
            lines.finish(out)
        };
        let mut spans = Spans::new(t, ti)?;
        let mut next = spans.next_span()?;
        while let Some(s) = next {
            next = spans.next_span()?;
            while let Some(top) = open.last() {
                if top.level < s.level {
                    break;
                }
                close(&mut lines, out, top)?;
                open.pop();
            }
            let leaf = next.as_ref().is_none_or(|n| n.level <= s.level);
            if leaf {
                let note: &[u8] = match s.end_kind {
                    SpanEnd::Returned => b"",
                    SpanEnd::Unwound => b" /* unwound */",
                    SpanEnd::Open => b" /* did not return */",
                };
                let line = lines.start(Some(s.end - s.start), s.level);
                line.extend_from_slice(t.names[s.func].as_bytes());
                push_args(line, s.args.as_ref());
                push_ret(line, s.ret);
                line.extend_from_slice(b";");
                line.extend_from_slice(note);
                lines.finish(out)?;
            } else {
                let line = lines.start(None, s.level);
                line.extend_from_slice(t.names[s.func].as_bytes());
                push_args(line, s.args.as_ref());
                line.extend_from_slice(b" {");
                lines.finish(out)?;
                open.push(s);
            }
        }
        while let Some(top) = open.pop() {
            close(&mut lines, out, &top)?;
        }
    }
    Ok(())
}

// Chrome trace events, with their fields in alphabetical order: the order serde_json gave
// them when the document was built as one `json!` value, kept so the output is unchanged.

#[derive(Serialize)]
struct ThreadName<'a> {
    args: NameArg,
    name: &'a str,
    ph: &'a str,
    pid: u32,
    tid: u32,
}

#[derive(Serialize)]
struct NameArg {
    name: String,
}

#[derive(Serialize)]
struct Complete<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<EndArg>,
    cat: &'a str,
    dur: f64,
    name: &'a str,
    ph: &'a str,
    pid: u32,
    tid: u32,
    ts: f64,
}

#[derive(Serialize)]
struct EndArg {
    end: &'static str,
}

#[derive(Serialize)]
struct Instant<'a> {
    args: DepthArg,
    cat: &'a str,
    name: &'a str,
    ph: &'a str,
    pid: u32,
    s: &'a str,
    tid: u32,
    ts: f64,
}

#[derive(Serialize)]
struct DepthArg {
    depth: u16,
}

#[derive(Serialize)]
struct OtherData<'a> {
    exe: &'a str,
    mode: &'a str,
}

/// Chrome trace-event JSON: complete ("X") events for calls, instant ("i") events for
/// entry-only traces, and thread-name metadata. Times in microseconds.
pub fn chrome(t: &Trace, out: &mut dyn Write) -> anyhow::Result<()> {
    write!(out, "{{\"displayTimeUnit\":\"ns\",\"otherData\":")?;
    serde_json::to_writer(
        &mut *out,
        &OtherData {
            exe: &t.exe,
            mode: t.mode.name(),
        },
    )?;
    write!(out, ",\"traceEvents\":[")?;
    // Each event is serialized into `ev`, then written whole: serde_json's many small
    // writes are cheap into a Vec and slow through `dyn Write`.
    let mut ev: Vec<u8> = Vec::with_capacity(256);
    let mut first = true;
    let mut sep = |ev: &mut Vec<u8>| {
        ev.clear();
        if !std::mem::take(&mut first) {
            ev.push(b',');
        }
    };
    for (ti, th) in t.threads.iter().enumerate() {
        sep(&mut ev);
        serde_json::to_writer(
            &mut ev,
            &ThreadName {
                args: NameArg {
                    name: format!("tid {}", th.tid),
                },
                name: "thread_name",
                ph: "M",
                pid: t.pid,
                tid: th.tid,
            },
        )?;
        out.write_all(&ev)?;
        if t.mode == Mode::Graph {
            let mut spans = Spans::new(t, ti)?;
            while let Some(s) = spans.next_span()? {
                sep(&mut ev);
                let args = match s.end_kind {
                    SpanEnd::Returned => None,
                    SpanEnd::Unwound => Some(EndArg { end: "unwound" }),
                    SpanEnd::Open => Some(EndArg { end: "open" }),
                };
                serde_json::to_writer(
                    &mut ev,
                    &Complete {
                        args,
                        cat: "function",
                        dur: (s.end - s.start) / 1000.0,
                        name: &t.names[s.func],
                        ph: "X",
                        pid: t.pid,
                        tid: th.tid,
                        ts: s.start / 1000.0,
                    },
                )?;
                out.write_all(&ev)?;
            }
        } else {
            let mut events = t.events(ti)?;
            while let Some(e) = events.next_event()? {
                if e.kind != EventKind::Entry {
                    continue;
                }
                sep(&mut ev);
                serde_json::to_writer(
                    &mut ev,
                    &Instant {
                        args: DepthArg { depth: e.depth },
                        cat: "function",
                        name: &t.names[e.func],
                        ph: "i",
                        pid: t.pid,
                        s: "t",
                        tid: th.tid,
                        ts: e.ns / 1000.0,
                    },
                )?;
                out.write_all(&ev)?;
            }
        }
    }
    writeln!(out, "]}}")?;
    Ok(())
}

/// Folded stacks: graph traces weigh each stack by its self time in ns; entry-only traces
/// count calls.
pub fn folded(t: &Trace, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut stacks = Stacks::default();
    for ti in 0..t.threads.len() {
        let mut events = t.events(ti)?;
        // The stack id of each open call, outermost first.
        let mut ids: Vec<u32> = Vec::new();
        if t.mode == Mode::Graph {
            let mut pairing = Pairing::default();
            let add = |stacks: &mut Stacks, ids: &mut Vec<u32>, s: Span| {
                let self_ns = (s.end - s.start - s.children).max(0.0).round() as u64;
                let id = ids.pop().unwrap_or_default();
                stacks.weights[id as usize] += self_ns;
            };
            while let Some(e) = events.next_event()? {
                if e.kind == EventKind::Entry {
                    pairing.enter(&e);
                    let id = stacks.child(ids.last().copied(), e.func);
                    ids.push(id);
                } else {
                    pairing.leave(&e, |c| add(&mut stacks, &mut ids, c.span));
                }
            }
            pairing.close_all(events.last_ns(), |c| add(&mut stacks, &mut ids, c.span));
        } else {
            while let Some(e) = events.next_event()? {
                if e.kind != EventKind::Entry {
                    continue;
                }
                ids.truncate(e.depth as usize);
                let id = stacks.child(ids.last().copied(), e.func);
                stacks.weights[id as usize] += 1;
                ids.push(id);
            }
        }
    }
    // Two functions may share a name: their stacks then add up under one line.
    let mut weights: BTreeMap<String, u64> = BTreeMap::new();
    let mut funcs = Vec::new();
    for (id, &w) in stacks.weights.iter().enumerate() {
        if w == 0 {
            continue;
        }
        funcs.clear();
        let mut at = Some(id as u32);
        while let Some(i) = at {
            let (parent, func) = stacks.nodes[i as usize];
            funcs.push(t.names[func].as_str());
            at = parent;
        }
        funcs.reverse();
        *weights.entry(funcs.join(";")).or_default() += w;
    }
    for (stack, w) in weights {
        if w > 0 {
            writeln!(out, "{} {}", stack, w)?;
        }
    }
    Ok(())
}

/// The distinct call stacks of a trace as a tree: each stack is its caller's stack and a
/// function, and has an id and a weight.
#[derive(Default)]
struct Stacks {
    ids: IntMap<(u32, usize), u32>,
    /// (caller's stack, function) of each stack.
    nodes: Vec<(Option<u32>, usize)>,
    weights: Vec<u64>,
}

impl Stacks {
    /// The id of the stack `parent` (none: outermost) with `func` called on top.
    fn child(&mut self, parent: Option<u32>, func: usize) -> u32 {
        let key = (parent.map_or(u32::MAX, |p| p), func);
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push((parent, func));
        self.weights.push(0);
        self.ids.insert(key, id);
        id
    }
}

/// Per-function calls, total (inclusive, recursion counted once) and self time.
pub fn summary(t: &Trace, out: &mut dyn Write) -> anyhow::Result<()> {
    #[derive(Default)]
    struct Row {
        calls: u64,
        total: f64,
        own: f64,
    }
    let mut rows: Vec<Row> = (0..t.names.len()).map(|_| Row::default()).collect();
    for ti in 0..t.threads.len() {
        if t.mode != Mode::Graph {
            let mut events = t.events(ti)?;
            while let Some(e) = events.next_event()? {
                if e.kind == EventKind::Entry {
                    rows[e.func].calls += 1;
                }
            }
            continue;
        }
        // Every entry starts one span. The sums of times go in entry order, as they always have: a float sum depends on
        // its order, and the output must not change with the way the trace is read.
        let mut spans = Spans::new(t, ti)?;
        while let Some(s) = spans.next_span()? {
            let dur = s.end - s.start;
            rows[s.func].calls += 1;
            if !s.recursive {
                rows[s.func].total += dur;
            }
            rows[s.func].own += (dur - s.children).max(0.0);
        }
    }
    writeln!(
        out,
        "# padtrim trace of {} (pid {}), mode {}, {}",
        t.exe,
        t.pid,
        t.mode.name(),
        count(t.threads.len() as u64, "thread", "threads")
    )?;
    if let Some(st) = t.patched {
        writeln!(
            out,
            "# startup: {} patched, {} skipped, in {} (table: {})",
            count(st.patched, "slot", "slots"),
            st.skipped,
            us(st.ns),
            st.table
        )?;
    }
    if t.lost > 0 {
        writeln!(
            out,
            "# {} lost (the runtime could not keep them)",
            count(t.lost, "record", "records")
        )?;
    }
    if t.trailing_bytes > 0 {
        writeln!(
            out,
            "# {} of a torn record at the end (the program crashed?)",
            count(t.trailing_bytes as u64, "byte", "bytes")
        )?;
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        rows[b]
            .own
            .total_cmp(&rows[a].own)
            .then(rows[b].calls.cmp(&rows[a].calls))
            .then(t.names[a].cmp(&t.names[b]))
    });
    if t.mode == Mode::Graph {
        writeln!(
            out,
            "{:>10} {:>14} {:>14}  FUNCTION",
            "CALLS", "TOTAL", "SELF"
        )?;
        for i in order {
            writeln!(
                out,
                "{:>10} {:>14} {:>14}  {}",
                rows[i].calls,
                us(rows[i].total),
                us(rows[i].own),
                t.names[i]
            )?;
        }
    } else {
        writeln!(out, "{:>10}  FUNCTION", "CALLS")?;
        for i in order {
            writeln!(out, "{:>10}  {}", rows[i].calls, t.names[i])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_microseconds_match_the_formatter() {
        let check = |ns: f64| {
            let mut b = Vec::new();
            push_us(&mut b, ns);
            assert_eq!(String::from_utf8(b).unwrap(), us(ns), "ns = {ns:?}");
        };
        for ns in [
            0.0,
            0.4,
            0.5,
            0.5000001,
            1.0,
            499.5,
            999.4999,
            999.5,
            1000.0,
            1234.5678,
            2.5e6,
            1e11,
            999_999_999_999.4,
            1e12,
            1e15,
            -1.0,
            -0.0,
        ] {
            check(ns);
        }
        // A spread of values with many digits, and values right at ties.
        let mut x: u64 = 0x1234_5678_9abc_def0;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ns = (x % 10_000_000_000) as f64 / 7.0;
            check(ns);
            check((x % 100_000_000) as f64 + 0.5);
            check((x % 100_000) as f64 * 0.001);
        }
    }
}
