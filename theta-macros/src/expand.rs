//! Code generation for `#[actor]`.
//!
//! Everything is emitted inside one `const _: () = { .. };` so the message enum
//! needs no unique name and no visibility relative to the actor type: it is `pub`
//! (no private-in-public errors) yet unnameable from outside.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitInt, Type};

use crate::attr::ActorAttr;
use crate::errors::Errors;
use crate::parse::{ActorImpl, ActorItem, Handler};
use crate::persist::persistent_impl;
use crate::validate::validate;

fn expand(attr: &ActorAttr, actor: &ActorImpl) -> TokenStream {
    let self_ty = &actor.self_ty;
    let enum_name = enum_name(self_ty);
    let msg = Ident::new("__theta_msg", Span::mixed_site());
    let ctx = Ident::new("__theta_ctx", Span::mixed_site());
    let reply = Ident::new("__theta_reply", Span::mixed_site());

    let variants: Vec<Ident> = (0..actor.handlers.len())
        .map(|i| format_ident!("V{}", i))
        .collect();
    let methods: Vec<Ident> = (0..actor.handlers.len())
        .map(|i| format_ident!("__theta_handle_{}", i))
        .collect();
    // `Self` in a message or return type means the actor; outside the actor impl
    // (in the enum, in `impl Message<T> for M`) it would mean something else.
    let self_tokens = self_ty.to_token_stream();
    let msg_tys: Vec<TokenStream> = actor
        .handlers
        .iter()
        .map(|h| replace_self(h.msg_ty.to_token_stream(), &self_tokens))
        .collect();
    let returns: Vec<TokenStream> = actor
        .handlers
        .iter()
        .map(|h| match &h.ret {
            Some(ty) => replace_self(ty.to_token_stream(), &self_tokens),
            None => quote!(()),
        })
        .collect();

    let message_impls =
        msg_tys
            .iter()
            .zip(&returns)
            .zip(&variants)
            .map(|((msg_ty, ret), variant)| {
                quote! {
                    #[automatically_derived]
                    impl ::theta::__private::Message<#self_ty> for #msg_ty {
                        type Return = #ret;

                        #[inline]
                        fn into_msg(
                            self,
                            #reply: ::core::option::Option<::theta::__private::Reply<#ret>>,
                        ) -> <#self_ty as ::theta::__private::Actor>::Msg {
                            #enum_name::#variant(self, #reply)
                        }
                    }
                }
            });

    let handler_methods = actor
        .handlers
        .iter()
        .zip(&methods)
        .map(|(handler, method)| handler_method(handler, method));
    let handler_impl = (!actor.handlers.is_empty()).then(|| {
        quote! {
            impl #self_ty {
                #(#handler_methods)*
            }
        }
    });

    let uuid = LitInt::new(
        &format!("0x{:032x}", attr.uuid.unwrap_or(0)),
        Span::call_site(),
    );
    let (impl_generics, _, where_clause) = actor.generics.split_for_impl();
    let impl_token = &actor.impl_token;
    // Always the real trait, whatever the user imported; spanned at their path so
    // trait errors ("not all trait items implemented", ...) point at it.
    let trait_path = quote_spanned!(actor.trait_path.span()=> ::theta::__private::Actor);
    let attrs = &actor.attrs;
    let items = &actor.items;
    let dispatch = if actor.handlers.is_empty() {
        quote! {
            let _ = #ctx;
            match #msg {}
        }
    } else {
        let result = Ident::new("__theta_result", Span::mixed_site());
        quote! {
            match #msg {
                #(
                    #enum_name::#variants(#msg, #reply) => {
                        let #result = Self::#methods(self, #ctx, #msg).await;
                        if let ::core::option::Option::Some(#reply) = #reply {
                            #reply.send(#ctx, #result);
                        }
                    }
                )*
            }
        }
    };
    // Not `#[automatically_derived]`: the user's hooks live here and should be
    // linted like any hand-written code.
    let actor_impl = quote! {
        #(#attrs)*
        #impl_token #impl_generics #trait_path for #self_ty #where_clause {
            type Msg = #enum_name;

            const TYPE_ID: ::theta::__private::Uuid = ::theta::__private::Uuid::from_u128(#uuid);

            async fn process_msg(
                &mut self,
                #ctx: &::theta::__private::Context<Self>,
                #msg: #enum_name,
            ) {
                #dispatch
            }

            #(#items)*
        }
    };

    let persistent_impl = persistent_impl(attr, self_ty);
    // Syntax errors rustc has reported: emitted again so that a piece syn cannot
    // parse but rustc can is not dropped without a word; rustc shows the same
    // error at the same tokens once, and compiles nothing under `cfg(any())`.
    let broken = actor
        .broken
        .iter()
        .map(|tokens| quote!(const _: () = { #[cfg(any())] #tokens };));

    quote! {
        const _: () = {
            // `pub` so that `type Msg` of a public actor is not a private type in a
            // public interface; it stays unnameable inside this block, so message
            // types less visible than it are fine (`private_interfaces`).
            #[doc(hidden)]
            #[allow(non_camel_case_types, missing_debug_implementations, private_interfaces)]
            pub enum #enum_name {
                #( #variants(#msg_tys, ::core::option::Option<::theta::__private::Reply<#returns>>), )*
            }

            #(#message_impls)*

            #handler_impl

            #actor_impl

            #persistent_impl

            #(#broken)*
        };
    }
}

/// `__ThetaMsg_<T>` after the last path segment of the actor type.
fn enum_name(self_ty: &Type) -> Ident {
    let base = match self_ty {
        Type::Path(path) => path.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    };
    let base = base.unwrap_or_else(|| "Actor".to_owned());
    let base = base.strip_prefix("r#").unwrap_or(&base);
    format_ident!("__ThetaMsg_{}", base)
}

/// `async fn __theta_handle_i(&mut self, ctx: &Context<Self>, msg: M) -> R`: the
/// handler body in a real method, so `self`, `ctx`, `?` and `return` behave as in
/// any async method. `self` and `ctx` carry the closure's span so the user's body
/// resolves them; the message local is mixed-site so it never shadows user names.
///
/// The pattern is bound with `let .. else` (which accepts any pattern) and checked
/// for refutability as the argument of a closure that is never called: rustc then
/// reports "refutable pattern in closure argument" at the pattern, where a plain
/// `let` would suggest adding `else { .. }` after the attribute. Type and name
/// errors in the pattern are the same diagnostic at the same tokens in both
/// places, which rustc reports once.
///
/// Internal names start with `__theta`: hygiene covers locals, not items, so a
/// user *constant* named like a binding here would turn it into a constant pattern.
fn handler_method(handler: &Handler, method: &Ident) -> TokenStream {
    let Handler {
        attrs,
        span,
        pat,
        msg_ty,
        ret,
        body,
        check_pattern,
        stub,
    } = handler;
    let self_token = quote_spanned!(*span=> self);
    let ctx = Ident::new("ctx", *span);
    let msg = Ident::new("__theta_msg", Span::mixed_site());
    let ret = ret.as_ref().map(|ty| quote!(-> #ty));
    let body = if *stub {
        // Already reported: keep the method's signature for callers, compile no body.
        quote! {
            let _ = (#self_token, #ctx, #msg);
            ::core::unreachable!()
        }
    } else {
        // The block's statements are spliced into the method body: a nested block
        // would trip `unused_braces` on the user's `{ self.value }`.
        let body = match body {
            Expr::Block(block) if block.label.is_none() && block.attrs.is_empty() => {
                let stmts = &block.block.stmts;
                quote!(#(#stmts)*)
            }
            other => quote!(#other),
        };
        let check = check_pattern.then(|| {
            quote! {
                #[allow(unused, clippy::all)]
                let _ = |#pat: #msg_ty| {};
            }
        });
        quote! {
            let _ = #ctx;
            #check
            #[allow(irrefutable_let_patterns)]
            let #pat: #msg_ty = #msg else {
                ::core::unreachable!()
            };
            #body
        }
    };
    quote! {
        #(#attrs)*
        #[doc(hidden)]
        async fn #method(
            &mut #self_token,
            #ctx: &::theta::__private::Context<Self>,
            #msg: #msg_ty,
        ) #ret {
            #body
        }
    }
}

/// `tokens` with every `Self` replaced by `self_ty`.
pub(crate) fn replace_self(tokens: TokenStream, self_ty: &TokenStream) -> TokenStream {
    tokens
        .into_iter()
        .flat_map(|tree| match tree {
            TokenTree::Ident(ident) if ident == "Self" => self_ty.clone(),
            TokenTree::Group(group) => {
                let mut replaced =
                    Group::new(group.delimiter(), replace_self(group.stream(), self_ty));
                replaced.set_span(group.span());
                TokenTree::Group(replaced).into()
            }
            other => other.into(),
        })
        .collect()
}

/// `#[actor(attr)] item`: parse, validate, generate, and report every error next
/// to the best expansion possible.
pub(crate) fn actor(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let mut attr = ActorAttr::parse(attr, &mut errors);
    let expanded = match ActorItem::parse(item, &mut errors) {
        ActorItem::Impl(mut actor) => {
            validate(&mut attr, &mut actor, &mut errors);
            expand(&attr, &actor)
        }
        ActorItem::OtherImpl(item) => item.into_token_stream(),
        ActorItem::Other(tokens) => tokens,
    };
    let errors = errors.into_compile_errors();
    quote!(#errors #expanded)
}
