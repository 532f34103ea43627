//! Tokens as a person writes them (`Vec<String>`, `&'static str`, `msg: Add`), for
//! error messages. `TokenStream::to_string` spaces every token apart.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;

pub(crate) fn render(tokens: impl ToTokens) -> String {
    let mut out = String::new();
    write_stream(&mut out, tokens.into_token_stream());
    out
}

/// What the previous token was, as far as spacing cares.
#[derive(Clone, Copy, PartialEq)]
enum Prev {
    Start,
    /// An identifier or literal; `true` for keywords that a path may follow
    /// (`as ::std::X`).
    Word(bool),
    /// A punctuation character and whether it is joined to the next one.
    Punct(char, Spacing),
    /// `::` just ended.
    PathSep,
    Group,
}

fn write_stream(out: &mut String, tokens: TokenStream) {
    let mut prev = Prev::Start;
    for tree in tokens {
        if space_between(prev, &tree) {
            out.push(' ');
        }
        prev = match &tree {
            TokenTree::Ident(ident) => {
                let word = ident.to_string();
                out.push_str(&word);
                Prev::Word(matches!(
                    word.as_str(),
                    "as" | "dyn" | "impl" | "mut" | "ref" | "const" | "in" | "for" | "where"
                ))
            }
            TokenTree::Literal(lit) => {
                out.push_str(&lit.to_string());
                Prev::Word(false)
            }
            TokenTree::Punct(punct) => {
                out.push(punct.as_char());
                if punct.as_char() == ':' && prev == Prev::Punct(':', Spacing::Joint) {
                    Prev::PathSep
                } else {
                    Prev::Punct(punct.as_char(), punct.spacing())
                }
            }
            TokenTree::Group(group) => {
                let (open, close, pad) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")", false),
                    Delimiter::Bracket => ("[", "]", false),
                    Delimiter::Brace => ("{", "}", true),
                    Delimiter::None => ("", "", false),
                };
                out.push_str(open);
                let inner = render(group.stream());
                if pad && !inner.is_empty() {
                    out.push(' ');
                    out.push_str(&inner);
                    out.push(' ');
                } else {
                    out.push_str(&inner);
                }
                out.push_str(close);
                Prev::Group
            }
        };
    }
}

fn space_between(prev: Prev, next: &TokenTree) -> bool {
    match prev {
        Prev::Start | Prev::PathSep => return false,
        Prev::Punct(_, Spacing::Joint) => return false,
        Prev::Punct('&' | '<' | '#' | '!' | '\'', _) => return false,
        _ => {}
    }
    match next {
        TokenTree::Punct(punct) => match punct.as_char() {
            ',' | ';' | '>' | '?' => false,
            ':' => punct.spacing() == Spacing::Joint && prev == Prev::Word(true),
            '<' | '!' => !matches!(prev, Prev::Word(_)),
            '.' => !matches!(prev, Prev::Word(_) | Prev::Group),
            _ => true,
        },
        // `Add(n)`, `vec![..]`, `[T; 4]`; but `Point { x }` and `= (a, b)`.
        TokenTree::Group(group) => match group.delimiter() {
            Delimiter::Parenthesis | Delimiter::Bracket => {
                !matches!(prev, Prev::Word(false) | Prev::Punct('!', _))
            }
            _ => true,
        },
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    fn ty(text: &str) -> String {
        render(syn::parse_str::<syn::Type>(text).unwrap())
    }

    fn pat(text: &str) -> String {
        let pat = syn::parse::Parser::parse_str(syn::Pat::parse_single, text).unwrap();
        render(pat)
    }

    #[test]
    fn types_read_as_written() {
        for text in [
            "i64",
            "Vec<String>",
            "&'static str",
            "&mut Self",
            "Option<Vec<(u8, String)>>",
            "std::collections::HashMap<String, i64>",
            "::core::option::Option<i64>",
            "[u8; 4]",
            "Result<Vec<String>, std::num::ParseIntError>",
            "Box<dyn Fn(i64) -> i64 + Send>",
            "<T as Trait>::Output",
        ] {
            assert_eq!(ty(text), text);
        }
    }

    #[test]
    fn patterns_read_as_written() {
        for text in [
            "Add(n)",
            "Point { x, y }",
            "Point { x, .. }",
            "Op::Add(n)",
            "Some(x)",
            "(a, b)",
            "_",
            "mut v",
            "Wrapper(ref inner)",
        ] {
            assert_eq!(pat(text), text);
        }
    }
}
