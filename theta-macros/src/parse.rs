//! The typed model of `#[actor(..)]` input: the attribute arguments and the
//! `impl Actor for T { .. }` item with its handler closures.
//!
//! Parsing is lenient: a malformed piece is recorded in [`Errors`] and left out of
//! the model, so one build reports every mistake and the expansion still emits the
//! rest of the user's item.

use std::fmt::Display;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprClosure, Generics, ImplItem, ImplItemConst, Item, ItemImpl, LitInt,
    LitStr, Pat, Path, ReturnType, Stmt, Token, Type,
};

/// Accumulates errors so that all of them are reported in one build.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn into_compile_errors(self) -> TokenStream {
        self.0
            .map(|error| error.to_compile_error())
            .unwrap_or_default()
    }
}

/// `#[actor("<uuid>", options..)]`.
#[derive(Default)]
pub(crate) struct ActorAttr {
    /// The actor type's uuid as a number; `None` if missing or malformed (already
    /// reported).
    pub uuid: Option<u128>,
    pub snapshot: Option<SnapshotFlag>,
    pub snapshot_every: Option<PolicyValue<u32>>,
    pub snapshot_interval_ms: Option<PolicyValue<u64>>,
    pub snapshot_on_stop: Option<Span>,
}

/// `snapshot` or `snapshot = Type`.
pub(crate) struct SnapshotFlag {
    /// The `snapshot` keyword: generated `PersistentActor` errors point here.
    pub span: Span,
    pub ty: Option<Type>,
}

/// `name = <integer>`.
pub(crate) struct PolicyValue<T> {
    pub span: Span,
    pub value: T,
}

const OPTIONS: &str = "expected `snapshot`, `snapshot = Type`, `snapshot_every = <u32>`, \
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

    fn parse_option(&mut self, input: ParseStream, errors: &mut Errors) -> syn::Result<()> {
        if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            errors.spanned(
                lit,
                format_args!("the uuid goes first and only once; {OPTIONS}"),
            );
            return Ok(());
        }
        let name: syn::Ident = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), OPTIONS))?;
        let span = name.span();
        let duplicate = |errors: &mut Errors| {
            errors.at(span, format_args!("duplicate option `{name}`"));
        };
        match name.to_string().as_str() {
            "snapshot" => {
                let ty = if input.peek(Token![=]) {
                    input.parse::<Token![=]>()?;
                    Some(input.parse::<Type>()?)
                } else {
                    None
                };
                match self.snapshot {
                    Some(_) => duplicate(errors),
                    None => self.snapshot = Some(SnapshotFlag { span, ty }),
                }
            }
            "snapshot_every" => {
                let value = parse_int::<u32>(input, &name, "messages")?;
                match (&self.snapshot_every, value) {
                    (Some(_), _) => duplicate(errors),
                    (None, Ok(value)) => self.snapshot_every = Some(PolicyValue { span, value }),
                    (None, Err(error)) => errors.push(error),
                }
            }
            "snapshot_interval_ms" => {
                let value = parse_int::<u64>(input, &name, "milliseconds")?;
                match (&self.snapshot_interval_ms, value) {
                    (Some(_), _) => duplicate(errors),
                    (None, Ok(value)) => {
                        self.snapshot_interval_ms = Some(PolicyValue { span, value });
                    }
                    (None, Err(error)) => errors.push(error),
                }
            }
            "snapshot_on_stop" => match self.snapshot_on_stop {
                Some(_) => duplicate(errors),
                None => self.snapshot_on_stop = Some(span),
            },
            _ => {
                errors.at(span, format_args!("unknown option `{name}`; {OPTIONS}"));
                skip_value(input)?;
            }
        }
        Ok(())
    }
}

/// `= <integer literal>` after a policy option. The outer `Result` is a syntax
/// error (stop parsing), the inner one a bad value (report and go on).
fn parse_int<T>(
    input: ParseStream,
    name: &syn::Ident,
    unit: &str,
) -> syn::Result<Result<T, syn::Error>>
where
    T: std::str::FromStr + PartialEq + From<u8>,
    T::Err: Display,
{
    if !input.peek(Token![=]) {
        return Err(syn::Error::new(
            name.span(),
            format_args!("`{name}` needs a value: `{name} = <{unit}>`"),
        ));
    }
    input.parse::<Token![=]>()?;
    let lit: LitInt = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), format_args!("expected a number of {unit}")))?;
    Ok(match lit.base10_parse::<T>() {
        Ok(value) if value == T::from(0) => Err(syn::Error::new_spanned(
            &lit,
            format_args!("`{name}` must be at least 1; leave it out to save only manually"),
        )),
        Ok(value) => Ok(value),
        Err(error) => Err(error),
    })
}

/// Skips `= anything` up to the next top-level comma (after an unknown option).
fn skip_value(input: ParseStream) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        while !input.is_empty() && !input.peek(Token![,]) {
            input.parse::<proc_macro2::TokenTree>()?;
        }
    }
    Ok(())
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

/// The annotated item.
pub(crate) enum ActorItem {
    /// `impl Actor for T { .. }` (validated further in `validate`).
    Impl(ActorImpl),
    /// An impl of another trait, or an inherent impl: reported, emitted without
    /// its handler blocks.
    OtherImpl(ItemImpl),
    /// Anything else: reported, emitted unchanged.
    Other(TokenStream),
}

/// `impl Actor for T { .. }` split into handlers and the user's other items.
pub(crate) struct ActorImpl {
    pub attrs: Vec<Attribute>,
    pub impl_token: Token![impl],
    pub generics: Generics,
    pub trait_path: Path,
    pub self_ty: Box<Type>,
    pub handlers: Vec<Handler>,
    pub items: Vec<ImplItem>,
}

/// One `async |pattern: Type| -> R { body }` closure.
pub(crate) struct Handler {
    pub attrs: Vec<Attribute>,
    /// The whole closure; `self` and `ctx` in the body resolve at this span.
    pub span: Span,
    pub pat: Pat,
    pub msg_ty: Type,
    pub ret: Option<Type>,
    pub body: Expr,
}

impl ActorItem {
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> ActorItem {
        let item = match syn::parse2::<Item>(tokens.clone()) {
            Ok(item) => item,
            Err(error) => {
                errors.push(error);
                return ActorItem::Other(tokens);
            }
        };
        let mut item = match item {
            Item::Impl(item) => item,
            other => {
                let (tokens, what) = item_head(&other);
                errors.spanned(
                    tokens,
                    format_args!(
                        "`#[actor]` goes on `impl Actor for YourType {{ .. }}`, not on {what}"
                    ),
                );
                return ActorItem::Other(other.into_token_stream());
            }
        };
        let trait_path = match &item.trait_ {
            None => {
                let (impl_token, self_ty) = (&item.impl_token, &item.self_ty);
                errors.spanned(
                    quote::quote!(#impl_token #self_ty),
                    "`#[actor]` goes on `impl Actor for YourType { .. }`, not on an inherent impl",
                );
                None
            }
            Some((Some(bang), path, _)) => {
                errors.spanned(
                    quote::quote!(#bang #path),
                    "`#[actor]` goes on `impl Actor for YourType { .. }`, not on a negative impl",
                );
                None
            }
            Some((None, path, _)) => {
                let is_actor = path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "Actor" && s.arguments.is_none());
                if !is_actor {
                    errors.spanned(
                        path,
                        format_args!(
                            "`#[actor]` goes on `impl Actor for YourType {{ .. }}`, not on an \
                             impl of `{}`",
                            path.to_token_stream().to_string().replace(' ', "")
                        ),
                    );
                    None
                } else {
                    Some(path.clone())
                }
            }
        };
        let Some(trait_path) = trait_path else {
            item.items.retain(|item| !is_handler_block(item));
            return ActorItem::OtherImpl(item);
        };

        let mut handlers = Vec::new();
        let mut items = Vec::new();
        for impl_item in item.items {
            match impl_item {
                ImplItem::Const(block) if block.ident == "_" => {
                    parse_handler_block(block, &mut handlers, errors);
                }
                other => items.push(other),
            }
        }
        ActorItem::Impl(ActorImpl {
            attrs: item.attrs,
            impl_token: item.impl_token,
            generics: item.generics,
            trait_path,
            self_ty: item.self_ty,
            handlers,
            items,
        })
    }
}

fn is_handler_block(item: &ImplItem) -> bool {
    matches!(item, ImplItem::Const(c) if c.ident == "_")
}

/// A short piece of a non-impl item to point an error at, and what it is.
fn item_head(item: &Item) -> (TokenStream, &'static str) {
    use quote::quote;
    match item {
        Item::Fn(f) => {
            let (token, ident) = (&f.sig.fn_token, &f.sig.ident);
            (quote!(#token #ident), "a function")
        }
        Item::Struct(s) => {
            let (token, ident) = (&s.struct_token, &s.ident);
            (quote!(#token #ident), "a struct")
        }
        Item::Enum(e) => {
            let (token, ident) = (&e.enum_token, &e.ident);
            (quote!(#token #ident), "an enum")
        }
        Item::Trait(t) => {
            let (token, ident) = (&t.trait_token, &t.ident);
            (quote!(#token #ident), "a trait")
        }
        Item::Mod(m) => {
            let (token, ident) = (&m.mod_token, &m.ident);
            (quote!(#token #ident), "a module")
        }
        other => (other.to_token_stream(), "this item"),
    }
}

/// `const _: () = { handler; handler; };`
fn parse_handler_block(block: ImplItemConst, handlers: &mut Vec<Handler>, errors: &mut Errors) {
    let is_unit = matches!(&block.ty, Type::Tuple(t) if t.elems.is_empty());
    if !is_unit {
        errors.spanned(
            &block.ty,
            "a handler block is `const _: () = { async |pattern: Type| { .. }; };`",
        );
    }
    let stmts = match block.expr {
        Expr::Block(expr) if expr.label.is_none() => expr.block.stmts,
        other => {
            errors.spanned(
                other,
                "expected a block of handlers: `{ async |pattern: Type| { .. }; }`",
            );
            return;
        }
    };
    for stmt in stmts {
        match stmt {
            Stmt::Expr(Expr::Closure(closure), _) => {
                if let Some(handler) = parse_handler(closure, errors) {
                    handlers.push(handler);
                }
            }
            other => errors.spanned(
                other,
                "only handlers go in a handler block: `async |pattern: Type| { .. };`",
            ),
        }
    }
}

fn parse_handler(closure: ExprClosure, errors: &mut Errors) -> Option<Handler> {
    let span = closure.span();
    if closure.asyncness.is_none() {
        let (lifetimes, constness) = (&closure.lifetimes, &closure.constness);
        let (movability, capture, or1) =
            (&closure.movability, &closure.capture, &closure.or1_token);
        errors.spanned(
            quote::quote!(#lifetimes #constness #movability #capture #or1),
            "a handler must be an async closure: `async |pattern: Type| { .. }`",
        );
    }
    let mut inputs = closure.inputs.into_iter();
    let Some(input) = inputs.next() else {
        let (or1, or2) = (closure.or1_token, closure.or2_token);
        errors.spanned(
            quote::quote!(#or1 #or2),
            "a handler takes exactly one parameter, the message: `async |pattern: Type| { .. }`",
        );
        return None;
    };
    if let Some(extra) = inputs.next() {
        errors.spanned(
            extra,
            "a handler takes exactly one parameter, the message: `async |pattern: Type| { .. }`",
        );
        return None;
    }
    let Pat::Type(typed) = input else {
        errors.spanned(
            &input,
            format_args!(
                "the message parameter needs its type: `|{}: MessageType|`",
                input.to_token_stream()
            ),
        );
        return None;
    };
    Some(Handler {
        attrs: closure.attrs,
        span,
        pat: *typed.pat,
        msg_ty: *typed.ty,
        ret: match closure.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(*ty),
        },
        body: *closure.body,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_uuid;

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
}
