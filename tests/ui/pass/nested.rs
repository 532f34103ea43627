//! Actors in nested modules and inside a function body, with only the prelude.

#![deny(warnings)]

mod outer {
    pub mod inner {
        use theta::prelude::*;

        #[derive(Debug, Clone, ActorArgs)]
        pub struct Deep {
            pub n: u8,
        }

        pub struct Ping;

        // A private message of a public actor: the generated enum must not be a
        // private type in a public interface.
        struct Secret(u8);

        pub fn secret(deep: &ActorRef<Deep>) {
            let _ = deep.tell(Secret(1));
        }

        #[actor("11111111-2222-4333-8444-555555555555")]
        impl Actor for Deep {
            const _: () = {
                async |_: Ping| -> u8 { self.n };
                async |Secret(n): Secret| {
                    self.n += n;
                };
            };

            async fn on_start(&mut self, ctx: &Context<Self>) {
                let _ = ctx.id();
            }

            fn restart_limit() -> theta::RestartLimit {
                theta::RestartLimit::new(1, std::time::Duration::from_secs(1))
            }
        }
    }
}

fn main() {
    use theta::prelude::*;

    #[derive(Debug, Clone, ActorArgs)]
    struct Local(u8);

    struct Get;

    #[actor("66666666-7777-4888-9999-aaaaaaaaaaaa")]
    impl Actor for Local {
        const _: () = {
            async |_: Get| -> u8 { self.0 };
        };
    }

    // Two actors in one module: the generated items do not clash.
    #[derive(Debug, Clone, ActorArgs)]
    struct Other;

    #[actor("bbbbbbbb-cccc-4ddd-8eee-ffffffffffff")]
    impl Actor for Other {
        const _: () = {
            async |_: Get| {};
        };
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let root = RootContext::default();
        let deep = root.spawn(outer::inner::Deep { n: 7 });
        assert_eq!(deep.ask(outer::inner::Ping).await.unwrap(), 7);
        outer::inner::secret(&deep);
        assert_eq!(deep.ask(outer::inner::Ping).await.unwrap(), 8);
        let local = root.spawn(Local(3));
        assert_eq!(local.ask(Get).await.unwrap(), 3);
        let other = root.spawn(Other);
        other.ask(Get).await.unwrap();
    });
}
