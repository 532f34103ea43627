//! Code generation for the `snapshot` flag and its options: the `PersistentActor`
//! impl, and checks that say what a snapshot type or an actor with runtime args
//! is missing before rustc's own bound errors on that impl.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::{Ident, Type};

use crate::attr::{ActorAttr, SnapshotFlag};
use crate::expand::replace_self;

/// `snapshot` / `snapshot = S` with its options: the `PersistentActor` impl (spanned
/// at the flag, so a missing `Serialize` is reported there), preceded by the
/// checks.
pub(crate) fn persistent_impl(attr: &ActorAttr, self_ty: &Type) -> Option<TokenStream> {
    let flag = attr.snapshot.as_ref()?;
    let span = flag.span;
    let snapshot_ty = match &flag.ty {
        Some(ty) => quote!(#ty),
        // Re-spanned: a missing `Serialize` on the actor is reported at `snapshot`.
        None => respan(self_ty.to_token_stream(), span),
    };
    let snapshot = Ident::new("__theta_snapshot", Span::mixed_site());
    let runtime = Ident::new("__theta_runtime_args", Span::mixed_site());

    let (runtime_ty, args_ty, args_fn) = match &attr.runtime_args {
        None => (
            quote!(()),
            snapshot_ty.clone(),
            quote_spanned! {span=>
                fn persistent_args(#snapshot: #snapshot_ty, _: ()) -> #snapshot_ty {
                    #snapshot
                }
            },
        ),
        Some(runtime_args) => {
            let ty = &runtime_args.value;
            let args = quote_spanned!(runtime_args.span=> ::theta::__private::RestoreArgs<Self>);
            let args_fn = quote_spanned! {runtime_args.span=>
                fn persistent_args(#snapshot: #snapshot_ty, #runtime: #ty) -> #args {
                    ::theta::__private::RestoreArgs::new(#snapshot, #runtime)
                }
            };
            (quote!(#ty), args, args_fn)
        }
    };
    let schema_version = attr.schema_version.as_ref().map(|version| {
        let value = version.value;
        quote_spanned!(version.span=> const SCHEMA_VERSION: u32 = #value;)
    });
    let migrate = attr.migrate.as_ref().map(|migrate| {
        let path = &migrate.value;
        let [from, payload, function] = ["from_version", "payload", "migrate"]
            .map(|name| Ident::new(&format!("__theta_{name}"), Span::mixed_site()));
        // Coerced to the fn pointer type first, so a function with another
        // signature is one "expected fn pointer .., found fn item .." at the path.
        let span = path_span(path);
        let result = quote_spanned! {span=>
            ::core::result::Result<Self::Snapshot, ::theta::__private::AnyhowError>
        };
        let pointer = quote_spanned!(span=> fn(u32, &[u8]) -> #result);
        quote_spanned! {migrate.span=>
            fn migrate(#from: u32, #payload: &[u8]) -> #result {
                let #function: #pointer = #path;
                #function(#from, #payload)
            }
        }
    });
    let codec = attr.codec.as_ref().map(|codec| {
        let variant = Ident::new(codec.value.variant(), codec.span);
        quote_spanned! {codec.span=>
            const CODEC: ::theta::__private::Codec = ::theta::__private::Codec::#variant;
        }
    });
    let compression = attr.compression.as_ref().map(|compression| {
        let variant = Ident::new(compression.value.variant(), compression.span);
        quote_spanned! {compression.span=>
            const COMPRESSION: ::theta::__private::Compression =
                ::theta::__private::Compression::#variant;
        }
    });
    let policy = policy(attr).map(|policy| {
        quote_spanned! {span=>
            fn snapshot_policy() -> ::theta::__private::SnapshotPolicy {
                #policy
            }
        }
    });
    let checks = checks(attr, flag, self_ty, &snapshot_ty, &runtime_ty);
    Some(quote! {
        #checks

        #[automatically_derived]
        impl ::theta::__private::PersistentActor for #self_ty {
            type Snapshot = #snapshot_ty;
            type RuntimeArgs = #runtime_ty;
            type ActorArgs = #args_ty;

            #args_fn
            #schema_version
            #migrate
            #codec
            #compression
            #policy
        }
    })
}

fn path_span(path: &syn::Path) -> Span {
    path.segments
        .last()
        .map_or_else(Span::call_site, |segment| segment.ident.span())
}

/// Bounds of the `PersistentActor` impl restated as associated-type bounds of a
/// local trait whose helper traits carry `#[diagnostic::on_unimplemented]`. They
/// are checked with the item signatures, before the impl, so the first error
/// names what is missing and how to add it; rustc's plainer errors on the impl
/// follow.
fn checks(
    attr: &ActorAttr,
    flag: &SnapshotFlag,
    self_ty: &Type,
    snapshot_ty: &TokenStream,
    runtime_ty: &TokenStream,
) -> TokenStream {
    let span = flag.span;
    // Outside the actor's impl `Self` would mean something else.
    let self_tokens = self_ty.to_token_stream();
    let snapshot_ty = &replace_self(snapshot_ty.clone(), &self_tokens);
    let runtime_ty = &replace_self(runtime_ty.clone(), &self_tokens);
    let (bounds, message, label, note) = match (&flag.ty, &attr.runtime_args) {
        (None, None) => (
            quote!(for<'a> ::core::convert::From<&'a A> + ::theta::__private::ActorArgs<Actor = A>),
            "the snapshot type `{Self}` needs `From<&{A}>` and `ActorArgs<Actor = {A}>`",
            "`snapshot` stores `{Self}` itself and restores it as its own arguments",
            "add `#[derive(ActorArgs)]` to `{A}`: it implements both (and needs `Clone`)",
        ),
        (Some(_), None) => (
            quote!(for<'a> ::core::convert::From<&'a A> + ::theta::__private::ActorArgs<Actor = A>),
            "the snapshot type `{Self}` needs `From<&{A}>` and `ActorArgs<Actor = {A}>`",
            "`snapshot = {Self}` stores a `{Self}` and restores `{A}` from it",
            "implement `From<&{A}> for {Self}` (what a snapshot keeps) and `ActorArgs for {Self}` \
             with `type Actor = {A}` (how `{A}` is rebuilt from it)",
        ),
        (None, Some(_)) => (
            quote!(for<'a> ::core::convert::From<&'a A>),
            "the snapshot type `{Self}` needs `From<&{A}>`",
            "`snapshot` stores `{Self}` itself",
            "add `#[derive(ActorArgs)]` to `{A}` (it implements `From<&{A}>` and needs `Clone`), \
             or implement `From<&{A}> for {A}`",
        ),
        (Some(_), Some(_)) => (
            quote!(for<'a> ::core::convert::From<&'a A>),
            "the snapshot type `{Self}` needs `From<&{A}>`",
            "`snapshot = {Self}` stores a `{Self}` taken from `{A}`",
            "implement `From<&{A}> for {Self}`: it captures what a snapshot keeps",
        ),
    };
    // With runtime args the actor is built by `Restore`, which the user writes.
    let (restore_trait, restore_bound, restore_impl) = match &attr.runtime_args {
        None => (None, None, None),
        Some(runtime_args) => {
            let span = runtime_args.span;
            let actor = respan(self_ty.to_token_stream(), span);
            (
                Some(quote_spanned! {span=>
                    #[diagnostic::on_unimplemented(
                        message = "`{Self}` has `runtime_args = {R}` and needs `impl Restore for {Self}`",
                        label = "restoring `{Self}` calls `Restore::restore` with the snapshot and the runtime args",
                        note = "write `impl theta::persistence::Restore for {Self} {{ async fn restore(\
                                ctx: Context<Self>, snapshot: &{S}, runtime_args: &{R}) -> Self {{ .. }} }}`"
                    )]
                    trait __ThetaRestore<S, R> {}
                    impl<S, R, T: ::theta::__private::Restore> __ThetaRestore<S, R> for T {}
                }),
                Some(quote_spanned!(span=> type Actor: __ThetaRestore<#snapshot_ty, #runtime_ty>;)),
                Some(quote_spanned!(span=> type Actor = #actor;)),
            )
        }
    };
    quote_spanned! {span=>
        #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
        trait __ThetaSnapshotType<A> {}
        impl<A, T> __ThetaSnapshotType<A> for T where T: #bounds {}
        #restore_trait

        #[allow(dead_code)]
        trait __ThetaChecks {
            type Snapshot: __ThetaSnapshotType<#self_ty>;
            #restore_bound
        }
        impl __ThetaChecks for () {
            type Snapshot = #snapshot_ty;
            #restore_impl
        }
    }
}

fn policy(attr: &ActorAttr) -> Option<TokenStream> {
    if attr.snapshot_every.is_none()
        && attr.snapshot_interval_ms.is_none()
        && attr.snapshot_on_stop.is_none()
    {
        return None;
    }
    let every = attr.snapshot_every.as_ref().map(|every| {
        let n = every.value;
        quote!(.every_n_messages(#n))
    });
    let interval = attr.snapshot_interval_ms.as_ref().map(|interval| {
        let ms = interval.value;
        quote!(.every_interval(::core::time::Duration::from_millis(#ms)))
    });
    let on_stop = attr
        .snapshot_on_stop
        .as_ref()
        .map(|_| quote!(.on_graceful_stop()));
    Some(quote! {
        ::theta::__private::SnapshotPolicy::new() #every #interval #on_stop
    })
}

/// `tokens` with every span set to `span` (interpolation keeps the tokens' own
/// spans otherwise).
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut respanned = Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                tree = TokenTree::Group(respanned);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}
