//! Log output for `serve`: the tracing subscriber, and a writer that keeps
//! every event on one line. Field values in the plain format are written as
//! they are, so a newline in a user-supplied string (a selection key, a
//! container name, an error quoting them) would otherwise start a forged
//! log line; the JSON format escapes on its own.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::flags::LogFormat;

/// Installs the process's subscriber: level from `RUST_LOG` (default info),
/// to stderr, in `format`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match format {
        LogFormat::Plain => builder.with_writer(OneLine).init(),
        LogFormat::Json => builder
            .with_writer(io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

/// stderr, one event per line: control characters inside an event are
/// escaped. tracing-subscriber formats each event into a buffer and writes
/// it with a single `write_all`, so each call here is one whole event.
#[derive(Debug, Clone, Copy)]
struct OneLine;

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = OneLine;
    fn make_writer(&'a self) -> OneLine {
        OneLine
    }
}

impl Write for OneLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(buf);
        let (event, end) = match text.strip_suffix('\n') {
            Some(event) => (event, "\n"),
            None => (&*text, ""),
        };
        let mut err = io::stderr().lock();
        err.write_all(escape_controls(event).as_bytes())?;
        err.write_all(end.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// `s` with every character that could break or disguise a line escaped:
/// C0 and C1 controls (newline and carriage return as `\n` and `\r`) and the
/// Unicode line and paragraph separators.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    let needs = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if needs(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let cases = [
            ("plain text", "plain text"),
            ("a\nINFO forged line", "a\\nINFO forged line"),
            ("cr\rlf\r\n", "cr\\rlf\\r\\n"),
            ("esc\u{1b}[31mred", "esc\\u{1b}[31mred"),
            (
                "nel\u{85}ls\u{2028}ps\u{2029}",
                "nel\\u{85}ls\\u{2028}ps\\u{2029}",
            ),
            ("tab\tstays", "tab\tstays"),
            ("ünïcödé ok", "ünïcödé ok"),
        ];
        for (input, want) in cases {
            assert_eq!(escape_controls(input), want, "{input:?}");
        }
        assert!(matches!(escape_controls("nothing"), Cow::Borrowed(_)));
    }
}
