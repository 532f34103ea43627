//! The typed model of the `impl Actor for T { .. }` item under `#[actor]`, with its
//! handler closures.
//!
//! Parsing is lenient: a malformed piece is recorded in [`Errors`] and left out of
//! the model, so one build reports every mistake and the expansion still emits the
//! rest of the user's item.
//!
//! rustc parses an attribute's item before the macro runs and reports its syntax
//! errors itself (a missing `;` between two handlers, a half-written body), then
//! hands over the tokens as written. So the impl body is parsed piece by piece,
//! not with syn's `ItemImpl`: what does not parse is emitted again unchanged (rustc
//! reports the same error at the same tokens once), never reported a second time
//! by syn, and the rest of the impl, handlers included, is expanded as usual.

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::parse::discouraged::Speculative;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprClosure, Generics, ImplItem, Item, ItemImpl, Pat, Path, ReturnType, Stmt,
    Token, Type,
};

use crate::errors::Errors;

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
    /// Pieces of handler blocks that do not parse (rustc has reported them),
    /// emitted again as written.
    pub broken: Vec<TokenStream>,
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
    /// Whether rustc should check the pattern's refutability (off once the macro
    /// reported the pattern itself).
    pub check_pattern: bool,
    /// Set by `validate` for a handler that is in error (already reported): it
    /// keeps its message type and reply type, so callers still type-check, but its
    /// body is not compiled.
    pub stub: bool,
}

/// `const _: () = { .. };` before its handlers are parsed.
struct HandlerBlock {
    ty: Type,
    /// The block's contents, or the expression that is not a block.
    content: Result<Group, Expr>,
}

/// What the impl body holds, in order.
enum BodyItem {
    Handlers(HandlerBlock),
    Item(ImplItem),
}

impl ActorItem {
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> ActorItem {
        match split_impl(&tokens) {
            Some((item, body)) => parse_impl(item, body, errors),
            None => parse_other(tokens, errors),
        }
    }
}

/// An impl with its body emptied, and the body: `None` if `tokens` is no impl
/// whose header parses.
fn split_impl(tokens: &TokenStream) -> Option<(ItemImpl, Group)> {
    let mut trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let Some(TokenTree::Group(body)) = trees.last().cloned() else {
        return None;
    };
    if body.delimiter() != Delimiter::Brace {
        return None;
    }
    let mut empty = Group::new(Delimiter::Brace, TokenStream::new());
    empty.set_span(body.span());
    *trees.last_mut()? = TokenTree::Group(empty);
    match syn::parse2::<Item>(trees.into_iter().collect()) {
        Ok(Item::Impl(item)) => Some((item, body)),
        _ => None,
    }
}

/// Not an impl, or one whose header does not parse: reported as a whole.
fn parse_other(tokens: TokenStream, errors: &mut Errors) -> ActorItem {
    let item = match syn::parse2::<Item>(tokens.clone()) {
        Ok(item) => item,
        Err(error) => {
            errors.push(error);
            return ActorItem::Other(tokens);
        }
    };
    let (head, what) = item_head(&item);
    errors.spanned(
        head,
        format_args!("`#[actor]` goes on `impl Actor for YourType {{ .. }}`, not on {what}"),
    );
    ActorItem::Other(item.into_token_stream())
}

fn parse_impl(mut item: ItemImpl, body: Group, errors: &mut Errors) -> ActorItem {
    let (inner_attrs, body) = parse_body(body, errors);
    item.attrs.extend(inner_attrs);
    let trait_path = actor_trait(&item, errors);
    let mut handlers = Vec::new();
    let mut items = Vec::new();
    let mut broken = Vec::new();
    for body_item in body {
        match body_item {
            BodyItem::Item(impl_item) => items.push(impl_item),
            // Outside an `Actor` impl the blocks are left out unparsed: the wrong
            // impl is the error.
            BodyItem::Handlers(block) if trait_path.is_some() => {
                parse_handler_block(block, &mut handlers, &mut broken, errors);
            }
            BodyItem::Handlers(_) => {}
        }
    }
    let Some(trait_path) = trait_path else {
        item.items = items;
        return ActorItem::OtherImpl(item);
    };
    ActorItem::Impl(ActorImpl {
        attrs: item.attrs,
        impl_token: item.impl_token,
        generics: item.generics,
        trait_path,
        self_ty: item.self_ty,
        handlers,
        items,
        broken,
    })
}

/// The `Actor` path of `impl Actor for T`, or `None` (reported) for other impls.
fn actor_trait(item: &ItemImpl, errors: &mut Errors) -> Option<Path> {
    match &item.trait_ {
        None => {
            let (impl_token, self_ty) = (&item.impl_token, &item.self_ty);
            errors.spanned(
                quote!(#impl_token #self_ty),
                "`#[actor]` goes on `impl Actor for YourType { .. }`, not on an inherent impl",
            );
            None
        }
        Some((Some(bang), path, _)) => {
            errors.spanned(
                quote!(#bang #path),
                "`#[actor]` goes on `impl Actor for YourType { .. }`, not on a negative impl",
            );
            None
        }
        Some((None, path, _)) => {
            let is_actor = path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Actor" && s.arguments.is_none());
            if is_actor {
                return Some(path.clone());
            }
            errors.spanned(
                path,
                format_args!(
                    "`#[actor]` goes on `impl Actor for YourType {{ .. }}`, not on an impl of `{}`",
                    crate::render::render(path)
                ),
            );
            None
        }
    }
}

/// The impl body, item by item. An item that does not parse is reported and
/// skipped, so the items after it are kept.
fn parse_body(body: Group, errors: &mut Errors) -> (Vec<Attribute>, Vec<BodyItem>) {
    let mut inner_attrs = Vec::new();
    let mut items = Vec::new();
    let parser = |input: ParseStream| -> syn::Result<()> {
        inner_attrs = input.call(Attribute::parse_inner)?;
        while !input.is_empty() {
            if starts_handler_block(input) {
                items.push(BodyItem::Handlers(parse_block_syntax(input, errors)?));
                continue;
            }
            let fork = input.fork();
            match fork.parse::<ImplItem>() {
                Ok(item) => {
                    input.advance_to(&fork);
                    items.push(BodyItem::Item(item));
                }
                // rustc has reported it; emitted again as written.
                Err(_) => items.push(BodyItem::Item(ImplItem::Verbatim(skip_item(input)?))),
            }
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(body.stream()) {
        errors.push(error);
    }
    (inner_attrs, items)
}

/// `#[..] const _` starts a handler block (an impl of a trait cannot have an
/// unnamed const otherwise).
fn starts_handler_block(input: ParseStream) -> bool {
    let fork = input.fork();
    fork.call(Attribute::parse_outer).is_ok()
        && fork.parse::<Token![const]>().is_ok()
        && fork.peek(Token![_])
}

/// `const _: Type = { .. };` with the block left unparsed.
fn parse_block_syntax(input: ParseStream, errors: &mut Errors) -> syn::Result<HandlerBlock> {
    let _attrs = input.call(Attribute::parse_outer)?;
    input.parse::<Token![const]>()?;
    input.parse::<Token![_]>()?;
    input.parse::<Token![:]>()?;
    let ty: Type = input.parse()?;
    input.parse::<Token![=]>()?;
    let content = if input.peek(syn::token::Brace) {
        Ok(input.step(|cursor| match cursor.token_tree() {
            Some((TokenTree::Group(group), rest)) => Ok((group, rest)),
            _ => Err(cursor.error("expected a block of handlers")),
        })?)
    } else {
        Err(input.parse::<Expr>()?)
    };
    if input.peek(Token![;]) {
        input.parse::<Token![;]>()?;
    } else {
        let end = match &content {
            Ok(group) => group.span_close(),
            Err(expr) => expr.span(),
        };
        errors.at(end, "expected `;` after the handler block");
    }
    Ok(HandlerBlock { ty, content })
}

/// The tokens of an item that failed to parse: up to and including the next `;`
/// or `{ .. }` (and a `;` right after it).
fn skip_item(input: ParseStream) -> syn::Result<TokenStream> {
    let mut skipped = TokenStream::new();
    while !input.is_empty() {
        let tree: TokenTree = input.parse()?;
        let end = match &tree {
            TokenTree::Punct(punct) => punct.as_char() == ';',
            TokenTree::Group(group) => group.delimiter() == Delimiter::Brace,
            _ => false,
        };
        let brace = matches!(&tree, TokenTree::Group(_));
        skipped.extend([tree]);
        if end {
            if brace && input.peek(Token![;]) {
                skipped.extend([input.parse::<TokenTree>()?]);
            }
            break;
        }
    }
    Ok(skipped)
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}

/// The handlers of `const _: () = { handler; handler; };`. Two handlers without
/// the `;` between them are both kept (rustc has reported the `;`).
fn parse_handler_block(
    block: HandlerBlock,
    handlers: &mut Vec<Handler>,
    broken: &mut Vec<TokenStream>,
    errors: &mut Errors,
) {
    if !is_unit(&block.ty) {
        errors.spanned(
            &block.ty,
            "a handler block is `const _: () = { async |pattern: Type| { .. }; };`",
        );
    }
    let group = match block.content {
        Ok(group) => group,
        Err(other) => {
            errors.spanned(
                other,
                "expected a block of handlers: `{ async |pattern: Type| { .. }; }`",
            );
            return;
        }
    };
    let parser = |input: ParseStream| -> syn::Result<()> {
        while !input.is_empty() {
            if input.peek(Token![;]) {
                input.parse::<Token![;]>()?;
                continue;
            }
            // An expression first, not a `Stmt`: syn's statement parser refuses a
            // closure without its `;` (which rustc has reported) and would lose
            // the rest of the block.
            let fork = input.fork();
            let attrs = fork.call(Attribute::parse_outer)?;
            if let Ok(expr) = fork.parse::<Expr>() {
                input.advance_to(&fork);
                let _semi: Option<Token![;]> = input.parse()?;
                match expr {
                    Expr::Closure(mut closure) => {
                        closure.attrs.splice(0..0, attrs);
                        handlers.extend(parse_handler(closure, errors));
                    }
                    other => errors.spanned(
                        other,
                        "only handlers go in a handler block: `async |pattern: Type| { .. };`",
                    ),
                }
                continue;
            }
            let fork = input.fork();
            if let Ok(stmt) = fork.parse::<Stmt>() {
                // `let`, an item, ...
                input.advance_to(&fork);
                errors.spanned(
                    stmt,
                    "only handlers go in a handler block: `async |pattern: Type| { .. };`",
                );
                continue;
            }
            // A syntax error, which rustc has reported: keep the handler with its
            // body as written if its head parses, else emit the tokens again.
            match salvage_handler(input) {
                Some(handler) => handlers.push(handler),
                None => broken.push(skip_item(input)?),
            }
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(group.stream()) {
        errors.push(error);
    }
}

/// `async |pattern: Type| -> R { .. }` whose body does not parse: the handler with
/// its body as written, so its message type stays handled and rustc's syntax error
/// in the body is the only error.
fn salvage_handler(input: ParseStream) -> Option<Handler> {
    let fork = input.fork();
    let head = |input: ParseStream| -> syn::Result<Handler> {
        let attrs = input.call(Attribute::parse_outer)?;
        let start = input.span();
        input.parse::<Token![async]>()?;
        let _: Option<Token![move]> = input.parse()?;
        input.parse::<Token![|]>()?;
        let pat = Pat::parse_single(input)?;
        input.parse::<Token![:]>()?;
        let msg_ty: Type = input.parse()?;
        input.parse::<Token![|]>()?;
        let ret = if input.peek(Token![->]) {
            input.parse::<Token![->]>()?;
            Some(input.parse::<Type>()?)
        } else {
            None
        };
        let body: Group = input.parse::<TokenTree>().and_then(|tree| match tree {
            TokenTree::Group(group) if group.delimiter() == Delimiter::Brace => Ok(group),
            other => Err(syn::Error::new(other.span(), "expected a block")),
        })?;
        let _semi: Option<Token![;]> = input.parse()?;
        Ok(Handler {
            attrs,
            span: start,
            pat,
            msg_ty,
            ret,
            body: Expr::Verbatim(body.into_token_stream()),
            check_pattern: true,
            stub: false,
        })
    };
    let handler = head(&fork).ok()?;
    input.advance_to(&fork);
    Some(handler)
}

fn parse_handler(closure: ExprClosure, errors: &mut Errors) -> Option<Handler> {
    let span = closure.span();
    if closure.asyncness.is_none() {
        let (lifetimes, constness) = (&closure.lifetimes, &closure.constness);
        let (movability, capture, or1) =
            (&closure.movability, &closure.capture, &closure.or1_token);
        errors.spanned(
            quote!(#lifetimes #constness #movability #capture #or1),
            "a handler must be an async closure: `async |pattern: Type| { .. }`",
        );
    }
    let mut inputs = closure.inputs.into_iter();
    let Some(input) = inputs.next() else {
        let (or1, or2) = (closure.or1_token, closure.or2_token);
        errors.spanned(
            quote!(#or1 #or2),
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
                crate::render::render(&input)
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
        check_pattern: true,
        stub: false,
    })
}

/// A short piece of a non-impl item to point an error at, and what it is.
fn item_head(item: &Item) -> (TokenStream, &'static str) {
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

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn parse(tokens: TokenStream) -> (Option<ActorImpl>, String) {
        let mut errors = Errors::default();
        let item = ActorItem::parse(tokens, &mut errors);
        let errors = errors.into_compile_errors().to_string();
        match item {
            ActorItem::Impl(actor) => (Some(actor), errors),
            _ => (None, errors),
        }
    }

    #[test]
    fn a_missing_semicolon_between_handlers_keeps_both() {
        let (actor, errors) = parse(quote! {
            impl Actor for Counter {
                const _: () = {
                    async |Add(n): Add| { self.value += n; }
                    async |_: Get| -> i64 { self.value };
                };
                async fn on_start(&mut self, _ctx: &Context<Self>) {}
            }
        });
        // rustc reports the missing `;` before the macro runs.
        assert_eq!(errors, "");
        let actor = actor.unwrap();
        assert_eq!(actor.handlers.len(), 2);
        assert_eq!(actor.items.len(), 1);
    }

    #[test]
    fn syntax_errors_are_kept_as_written_and_the_rest_parsed() {
        let (actor, errors) = parse(quote! {
            impl Actor for Counter {
                type = ;
                const _: () = {
                    async |_: Get| -> i64 { self.value + };
                    async |n Add| {};
                    async |Add(n): Add| { self.value += n; };
                };
                fn restart_limit() -> RestartLimit { RestartLimit::default() }
            }
        });
        // rustc reports syntax errors before the macro runs; the macro adds none.
        assert_eq!(errors, "");
        let actor = actor.unwrap();
        let items: Vec<String> = actor
            .items
            .iter()
            .map(|i| i.to_token_stream().to_string())
            .collect();
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0], "type = ;");
        // The half-written body keeps its handler; the broken head is emitted again.
        assert_eq!(actor.handlers.len(), 2);
        assert!(matches!(actor.handlers[0].body, Expr::Verbatim(_)));
        assert_eq!(actor.broken.len(), 1);
        assert_eq!(actor.broken[0].to_string(), "async | n Add | { } ;");
    }

    #[test]
    fn the_last_handler_may_omit_its_semicolon() {
        let (actor, errors) = parse(quote! {
            impl Actor for Counter {
                const _: () = { async |_: Get| -> i64 { self.value } };
            }
        });
        assert_eq!(errors, "");
        assert_eq!(actor.unwrap().handlers.len(), 1);
    }
}
