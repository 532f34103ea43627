//! Checks on the parsed model that need more than one piece of it. Each failed
//! check is reported and the offending piece removed or stubbed, so the expansion
//! stays well-formed and rustc adds no follow-on errors.

use std::collections::HashSet;

use proc_macro2::Span;
use quote::ToTokens;
use syn::{FnArg, GenericArgument, ImplItem, ImplItemFn, Lifetime, Pat, PathArguments, Type};

use crate::attr::ActorAttr;
use crate::errors::Errors;
use crate::parse::ActorImpl;
use crate::render::render;

pub(crate) fn validate(attr: &mut ActorAttr, actor: &mut ActorImpl, errors: &mut Errors) {
    check_generics(attr, actor, errors);
    check_snapshot_options(attr, errors);
    check_duplicates(actor, errors);
    check_replies(actor, errors);
    check_patterns(actor, errors);
    check_generated_items(actor, errors);
    check_methods(actor, errors);
}

/// The message enum and `Message` impls are not generic, so neither is the actor.
fn check_generics(attr: &mut ActorAttr, actor: &mut ActorImpl, errors: &mut Errors) {
    let generics = &actor.generics;
    if generics.params.is_empty() && generics.where_clause.is_none() {
        return;
    }
    let where_clause = &generics.where_clause;
    errors.spanned(
        quote::quote!(#generics #where_clause),
        "`#[actor]` does not support generic actors; implement `Actor` by hand \
         (see the `theta` crate docs) or use a concrete type",
    );
    // What is left is an `Actor` impl without handlers, which needs no generic
    // message enum; the generics stay so the user's other items still resolve.
    actor.handlers.clear();
    *attr = ActorAttr {
        uuid: attr.uuid,
        ..ActorAttr::default()
    };
}

/// Options that shape the `PersistentActor` impl need `snapshot`; `migrate` needs a
/// schema version to migrate to.
fn check_snapshot_options(attr: &mut ActorAttr, errors: &mut Errors) {
    if attr.snapshot.is_none() {
        let mut needs_snapshot = |span: Option<Span>, name: &str| {
            if let Some(span) = span {
                errors.at(
                    span,
                    format_args!(
                        "`{name}` is an option of `snapshot`: add `snapshot` (or `snapshot = Type`) \
                         to make the actor persistent"
                    ),
                );
            }
        };
        needs_snapshot(attr.runtime_args.take().map(|o| o.span), "runtime_args");
        needs_snapshot(attr.schema_version.take().map(|o| o.span), "schema_version");
        needs_snapshot(attr.migrate.take().map(|o| o.span), "migrate");
        needs_snapshot(attr.codec.take().map(|o| o.span), "codec");
        needs_snapshot(attr.compression.take().map(|o| o.span), "compression");
        needs_snapshot(attr.snapshot_every.take().map(|o| o.span), "snapshot_every");
        needs_snapshot(
            attr.snapshot_interval_ms.take().map(|o| o.span),
            "snapshot_interval_ms",
        );
        needs_snapshot(
            attr.snapshot_on_stop.take().map(|o| o.span),
            "snapshot_on_stop",
        );
        return;
    }
    let version = attr.schema_version.as_ref().map(|v| v.value);
    if let Some(migrate) = &attr.migrate
        && version.unwrap_or(0) == 0
    {
        let why = match version {
            None => "`migrate` needs `schema_version = N` beside it",
            Some(_) => "`migrate` needs a `schema_version` above 0",
        };
        errors.at(
            migrate.span,
            format_args!(
                "{why}: it converts snapshots of versions older than the one this build \
                 writes, and below version 0 (the default) there are none; add \
                 `schema_version = 1`"
            ),
        );
        attr.migrate = None;
    }
}

/// Each message type has one handler: a second `impl Message<A> for M` would
/// conflict. Types are compared by their tokens.
fn check_duplicates(actor: &mut ActorImpl, errors: &mut Errors) {
    let mut seen = HashSet::new();
    actor.handlers.retain(|handler| {
        let key = handler.msg_ty.to_token_stream().to_string();
        if seen.insert(key) {
            return true;
        }
        errors.spanned(
            &handler.msg_ty,
            format_args!(
                "`{}` already has a handler in this actor; each message type is handled once",
                render(&handler.msg_ty)
            ),
        );
        false
    });
}

/// A reply travels to another task, so it cannot borrow from the actor: no
/// references or lifetimes other than `'static` in the reply type.
fn check_replies(actor: &mut ActorImpl, errors: &mut Errors) {
    for handler in &mut actor.handlers {
        let Some(ret) = &mut handler.ret else {
            continue;
        };
        let mut borrowed = None;
        find_borrow(ret, &mut borrowed);
        let Some(tokens) = borrowed else {
            continue;
        };
        errors.spanned(
            &tokens,
            format_args!(
                "handlers reply with owned values: return `{}` instead of `{}` \
                 (copy or clone it); a reply outlives the handler's borrow of the actor",
                render(owned(ret)),
                render(&*ret)
            ),
        );
        // Callers keep type-checking against the reply type as written (with
        // `'static` lifetimes); the body is not compiled.
        make_static(ret);
        handler.stub = true;
    }
}

/// The first reference or non-`'static` lifetime in `ty`, as tokens to point at.
fn find_borrow(ty: &Type, found: &mut Option<proc_macro2::TokenStream>) {
    if found.is_some() {
        return;
    }
    match ty {
        Type::Reference(reference) => {
            if reference
                .lifetime
                .as_ref()
                .is_none_or(|lifetime| lifetime.ident != "static")
            {
                let (and, lifetime) = (&reference.and_token, &reference.lifetime);
                let mutability = &reference.mutability;
                *found = Some(quote::quote!(#and #lifetime #mutability));
            } else {
                find_borrow(&reference.elem, found);
            }
        }
        Type::Path(path) => {
            for segment in &path.path.segments {
                let PathArguments::AngleBracketed(args) = &segment.arguments else {
                    continue;
                };
                for arg in &args.args {
                    match arg {
                        GenericArgument::Lifetime(lifetime) if lifetime.ident != "static" => {
                            *found = Some(lifetime.to_token_stream());
                            return;
                        }
                        GenericArgument::Type(ty) => find_borrow(ty, found),
                        _ => {}
                    }
                }
            }
        }
        Type::Tuple(tuple) => tuple.elems.iter().for_each(|ty| find_borrow(ty, found)),
        Type::Array(array) => find_borrow(&array.elem, found),
        Type::Slice(slice) => find_borrow(&slice.elem, found),
        Type::Paren(paren) => find_borrow(&paren.elem, found),
        Type::Group(group) => find_borrow(&group.elem, found),
        _ => {}
    }
}

/// What to return instead of a borrowed reply type: the referent, with `str` and
/// `[T]` as their owned forms.
fn owned(ty: &Type) -> Type {
    let mut ty = ty.clone();
    unborrow(&mut ty, Unborrow::Owned);
    ty
}

/// `ty` with every lifetime made `'static`, so it is a valid reply type.
fn make_static(ty: &mut Type) {
    unborrow(ty, Unborrow::Static);
}

#[derive(Clone, Copy)]
enum Unborrow {
    /// `&T` becomes `T` (`&str` becomes `String`, `&[T]` becomes `Vec<T>`).
    Owned,
    /// `&T` becomes `&'static T`.
    Static,
}

/// Rewrites the references of `ty` as `how` says and makes every lifetime
/// argument `'static`.
fn unborrow(ty: &mut Type, how: Unborrow) {
    match ty {
        Type::Reference(reference) => {
            unborrow(&mut reference.elem, how);
            match how {
                Unborrow::Static => {
                    let span = reference.and_token.span;
                    reference.lifetime = Some(Lifetime::new("'static", span));
                }
                Unborrow::Owned => {
                    *ty = match (*reference.elem).clone() {
                        Type::Path(path) if path.path.is_ident("str") => {
                            syn::parse_quote!(String)
                        }
                        Type::Slice(slice) => {
                            let elem = slice.elem;
                            syn::parse_quote!(Vec<#elem>)
                        }
                        other => other,
                    };
                }
            }
        }
        Type::Path(path) => {
            let arguments = path
                .path
                .segments
                .iter_mut()
                .filter_map(|segment| match &mut segment.arguments {
                    PathArguments::AngleBracketed(args) => Some(args.args.iter_mut()),
                    _ => None,
                });
            for arg in arguments.flatten() {
                match arg {
                    GenericArgument::Lifetime(lifetime) => {
                        *lifetime = Lifetime::new("'static", lifetime.span());
                    }
                    GenericArgument::Type(ty) => unborrow(ty, how),
                    _ => {}
                }
            }
        }
        Type::Tuple(tuple) => tuple.elems.iter_mut().for_each(|ty| unborrow(ty, how)),
        Type::Array(array) => unborrow(&mut array.elem, how),
        Type::Slice(slice) => unborrow(&mut slice.elem, how),
        Type::Paren(paren) => unborrow(&mut paren.elem, how),
        Type::Group(group) => unborrow(&mut group.elem, how),
        _ => {}
    }
}

/// A handler receives every message of its type, so its pattern must be
/// irrefutable. rustc checks that for every pattern (see `expand`); patterns that
/// are refutable whatever the types are reported here, with the fix.
fn check_patterns(actor: &mut ActorImpl, errors: &mut Errors) {
    for handler in &mut actor.handlers {
        let Some(refutable) = refutable_part(&handler.pat) else {
            continue;
        };
        let whole = render(&handler.msg_ty);
        errors.spanned(
            refutable,
            format_args!(
                "a handler's pattern must be irrefutable: the handler receives every \
                 `{whole}` message, and `{}` does not match them all; take the message \
                 whole and match in the body: `async |msg: {whole}| {{ if let {} = msg {{ .. }} }}`",
                render(refutable),
                render(&handler.pat),
            ),
        );
        handler.check_pattern = false;
    }
}

/// A part of `pat` that is refutable for any type: a literal, or `Some(..)` /
/// `None` (an `Option` always has both). Or-patterns are left to rustc.
fn refutable_part(pat: &Pat) -> Option<&Pat> {
    match pat {
        Pat::Lit(_) => Some(pat),
        Pat::Ident(ident) if ident.subpat.is_none() && ident.ident == "None" => Some(pat),
        Pat::Ident(ident) => ident
            .subpat
            .as_ref()
            .and_then(|(_, sub)| refutable_part(sub)),
        Pat::Path(path) if is_option_variant(&path.path) => Some(pat),
        Pat::TupleStruct(tuple) if is_option_variant(&tuple.path) => Some(pat),
        Pat::TupleStruct(tuple) => tuple.elems.iter().find_map(refutable_part),
        Pat::Struct(strukt) => strukt.fields.iter().find_map(|f| refutable_part(&f.pat)),
        Pat::Tuple(tuple) => tuple.elems.iter().find_map(refutable_part),
        Pat::Slice(slice) => slice.elems.iter().find_map(refutable_part),
        Pat::Paren(paren) => refutable_part(&paren.pat),
        Pat::Reference(reference) => refutable_part(&reference.pat),
        Pat::Type(typed) => refutable_part(&typed.pat),
        _ => None,
    }
}

/// `Some`, `None`, `Option::Some`, `std::option::Option::None`, ...
fn is_option_variant(path: &syn::Path) -> bool {
    let mut segments = path.segments.iter().rev();
    let Some(last) = segments.next() else {
        return false;
    };
    if last.ident != "Some" && last.ident != "None" {
        return false;
    }
    segments
        .next()
        .is_none_or(|parent| parent.ident == "Option")
}

/// `type Msg`, `TYPE_ID` and `process_msg` are what the macro writes.
fn check_generated_items(actor: &mut ActorImpl, errors: &mut Errors) {
    actor.items.retain(|item| {
        let (name, tokens) = match item {
            ImplItem::Type(ty) if ty.ident == "Msg" => ("type Msg", ty.ident.to_token_stream()),
            ImplItem::Const(c) if c.ident == "TYPE_ID" => ("TYPE_ID", c.ident.to_token_stream()),
            ImplItem::Fn(f) if f.sig.ident == "process_msg" => {
                ("process_msg", f.sig.ident.to_token_stream())
            }
            _ => return true,
        };
        errors.spanned(
            tokens,
            format_args!(
                "`#[actor]` generates `{name}` from the uuid and the handlers; remove this item"
            ),
        );
        false
    });
}

/// The hooks of `Actor` (besides `process_msg`); keep in step with the trait.
const HOOKS: &[&str] = &[
    "on_start",
    "on_restart",
    "on_exit",
    "supervise",
    "restart_limit",
];

/// A method that looks like a message handler (`async fn handle(&mut self, msg:
/// Add)`) is not an `Actor` item: say how handlers are written instead of rustc's
/// "not a member of trait". Only methods that take a parameter other than the
/// context are caught, so a hook added to `Actor` later is still passed through.
fn check_methods(actor: &mut ActorImpl, errors: &mut Errors) {
    actor.items.retain(|item| {
        let ImplItem::Fn(method) = item else {
            return true;
        };
        if HOOKS.contains(&method.sig.ident.to_string().as_str()) {
            return true;
        }
        let Some((pat, ty)) = message_param(method) else {
            return true;
        };
        let sig = &method.sig;
        let (asyncness, fn_token, ident) = (&sig.asyncness, &sig.fn_token, &sig.ident);
        errors.spanned(
            quote::quote!(#asyncness #fn_token #ident),
            format_args!(
                "`{ident}` is not an `Actor` hook; a message handler is an async closure in a \
                 handler block: `const _: () = {{ async |{}: {}| {{ .. }}; }};` \
                 (in its body `self` is the actor and `ctx` its context)",
                render(pat),
                render(ty)
            ),
        );
        false
    });
}

/// The first typed parameter after `self` that is not the context.
fn message_param(method: &ImplItemFn) -> Option<(&Pat, &Type)> {
    let mut inputs = method.sig.inputs.iter();
    if !matches!(inputs.next(), Some(FnArg::Receiver(_))) {
        return None;
    }
    inputs.find_map(|input| match input {
        FnArg::Typed(typed) if !mentions_context(&typed.ty) => Some((&*typed.pat, &*typed.ty)),
        _ => None,
    })
}

fn mentions_context(ty: &Type) -> bool {
    ty.to_token_stream()
        .into_iter()
        .any(|tree| matches!(tree, proc_macro2::TokenTree::Ident(ident) if ident == "Context"))
        || matches!(ty, Type::Reference(r) if mentions_context(&r.elem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(text: &str) -> Type {
        syn::parse_str(text).unwrap()
    }

    fn pat(text: &str) -> Pat {
        syn::parse::Parser::parse_str(Pat::parse_single, text).unwrap()
    }

    #[test]
    fn borrowed_replies_are_found_and_owned_forms_suggested() {
        for (text, borrow, suggestion) in [
            ("&i64", "&", "i64"),
            ("&'a str", "&'a", "String"),
            ("Option<&[u8]>", "&", "Option<Vec<u8>>"),
            ("(i64, &mut String)", "&mut", "(i64, String)"),
            ("Cow<'_, str>", "'_", "Cow<'static, str>"),
        ] {
            let ty = ty(text);
            let mut found = None;
            find_borrow(&ty, &mut found);
            assert_eq!(found.map(render).as_deref(), Some(borrow), "{text}");
            assert_eq!(render(owned(&ty)), suggestion, "{text}");
        }
        for text in [
            "&'static str",
            "i64",
            "fn(&str) -> usize",
            "Vec<&'static str>",
        ] {
            let mut found = None;
            find_borrow(&ty(text), &mut found);
            assert!(found.is_none(), "{text}");
        }
    }

    #[test]
    fn only_patterns_refutable_for_any_type_are_caught() {
        for text in [
            "Some(x)",
            "None",
            "Option::Some(_)",
            "Add(1)",
            "(x, None)",
            "Point { x: 0, y }",
        ] {
            assert!(refutable_part(&pat(text)).is_some(), "{text}");
        }
        // Refutable or not depending on the types: rustc decides.
        for text in [
            "Op::Add(n)",
            "Ok(x)",
            "(Some(_) | None)",
            "x",
            "_",
            "Point { x, y }",
            "0..=255",
        ] {
            assert!(refutable_part(&pat(text)).is_none(), "{text}");
        }
    }
}
