use theta::prelude::*;

#[derive(Clone, ActorArgs)]
struct Holder<T> {
    value: T,
}

fn main() {}
