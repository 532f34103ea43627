//! The typed model of the `#[actor("<uuid>", options..)]` arguments.
//!
//! Parsing is lenient: a malformed option is reported and left out of the model,
//! so one build reports every mistake.

use std::fmt::Display;

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::{Ident, LitInt, LitStr, Path, Token, Type};

use crate::errors::Errors;

/// `#[actor("<uuid>", options..)]`.
#[derive(Default)]
pub(crate) struct ActorAttr {
    /// The actor type's uuid as a number; `None` if missing or malformed (already
    /// reported).
    pub uuid: Option<u128>,
    pub snapshot: Option<SnapshotFlag>,
    pub runtime_args: Option<Opt<Type>>,
    pub schema_version: Option<Opt<u32>>,
    pub migrate: Option<Opt<Path>>,
    pub codec: Option<Opt<Codec>>,
    pub compression: Option<Opt<Compression>>,
    pub snapshot_every: Option<Opt<u32>>,
    pub snapshot_interval_ms: Option<Opt<u64>>,
    pub snapshot_on_stop: Option<Opt<()>>,
}

/// `snapshot` or `snapshot = Type`.
pub(crate) struct SnapshotFlag {
    /// The `snapshot` keyword: generated `PersistentActor` errors point here.
    pub span: Span,
    pub ty: Option<Type>,
}

/// `name [= value]`: the value and the option name's span.
pub(crate) struct Opt<T> {
    pub span: Span,
    pub value: T,
}

/// `codec = ".."`: how a snapshot payload is encoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Codec {
    Bincode,
    MessagePack,
}

/// `compression = ".."`: how a snapshot payload is compressed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Codec {
    const CHOICES: &[(&str, Codec)] =
        &[("bincode", Codec::Bincode), ("msgpack", Codec::MessagePack)];

    /// The variant of `theta::persistence::Codec`.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            Codec::Bincode => "Bincode",
            Codec::MessagePack => "MessagePack",
        }
    }
}

impl Compression {
    const CHOICES: &[(&str, Compression)] = &[
        ("none", Compression::None),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ];

    /// The variant of `theta::persistence::Compression`.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            Compression::None => "None",
            Compression::Lz4 => "Lz4",
            Compression::Zstd => "Zstd",
        }
    }
}

/// Everything `#[actor]` accepts after the uuid; listed with every unknown option.
const OPTIONS: &str = "expected `snapshot`, `snapshot = Type`, `runtime_args = Type`, \
                       `schema_version = <u32>`, `migrate = path`, `codec = \"..\"`, \
                       `compression = \"..\"`, `snapshot_every = <u32>`, \
                       `snapshot_interval_ms = <u64>` or `snapshot_on_stop`";

const UUID_SHAPE: &str = "a uuid is 32 hex digits in groups 8-4-4-4-12, \
                          like \"6b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f0001\"";

impl ActorAttr {
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> ActorAttr {
        let mut attr = ActorAttr::default();
        let parser = |input: ParseStream| attr.parse_inner(input, errors);
        if let Err(error) = parser.parse2(tokens) {
            errors.push(error);
        }
        attr
    }

    fn parse_inner(&mut self, input: ParseStream, errors: &mut Errors) -> syn::Result<()> {
        if input.is_empty() {
            errors.at(
                Span::call_site(),
                format_args!("missing uuid: write `#[actor(\"<uuid>\")]`; {UUID_SHAPE}"),
            );
            return Ok(());
        }
        let mut first = true;
        if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            match parse_uuid(&lit.value()) {
                Some(uuid) => self.uuid = Some(uuid),
                None => errors.spanned(&lit, format_args!("malformed uuid: {UUID_SHAPE}")),
            }
            first = false;
        } else {
            errors.at(
                input.span(),
                format_args!(
                    "missing uuid: the first argument of `#[actor]` is the actor type's uuid \
                     as a string literal; {UUID_SHAPE}"
                ),
            );
        }
        while !input.is_empty() {
            if !first {
                input.parse::<Token![,]>()?;
                if input.is_empty() {
                    break;
                }
            }
            first = false;
            self.parse_option(input, errors)?;
        }
        Ok(())
    }

    /// One option. The outer `Result` is a syntax error that ends parsing; a bad
    /// value is reported and parsing goes on.
    fn parse_option(&mut self, input: ParseStream, errors: &mut Errors) -> syn::Result<()> {
        if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            errors.spanned(
                lit,
                format_args!("the uuid goes first and only once; {OPTIONS}"),
            );
            return Ok(());
        }
        let name: Ident = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), OPTIONS))?;
        let span = name.span();
        match name.to_string().as_str() {
            "snapshot" => {
                let ty = if input.peek(Token![=]) {
                    input.parse::<Token![=]>()?;
                    Some(input.parse::<Type>()?)
                } else {
                    None
                };
                match self.snapshot {
                    Some(_) => duplicate(&name, errors),
                    None => self.snapshot = Some(SnapshotFlag { span, ty }),
                }
            }
            "runtime_args" => {
                let value = equals(input, &name, "Type").and_then(|()| input.parse::<Type>())?;
                set(&mut self.runtime_args, &name, Ok(value), errors);
            }
            "schema_version" => {
                let value = parse_int::<u32>(input, &name, "u32", "a schema version (u32)", false)?;
                set(&mut self.schema_version, &name, value, errors);
            }
            "migrate" => {
                equals(input, &name, "path")?;
                let value = input.parse::<Path>().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "expected the path of a function \
                         `fn(u32, &[u8]) -> Result<Snapshot, anyhow::Error>`",
                    )
                })?;
                set(&mut self.migrate, &name, Ok(value), errors);
            }
            "codec" => {
                let value = parse_choice(input, &name, Codec::CHOICES)?;
                set(&mut self.codec, &name, value, errors);
            }
            "compression" => {
                let value = parse_choice(input, &name, Compression::CHOICES)?;
                set(&mut self.compression, &name, value, errors);
            }
            "snapshot_every" => {
                let value = parse_int::<u32>(input, &name, "u32", "a number of messages", true)?;
                set(&mut self.snapshot_every, &name, value, errors);
            }
            "snapshot_interval_ms" => {
                let value =
                    parse_int::<u64>(input, &name, "u64", "a number of milliseconds", true)?;
                set(&mut self.snapshot_interval_ms, &name, value, errors);
            }
            "snapshot_on_stop" => set(&mut self.snapshot_on_stop, &name, Ok(()), errors),
            _ => {
                errors.at(span, format_args!("unknown option `{name}`; {OPTIONS}"));
                skip_value(input)?;
            }
        }
        Ok(())
    }
}

fn duplicate(name: &Ident, errors: &mut Errors) {
    errors.at(name.span(), format_args!("duplicate option `{name}`"));
}

/// Stores a parsed option, or reports it as repeated or malformed.
fn set<T>(
    slot: &mut Option<Opt<T>>,
    name: &Ident,
    value: Result<T, syn::Error>,
    errors: &mut Errors,
) {
    match (&slot, value) {
        (Some(_), _) => duplicate(name, errors),
        (None, Ok(value)) => {
            *slot = Some(Opt {
                span: name.span(),
                value,
            });
        }
        (None, Err(error)) => errors.push(error),
    }
}

/// The `=` after an option that takes a value.
fn equals(input: ParseStream, name: &Ident, what: &str) -> syn::Result<()> {
    if !input.peek(Token![=]) {
        return Err(syn::Error::new(
            name.span(),
            format_args!("`{name}` needs a value: `{name} = <{what}>`"),
        ));
    }
    input.parse::<Token![=]>().map(drop)
}

/// `= <integer literal>` of type `ty`, described as `what`. `at_least_one` for
/// counts and intervals, where 0 would mean "never".
fn parse_int<T>(
    input: ParseStream,
    name: &Ident,
    ty: &str,
    what: &str,
    at_least_one: bool,
) -> syn::Result<Result<T, syn::Error>>
where
    T: std::str::FromStr + PartialEq + From<u8>,
    T::Err: Display,
{
    equals(input, name, ty)?;
    let lit: LitInt = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), format_args!("expected {what}")))?;
    Ok(match lit.base10_parse::<T>() {
        Ok(value) if at_least_one && value == T::from(0) => Err(syn::Error::new_spanned(
            &lit,
            format_args!("`{name}` must be at least 1; leave it out to save only manually"),
        )),
        Ok(value) => Ok(value),
        Err(_) => Err(syn::Error::new_spanned(
            &lit,
            format_args!("`{name}` must be a whole number that fits a `{ty}`"),
        )),
    })
}

/// `= "<one of choices>"`.
fn parse_choice<T: Copy>(
    input: ParseStream,
    name: &Ident,
    choices: &[(&str, T)],
) -> syn::Result<Result<T, syn::Error>> {
    let listed = choices
        .iter()
        .map(|(text, _)| format!("\"{text}\""))
        .collect::<Vec<_>>();
    let listed = match listed.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    equals(input, name, "\"..\"")?;
    if !input.peek(LitStr) {
        // `codec = bincode`: consume the value so the next option still parses.
        let value: TokenStream = skip_to_comma(input)?;
        return Ok(Err(syn::Error::new_spanned(
            value,
            format_args!("`{name}` is a string: {listed}"),
        )));
    }
    let lit: LitStr = input.parse()?;
    let text = lit.value();
    Ok(
        match choices.iter().find(|(choice, _)| *choice == text.as_str()) {
            Some((_, value)) => Ok(*value),
            None => Err(syn::Error::new_spanned(
                &lit,
                format_args!("unknown {name} \"{text}\"; expected {listed}"),
            )),
        },
    )
}

/// Skips `= anything` up to the next top-level comma (after an unknown option).
fn skip_value(input: ParseStream) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        skip_to_comma(input)?;
    }
    Ok(())
}

fn skip_to_comma(input: ParseStream) -> syn::Result<TokenStream> {
    let mut skipped = TokenStream::new();
    while !input.is_empty() && !input.peek(Token![,]) {
        skipped.extend([input.parse::<proc_macro2::TokenTree>()?]);
    }
    Ok(skipped)
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex, either case).
pub(crate) fn parse_uuid(text: &str) -> Option<u128> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let groups: Vec<&str> = text.split('-').collect();
    if groups.len() != GROUPS.len() {
        return None;
    }
    let mut value: u128 = 0;
    for (group, len) in groups.iter().zip(GROUPS) {
        if group.len() != len {
            return None;
        }
        for c in group.chars() {
            value = (value << 4) | u128::from(c.to_digit(16)?);
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn parse(tokens: TokenStream) -> (ActorAttr, String) {
        let mut errors = Errors::default();
        let attr = ActorAttr::parse(tokens, &mut errors);
        (attr, errors.into_compile_errors().to_string())
    }

    #[test]
    fn uuid_groups_and_hex() {
        assert_eq!(
            parse_uuid("6b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f0001"),
            Some(0x6b3a6c1e_2a8f_4d54_9a0b_0c2f7b7f0001)
        );
        assert_eq!(
            parse_uuid("ABCDEF01-2345-6789-ABCD-EF0123456789"),
            Some(0xabcdef01_2345_6789_abcd_ef0123456789)
        );
        for bad in [
            "",
            "6b3a6c1e2a8f4d549a0b0c2f7b7f0001",
            "6b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f000",
            "6b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f00011",
            "6b3a6c1-e2a8f-4d54-9a0b-0c2f7b7f0001",
            "6b3a6c1g-2a8f-4d54-9a0b-0c2f7b7f0001",
            "+b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f0001",
            "{6b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f0001}",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_snapshot_option_parses() {
        let (attr, errors) = parse(quote! {
            "6b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f0001",
            snapshot = Snap,
            runtime_args = (String, u8),
            schema_version = 3,
            migrate = migrations::counter,
            codec = "msgpack",
            compression = "zstd",
            snapshot_every = 10,
            snapshot_interval_ms = 500,
            snapshot_on_stop,
        });
        assert_eq!(errors, "");
        assert!(attr.snapshot.unwrap().ty.is_some());
        assert!(attr.runtime_args.is_some());
        assert_eq!(attr.schema_version.unwrap().value, 3);
        assert!(attr.migrate.is_some());
        assert_eq!(attr.codec.unwrap().value, Codec::MessagePack);
        assert_eq!(attr.compression.unwrap().value, Compression::Zstd);
        assert_eq!(attr.snapshot_every.unwrap().value, 10);
        assert_eq!(attr.snapshot_interval_ms.unwrap().value, 500);
        assert!(attr.snapshot_on_stop.is_some());
    }

    #[test]
    fn schema_version_zero_is_allowed() {
        let (attr, errors) = parse(quote!(
            "6b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f0001",
            snapshot,
            schema_version = 0
        ));
        assert_eq!(errors, "");
        assert_eq!(attr.schema_version.unwrap().value, 0);
    }

    #[test]
    fn unknown_choices_list_the_valid_ones_and_parsing_goes_on() {
        let (attr, errors) = parse(quote! {
            "6b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f0001",
            snapshot,
            codec = "json",
            compression = gzip,
            snapshot_every = 5,
        });
        assert!(
            errors.contains(r#"unknown codec \"json\"; expected \"bincode\" or \"msgpack\""#),
            "{errors}"
        );
        assert!(
            errors.contains(r#"`compression` is a string: \"none\", \"lz4\" or \"zstd\""#),
            "{errors}"
        );
        assert!(attr.codec.is_none() && attr.compression.is_none());
        assert_eq!(attr.snapshot_every.unwrap().value, 5);
    }
}
