//! Checks on the parsed model that need more than one piece of it. Each failed
//! check is reported and the offending piece removed, so the expansion stays
//! well-formed and rustc adds no follow-on errors.

use std::collections::HashSet;

use quote::ToTokens;
use syn::ImplItem;

use crate::parse::{ActorAttr, ActorImpl, Errors};

pub(crate) fn validate(attr: &mut ActorAttr, actor: &mut ActorImpl, errors: &mut Errors) {
    check_generics(attr, actor, errors);
    check_policy(attr, errors);
    check_duplicates(actor, errors);
    check_generated_items(actor, errors);
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
    attr.snapshot = None;
}

fn check_policy(attr: &mut ActorAttr, errors: &mut Errors) {
    if attr.snapshot.is_some() {
        return;
    }
    let message = "snapshot policy options need `snapshot` (or `snapshot = Type`) first";
    if let Some(every) = attr.snapshot_every.take() {
        errors.at(every.span, message);
    }
    if let Some(interval) = attr.snapshot_interval_ms.take() {
        errors.at(interval.span, message);
    }
    if let Some(span) = attr.snapshot_on_stop.take() {
        errors.at(span, message);
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
                handler
                    .msg_ty
                    .to_token_stream()
                    .to_string()
                    .replace(' ', "")
            ),
        );
        false
    });
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
