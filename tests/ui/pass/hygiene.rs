//! The expansion relies on nothing the user imported or named: only the
//! attribute is in scope, message types and locals reuse the names the generated
//! code uses, and no lint fires.

#![deny(warnings, missing_docs, missing_debug_implementations, unreachable_pub)]

use theta::actor;

/// A message named like the runtime's reply slot.
#[derive(Debug)]
pub struct Reply(pub u32);
/// A message named like the runtime's message trait.
#[derive(Debug)]
pub struct Message {
    /// Payload bound to the names the expansion uses internally.
    pub msg: u32,
    /// More of the same.
    pub reply: u32,
}
/// Named like a generated variant.
#[derive(Debug)]
pub struct V0;
/// Named like the std types the expansion uses.
#[derive(Debug)]
pub struct Option;


/// The actor; public, so a private message enum would be a private type in a
/// public interface.
#[derive(Debug, Clone, theta::ActorArgs)]
pub struct Hygienic {
    total: u32,
}

#[actor("0f0e0d0c-0b0a-4908-8706-050403020100")]
impl Actor for Hygienic {
    const _: () = {
        async |Reply(__ctx): Reply| -> u32 {
            let __result = __ctx;
            self.total += __result;
            self.total
        };
        async |Message { msg, reply }: Message| -> (u32, u32) {
            let __reply = reply;
            (msg, __reply)
        };
        async |__msg: V0| -> ::core::option::Option<u32> {
            let V0 = __msg;
            let _ = ctx;
            ::core::option::Option::Some(self.total)
        };
        async |_: Option| {};
    };
}

/// Constants named like the runtime's and the user-facing names do not turn the
/// expansion's bindings into constant patterns (names starting with `__theta`
/// are the expansion's own).
#[allow(non_upper_case_globals, dead_code)]
mod consts {
    use theta::actor;

    const msg: u32 = 1;
    const reply: u32 = 2;
    const result: u32 = 3;
    const snapshot: u32 = 4;
    const args: u32 = 5;
    const __msg: u32 = 6;
    const __ctx: u32 = 7;
    const __reply: u32 = 8;
    const __result: u32 = 9;
    const __snapshot: u32 = 10;
    const __args: u32 = 11;
    const V1: u32 = 12;

    #[derive(Clone, serde::Serialize, serde::Deserialize, theta::ActorArgs)]
    pub(crate) struct Consts;

    pub(crate) struct Ping;

    #[actor("0f0e0d0c-0b0a-4908-8706-050403020101", snapshot, snapshot_on_stop)]
    impl Actor for Consts {
        const _: () = {
            async |_: Ping| -> u32 {
                msg + reply + result + snapshot + args + __msg + __ctx + __reply + __result
                    + __snapshot + __args + V1
            };
        };
    }
}

fn main() {
    let _ = Hygienic { total: 0 };
    let _ = consts::Consts;
    let _ = consts::Ping;
}
