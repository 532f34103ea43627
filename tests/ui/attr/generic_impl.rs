use std::marker::PhantomData;
use theta::prelude::*;

struct Wrapper<T>(PhantomData<T>);

struct Ping;

#[actor("12345678-1234-5678-9abc-123456789abc")]
impl<T: Send + 'static> Actor for Wrapper<T> {
    const _: () = {
        async |_: Ping| {};
    };
}

fn main() {}
