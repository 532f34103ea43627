//! `#[derive(ActorArgs)]`: the type is its own arguments (cloned on every start) and
//! its own snapshot (`From<&T> for T`).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{Data, DeriveInput};

use crate::errors::Errors;

pub(crate) fn derive_actor_args(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = Errors::default();
    if let Data::Union(data) = &input.data {
        errors.spanned(
            data.union_token,
            "`#[derive(ActorArgs)]` supports structs and enums, not unions",
        );
    }
    let generics = &input.generics;
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        let where_clause = &generics.where_clause;
        errors.spanned(
            quote!(#generics #where_clause),
            "`#[derive(ActorArgs)]` does not support generic types: `#[actor]` actors are \
             concrete types; implement `ActorArgs` by hand for generic arguments",
        );
    }
    let compile_errors = errors.into_compile_errors();
    if !compile_errors.is_empty() {
        return compile_errors;
    }

    let ident = &input.ident;
    let args = quote!(__theta_args);
    // Spanned at the type name so "`T: Clone` is not satisfied" points at it.
    let clone = quote_spanned!(ident.span()=> ::core::clone::Clone::clone);
    quote! {
        #[automatically_derived]
        impl ::theta::__private::ActorArgs for #ident {
            type Actor = #ident;

            fn initialize(
                _: ::theta::__private::Context<#ident>,
                #args: &Self,
            ) -> impl ::core::future::Future<Output = #ident> + ::core::marker::Send {
                ::core::future::ready(#clone(#args))
            }
        }

        #[automatically_derived]
        impl ::core::convert::From<&#ident> for #ident {
            #[inline]
            fn from(#args: &#ident) -> Self {
                #clone(#args)
            }
        }
    }
}
