//! A bound on how deep YAML collections nest, checked with an event parser
//! before serde_yaml reads a text. serde_yaml's own recursion limit is 128,
//! but its scanner (libyaml's) checks every open flow level on each token:
//! a document of 100,000 nested `{a: ` took minutes to refuse. The event
//! parser reads it in linear time.
use granit_parser::{ErrorKind, Event, Parser, ScanError, Span};

/// The deepest nesting read; serde_yaml refuses deeper ones anyway.
pub const MAX_DEPTH: usize = 128;

/// A document whose collections nest deeper than [`MAX_DEPTH`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "collections nested more than {MAX_DEPTH} levels deep at line {line} (the recursion limit of serde_yaml and of kubectl's JSON)"
)]
pub struct TooDeep {
    /// 0-based index of the document in the text.
    pub document: usize,
    /// 1-based line of the collection that opens one level too many.
    pub line: usize,
}

/// Follows the events of one parse and says when a document nests
/// collections deeper than [`MAX_DEPTH`], so that a reader that walks the
/// events anyway needs no second parse.
#[derive(Debug, Default)]
pub struct DepthGuard {
    depth: usize,
    document: usize,
}

impl DepthGuard {
    /// Takes the parser's next item. A syntax error other than the event
    /// parser's own nesting limit is not this guard's to report.
    pub fn follow<'i>(
        &mut self,
        item: &Result<(Event<'i>, Span), ScanError>,
    ) -> Result<(), TooDeep> {
        let (event, span) = match item {
            Ok(event) => event,
            // The event parser's own limit on flow nesting, met while it
            // scans ahead of the events.
            Err(e) if matches!(e.kind(), ErrorKind::RecursionLimitExceeded) => {
                return Err(TooDeep {
                    document: self.document,
                    line: e.marker().line(),
                });
            }
            Err(_) => return Ok(()),
        };
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(TooDeep {
                        document: self.document,
                        line: span.start.line(),
                    });
                }
            }
            Event::SequenceEnd | Event::MappingEnd => self.depth = self.depth.saturating_sub(1),
            Event::DocumentEnd => {
                self.document += 1;
                self.depth = 0;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Refuses `text` if a document nests collections deeper than
/// [`MAX_DEPTH`]. Syntax errors are left to serde_yaml, which names them.
pub fn check_depth(text: &str) -> Result<(), TooDeep> {
    let mut guard = DepthGuard::default();
    for item in Parser::new_from_str(text) {
        guard.follow(&item)?;
        if item.is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_only_past_the_limit_and_names_document_and_line() {
        let nested = |n: usize| format!("a: {}1{}\n", "[".repeat(n), "]".repeat(n));
        assert_eq!(check_depth(&nested(MAX_DEPTH - 1)), Ok(()));
        assert_eq!(
            check_depth(&format!("a: 1\n---\nb: 2\n---\n{}", nested(100_000))),
            Err(TooDeep {
                document: 2,
                line: 5
            })
        );
        // Block style counts the same.
        let mut block = String::new();
        for level in 0..=MAX_DEPTH {
            block.push_str(&format!("{}k:\n", "  ".repeat(level)));
        }
        block.push_str(&format!("{}v\n", "  ".repeat(MAX_DEPTH + 1)));
        assert!(check_depth(&block).is_err());
        // Syntax errors are serde_yaml's to report.
        assert_eq!(check_depth("a: [1, 2\n"), Ok(()));
    }
}
